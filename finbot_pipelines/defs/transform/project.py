"""The dbt project, in a module of its own so the manifest can be prepared before import."""

from __future__ import annotations

from dagster_dbt import DbtProject

from finbot_pipelines.config.paths import DBT_PROJECT_DIR

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
