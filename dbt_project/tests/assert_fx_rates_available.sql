{{ config(severity='error') }}

{#- Fails (one row per pair, e.g. pair = 'AED->GBP', with the first/last hour affected)
    when an FX rate the valuation needs is missing: add the rate (source 'static' if
    the ECB does not publish it) and rebuild the affected hours. -#}

select
    pair,
    from_ccy,
    to_ccy,
    first_missing_hour,
    last_missing_hour,
    missing_hours
from {{ ref('int_fx_missing_pairs') }}
