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
    case
        when {{ reference }} <> 0
            then cast(({{ current }}) - ({{ reference }}) as double) / abs(cast({{ reference }} as double))
    end
{%- endmacro %}

{#- Amounts in a valuation currency: DECIMAL(38, 10). A converted amount is computed in
    floating point (rates are) and rounded to 10 decimals, so no float noise reaches a
    mart; an amount already in the target currency (rate 1) is carried exactly. -#}
{% macro valuation_amount(amount, rate, same_currency) -%}
    case
        when {{ same_currency }} then cast({{ amount }} as decimal(38, 10))
        else cast(cast({{ amount }} as double) * {{ rate }} as decimal(38, 10))
    end
{%- endmacro %}

{#- Amounts in a sub-account or unit currency: DECIMAL(38, 18) as in raw; a converted
    one is rounded to 10 decimals first (its float digits beyond that are noise). -#}
{% macro native_amount(expr) -%}
    cast(cast({{ expr }} as decimal(38, 10)) as decimal(38, 18))
{%- endmacro %}

{#- Sum of the valued inputs (NULL values are items nothing could price: they are
    counted apart as unvalued_items, never summed as 0 and never making the total
    NULL); 0 when there is none. -#}
{% macro valued_sum(expr) -%}
    coalesce(sum({{ expr }}), 0)
{%- endmacro %}
