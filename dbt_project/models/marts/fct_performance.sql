{#-
  True performance, per profile and per linked account, over trailing windows (1d,
  1w, 1m, 3m, 6m, 1y, 2y, ytd), since the first valuation, and calendar months and
  years: what came in (net contributions), what it earned, and the returns that
  separate the two. All in the profile's currency, on daily closes.

  - A close is the entity's value (a linked account's `value`, a profile's
    `net_worth`) at the last valued hour of a UTC day; the latest close is the value
    at the newest hour.
  - Flows (fct_transactions, posted): for a linked account every external and
    internal transfer in or out of it (money moved from the bank to the broker is a
    contribution to the broker); for a profile only the external ones (its internal
    transfers net to zero). Income (dividends, interest) and costs (fees, taxes) are
    not contributions: they are part of what the money earned, and reported apart.
    A flow counts on its day, at the start of the day, attached to the first close on
    or after it.
  - A window [S, E]: start_value is the close of day S (the day before the window's
    first day: 1d is yesterday's close to now), or of the latest day before S with a
    close (a gap in the history); end_value the close of E; NULL start when the
    entity has no close on or before S. net_contributions = the flows of the
    days in (S, E]; market_gain = end - start - net_contributions.
  - twr (time-weighted return): the product over the closes in (S, E] of
    close_d / (close_prev + flows_since_prev), minus 1: valuations linked across
    every external flow, so contributions do not count as return. NULL when a
    value is missing or a denominator is not positive (a liability-only account).
  - mwr (money-weighted return, XIRR): the annual rate r with
    -start - sum(flow_d (1+r)^-t_d) + end (1+r)^-T = 0, t in years of 365 days from S,
    found by bisection on [-0.9999, 1000] (80 halvings); NULL without a start value,
    or when no rate in that range solves it. mwr is an annual rate, as XIRR's;
    mwr_period = (1 + mwr)^T - 1 is the same return over the window.
  A window without a close on or before its start day (not enough history) has its
  start_value and every figure NULL: never 0 for undefined.
-#}

{%- set trailing = [
    ('1d', "interval 1 day"),
    ('1w', "interval 7 day"),
    ('1m', "interval 1 month"),
    ('3m', "interval 3 month"),
    ('6m', "interval 6 month"),
    ('1y', "interval 1 year"),
    ('2y', "interval 2 year"),
] -%}

with recursive

account_hours as (

    select
        'linked_account' as level,
        profile_id,
        linked_account_id as entity_id,
        valuation_ccy,
        valuation_hour,
        value
    from {{ ref('fct_linked_account_valuation_hourly') }}

),

profile_hours as (

    select
        'profile' as level,
        profile_id,
        profile_id as entity_id,
        valuation_ccy,
        valuation_hour,
        net_worth as value
    from {{ ref('fct_profile_valuation_hourly') }}

),

closes as (

    select
        level,
        profile_id,
        entity_id,
        valuation_ccy,
        cast(valuation_hour as date) as day,
        valuation_hour as close_hour,
        value as close
    from (select * from account_hours union all select * from profile_hours)
    qualify row_number() over (
        partition by level, entity_id, cast(valuation_hour as date)
        order by valuation_hour desc
    ) = 1

),

transactions as (

    select * from {{ ref('fct_transactions') }}
    where not pending and profile_id is not null

),

flow_rows as (

    select
        'linked_account' as level,
        linked_account_id as entity_id,
        transaction_date as day,
        case when flow_class in ('external', 'internal') then amount_valuation else 0 end
            as flow,
        case when flow_class = 'income' then amount_valuation else 0 end as income,
        case when flow_class = 'cost' then amount_valuation else 0 end as costs,
        fx_missing
    from transactions
    union all
    select
        'profile' as level,
        profile_id as entity_id,
        transaction_date as day,
        case when flow_class = 'external' then amount_valuation else 0 end as flow,
        case when flow_class = 'income' then amount_valuation else 0 end as income,
        case when flow_class = 'cost' then amount_valuation else 0 end as costs,
        fx_missing
    from transactions

),

chain as (

    select
        *,
        lag(day) over (partition by level, entity_id order by day) as prev_day,
        lag(close) over (partition by level, entity_id order by day) as prev_close
    from closes

),

-- each close with the flows of the days since the previous close (the first close
-- takes nothing: what came before it is before any window's start)
chain_sums as (

    select
        c.level,
        c.entity_id,
        c.day,
        c.close,
        c.prev_close,
        coalesce(sum(f.flow), 0) as flow,
        coalesce(sum(f.income), 0) as income,
        coalesce(sum(f.costs), 0) as costs,
        count(*) filter (where f.fx_missing) as unvalued_flows
    from chain as c
    left join flow_rows as f
        on f.level = c.level
        and f.entity_id = c.entity_id
        and c.prev_day is not null
        and f.day > c.prev_day
        and f.day <= c.day
    group by all

),

-- the day's growth factor: close / (previous close + the flows since); 1 for an
-- account emptied and still empty; NULL where undefined (a missing value, a
-- denominator that is not positive)
chain_flows as (

    select
        *,
        case
            when close is null or prev_close is null then null
            when prev_close + flow = 0 and close = 0 then 1.0
            when prev_close + flow > 0 and close >= 0
                then cast(close as double) / cast(prev_close + flow as double)
        end as growth
    from chain_sums

),

entities as (

    select
        level,
        profile_id,
        entity_id,
        valuation_ccy,
        min(day) as first_day,
        max(day) as last_day,
        arg_max(close_hour, day) as end_hour
    from closes
    group by all

),

periods as (

    {% for name, span in trailing %}
    select
        level, profile_id, entity_id, valuation_ccy, end_hour,
        'trailing' as period_kind, '{{ name }}' as period,
        cast(last_day - {{ span }} as date) as start_day, last_day as end_day
    from entities
    union all
    {% endfor %}
    select
        level, profile_id, entity_id, valuation_ccy, end_hour,
        'trailing', 'ytd',
        cast(date_trunc('year', last_day) - interval 1 day as date), last_day
    from entities
    union all
    select
        level, profile_id, entity_id, valuation_ccy, end_hour,
        'since_first', 'since_first', first_day, last_day
    from entities
    {% for kind, unit, label in [
        ('calendar_month', 'month', '%Y-%m'),
        ('calendar_year', 'year', '%Y'),
    ] %}
    union all
    select
        e.level, e.profile_id, e.entity_id, e.valuation_ccy, e.end_hour,
        '{{ kind }}', strftime(c.period_start, '{{ label }}'),
        cast(c.period_start - interval 1 day as date),
        least(
            cast(c.period_start + interval 1 {{ unit }} - interval 1 day as date), e.last_day
        )
    from entities as e,
        unnest(generate_series(
            date_trunc('{{ unit }}', e.first_day),
            date_trunc('{{ unit }}', e.last_day),
            interval 1 {{ unit }}
        )) as c(period_start)
    {% endfor %}
),

bounds as (

    select
        p.*,
        s.day as start_close_day,
        s.close as start_value,
        e.day as end_close_day,
        e.close as end_value
    from periods as p
    asof left join closes as s
        on s.level = p.level and s.entity_id = p.entity_id and s.day <= p.start_day
    asof left join closes as e
        on e.level = p.level and e.entity_id = p.entity_id and e.day <= p.end_day

),

sums as (

    select
        b.level,
        b.entity_id,
        b.period_kind,
        b.period,
        coalesce(sum(c.flow), 0) as net_contributions,
        coalesce(sum(c.income), 0) as income,
        coalesce(sum(c.costs), 0) as costs,
        coalesce(sum(c.unvalued_flows), 0) as unvalued_flows,
        count(c.day) as closes,
        count(c.growth) as linkable_closes,
        coalesce(sum(ln(c.growth)) filter (where c.growth > 0), 0) as log_growth,
        count(c.day) filter (where c.growth = 0) as zero_closes,
        list(-cast(c.flow as double) order by c.day) filter (where c.flow <> 0) as flow_amounts,
        list(date_diff('day', b.start_close_day, c.day) / 365.0 order by c.day)
            filter (where c.flow <> 0) as flow_times
    from bounds as b
    left join chain_flows as c
        on c.level = b.level
        and c.entity_id = b.entity_id
        and c.day > b.start_close_day
        and c.day <= b.end_close_day
    group by all

),

windows as (

    select
        b.level,
        b.profile_id,
        b.entity_id,
        b.valuation_ccy,
        b.period_kind,
        b.period,
        b.start_close_day as start_day,
        b.end_close_day as end_day,
        case when b.end_close_day = b.end_hour::date then b.end_hour end as end_hour,
        -- a start close strictly before the end: else the window is undefined
        b.start_close_day is not null and b.start_close_day < b.end_close_day as defined,
        b.start_value,
        b.end_value,
        s.net_contributions,
        s.income,
        s.costs,
        s.unvalued_flows,
        s.closes,
        s.linkable_closes,
        s.log_growth,
        s.zero_closes,
        s.flow_amounts,
        s.flow_times,
        date_diff('day', b.start_close_day, b.end_close_day) / 365.0 as years
    from bounds as b
    inner join sums as s using (level, entity_id, period_kind, period)
    where b.end_close_day is not null

),

xirr_input as (

    select
        level,
        entity_id,
        period_kind,
        period,
        list_concat(
            [-cast(start_value as double)],
            coalesce(flow_amounts, []),
            [cast(end_value as double)]
        ) as amounts,
        list_concat([0.0], coalesce(flow_times, []), [years]) as times
    from windows
    where defined and start_value is not null and end_value is not null
        and unvalued_flows = 0

),

bisection(level, entity_id, period_kind, period, lo, hi, step) as (

    select level, entity_id, period_kind, period, -0.9999::double, 1000.0::double, 0
    from xirr_input
    where sign({{ npv('amounts', 'times', '-0.9999') }})
        * sign({{ npv('amounts', 'times', '1000.0') }}) < 0
    union all
    select
        b.level,
        b.entity_id,
        b.period_kind,
        b.period,
        case
            when sign({{ npv('x.amounts', 'x.times', '(b.lo + b.hi) / 2') }})
                = sign({{ npv('x.amounts', 'x.times', 'b.lo') }})
                then (b.lo + b.hi) / 2
            else b.lo
        end,
        case
            when sign({{ npv('x.amounts', 'x.times', '(b.lo + b.hi) / 2') }})
                = sign({{ npv('x.amounts', 'x.times', 'b.lo') }})
                then b.hi
            else (b.lo + b.hi) / 2
        end,
        b.step + 1
    from bisection as b
    inner join xirr_input as x using (level, entity_id, period_kind, period)
    where b.step < 80

),

final as (

    select
        w.level,
        w.profile_id,
        case when w.level = 'linked_account' then w.entity_id end as linked_account_id,
        w.valuation_ccy,
        w.period_kind,
        w.period,
        case when w.defined then w.start_day end as start_day,
        w.end_day,
        w.end_hour,
        case when w.defined then w.start_value end as start_value,
        w.end_value,
        case when w.ok then w.net_contributions end as net_contributions,
        case when w.ok then w.income end as income,
        case when w.ok then w.costs end as costs,
        case when w.ok then w.end_value - w.start_value - w.net_contributions end
            as market_gain,
        case
            when w.ok and w.closes > 0 and w.linkable_closes = w.closes
                then case when w.zero_closes > 0 then -1.0 else exp(w.log_growth) - 1 end
        end as twr,
        case when x.step = 80 then (x.lo + x.hi) / 2 end as mwr,
        case when x.step = 80 then pow(1 + (x.lo + x.hi) / 2, w.years) - 1 end as mwr_period,
        w.unvalued_flows
    from (
        select
            *,
            defined and start_value is not null and end_value is not null
                and unvalued_flows = 0 as ok
        from windows
    ) as w
    left join bisection as x
        on x.level = w.level
        and x.entity_id = w.entity_id
        and x.period_kind = w.period_kind
        and x.period = w.period
        and x.step = 80

)

select * from final
