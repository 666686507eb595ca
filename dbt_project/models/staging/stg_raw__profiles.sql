with

source as (

    select * from {{ source('raw', 'profiles') }}

),

renamed as (

    select
        profile_id,
        profile_name,
        upper(valuation_ccy) as valuation_ccy

    from source

)

select * from renamed
