{#- Sum that is NULL as soon as one input is NULL (a missing FX rate must not vanish
    into a smaller total). `count_expr` counts the rows that should contribute; with a
    left join that found nothing the sum is 0. -#}
{% macro strict_sum(expr, count_expr='*') -%}
    case when count({{ count_expr }}) = count({{ expr }}) then coalesce(sum({{ expr }}), 0) end
{%- endmacro %}

{#- Relative tolerance comparison (1e-6 relative, 1e-6 absolute near zero). NULL equals NULL. -#}
{% macro approx_equal(a, b, tolerance=0.000001) -%}
    (
        ({{ a }} is null and {{ b }} is null)
        or abs(({{ a }}) - ({{ b }})) <= {{ tolerance }} * greatest(abs({{ a }}), abs({{ b }}), 1.0)
    )
{%- endmacro %}

{#- Relative change, signed by direction even for a negative reference; NULL when the
    reference is 0 or missing. -#}
{% macro relative_change(current, reference) -%}
    case when {{ reference }} <> 0 then (({{ current }}) - ({{ reference }})) / abs({{ reference }}) end
{%- endmacro %}
