{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='valuation_hour',
        on_schema_change='fail',
    )
}}

{#-
  Every sub-account of the consistent snapshot at every hour: the sums of its items
  (fct_item_valuation_hourly, so each item is converted once). value_sub_account_ccy
  is in the sub-account currency, value and the totals in the profile's valuation
  currency; a sub-account without items is worth 0. Items nothing can price are not
  summed (never as 0): unvalued_items counts them.
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

    select * from {{ ref('fct_item_valuation_hourly') }}
    where {{ hour_window_filter('valuation_hour') }}

),

profiles as (

    select * from {{ ref('stg_raw__profiles') }}

),

fx_rates as (

    select * from {{ ref('int_fx_rates_hourly') }}
    where {{ hour_window_filter('valuation_hour') }}

),

item_totals as (

    select
        linked_account_id,
        sub_account_id,
        valuation_hour,
        {{ valued_sum('value_sub_account_ccy') }} as value_sub_account_ccy,
        {{ valued_sum('value') }} as value,
        {{ valued_sum("case when item_type = 'asset' then value end") }} as total_assets,
        {{ valued_sum("case when item_type = 'liability' then value end") }} as total_liabilities,
        count(*) as item_count,
        cast(count(*) filter (where is_unvalued) as integer) as unvalued_items,
        bool_or(is_fx_missing) as any_item_fx_missing

    from items
    group by linked_account_id, sub_account_id, valuation_hour

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
        cast(coalesce(item_totals.value, 0) as decimal(38, 10)) as value,
        cast(coalesce(item_totals.total_assets, 0) as decimal(38, 10)) as total_assets,
        cast(coalesce(item_totals.total_liabilities, 0) as decimal(38, 10)) as total_liabilities,
        coalesce(item_totals.item_count, 0) as item_count,
        coalesce(item_totals.unvalued_items, 0) as unvalued_items,
        snapshot.source_fetch_hour,
        snapshot.is_stale,
        fx_rates.rate is null or coalesce(item_totals.any_item_fx_missing, false) as is_fx_missing

    from snapshot
    inner join profiles
        on snapshot.profile_id = profiles.profile_id
    inner join sub_accounts
        on snapshot.linked_account_id = sub_accounts.linked_account_id
        and snapshot.source_fetch_hour = sub_accounts.fetch_hour
    left join item_totals
        on snapshot.valuation_hour = item_totals.valuation_hour
        and sub_accounts.linked_account_id = item_totals.linked_account_id
        and sub_accounts.sub_account_id = item_totals.sub_account_id
    left join fx_rates
        on snapshot.valuation_hour = fx_rates.valuation_hour
        and sub_accounts.sub_account_ccy = fx_rates.from_ccy
        and profiles.valuation_ccy = fx_rates.to_ccy

)

-- in hour order: readers' Parquet files and windowed scans prune by hour (zone maps)
select * from joined
order by valuation_hour
