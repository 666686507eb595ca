with

source as (

    select * from {{ source('raw', 'fx_rates') }}

),

renamed as (

    select
        rate_date,
        upper(base_ccy) as base_ccy,
        upper(quote_ccy) as quote_ccy,
        rate,
        source as rate_source

    from source

)

select * from renamed
