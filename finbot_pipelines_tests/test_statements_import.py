"""Statement files end to end: `finbot import` and the inbox sensor land them through the
`finbot_statements` job, and the published marts value the account from its newest
statement, at that statement's date, with its transactions.

One home (one hourly run, then one import run and one inbox run). The figures are the
files' own: the first statement's balance 960.00 GBP two days ago, the second's
1060.00 GBP yesterday (the running balance after each file's last row). The inbox
run's landing step runs alone (its dbt build and publish are the import run's).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest

from finbot_pipelines_tests.conftest import invoke_cli
from finbot_pipelines_tests.e2e import history_start_for_tests, last_complete_hour, run_live_hour


def csv_text(rows: list[tuple[str, str, str, str]]) -> str:
    return "Date,Description,Amount,Balance\n" + "".join(",".join(r) + "\n" for r in rows)


def test_import_and_inbox_land_statements_at_their_dates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))  # the CLI's instance
    config = f"""\
history_start: "{history_start_for_tests()}"
fx_source: static
fx_static_rates: {{GBP: 0.85}}
profiles: [{{id: me, name: Me, valuation_ccy: GBP}}]
linked_accounts:
  - id: bank
    profile: me
    provider: statements
    name: My bank
    options: {{csv: {{preset: uk_bank, currency: GBP, account_id: current}}}}
"""
    run = run_live_hour(home, config)
    assert run.success
    hour = run.hour
    # before any statement: the account is there, never fetched, without a value
    before = run.published(
        "select account_state, last_success_hour from marts.mart_linked_account_health"
    )
    assert before["account_state"].tolist() == ["statement"]
    assert before["last_success_hour"].isna().all()
    assert run.published("select * from marts.fct_linked_account_valuation_hourly").empty

    today = last_complete_hour().date()
    d2, d1 = today - timedelta(days=2), today - timedelta(days=1)
    first = tmp_path / "first.csv"
    first.write_text(
        csv_text(
            [
                (f"{d2:%d/%m/%Y}", "TESCO", "-40.00", "960.00"),
                (f"{d2:%d/%m/%Y}", "COFFEE", "-3.50", "956.50"),
                (f"{d2:%d/%m/%Y}", "REFUND", "3.50", "960.00"),
            ]
        )
    )
    result = invoke_cli(home, "import", str(first), "--account", "bank")
    assert result.exit_code == 0, result.output
    assert f"balance 960.00 GBP at {d2}" in result.output
    assert "3 transaction(s)" in result.output
    value = run.published(
        "select value from marts.fct_linked_account_valuation_hourly where valuation_hour = ?",
        [hour],
    )
    assert value["value"].tolist() == [Decimal("960.00")]
    txns = run.published(
        "select amount, flow_class from marts.fct_transactions order by amount"
    ).to_dict("records")
    assert [t["amount"] for t in txns] == [Decimal("-40.00"), Decimal("-3.50"), Decimal("3.50")]
    again = invoke_cli(home, "import", str(first), "--account", "bank")
    assert again.exit_code == 0 and "already imported" in again.output

    # the inbox: a newer statement (overlapping the first by its last row) and a bad file
    inbox = home / "inbox" / "bank"
    inbox.mkdir(parents=True)
    (inbox / "second.csv").write_text(
        csv_text(
            [
                (f"{d2:%d/%m/%Y}", "REFUND", "3.50", "960.00"),
                (f"{d1:%d/%m/%Y}", "SALARY", "100.00", "1060.00"),
            ]
        )
    )
    (inbox / "bad.csv").write_text(csv_text([(f"{d1:%d/%m/%Y}", "X", "one", "0")]))
    import os

    past = datetime.now().timestamp() - 60  # settled files (the sensor skips fresh ones)
    for f in inbox.iterdir():
        os.utime(f, (past, past))

    from finbot_pipelines.defs.ingest.statements import (
        build_statements_asset,
        build_statements_sensor,
    )
    from finbot_pipelines.defs.resources import FinbotHome
    from finbot_pipelines.warehouse.build_window import pending_rebuild

    sensor = build_statements_sensor(str(home))
    request = sensor(dg.build_sensor_context())
    assert isinstance(request, dg.RunRequest)
    assert request.job_name in (None, "finbot_statements")
    # the run's landing step (its dbt build is the one `finbot import` ran above)
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        landed = dg.materialize(
            [build_statements_asset()],
            resources={"finbot": FinbotHome(home=str(home))},
            instance=instance,
            tags=request.tags,
        )
    assert landed.success
    checks = landed.get_asset_check_evaluations()
    assert [c.passed for c in checks] == [False]  # the bad file, named
    assert "bad.csv, line 2" in (checks[0].description or "")
    assert (home / "inbox" / "done" / "bank" / "second.csv").is_file()
    note = home / "inbox" / "rejected" / "bank" / "bad.csv.reason.txt"
    assert "bad.csv, line 2" in note.read_text()
    assert isinstance(sensor(dg.build_sensor_context()), dg.SkipReason)

    d1_hour = datetime.combine(d1, datetime.min.time()).replace(hour=23)
    items = run.raw(
        "select fetch_hour, value from raw.items where linked_account_id = 'bank' order by 1"
    )
    assert items.to_dict("records") == [
        {"fetch_hour": datetime.combine(d2, datetime.min.time()).replace(hour=23),
         "value": Decimal("960.00")},
        {"fetch_hour": d1_hour, "value": Decimal("1060.00")},
    ]  # fmt: skip
    txns = run.raw(
        "select transaction_id, arg_max(amount, fetch_hour) as amount from raw.transactions "
        "group by 1 order by 2"
    )
    assert txns["amount"].tolist() == [
        Decimal("-40.00"),
        Decimal("-3.50"),
        Decimal("3.50"),
        Decimal("100.00"),
    ]  # the refund the two files share counts once
    import duckdb

    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        pending = pending_rebuild(con)
    # the next build starts at the second file's first day (its close told by its
    # transactions: 1060.00 - 100.00 = 960.00, the first statement's balance)
    d2_hour = datetime.combine(d2, datetime.min.time()).replace(hour=23)
    assert pending is not None and pending[0] == d2_hour
    listed = invoke_cli(home, "accounts", "list")
    assert f"statement of {d2}" in listed.output, listed.output
