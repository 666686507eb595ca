{#-
  The current version of every transaction (stg_raw__transactions), with its linked
  account's profile, valued in the profile's currency at its date's rate.

  The rate of a currency X to the valuation currency Y on a day is leg(Y) / leg(X),
  where a leg is the code's value against the euro on or before that day: the latest
  euro reference rate published on or before the day for a currency (weekends carry
  Friday's), and for a non-ISO unit (BTC) priced at P quote_ccy, leg(quote_ccy) / P
  with the latest price before the end of the day. EUR's leg is 1, X -> X is 1. No
  leg yet: amount_valuation NULL and fx_missing true (never a silent 0 or 1).
  The profile is the account's at the newest hour it was ingested.
  A table rebuilt each run: transactions are few (thousands a year; the bench's ten
  accounts report 14,680 in a year, rebuilt in about 0.5 s). The transfer pairing joins
  each transaction with those of the few days around it, never the history squared.
-#}
with

transactions as (

    select * from {{ ref('stg_raw__transactions') }}

),

accounts as (

    select
        linked_account_id,
        arg_max(profile_id, fetch_hour) as profile_id,
        arg_max(provider_id, fetch_hour) as provider_id,
        arg_max(linked_account_name, fetch_hour) as linked_account_name
    from {{ ref('stg_raw__linked_account_hours') }}
    group by linked_account_id

),

profiles as (

    select * from {{ ref('stg_raw__profiles') }}

),

eur_rates as (

    select rate_date, quote_ccy, rate from {{ ref('stg_raw__fx_rates') }}
    where base_ccy = 'EUR'

),

unit_prices as (

    select price_hour, unit, quote_ccy, price from {{ ref('stg_raw__unit_prices') }}

),

valued as (

    select
        t.*,
        a.profile_id,
        a.provider_id,
        a.linked_account_name,
        p.valuation_ccy
    from transactions as t
    left join accounts as a using (linked_account_id)
    left join profiles as p using (profile_id)

),

-- the legs of each (day, code) the transactions need: the currency and the valuation ccy
needed as (

    select distinct transaction_date as day, currency as code from valued
    union
    select distinct transaction_date as day, valuation_ccy as code from valued
    where valuation_ccy is not null

),

fiat_legs as (

    select n.day, n.code, r.rate as leg
    from needed as n
    asof join eur_rates as r
        on r.quote_ccy = n.code and r.rate_date <= n.day

),

unit_quotes as (

    select n.day, n.code, u.quote_ccy, u.price
    from needed as n
    asof join unit_prices as u
        on u.unit = n.code and u.price_hour < cast(n.day + interval 1 day as timestamp)

),

unit_legs as (

    select q.day, q.code, r.rate / q.price as leg
    from unit_quotes as q
    asof join eur_rates as r
        on r.quote_ccy = q.quote_ccy and r.rate_date <= q.day
    where q.quote_ccy <> 'EUR'
    union all
    select day, code, 1 / price as leg from unit_quotes where quote_ccy = 'EUR'

),

legs as (

    select
        n.day,
        n.code,
        case
            when n.code = 'EUR' then 1
            else coalesce(f.leg, u.leg)
        end as leg
    from needed as n
    left join fiat_legs as f using (day, code)
    left join unit_legs as u using (day, code)

),

priced as (

    select
        v.*,
        case
            when v.currency = v.valuation_ccy then 1.0
            else cast(ly.leg as double) / cast(lx.leg as double)
        end as fx_rate,
        {{ valuation_amount(
            'v.amount',
            'cast(ly.leg as double) / cast(lx.leg as double)',
            'v.currency = v.valuation_ccy',
        ) }} as amount_valuation,
        v.currency <> coalesce(v.valuation_ccy, v.currency)
            and (lx.leg is null or ly.leg is null) as fx_missing
    from valued as v
    left join legs as lx on lx.day = v.transaction_date and lx.code = v.currency
    left join legs as ly on ly.day = v.transaction_date and ly.code = v.valuation_ccy

),

{#-
  Internal transfers: two transactions of one profile in two different accounts
  (linked account or sub-account), money out of one and into the other. They are
  paired when the provider links them (the same transfer_id), else when their
  amounts are opposite (exactly, in the same currency; within 1 % in the valuation
  currency across currencies) and their dates at most
  {{ var('transfer_match_days') }} days apart, among deposits, withdrawals, transfers
  and others (never a trade, an income or a cost). Each transaction pairs at most
  once: each one's nearest candidate (by days apart, then id) must be the other's.
-#}
movable as (

    select * from priced
    where not pending and kind in ('deposit', 'withdrawal', 'transfer', 'other')

),

-- money out of one account, on each day its counterpart may be booked (equi-joined on
-- the day, so the pairing costs the transactions of a few days, not the history squared)
outgoing as (

    select o.*, cast(o.transaction_date + cast(r.offset_days as integer) as date) as match_date
    from movable as o
    cross join range(
        -{{ var('transfer_match_days') }}, {{ var('transfer_match_days') }} + 1
    ) as r(offset_days)
    where o.amount < 0

),

pairs_by_amount as (

    select
        o.linked_account_id as out_account,
        o.transaction_id as out_id,
        i.linked_account_id as in_account,
        i.transaction_id as in_id,
        abs(date_diff('day', o.transaction_date, i.transaction_date)) as days_apart,
        o.transfer_id is not null and o.transfer_id = i.transfer_id as linked_by_provider
    from outgoing as o
    inner join movable as i
        on o.profile_id = i.profile_id
        and i.transaction_date = o.match_date
        and i.amount > 0
        and (
            o.linked_account_id <> i.linked_account_id
            or o.sub_account_id is distinct from i.sub_account_id
        )
        and (
            (o.currency = i.currency and o.amount = -i.amount)
            or (
                o.currency <> i.currency
                and abs(o.amount_valuation + i.amount_valuation)
                    <= 0.01 * abs(o.amount_valuation)
            )
        )

),

pairs_by_provider as (

    select
        o.linked_account_id as out_account,
        o.transaction_id as out_id,
        i.linked_account_id as in_account,
        i.transaction_id as in_id,
        abs(date_diff('day', o.transaction_date, i.transaction_date)) as days_apart,
        true as linked_by_provider
    from movable as o
    inner join movable as i
        on o.profile_id = i.profile_id
        and o.transfer_id = i.transfer_id
        and o.amount < 0
        and i.amount > 0
        and (
            o.linked_account_id <> i.linked_account_id
            or o.sub_account_id is distinct from i.sub_account_id
        )

),

candidates as (

    select out_account, out_id, in_account, in_id,
        min(days_apart) as days_apart, bool_or(linked_by_provider) as linked_by_provider
    from (
        select * from pairs_by_amount
        union all
        select * from pairs_by_provider
    )
    group by out_account, out_id, in_account, in_id

),

ranked as (

    select
        *,
        row_number() over (
            partition by out_account, out_id
            order by linked_by_provider desc, days_apart, in_account, in_id
        ) as out_rank,
        row_number() over (
            partition by in_account, in_id
            order by linked_by_provider desc, days_apart, out_account, out_id
        ) as in_rank
    from candidates

),

pairs as (

    select out_account, out_id, in_account, in_id from ranked
    where out_rank = 1 and in_rank = 1

),

matched as (

    select out_account as linked_account_id, out_id as transaction_id,
        in_account as matched_linked_account_id, in_id as matched_transaction_id
    from pairs
    union all
    select in_account, in_id, out_account, out_id
    from pairs

),

final as (

    select
        v.profile_id,
        v.linked_account_id,
        v.linked_account_name,
        v.provider_id,
        v.sub_account_id,
        v.transaction_id,
        v.transaction_date,
        v.posted_date,
        v.authorized_date,
        v.pending,
        v.amount,
        v.currency,
        v.valuation_ccy,
        v.fx_rate,
        v.amount_valuation,
        v.fx_missing,
        v.amount > 0 as is_inflow,
        v.kind,
        m.matched_transaction_id is not null as is_internal_transfer,
        m.matched_linked_account_id,
        m.matched_transaction_id,
        case
            when m.matched_transaction_id is not null then 'internal'
            when v.kind in ('dividend', 'interest') then 'income'
            when v.kind in ('fee', 'tax') then 'cost'
            when v.kind in ('buy', 'sell') then 'trade'
            else 'external'
        end as flow_class,
        v.category,
        v.description,
        v.merchant,
        v.symbol,
        v.units,
        v.transfer_id,
        v.first_seen_hour,
        v.last_seen_hour

    from priced as v
    left join matched as m using (linked_account_id, transaction_id)

)

select * from final
