{#- Net present value of the cash flows `amounts` (a list) at the year fractions `times`
    (a list of the same length) at the annual rate `rate`: sum(a_i * (1 + rate)^-t_i). -#}
{% macro npv(amounts, times, rate) -%}
    list_sum(list_transform(
        range(1, len({{ amounts }}) + 1),
        lambda j: {{ amounts }}[j] * pow(1 + ({{ rate }}), -{{ times }}[j])
    ))
{%- endmacro %}
