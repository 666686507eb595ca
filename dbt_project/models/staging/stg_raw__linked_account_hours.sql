with

source as (

    select * from {{ source('raw', 'linked_account_hours') }}

),

renamed as (

    select
        fetch_hour,
        profile_id,
        linked_account_id,
        provider_id,
        linked_account_name,
        state as account_state

    from source

)

select * from renamed
