{#- Keys are unique. With `hour_column`, only the hours of the current build window are
    checked, so a one-hour incremental run does not rescan the whole history. -#}
{% test unique_combination(model, columns, hour_column=none) %}
select {{ columns | join(', ') }}, count(*) as n_rows
from {{ model }}
{% if hour_column %}where {{ hour_window_filter(hour_column) }}{% endif %}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
