"""finbot: personal wealth aggregation on Dagster, dbt and DuckDB."""

__version__ = "0.1.0"
