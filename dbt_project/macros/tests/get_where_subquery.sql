{#-
  dbt's `where:` test config, plus one placeholder: `__build_window__(column)` becomes
  `hour_window_filter(column)` when the test runs, so a generic test (not_null,
  accepted_values, ...) on a table holding every hour checks only the hours this
  build rebuilt instead of rescanning the whole history every hour. A full build
  (no window) still checks every row. The placeholder is expanded here, at run
  time, because `where:` itself is rendered when the project is parsed, before the
  window is known (the pattern dbt documents for run-time `where` values).
-#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- set pattern = modules.re.compile('__build_window__\((\w+)\)') -%}
        {%- set expanded = namespace(where=where) -%}
        {%- for column in pattern.findall(where) -%}
            {%- set expanded.where = expanded.where | replace(
                '__build_window__(' ~ column ~ ')', hour_window_filter(column)
            ) -%}
        {%- endfor -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ expanded.where }}) dbt_subquery
        {%- endset -%}
        {{ return(filtered) }}
    {%- else -%}
        {{ return(relation) }}
    {%- endif -%}
{%- endmacro %}
