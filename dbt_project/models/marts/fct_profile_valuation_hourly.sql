{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='valuation_hour',
        on_schema_change='fail',
    )
}}

{#-
  Net worth of each profile at each hour = total_assets + total_liabilities
  (liabilities negative), summed over its linked accounts with data. A profile has a
  row at an hour when it had at least one linked account with data then.
  stale_accounts counts the linked accounts the profile had at the hour whose data is
  not from that hour (failing, frozen, or never fetched successfully yet).
  unvalued_items counts the items nothing could price (no price from the provider, no
  rate or unit price for them: see int_fx_missing_pairs); they are not in the sums,
  which hold everything else (one unpriced holding never blocks the household).
-#}

with

snapshot as (

    select * from {{ ref('int_consistent_snapshot') }}
    where {{ hour_window_filter('valuation_hour') }}

),

profiles as (

    select * from {{ ref('stg_raw__profiles') }}

),

linked_account_values as (

    select * from {{ ref('fct_linked_account_valuation_hourly') }}
    where {{ hour_window_filter('valuation_hour') }}

),

account_counts as (

    select
        profile_id,
        valuation_hour,
        cast(count(*) filter (where is_stale) as integer) as stale_accounts

    from snapshot
    group by profile_id, valuation_hour
    having count(*) filter (where has_data) > 0

),

totals as (

    select
        profile_id,
        valuation_hour,
        cast({{ valued_sum('total_assets') }} as decimal(38, 10)) as total_assets,
        cast({{ valued_sum('total_liabilities') }} as decimal(38, 10)) as total_liabilities,
        cast(coalesce(sum(unvalued_items), 0) as integer) as unvalued_items

    from linked_account_values
    group by profile_id, valuation_hour

),

final as (

    select
        account_counts.profile_id,
        account_counts.valuation_hour,
        profiles.valuation_ccy,
        totals.total_assets,
        totals.total_liabilities,
        totals.total_assets + totals.total_liabilities as net_worth,
        account_counts.stale_accounts,
        totals.unvalued_items

    from account_counts
    inner join profiles
        on account_counts.profile_id = profiles.profile_id
    inner join totals
        on account_counts.profile_id = totals.profile_id
        and account_counts.valuation_hour = totals.valuation_hour

)

-- in hour order: readers' Parquet files and windowed scans prune by hour (zone maps)
select * from final
order by valuation_hour
