"""Property-based fuzzing of the whole API from its own OpenAPI document (schemathesis):
no 5xx, every response (errors included) matches its declared schema, status code and
content type. Runs as a signed-in owner with a write token, on a copy of the session's
home, so every route (the account changes too) is reached with ids that exist."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks

from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.web.app import create_app
from finbot_pipelines.web.users import UserStore
from finbot_pipelines_tests.conftest import BuiltHome

TOKEN: dict[str, str] = {}
REAL_IDS: dict[str, str] = {"profile_id": "alice", "account_id": "a-bank"}


@pytest.fixture(scope="module")
def fuzz_home(built_home: BuiltHome, tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert built_home.run_success
    home = tmp_path_factory.mktemp("fuzz") / "home"
    shutil.copytree(
        built_home.home, home, ignore=shutil.ignore_patterns("dagster", "warehouse.duckdb*")
    )
    store = UserStore.open(HomePaths(home))
    store.add_user("alice", "alice-secret-pw", profiles={"alice": "owner", "bruno": "view"})
    TOKEN["value"] = store.create_token("alice", scope="write")
    con = duckdb.connect(str(home / "finbot.duckdb"), read_only=True)
    con.execute("set file_search_path = ?", [str(home)])
    row = con.execute(
        "select transaction_id from marts.fct_transactions where linked_account_id = 'a-bank' "
        "order by 1 limit 1"
    ).fetchone()
    con.close()
    assert row is not None
    REAL_IDS["transaction_id"] = str(row[0])
    return home


@pytest.fixture(scope="module")
def api_schema(fuzz_home: Path) -> Iterator[Any]:
    app = create_app(HomePaths(fuzz_home))
    yield schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)


CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.negative_data_rejection,
]


def test_api_conforms_to_its_schema(api_schema: Any) -> None:
    """Every operation of the document, each with examples hypothesis draws from its
    parameters' schemas (valid and invalid), as a signed-in owner."""
    headers = {"Authorization": f"Bearer {TOKEN['value']}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:

        @given(case=operation.as_strategy(), real=st.booleans())
        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case: Any, real: bool) -> None:
            if real:  # half the examples name ids that exist, so the 200s are fuzzed too
                for name, value in REAL_IDS.items():
                    if name in (case.path_parameters or {}):
                        case.path_parameters[name] = value
            case.call_and_validate(headers=headers, checks=CHECKS)

        run()
