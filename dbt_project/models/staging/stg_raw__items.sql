{#-
  raw.items has no key: a provider may return two lines with the same name in one
  sub-account (e.g. two lots of one fund). They are merged here (values and units
  summed) so that (fetch_hour, linked_account_id, sub_account_id, item_name) is a key
  downstream; source_rows tells how many raw lines were merged. A merged value (or
  units) is NULL as soon as one of its lines is: a partly priced sum is not a price.
  value NULL: the provider could not price the item; `unit` (an ISO currency or a
  non-ISO code such as BTC) is what `units` count, when a price of the unit values them.
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
        case when count(units) = count(*) then sum(units) end as units,
        case when count(value) = count(*) then sum(value) end as value,
        upper(min(currency)) as item_ccy,
        min(symbol) as symbol,
        upper(min(unit)) as unit,
        count(*) as source_rows

    from source
    group by fetch_hour, linked_account_id, sub_account_id, item_name

)

select * from merged
