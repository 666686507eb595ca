{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='valuation_hour',
        on_schema_change='fail',
    )
}}

{#-
  Every linked account that has data at the hour (its latest successful fetch at or
  before it), with the sum of its sub-accounts (unvalued_items: items nothing could
  price, not in the sums). A failing or frozen account keeps its
  last good data (is_stale, stale_hours); an account that never succeeded yet has no
  row here (it shows in stale_accounts and in mart_linked_account_health).
-#}

with

snapshot as (

    select * from {{ ref('int_consistent_snapshot') }}
    where {{ hour_window_filter('valuation_hour') }}
        and has_data

),

profiles as (

    select * from {{ ref('stg_raw__profiles') }}

),

sub_account_values as (

    select * from {{ ref('fct_sub_account_valuation_hourly') }}
    where {{ hour_window_filter('valuation_hour') }}

),

final as (

    select
        snapshot.profile_id,
        snapshot.linked_account_id,
        snapshot.valuation_hour,
        profiles.valuation_ccy,
        snapshot.provider_id,
        snapshot.linked_account_name,
        snapshot.account_state,
        cast({{ valued_sum('sub_account_values.value') }} as decimal(38, 10)) as value,
        cast({{ valued_sum('sub_account_values.total_assets') }} as decimal(38, 10)) as total_assets,
        cast({{ valued_sum('sub_account_values.total_liabilities') }} as decimal(38, 10)) as total_liabilities,
        cast(coalesce(sum(sub_account_values.unvalued_items), 0) as integer) as unvalued_items,
        snapshot.source_fetch_hour,
        snapshot.is_stale,
        snapshot.stale_hours,
        coalesce(bool_or(sub_account_values.is_fx_missing), false) as is_fx_missing

    from snapshot
    inner join profiles
        on snapshot.profile_id = profiles.profile_id
    left join sub_account_values
        on snapshot.valuation_hour = sub_account_values.valuation_hour
        and snapshot.linked_account_id = sub_account_values.linked_account_id
    group by all

)

-- in hour order: readers' Parquet files and windowed scans prune by hour (zone maps)
select * from final
order by valuation_hour
