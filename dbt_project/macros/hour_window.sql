{#-
  The hourly build window.

  The orchestrator passes `--vars '{"min_hour": "YYYY-MM-DD HH:MM:SS", "max_hour": "..."}'`
  (naive UTC hour starts, both inclusive). Without vars, or with --full-refresh, the
  window is every hour: the bounds fall back to far-away sentinels so the same SQL
  serves both cases (lookbacks before the window are then simply empty).
-#}

{% macro _window_var(name) -%}
    {%- set value = var(name, none) -%}
    {%- if value is none or value == '' or flags.FULL_REFRESH -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set value = value | string | trim -%}
    {%- if not modules.re.fullmatch('\d{4}-\d{2}-\d{2}([ T]\d{2}(:\d{2}(:\d{2})?)?)?', value) -%}
        {{ exceptions.raise_compiler_error("var '" ~ name ~ "' must look like 'YYYY-MM-DD HH:MM:SS', got: " ~ value) }}
    {%- endif -%}
    {{ return(value | replace('T', ' ')) }}
{%- endmacro %}

{% macro is_hour_windowed() -%}
    {{ return(_window_var('min_hour') is not none or _window_var('max_hour') is not none) }}
{%- endmacro %}

{#- SQL timestamp literal of the first hour of the window (inclusive). -#}
{% macro window_min_hour() -%}
    {%- set value = _window_var('min_hour') -%}
    {%- if value is none -%}
        timestamp '1900-01-01 00:00:00'
    {%- else -%}
        date_trunc('hour', timestamp '{{ value }}')
    {%- endif -%}
{%- endmacro %}

{#- SQL timestamp literal of the last hour of the window (inclusive). -#}
{% macro window_max_hour() -%}
    {%- set value = _window_var('max_hour') -%}
    {%- if value is none -%}
        timestamp '9999-12-31 23:00:00'
    {%- else -%}
        date_trunc('hour', timestamp '{{ value }}')
    {%- endif -%}
{%- endmacro %}

{#- Predicate: `column` is an hour inside the build window. -#}
{% macro hour_window_filter(column) -%}
    {%- if is_hour_windowed() -%}
        ({{ column }} between {{ window_min_hour() }} and {{ window_max_hour() }})
    {%- else -%}
        (true)
    {%- endif -%}
{%- endmacro %}
