{#-
  The hourly build window.

  The orchestrator writes the window to the one-row table
  `finbot_control.build_window` (first_hour, last_hour: naive UTC hour starts, both
  inclusive) just before `dbt build`, and empties it after. It is read here when the
  models execute, so the parsed project never changes from one hour to the next and
  dbt's partial parsing keeps working (a `--vars` window would force a full re-parse).
  `--vars '{"min_hour": "YYYY-MM-DD HH:MM:SS", "max_hour": "..."}'` still overrides it
  (tests, hand-run builds). With no window, or with --full-refresh, the window is
  every hour: the bounds fall back to far-away sentinels so the same SQL serves both
  cases (lookbacks before the window are then simply empty).
-#}

{% macro _control_window() -%}
    {%- if not execute -%}
        {{ return({}) }}
    {%- endif -%}
    {%- set exists = run_query(
        "select count(*) from duckdb_tables() "
        ~ "where schema_name = 'finbot_control' and table_name = 'build_window'"
    ) -%}
    {%- if exists.rows[0][0] == 0 -%}
        {{ return({}) }}
    {%- endif -%}
    {%- set found = run_query(
        "select strftime(min(first_hour), '%Y-%m-%d %H:%M:%S'), "
        ~ "strftime(max(last_hour), '%Y-%m-%d %H:%M:%S') from finbot_control.build_window"
    ) -%}
    {{ return({'min_hour': found.rows[0][0], 'max_hour': found.rows[0][1]}) }}
{%- endmacro %}

{% macro _window_var(name) -%}
    {%- if flags.FULL_REFRESH -%}
        {{ return(none) }}
    {%- endif -%}
    {#- unset: the orchestrator's window; set, even to null (unit tests): that value -#}
    {%- set value = var(name, '__unset__') -%}
    {%- if value == '__unset__' -%}
        {%- set value = _control_window().get(name) -%}
    {%- endif -%}
    {%- if value is none or value == '' -%}
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

{#-
  SQL timestamp literal: the oldest fetch the window's consistent snapshot points at
  (`snapshot_relation` = ref('int_consistent_snapshot'), already built this run).
  Models bound their scans of raw history with it. A literal, read when the model
  executes, lets DuckDB skip whole row groups of history (zone maps); the same bound
  as a scalar subquery makes DuckDB scan every raw row every hour. Without a window
  it is the "every hour" sentinel.
-#}
{% macro snapshot_min_source_hour(snapshot_relation) -%}
    {%- if not execute or not is_hour_windowed() -%}
        {{ window_min_hour() }}
    {%- else -%}
        {%- set found = run_query(
            "select strftime(min(source_fetch_hour), '%Y-%m-%d %H:%M:%S') from "
            ~ snapshot_relation ~ " where has_data and " ~ hour_window_filter('valuation_hour')
        ) -%}
        {%- set value = found.rows[0][0] -%}
        {%- if value is none -%}
            {{ window_min_hour() }}
        {%- else -%}
            timestamp '{{ value }}'
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
