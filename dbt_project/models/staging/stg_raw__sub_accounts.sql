with

source as (

    select * from {{ source('raw', 'sub_accounts') }}

),

renamed as (

    select
        fetch_hour,
        linked_account_id,
        sub_account_id,
        name as sub_account_name,
        upper(currency) as sub_account_ccy,
        account_type

    from source

)

select * from renamed
