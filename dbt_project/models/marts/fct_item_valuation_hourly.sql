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
  valuation currency at the CURRENT hour's FX rate (a stale holding is re-valued at
  today's rate, not frozen at the rate of its fetch).
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
        items.value as value_sub_account_ccy,
        fx_rates.rate as fx_rate,
        items.value * fx_rates.rate as value,
        snapshot.source_fetch_hour,
        snapshot.is_stale,
        fx_rates.rate is null as is_fx_missing

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
    left join fx_rates
        on snapshot.valuation_hour = fx_rates.valuation_hour
        and sub_accounts.sub_account_ccy = fx_rates.from_ccy
        and profiles.valuation_ccy = fx_rates.to_ccy

)

-- in hour order: readers' Parquet files and windowed scans prune by hour (zone maps)
select * from joined
order by valuation_hour
