with

source as (

    select * from {{ source('raw', 'unit_prices') }}

),

renamed as (

    select
        price_hour,
        upper(unit) as unit,
        upper(quote_ccy) as quote_ccy,
        price,
        source as price_source

    from source

)

select * from renamed
