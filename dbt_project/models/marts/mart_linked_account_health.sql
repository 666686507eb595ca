{{ config(materialized='table') }}

{#-
  Fetch health of every linked account its profile currently has: the accounts
  present in linked_account_hours at the profile's latest ingested hour (removed or
  disabled accounts drop out; an account that never succeeded is listed with
  last_success_hour NULL).
  consecutive_failures = failed fetch hours since the last success (all of them when
  there never was one); last_error_code/message = those of the most recent failed
  fetch since the last success, NULL when the latest attempt succeeded.
  warning_count/warnings = the warnings of the last successful fetch (reconciliation
  differences, unpriced or skipped items): a JSON list of {code, message}.
  provider_id, linked_account_name, account_state (active | frozen | statement): the account at
  that latest hour, so an account that never succeeded can be named without the config.
  Rebuilt whole on every run: one row per account, from the small fetches table.
-#}

with

account_hours as (

    select * from {{ ref('stg_raw__linked_account_hours') }}

),

fetches as (

    select * from {{ ref('stg_raw__fetches') }}

),

current_accounts as (

    select
        account_hours.profile_id,
        account_hours.linked_account_id,
        account_hours.provider_id,
        account_hours.linked_account_name,
        account_hours.account_state

    from account_hours
    inner join (
        select profile_id, max(fetch_hour) as latest_hour
        from account_hours
        group by profile_id
    ) as latest
        on account_hours.profile_id = latest.profile_id
        and account_hours.fetch_hour = latest.latest_hour

),

last_success as (

    select
        linked_account_id,
        max(fetch_hour) as last_success_hour,
        arg_max(warnings, fetch_hour) as warnings
    from fetches
    where is_success
    group by linked_account_id

),

last_attempt as (

    select linked_account_id, max(fetch_hour) as last_attempt_hour
    from fetches
    group by linked_account_id

),

failures_since_last_success as (

    select fetches.*

    from fetches
    left join last_success
        on fetches.linked_account_id = last_success.linked_account_id
    where not fetches.is_success
        and (last_success.last_success_hour is null or fetches.fetch_hour > last_success.last_success_hour)

),

failure_streaks as (

    select
        linked_account_id,
        count(*) as consecutive_failures,
        arg_max({'code': error_code, 'message': error_message}, fetch_hour) as last_error

    from failures_since_last_success
    group by linked_account_id

),

final as (

    select
        current_accounts.profile_id,
        current_accounts.linked_account_id,
        last_attempt.last_attempt_hour,
        last_success.last_success_hour,
        cast(coalesce(failure_streaks.consecutive_failures, 0) as integer) as consecutive_failures,
        failure_streaks.last_error.code as last_error_code,
        failure_streaks.last_error.message as last_error_message,
        cast(coalesce(json_array_length(last_success.warnings), 0) as integer) as warning_count,
        coalesce(last_success.warnings, '[]') as warnings,
        current_accounts.provider_id,
        current_accounts.linked_account_name,
        current_accounts.account_state

    from current_accounts
    left join last_attempt
        on current_accounts.linked_account_id = last_attempt.linked_account_id
    left join failure_streaks
        on current_accounts.linked_account_id = failure_streaks.linked_account_id
    left join last_success
        on current_accounts.linked_account_id = last_success.linked_account_id

)

select * from final
