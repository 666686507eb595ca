{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='valuation_hour',
        on_schema_change='fail',
    )
}}

{#-
  Every sub-account of the consistent snapshot at every hour. value_sub_account_ccy is
  the sum of its items (0 when it has none), value is that at the current hour's FX
  rate into the profile's valuation currency.
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

source_fetches as (

    select distinct linked_account_id, source_fetch_hour
    from snapshot

),

item_totals as (

    select
        items.linked_account_id,
        items.fetch_hour,
        items.sub_account_id,
        sum(items.value) as value_sub_account_ccy,
        coalesce(sum(items.value) filter (where items.item_type = 'asset'), 0) as assets_sub_account_ccy,
        coalesce(sum(items.value) filter (where items.item_type = 'liability'), 0) as liabilities_sub_account_ccy,
        count(*) as item_count

    from items
    inner join source_fetches
        on items.linked_account_id = source_fetches.linked_account_id
        and items.fetch_hour = source_fetches.source_fetch_hour
    group by items.linked_account_id, items.fetch_hour, items.sub_account_id

),

joined as (

    select
        snapshot.profile_id,
        snapshot.linked_account_id,
        sub_accounts.sub_account_id,
        snapshot.valuation_hour,
        profiles.valuation_ccy,
        snapshot.provider_id,
        snapshot.linked_account_name,
        sub_accounts.sub_account_name,
        sub_accounts.sub_account_ccy,
        sub_accounts.account_type,
        coalesce(item_totals.value_sub_account_ccy, 0) as value_sub_account_ccy,
        fx_rates.rate as fx_rate,
        coalesce(item_totals.value_sub_account_ccy, 0) * fx_rates.rate as value,
        coalesce(item_totals.assets_sub_account_ccy, 0) * fx_rates.rate as total_assets,
        coalesce(item_totals.liabilities_sub_account_ccy, 0) * fx_rates.rate as total_liabilities,
        coalesce(item_totals.item_count, 0) as item_count,
        snapshot.source_fetch_hour,
        snapshot.is_stale,
        fx_rates.rate is null as is_fx_missing

    from snapshot
    inner join profiles
        on snapshot.profile_id = profiles.profile_id
    inner join sub_accounts
        on snapshot.linked_account_id = sub_accounts.linked_account_id
        and snapshot.source_fetch_hour = sub_accounts.fetch_hour
    left join item_totals
        on sub_accounts.linked_account_id = item_totals.linked_account_id
        and sub_accounts.fetch_hour = item_totals.fetch_hour
        and sub_accounts.sub_account_id = item_totals.sub_account_id
    left join fx_rates
        on snapshot.valuation_hour = fx_rates.valuation_hour
        and sub_accounts.sub_account_ccy = fx_rates.from_ccy
        and profiles.valuation_ccy = fx_rates.to_ccy

)

-- in hour order: readers' Parquet files and windowed scans prune by hour (zone maps)
select * from joined
order by valuation_hour
