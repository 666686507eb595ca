{#- Every item belongs to a sub-account of the same fetch (items without one cannot be
    valued: their currency is unknown). Checks the fetch hours of the build window. -#}
{% test relationships_to_sub_accounts(model) %}
select i.fetch_hour, i.linked_account_id, i.sub_account_id, i.item_name
from {{ model }} as i
anti join {{ ref('stg_raw__sub_accounts') }} as s
    on i.fetch_hour = s.fetch_hour
    and i.linked_account_id = s.linked_account_id
    and i.sub_account_id = s.sub_account_id
where {{ hour_window_filter('i.fetch_hour') }}
{% endtest %}
