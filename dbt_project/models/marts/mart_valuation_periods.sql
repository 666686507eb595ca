{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['profile_id', 'frequency', 'period_start'],
        on_schema_change='fail',
    )
}}

{#-
  Net worth candles per profile: daily, weekly (ISO, Monday start), monthly,
  quarterly and yearly calendar periods (UTC). period_start/period_end are the first
  and last calendar day of the period. open/close = net worth at the first/last
  valued hour of the period, low/high = its extremes, change_abs = close - open,
  change_rel = change_abs / abs(open) (NULL when open is 0). When a net worth of the
  period is NULL (missing FX rate) the whole candle is NULL.

  Incremental: only the periods touching the build window are recomputed, from the
  profile mart rows of those periods (at most a year of hours).
-#}

{%- set frequencies = [
    ('daily', 'day'),
    ('weekly', 'week'),
    ('monthly', 'month'),
    ('quarterly', 'quarter'),
    ('yearly', 'year'),
] -%}

with

profile_values as (

    select * from {{ ref('fct_profile_valuation_hourly') }}
    where valuation_hour >= least(
            {% for _, unit in frequencies -%}
            date_trunc('{{ unit }}', {{ window_min_hour() }}){{ ',' if not loop.last }}
            {% endfor -%}
        )
        and valuation_hour < greatest(
            {% for _, unit in frequencies -%}
            date_trunc('{{ unit }}', {{ window_max_hour() }}) + interval 1 {{ unit }}{{ ',' if not loop.last }}
            {% endfor -%}
        )

),

periods as (

    {% for frequency, unit in frequencies %}
    select
        profile_id,
        '{{ frequency }}' as frequency,
        cast(date_trunc('{{ unit }}', valuation_hour) as date) as period_start,
        cast(date_trunc('{{ unit }}', valuation_hour) + interval 1 {{ unit }} - interval 1 day as date) as period_end,
        count(*) = count(net_worth) as is_complete,
        first(net_worth order by valuation_hour) as open,
        last(net_worth order by valuation_hour) as close,
        min(net_worth) as low,
        max(net_worth) as high

    from profile_values
    where date_trunc('{{ unit }}', valuation_hour)
        between date_trunc('{{ unit }}', {{ window_min_hour() }}) and date_trunc('{{ unit }}', {{ window_max_hour() }})
    group by profile_id, date_trunc('{{ unit }}', valuation_hour)
    {{ 'union all' if not loop.last }}
    {% endfor %}

),

final as (

    select
        profile_id,
        frequency,
        period_start,
        period_end,
        case when is_complete then open end as open,
        case when is_complete then close end as close,
        case when is_complete then low end as low,
        case when is_complete then high end as high,
        case when is_complete then close - open end as change_abs,
        case when is_complete then {{ relative_change('close', 'open') }} end as change_rel

    from periods

)

select * from final
