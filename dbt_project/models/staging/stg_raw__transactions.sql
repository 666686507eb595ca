{#-
  The current version of every transaction: for each (linked_account_id,
  transaction_id), the row of the latest fetch hour that reported it. A transaction
  whose current version is a removal is gone; a pending transaction that a posted one
  names in pending_transaction_id is gone (the posted one replaces it, never both).
  transaction_date is the day it counts on: posted, else authorised, else (still
  pending without a date) the day it was first reported.
-#}
with

source as (

    select * from {{ source('raw', 'transactions') }}

),

versions as (

    select
        *,
        min(fetch_hour) over (partition by linked_account_id, transaction_id) as first_seen_hour,
        row_number() over (
            partition by linked_account_id, transaction_id order by fetch_hour desc
        ) as version_rank

    from source

),

current_versions as (

    select * from versions
    where version_rank = 1 and not removed

),

replaced_pending as (

    select distinct linked_account_id, pending_transaction_id as transaction_id
    from current_versions
    where pending_transaction_id is not null and not pending

),

final as (

    select
        c.linked_account_id,
        c.transaction_id,
        c.sub_account_id,
        c.posted_date,
        c.authorized_date,
        coalesce(c.posted_date, c.authorized_date, cast(c.first_seen_hour as date))
            as transaction_date,
        c.pending,
        c.pending_transaction_id,
        c.amount,
        upper(c.currency) as currency,
        c.description,
        c.merchant,
        c.category,
        c.kind,
        c.symbol,
        c.units,
        c.transfer_id,
        c.first_seen_hour,
        c.fetch_hour as last_seen_hour

    from current_versions as c
    anti join replaced_pending as r
        on c.linked_account_id = r.linked_account_id
        and c.transaction_id = r.transaction_id

)

select * from final
