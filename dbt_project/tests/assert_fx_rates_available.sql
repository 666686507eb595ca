{{ config(severity='warn') }}

{#- Warns (one row per pair, e.g. pair = 'AED->GBP' or 'XYZ->GBP', with the first/last
    hour affected) when a rate or a unit price the valuation needs is missing. The
    items it would value are published with value NULL and counted in unvalued_items;
    the rest of the household is valued. Add the currency to the rates
    (fx_static_rates, or a source that publishes it) or the unit to unit_prices /
    coingecko_ids, and rebuild the affected hours. -#}

select
    pair,
    from_ccy,
    to_ccy,
    first_missing_hour,
    last_missing_hour,
    missing_hours
from {{ ref('int_fx_missing_pairs') }}
