{{ config(severity='warn') }}

{#- Warns (one row per currency, with the hours affected) when an hour of the build
    window is valued with a rate published more than 5 business days before the
    hour's date: the ECB feed stopped, or the daily FX run has not run. Weekends
    and holidays alone never trigger it (at most 4 business days apart). -#}

with

fx_rates_hourly as (

    select * from {{ ref('int_fx_rates_hourly') }}
    where {{ hour_window_filter('valuation_hour') }}

),

legs as (

    select valuation_hour, from_ccy as ccy, from_rate_date as rate_date
    from fx_rates_hourly
    where from_rate_date is not null
    union all
    select valuation_hour, to_ccy as ccy, to_rate_date as rate_date
    from fx_rates_hourly
    where to_rate_date is not null

),

ages as (

    select distinct
        ccy,
        rate_date,
        cast(valuation_hour as date) as valuation_date
    from legs

),

business_days as (

    select
        ccy,
        rate_date,
        valuation_date,
        len(list_filter(
            generate_series(
                cast(rate_date as timestamp) + interval 1 day,
                cast(valuation_date as timestamp),
                interval 1 day
            ),
            lambda d: isodow(d) <= 5
        )) as business_days_old
    from ages

)

select
    ccy,
    min(rate_date) as oldest_rate_date,
    max(business_days_old) as max_business_days_old,
    min(valuation_date) as first_date_affected,
    max(valuation_date) as last_date_affected
from business_days
where business_days_old > 5
group by ccy
