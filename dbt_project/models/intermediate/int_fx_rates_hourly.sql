{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='valuation_hour',
        on_schema_change='fail',
    )
}}

{#-
  The FX rate of every currency pair the valuation needs at each hour of the window:
  from a sub-account currency to the owning profile's valuation currency.

  rate(X -> Y) = rate(EUR -> Y) / rate(EUR -> X), EUR legs are 1, X -> X is 1.
  An hour uses, per currency, the latest rate published on or before its (UTC) date,
  so weekends and holidays carry the previous business day's rate.
  A pair whose leg has no rate yet is kept with rate NULL and is_missing = true:
  int_fx_missing_pairs lists them and its test fails (never a silent 0 or 1).
-#}

with

snapshot as (

    select * from {{ ref('int_consistent_snapshot') }}
    where {{ hour_window_filter('valuation_hour') }}
        and has_data

),

sub_accounts as (

    select * from {{ ref('stg_raw__sub_accounts') }}
    -- only the fetches the window's snapshot can point at (zone-map pruning on history)
    where fetch_hour between {{ snapshot_min_source_hour(ref('int_consistent_snapshot')) }} and {{ window_max_hour() }}

),

profiles as (

    select * from {{ ref('stg_raw__profiles') }}

),

eur_rates as (

    select * from {{ ref('stg_raw__fx_rates') }}
    where base_ccy = 'EUR'

),

needed_pairs as (

    select distinct
        snapshot.valuation_hour,
        sub_accounts.sub_account_ccy as from_ccy,
        profiles.valuation_ccy as to_ccy

    from snapshot
    inner join sub_accounts
        on snapshot.linked_account_id = sub_accounts.linked_account_id
        and snapshot.source_fetch_hour = sub_accounts.fetch_hour
    inner join profiles
        on snapshot.profile_id = profiles.profile_id

),

needed_legs as (

    select distinct valuation_hour, cast(valuation_hour as date) as valuation_date, ccy
    from (
        select valuation_hour, from_ccy as ccy from needed_pairs
        union all
        select valuation_hour, to_ccy as ccy from needed_pairs
    )
    where ccy <> 'EUR'

),

{#- Rates read: those dated inside the window plus, per currency, the latest before it. -#}
rates_in_window as (

    select quote_ccy, rate_date, rate
    from eur_rates
    where rate_date between cast({{ window_min_hour() }} as date) and cast({{ window_max_hour() }} as date)

),

last_rate_before_window as (

    select quote_ccy, max(rate_date) as rate_date
    from eur_rates
    where rate_date < cast({{ window_min_hour() }} as date)
    group by quote_ccy

),

candidate_rates as (

    select * from rates_in_window
    union all
    select last_rate_before_window.quote_ccy, last_rate_before_window.rate_date, eur_rates.rate
    from last_rate_before_window
    inner join eur_rates
        on last_rate_before_window.quote_ccy = eur_rates.quote_ccy
        and last_rate_before_window.rate_date = eur_rates.rate_date

),

legs as (

    select
        needed_legs.valuation_hour,
        needed_legs.ccy,
        candidate_rates.rate_date,
        candidate_rates.rate

    from needed_legs
    asof left join candidate_rates
        on needed_legs.ccy = candidate_rates.quote_ccy
        and needed_legs.valuation_date >= candidate_rates.rate_date

),

priced as (

    select
        needed_pairs.valuation_hour,
        needed_pairs.from_ccy,
        needed_pairs.to_ccy,
        from_leg.rate_date as from_rate_date,
        to_leg.rate_date as to_rate_date,
        case when needed_pairs.from_ccy = 'EUR' then 1.0 else from_leg.rate end as eur_to_from_rate,
        case when needed_pairs.to_ccy = 'EUR' then 1.0 else to_leg.rate end as eur_to_to_rate

    from needed_pairs
    left join legs as from_leg
        on needed_pairs.valuation_hour = from_leg.valuation_hour
        and needed_pairs.from_ccy = from_leg.ccy
    left join legs as to_leg
        on needed_pairs.valuation_hour = to_leg.valuation_hour
        and needed_pairs.to_ccy = to_leg.ccy

),

final as (

    select
        valuation_hour,
        from_ccy,
        to_ccy,
        case
            when from_ccy = to_ccy then 1.0
            else eur_to_to_rate / eur_to_from_rate
        end as rate,
        case when from_ccy = to_ccy then null else from_rate_date end as from_rate_date,
        case when from_ccy = to_ccy then null else to_rate_date end as to_rate_date,
        from_ccy <> to_ccy
            and (eur_to_from_rate is null or eur_to_to_rate is null) as is_missing

    from priced

)

select * from final
