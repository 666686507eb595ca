{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='valuation_hour',
        on_schema_change='fail',
    )
}}

{#-
  For each hour H and each linked account the profile had at H (a row in
  linked_account_hours), the latest SUCCESSFUL fetch of that account at or before H.

  Cost of a window does not depend on history length: the successes read are those
  inside the window plus, per account, the single latest success before the window.
-#}

with

account_hours as (

    select * from {{ ref('stg_raw__linked_account_hours') }}
    where {{ hour_window_filter('fetch_hour') }}

),

fetches as (

    select * from {{ ref('stg_raw__fetches') }}

),

successes_in_window as (

    select linked_account_id, fetch_hour
    from fetches
    where is_success
        and fetch_hour between {{ window_min_hour() }} and {{ window_max_hour() }}

),

last_success_before_window as (

    select linked_account_id, max(fetch_hour) as fetch_hour
    from fetches
    where is_success
        and fetch_hour < {{ window_min_hour() }}
    group by linked_account_id

),

successes as (

    select * from successes_in_window
    union all
    select * from last_success_before_window

),

snapshot as (

    select
        account_hours.fetch_hour as valuation_hour,
        account_hours.profile_id,
        account_hours.linked_account_id,
        account_hours.provider_id,
        account_hours.linked_account_name,
        account_hours.account_state,
        successes.fetch_hour as source_fetch_hour

    from account_hours
    asof left join successes
        on account_hours.linked_account_id = successes.linked_account_id
        and account_hours.fetch_hour >= successes.fetch_hour

),

final as (

    select
        valuation_hour,
        profile_id,
        linked_account_id,
        provider_id,
        linked_account_name,
        account_state,
        source_fetch_hour,
        source_fetch_hour is not null as has_data,
        source_fetch_hour is null or source_fetch_hour < valuation_hour as is_stale,
        cast(date_diff('hour', source_fetch_hour, valuation_hour) as integer) as stale_hours

    from snapshot

)

select * from final
