{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='valuation_hour',
        on_schema_change='fail',
    )
}}

{#-
  Every item of the consistent snapshot at every hour, valued in the profile's
  valuation currency at the CURRENT hour's rates (a stale holding is re-valued at
  today's rate, not frozen at the rate of its fetch).

  An item its provider priced: value_sub_account_ccy is the provider's value, value
  that at the rate sub-account currency -> valuation currency. An item its provider
  could not price (raw value NULL) but whose units count a currency or a unit with a
  price (`unit`, e.g. BTC): value_sub_account_ccy = units x rate(unit -> sub-account
  currency), value = units x rate(unit -> valuation currency) (is_unit_priced). An item
  nothing can price has value NULL and is_unvalued true: it is counted, never 0.
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

items as (

    select * from {{ ref('stg_raw__items') }}
    where fetch_hour between {{ snapshot_min_source_hour(ref('int_consistent_snapshot')) }} and {{ window_max_hour() }}

),

profiles as (

    select * from {{ ref('stg_raw__profiles') }}

),

fx_rates as (

    select * from {{ ref('int_fx_rates_hourly') }}
    where {{ hour_window_filter('valuation_hour') }}

),

joined as (

    select
        snapshot.profile_id,
        snapshot.linked_account_id,
        items.sub_account_id,
        snapshot.valuation_hour,
        items.item_name,
        profiles.valuation_ccy,
        snapshot.provider_id,
        snapshot.linked_account_name,
        sub_accounts.sub_account_name,
        sub_accounts.sub_account_ccy,
        sub_accounts.account_type,
        items.item_type,
        items.asset_class,
        items.asset_type,
        items.units,
        items.item_ccy,
        items.symbol,
        items.unit,
        items.value as reported_value,
        sub_rate.rate as fx_rate,
        unit_to_sub.rate as unit_to_sub_rate,
        unit_to_valuation.rate as unit_rate,
        snapshot.source_fetch_hour,
        snapshot.is_stale

    from snapshot
    inner join profiles
        on snapshot.profile_id = profiles.profile_id
    inner join items
        on snapshot.linked_account_id = items.linked_account_id
        and snapshot.source_fetch_hour = items.fetch_hour
    inner join sub_accounts
        on items.linked_account_id = sub_accounts.linked_account_id
        and items.fetch_hour = sub_accounts.fetch_hour
        and items.sub_account_id = sub_accounts.sub_account_id
    left join fx_rates as sub_rate
        on snapshot.valuation_hour = sub_rate.valuation_hour
        and sub_accounts.sub_account_ccy = sub_rate.from_ccy
        and profiles.valuation_ccy = sub_rate.to_ccy
    left join fx_rates as unit_to_sub
        on items.value is null
        and snapshot.valuation_hour = unit_to_sub.valuation_hour
        and items.unit = unit_to_sub.from_ccy
        and sub_accounts.sub_account_ccy = unit_to_sub.to_ccy
    left join fx_rates as unit_to_valuation
        on items.value is null
        and snapshot.valuation_hour = unit_to_valuation.valuation_hour
        and items.unit = unit_to_valuation.from_ccy
        and profiles.valuation_ccy = unit_to_valuation.to_ccy

),

valued as (

    select
        * exclude (reported_value, unit_to_sub_rate, unit_rate),
        case
            when reported_value is not null then reported_value
            when unit = sub_account_ccy then units
            else {{ native_amount('cast(units as double) * unit_to_sub_rate') }}
        end as value_sub_account_ccy,
        case
            when reported_value is not null
                then {{ valuation_amount('reported_value', 'fx_rate', 'sub_account_ccy = valuation_ccy') }}
            else {{ valuation_amount('units', 'unit_rate', 'unit = valuation_ccy') }}
        end as value,
        unit_rate,
        reported_value is null and units is not null and unit is not null as is_unit_priced

    from joined

),

final as (

    select
        profile_id,
        linked_account_id,
        sub_account_id,
        valuation_hour,
        item_name,
        valuation_ccy,
        provider_id,
        linked_account_name,
        sub_account_name,
        sub_account_ccy,
        account_type,
        item_type,
        asset_class,
        asset_type,
        units,
        item_ccy,
        symbol,
        unit,
        value_sub_account_ccy,
        fx_rate,
        unit_rate,
        value,
        source_fetch_hour,
        is_stale,
        is_unit_priced,
        value is null as is_unvalued,
        value is null and (is_unit_priced or fx_rate is null) as is_fx_missing

    from valued

)

-- in hour order: readers' Parquet files and windowed scans prune by hour (zone maps)
select * from final
order by valuation_hour
