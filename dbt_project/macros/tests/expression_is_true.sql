{#- Every row satisfies `expression` (rows of the build window only, with `hour_column`). -#}
{% test expression_is_true(model, expression, hour_column=none) %}
select *
from {{ model }}
where not coalesce(({{ expression }}), false)
{% if hour_column %}and {{ hour_window_filter(hour_column) }}{% endif %}
{% endtest %}
