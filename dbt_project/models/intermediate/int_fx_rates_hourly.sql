{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='valuation_hour',
        on_schema_change='fail',
    )
}}

{#-
  The conversion rate of every pair the valuation needs at each hour of the window:
  from a sub-account currency to the owning profile's valuation currency, and, for
  the items their provider left unpriced, from the item's unit to the sub-account
  currency and to the valuation currency.

  A code's leg is its value against the euro: rate(EUR -> code), units of the code per
  1 EUR. For a currency of the FX rates it is the latest rate published on or before
  the hour's (UTC) date (weekends and holidays carry the previous business day's). For
  a non-ISO unit (BTC) priced in market/unit_prices at P quote_ccy from some hour on,
  it is rate(EUR -> quote_ccy) / P, with the latest price at or before the hour. The
  FX rates win when a code has both.
  rate(X -> Y) = leg(Y) / leg(X); EUR legs are 1, X -> X is 1.
  A pair whose leg has no rate or price yet is kept with rate NULL and is_missing =
  true: int_fx_missing_pairs lists them, the valued marts leave those values NULL and
  count them (never a silent 0 or 1).
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

unpriced_items as (

    select * from {{ ref('stg_raw__items') }}
    where fetch_hour between {{ snapshot_min_source_hour(ref('int_consistent_snapshot')) }} and {{ window_max_hour() }}
        and value is null
        and unit is not null

),

profiles as (

    select * from {{ ref('stg_raw__profiles') }}

),

eur_rates as (

    select * from {{ ref('stg_raw__fx_rates') }}
    where base_ccy = 'EUR'

),

unit_prices as (

    select * from {{ ref('stg_raw__unit_prices') }}

),

held as (

    select
        snapshot.valuation_hour,
        snapshot.linked_account_id,
        snapshot.source_fetch_hour,
        sub_accounts.sub_account_id,
        sub_accounts.sub_account_ccy,
        profiles.valuation_ccy

    from snapshot
    inner join sub_accounts
        on snapshot.linked_account_id = sub_accounts.linked_account_id
        and snapshot.source_fetch_hour = sub_accounts.fetch_hour
    inner join profiles
        on snapshot.profile_id = profiles.profile_id

),

held_unpriced as (

    select held.*, unpriced_items.unit

    from held
    inner join unpriced_items
        on held.linked_account_id = unpriced_items.linked_account_id
        and held.source_fetch_hour = unpriced_items.fetch_hour
        and held.sub_account_id = unpriced_items.sub_account_id

),

needed_pairs as (

    select distinct valuation_hour, sub_account_ccy as from_ccy, valuation_ccy as to_ccy
    from held

    union

    select distinct valuation_hour, unit as from_ccy, sub_account_ccy as to_ccy
    from held_unpriced

    union

    select distinct valuation_hour, unit as from_ccy, valuation_ccy as to_ccy
    from held_unpriced

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

{#- Unit prices read likewise: inside the window plus, per unit, the latest before it. -#}
prices_in_window as (

    select unit, price_hour, quote_ccy, price
    from unit_prices
    where price_hour between {{ window_min_hour() }} and {{ window_max_hour() }}

),

last_price_before_window as (

    select unit, max(price_hour) as price_hour
    from unit_prices
    where price_hour < {{ window_min_hour() }}
    group by unit

),

candidate_prices as (

    select * from prices_in_window
    union all
    select unit_prices.unit, unit_prices.price_hour, unit_prices.quote_ccy, unit_prices.price
    from last_price_before_window
    inner join unit_prices
        on last_price_before_window.unit = unit_prices.unit
        and last_price_before_window.price_hour = unit_prices.price_hour

),

fx_legs as (

    select
        needed_legs.valuation_hour,
        needed_legs.valuation_date,
        needed_legs.ccy,
        candidate_rates.rate_date,
        candidate_rates.rate

    from needed_legs
    asof left join candidate_rates
        on needed_legs.ccy = candidate_rates.quote_ccy
        and needed_legs.valuation_date >= candidate_rates.rate_date

),

unit_legs as (

    select
        fx_legs.valuation_hour,
        fx_legs.valuation_date,
        fx_legs.ccy,
        candidate_prices.price_hour,
        candidate_prices.quote_ccy,
        cast(candidate_prices.price as double) as price

    from fx_legs
    asof left join candidate_prices
        on fx_legs.ccy = candidate_prices.unit
        and fx_legs.valuation_hour >= candidate_prices.price_hour
    where fx_legs.rate is null

),

quote_legs as (

    select
        unit_legs.valuation_hour,
        unit_legs.ccy,
        unit_legs.price_hour,
        unit_legs.price,
        unit_legs.quote_ccy,
        case when unit_legs.quote_ccy = 'EUR' then cast(unit_legs.valuation_date as date) else candidate_rates.rate_date end as quote_rate_date,
        case when unit_legs.quote_ccy = 'EUR' then 1.0 else candidate_rates.rate end as quote_rate

    from unit_legs
    asof left join candidate_rates
        on unit_legs.quote_ccy = candidate_rates.quote_ccy
        and unit_legs.valuation_date >= candidate_rates.rate_date
    where unit_legs.price is not null

),

legs as (

    select
        fx_legs.valuation_hour,
        fx_legs.ccy,
        coalesce(fx_legs.rate_date, quote_legs.quote_rate_date) as rate_date,
        quote_legs.price_hour,
        coalesce(fx_legs.rate, quote_legs.quote_rate / quote_legs.price) as rate

    from fx_legs
    left join quote_legs
        on fx_legs.valuation_hour = quote_legs.valuation_hour
        and fx_legs.ccy = quote_legs.ccy

),

priced as (

    select
        needed_pairs.valuation_hour,
        needed_pairs.from_ccy,
        needed_pairs.to_ccy,
        from_leg.rate_date as from_rate_date,
        to_leg.rate_date as to_rate_date,
        from_leg.price_hour as from_price_hour,
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
        case when from_ccy = to_ccy then null else from_price_hour end as from_price_hour,
        from_ccy <> to_ccy
            and (eur_to_from_rate is null or eur_to_to_rate is null) as is_missing

    from priced

)

select * from final
