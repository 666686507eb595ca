{{ config(materialized='view') }}

{#-
  The pairs the valuation needed but could not price (no rate published on or before
  the hour's date for a currency leg, no unit price at or before the hour for a unit
  leg). A leaf on purpose: its test (assert_fx_rates_available) warns and names them
  without stopping the marts, whose affected items carry value NULL (is_unvalued,
  is_fx_missing) and are counted in unvalued_items.
-#}

with

fx_rates_hourly as (

    select * from {{ ref('int_fx_rates_hourly') }}

),

final as (

    select
        from_ccy,
        to_ccy,
        from_ccy || '->' || to_ccy as pair,
        min(valuation_hour) as first_missing_hour,
        max(valuation_hour) as last_missing_hour,
        count(*) as missing_hours

    from fx_rates_hourly
    where is_missing
    group by from_ccy, to_ccy

)

select * from final
