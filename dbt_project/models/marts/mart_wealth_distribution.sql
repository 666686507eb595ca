{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='valuation_hour',
        on_schema_change='fail',
    )
}}

{#-
  How each profile's wealth splits, every hour, along five dimensions:
  linked_account (linked_account_id), asset_class, asset_type, currency (the item's
  own currency when it has one, e.g. a USD fund in a GBP ISA or BTC in a wallet,
  else its sub-account currency) and provider (provider_id).

  side = 'asset': asset items only; shares sum to 1 per (profile, hour, dimension).
  side = 'liability': liability items apart (negative values); shares sum to 1 among
  the liabilities. share is NULL when the side's total is 0. Items nothing could
  price (value NULL, counted in unvalued_items) are in no bucket.
-#}

{%- set dimensions = [
    ('linked_account', 'linked_account_id'),
    ('asset_class', 'asset_class'),
    ('asset_type', 'asset_type'),
    ('currency', 'coalesce(item_ccy, sub_account_ccy)'),
    ('provider', 'provider_id'),
] -%}

with

items as (

    select * from {{ ref('fct_item_valuation_hourly') }}
    where {{ hour_window_filter('valuation_hour') }}
        and value is not null

),

bucketed as (

    {% for dimension, expression in dimensions %}
    select
        profile_id,
        valuation_hour,
        '{{ dimension }}' as dimension,
        item_type as side,
        {{ expression }} as bucket,
        cast(sum(value) as decimal(38, 10)) as value

    from items
    group by profile_id, valuation_hour, item_type, {{ expression }}
    {{ 'union all' if not loop.last }}
    {% endfor %}

),

final as (

    select
        profile_id,
        valuation_hour,
        dimension,
        side,
        bucket,
        value,
        cast(value as double) / nullif(cast(sum(value) over side_total as double), 0) as share

    from bucketed
    window side_total as (partition by profile_id, valuation_hour, dimension, side)

)

-- in hour order: readers' Parquet files and windowed scans prune by hour (zone maps)
select * from final
order by valuation_hour
