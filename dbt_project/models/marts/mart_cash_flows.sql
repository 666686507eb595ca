{#-
  Where the money came from and went, per month, in the profile's currency (each
  transaction at its date's rate, fct_transactions), by flow class, kind and category:
  - level 'linked_account': every posted transaction of the account, internal
    transfers included (for the account they are money in or out);
  - level 'profile': the profile's accounts together, without its internal
    transfers (a move between two of its own accounts is neither income nor spending:
    the two legs net to zero and are left out).
  inflow >= 0, outflow <= 0, net = inflow + outflow. Pending transactions are left
  out until posted. A transaction without a rate (fx_missing) makes its group's
  amounts NULL and is counted in unvalued_transactions (never summed as 0).
-#}
with

transactions as (

    select * from {{ ref('fct_transactions') }}
    where not pending and profile_id is not null

),

rows as (

    {#- (level, its linked account column, which transactions it counts) -#}
    {% for level, account, where in [
        ('linked_account', 'linked_account_id', 'true'),
        ('profile', 'null', 'not is_internal_transfer'),
    ] %}
    select
        '{{ level }}' as level,
        profile_id,
        {{ account }} as linked_account_id,
        date_trunc('month', transaction_date) as month_start,
        flow_class,
        kind,
        category,
        valuation_ccy,
        amount_valuation,
        fx_missing
    from transactions
    where {{ where }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

final as (

    select
        level,
        profile_id,
        linked_account_id,
        cast(month_start as date) as month_start,
        flow_class,
        kind,
        category,
        valuation_ccy,
        case when count(*) filter (where fx_missing) = 0 then
            coalesce(sum(amount_valuation) filter (where amount_valuation > 0), 0)
        end as inflow,
        case when count(*) filter (where fx_missing) = 0 then
            coalesce(sum(amount_valuation) filter (where amount_valuation < 0), 0)
        end as outflow,
        case when count(*) filter (where fx_missing) = 0 then
            coalesce(sum(amount_valuation), 0)
        end as net,
        count(*) as transactions,
        count(*) filter (where fx_missing) as unvalued_transactions
    from rows
    group by all

)

select * from final
