{#-
  raw.items has no key: a provider may return two lines with the same name in one
  sub-account (e.g. two lots of one fund). They are merged here (values and units
  summed) so that (fetch_hour, linked_account_id, sub_account_id, item_name) is a key
  downstream; source_rows tells how many raw lines were merged.
-#}
with

source as (

    select * from {{ source('raw', 'items') }}

),

merged as (

    select
        fetch_hour,
        linked_account_id,
        sub_account_id,
        item_name,
        min(item_type) as item_type,
        min(asset_class) as asset_class,
        min(asset_type) as asset_type,
        sum(units) as units,
        sum(value) as value,
        upper(min(currency)) as item_ccy,
        min(symbol) as symbol,
        count(*) as source_rows

    from source
    group by fetch_hour, linked_account_id, sub_account_id, item_name

)

select * from merged
