{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='valuation_hour',
        on_schema_change='fail',
    )
}}

{#-
  Change of every valued entity (profile net worth, linked account, sub-account, item
  value; valuation currency) over 1h, 1d, 1w, 1m, 6m, 1y and 2y.

  reference_hour = the latest hour at or before (valuation_hour - window) at which the
  entity was valued, provided it lies no more than var('change_reference_max_gap_hours')
  (default 168 h = 7 days) before that target; months and years are CALENDAR intervals
  (03-31 minus 1 month = 02-28/29). Without such a reference (entity too young, absent
  then, or ingestion gap) reference_hour, change_abs and change_rel are NULL, never 0.
  change_rel = change_abs / abs(reference value), NULL when the reference value is 0.

  References are found with one ASOF join against the hourly marts (which already hold
  the window's own hours), reading only the rows in the reference ranges of the
  window, so an incremental hour costs the same whatever the history length.
-#}

{%- set windows = [
    ('1h', "interval 1 hour"),
    ('1d', "interval 1 day"),
    ('1w', "interval 7 day"),
    ('1m', "interval 1 month"),
    ('6m', "interval 6 month"),
    ('1y', "interval 1 year"),
    ('2y', "interval 2 year"),
] -%}
{%- set max_gap = "interval " ~ (var('change_reference_max_gap_hours') | int) ~ " hour" -%}

with

entity_values as (

    select
        profile_id,
        'profile' as level,
        profile_id as entity_id,
        valuation_hour,
        net_worth as value
    from {{ ref('fct_profile_valuation_hourly') }}

    union all

    select
        profile_id,
        'linked_account' as level,
        linked_account_id as entity_id,
        valuation_hour,
        value
    from {{ ref('fct_linked_account_valuation_hourly') }}

    union all

    select
        profile_id,
        'sub_account' as level,
        linked_account_id || '/' || sub_account_id as entity_id,
        valuation_hour,
        value
    from {{ ref('fct_sub_account_valuation_hourly') }}

    union all

    select
        profile_id,
        'item' as level,
        linked_account_id || '/' || sub_account_id || '/' || item_name as entity_id,
        valuation_hour,
        value
    from {{ ref('fct_item_valuation_hourly') }}

),

current_values as (

    select * from entity_values
    where {{ hour_window_filter('valuation_hour') }}

),

change_windows as (

    select * from (
        values
        {% for name, interval in windows -%}
            ('{{ name }}', {{ loop.index }}){{ ',' if not loop.last }}
        {% endfor %}
    ) as w (change_window, window_order)

),

targets as (

    select
        current_values.*,
        change_windows.change_window,
        case change_windows.change_window
            {% for name, interval in windows -%}
            when '{{ name }}' then current_values.valuation_hour - {{ interval }}
            {% endfor %}
        end as target_hour

    from current_values
    cross join change_windows

),

{#- Only the rows that can be a reference of a window hour: per change window, the
    hours from (window start - window - max gap) to (window end - window). -#}
reference_values as (

    select profile_id, level, entity_id, valuation_hour, value
    from entity_values
    where
        {% for name, interval in windows -%}
        (valuation_hour between {{ window_min_hour() }} - {{ interval }} - {{ max_gap }}
            and {{ window_max_hour() }} - {{ interval }})
        {{ 'or' if not loop.last }}
        {% endfor %}

),

matched as (

    select
        targets.profile_id,
        targets.level,
        targets.entity_id,
        targets.valuation_hour,
        targets.change_window,
        targets.target_hour,
        targets.value,
        reference_values.valuation_hour as candidate_hour,
        reference_values.value as candidate_value

    from targets
    asof left join reference_values
        on targets.profile_id = reference_values.profile_id
        and targets.level = reference_values.level
        and targets.entity_id = reference_values.entity_id
        and targets.target_hour >= reference_values.valuation_hour

),

referenced as (

    select
        *,
        candidate_hour >= target_hour - {{ max_gap }} as has_reference

    from matched

),

final as (

    select
        profile_id,
        level,
        entity_id,
        valuation_hour,
        change_window,
        case when has_reference then candidate_hour end as reference_hour,
        case when has_reference then value - candidate_value end as change_abs,
        case when has_reference then {{ relative_change('value', 'candidate_value') }} end as change_rel

    from referenced

)

-- in hour order: readers' Parquet files and windowed scans prune by hour (zone maps)
select * from final
order by valuation_hour
