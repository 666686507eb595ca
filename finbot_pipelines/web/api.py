"""The JSON API under /api/v1, described by its OpenAPI document (/api/v1/openapi.json).

Every amount is a decimal string with its currency (``{"amount": "374423.26",
"currency": "GBP"}``; ``amount`` is null when nothing could value it). Every route names
what it reads by id and is authorised by auth.py: a profile, account or transaction the
caller may not see answers 404, a change the caller may not make 403.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

import duckdb
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, Field

from finbot_pipelines.providers.contract import TransactionKind
from finbot_pipelines.web import actions, data
from finbot_pipelines.web.auth import (
    SESSION_COOKIE,
    AuthFailed,
    Principal,
    check_csrf,
    identify,
    require_profile,
)
from finbot_pipelines.web.state import WebState, web_state

Range = Literal["1d", "1w", "1m", "3m", "6m", "1y", "2y", "all"]
Granularity = Literal["auto", "hour", "day", "week", "month"]
Dimension = Literal["linked_account", "asset_class", "currency"]
Level = Literal["profile", "linked_account"]
#: fct_performance's period kinds (trailing: 1d..2y and ytd back from the end day)
PeriodKind = Literal["trailing", "calendar_month", "calendar_year", "since_first"]


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: The marts' hours are naive UTC; the API writes them as RFC 3339 with their offset (Z).
UtcTime = Annotated[datetime, AfterValidator(_utc)]


class Problem(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "not signed in, or a wrong token"},
    403: {"model": Problem, "description": "visible, but not yours to change"},
    404: {"model": Problem, "description": "no such id among what you may see"},
    503: {"model": Problem, "description": "nothing is published yet"},
}


class Money(BaseModel):
    amount: str | None = Field(description="exact decimal string; null when unvalued")
    currency: str


class Change(BaseModel):
    window: str
    reference_hour: UtcTime | None
    change: Money
    change_rel: float | None = Field(description="a fraction: 0.01 is +1 %")


class ProfileAccess(BaseModel):
    id: str
    access: Literal["owner", "full", "view"]


class Me(BaseModel):
    name: str
    is_admin: bool
    via: Literal["session", "token"]
    scope: Literal["read", "write"]
    profiles: list[ProfileAccess]


class ProfileSummary(BaseModel):
    id: str
    name: str
    valuation_ccy: str
    locale: str
    access: Literal["owner", "full", "view"]
    valuation_hour: UtcTime | None
    net_worth: Money
    total_assets: Money
    total_liabilities: Money
    stale_accounts: int | None
    unvalued_items: int | None
    changes: list[Change]
    published_at: UtcTime | None


class HistoryPoint(BaseModel):
    hour: UtcTime
    net_worth: str | None
    total_assets: str | None
    total_liabilities: str | None


class History(BaseModel):
    profile_id: str
    currency: str
    range: Range
    granularity: Literal["hour", "day", "week", "month"]
    points: list[HistoryPoint]


class HoldingNode(BaseModel):
    level: Literal["linked_account", "sub_account", "item"]
    id: str
    parent_id: str | None
    linked_account_id: str
    name: str
    provider_id: str | None
    account_state: str | None
    account_type: str | None
    currency: str | None
    asset_class: str | None
    symbol: str | None
    units: str | None
    value: Money
    is_stale: bool | None
    is_unvalued: bool | None
    source_fetch_hour: UtcTime | None
    changes: list[Change]


class Holdings(BaseModel):
    profile_id: str
    valuation_hour: UtcTime | None
    nodes: list[HoldingNode]


class Bucket(BaseModel):
    side: str
    bucket: str
    value: Money
    share: float | None


class Distribution(BaseModel):
    profile_id: str
    dimension: Dimension
    valuation_hour: UtcTime | None
    buckets: list[Bucket]


class Warning_(BaseModel):
    code: str
    message: str


class Account(BaseModel):
    id: str
    profile_id: str
    name: str
    provider_id: str | None
    account_state: str | None
    status: str
    value: Money
    is_stale: bool | None
    stale_hours: int | None
    source_fetch_hour: UtcTime | None
    last_attempt_hour: UtcTime | None
    last_success_hour: UtcTime | None
    consecutive_failures: int | None
    last_error_code: str | None
    last_error_message: str | None
    fix: str | None
    warnings: list[Warning_]
    configured: bool
    frozen: bool
    enabled: bool


class PerformanceRow(BaseModel):
    level: Level
    entity_id: str
    period_kind: str
    period: str
    start_day: date | None
    end_day: date | None
    end_hour: UtcTime | None
    start_value: Money
    end_value: Money
    net_contributions: Money
    income: Money
    costs: Money
    market_gain: Money
    twr: float | None
    mwr: float | None
    unvalued_flows: int | None


class CashFlowRow(BaseModel):
    level: Level
    linked_account_id: str | None
    month_start: date
    flow_class: str | None
    kind: str | None
    category: str | None
    inflow: Money
    outflow: Money
    net: Money
    transactions: int
    unvalued_transactions: int


class Transaction(BaseModel):
    linked_account_id: str
    linked_account_name: str | None
    provider_id: str | None
    sub_account_id: str | None
    transaction_id: str
    transaction_date: date | None
    posted_date: date | None
    pending: bool | None
    amount: Money
    amount_valuation: Money
    kind: str | None
    is_internal_transfer: bool | None
    matched_linked_account_id: str | None
    flow_class: str | None
    category: str | None
    description: str | None
    merchant: str | None
    symbol: str | None
    units: str | None


class TransactionPage(BaseModel):
    profile_id: str
    total: int
    limit: int
    offset: int
    items: list[Transaction]


class ActionResult(BaseModel):
    ok: bool
    message: str


class TestResult(BaseModel):
    ok: bool
    error_code: str | None
    error_message: str | None
    fix: str | None
    attempts: int
    sub_accounts: int
    items: int
    warnings: list[Warning_]
    note: str | None


# ------------------------------------------------------------------ dependencies


# Declared so the OpenAPI document names both ways in; identify() reads the request.
_BEARER = HTTPBearer(auto_error=False, description="an API token: `finbot users token NAME`")
_COOKIE = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description="the web app's session (unsafe methods also need the X-CSRF-Token header)",
)


def api_principal(
    request: Request,
    state: Annotated[WebState, Depends(web_state)],
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    _cookie: Annotated[str | None, Depends(_COOKIE)],
) -> Principal:
    principal = identify(request, state.store)
    if principal is None:
        raise AuthFailed()
    check_csrf(request, principal)
    return principal


Caller = Annotated[Principal, Depends(api_principal)]
State = Annotated[WebState, Depends(web_state)]


def _money(value: Any, ccy: str) -> Money:
    return Money(amount=data.decimal_text(value), currency=ccy)


def _opt(value: Any) -> Any:
    return None if data.is_missing(value) else value


def _changes(raw: dict[str, dict[str, Any]], ccy: str) -> list[Change]:
    return [
        Change(
            window=w,
            reference_hour=_opt(c.get("reference_hour")),
            change=_money(c.get("change_abs"), ccy),
            change_rel=_opt(c.get("change_rel")),
        )
        for w, c in raw.items()
    ]


def _profile(state: WebState, principal: Principal, profile_id: str, write: bool = False) -> Any:
    access = require_profile(principal, profile_id, write=write)
    profile = state.profile(profile_id)
    if profile is None:
        raise HTTPException(404, f"no profile {profile_id!r}")
    return profile, access


def _cursor(state: WebState) -> Any:
    try:
        return state.published.cursor()
    except data.NotPublished as exc:
        raise HTTPException(503, str(exc)) from exc


def summary(
    state: WebState, cur: duckdb.DuckDBPyConnection, profile: Any, access: str
) -> ProfileSummary:
    ccy = profile.valuation_ccy
    row = data.latest(cur, profile.id) or {}
    info = data.publish_info(cur)
    return ProfileSummary(
        id=profile.id,
        name=profile.name,
        valuation_ccy=ccy,
        locale=profile.locale,
        access=access,  # type: ignore[arg-type]
        valuation_hour=row.get("valuation_hour"),
        net_worth=_money(row.get("net_worth"), ccy),
        total_assets=_money(row.get("total_assets"), ccy),
        total_liabilities=_money(row.get("total_liabilities"), ccy),
        stale_accounts=row.get("stale_accounts"),
        unvalued_items=row.get("unvalued_items"),
        changes=_changes(row.get("changes", {}), ccy),
        published_at=info.get("published_at"),
    )


def account_model(profile_id: str, ccy: str, r: dict[str, Any]) -> Account:
    return Account(
        id=str(r["linked_account_id"]),
        profile_id=profile_id,
        name=str(r.get("linked_account_name") or r["linked_account_id"]),
        provider_id=_opt(r.get("provider_id")),
        account_state=_opt(r.get("account_state")),
        status=str(r["status"]),
        value=_money(r.get("value"), ccy),
        is_stale=_opt(r.get("is_stale")),
        stale_hours=_opt(r.get("stale_hours")),
        source_fetch_hour=_opt(r.get("source_fetch_hour")),
        last_attempt_hour=_opt(r.get("last_attempt_hour")),
        last_success_hour=_opt(r.get("last_success_hour")),
        consecutive_failures=_opt(r.get("consecutive_failures")),
        last_error_code=_opt(r.get("last_error_code")),
        last_error_message=_opt(r.get("last_error_message")),
        fix=_opt(r.get("fix")) or None,
        warnings=[Warning_(**w) for w in r.get("warnings") or []],
        configured=bool(r.get("configured")),
        frozen=bool(r.get("frozen")),
        enabled=bool(r.get("enabled")),
    )


def _transaction(ccy: str, r: dict[str, Any]) -> Transaction:
    return Transaction(
        linked_account_id=str(r["linked_account_id"]),
        linked_account_name=_opt(r.get("linked_account_name")),
        provider_id=_opt(r.get("provider_id")),
        sub_account_id=_opt(r.get("sub_account_id")),
        transaction_id=str(r["transaction_id"]),
        transaction_date=_opt(r.get("transaction_date")),
        posted_date=_opt(r.get("posted_date")),
        pending=_opt(r.get("pending")),
        amount=_money(r.get("amount"), str(r.get("currency") or ccy)),
        amount_valuation=_money(r.get("amount_valuation"), ccy),
        kind=_opt(r.get("kind")),
        is_internal_transfer=_opt(r.get("is_internal_transfer")),
        matched_linked_account_id=_opt(r.get("matched_linked_account_id")),
        flow_class=_opt(r.get("flow_class")),
        category=_opt(r.get("category")),
        description=_opt(r.get("description")),
        merchant=_opt(r.get("merchant")),
        symbol=_opt(r.get("symbol")),
        units=data.decimal_text(r.get("units")) if not data.is_missing(r.get("units")) else None,
    )


def _account_owner(state: WebState, principal: Principal, account_id: str) -> str:
    """The profile owning ``account_id`` when the caller may see it, else 404."""
    profile_id = state.account_profile(account_id)
    if profile_id is None or principal.access(profile_id) is None:
        raise HTTPException(404, f"no linked account {account_id!r}")
    return profile_id


# ------------------------------------------------------------------------ routes

router = APIRouter(prefix="/api/v1", responses=ERRORS)


@router.get("/me", response_model=Me, tags=["people"])
def me(principal: Caller) -> Me:
    """Who the request is made as, and which profiles they may see."""
    return Me(
        name=principal.user.name,
        is_admin=principal.user.is_admin,
        via=principal.via,
        scope=principal.scope,
        profiles=[ProfileAccess(id=p, access=a) for p, a in sorted(principal.grants.items())],
    )


@router.get("/profiles", response_model=list[ProfileSummary], tags=["valuation"])
def profiles(principal: Caller, state: State) -> list[ProfileSummary]:
    """The profiles the caller may see, each at its latest valued hour."""
    out = []
    with _cursor(state) as cur:
        for p in state.visible_profiles(principal):
            out.append(summary(state, cur, p, principal.grants[p.id]))
    return out


@router.get("/profiles/{profile_id}", response_model=ProfileSummary, tags=["valuation"])
def profile(profile_id: str, principal: Caller, state: State) -> ProfileSummary:
    """One profile at its latest valued hour: net worth, assets, liabilities, changes."""
    p, access = _profile(state, principal, profile_id)
    with _cursor(state) as cur:
        return summary(state, cur, p, access)


@router.get("/profiles/{profile_id}/net-worth", response_model=History, tags=["valuation"])
def net_worth_history(
    profile_id: str,
    principal: Caller,
    state: State,
    range: Range = "1m",
    granularity: Granularity = "auto",
) -> History:
    """Net worth, assets and liabilities over ``range`` back from the latest hour, one point
    per ``granularity`` (the last valued hour of each period; auto: by the range, then
    finer while that gives fewer than 8 points)."""
    p, _ = _profile(state, principal, profile_id)
    with _cursor(state) as cur:
        used, rows = data.history(cur, profile_id, range, granularity)
    return History(
        profile_id=profile_id,
        currency=p.valuation_ccy,
        range=range,
        granularity=used,  # type: ignore[arg-type]
        points=[
            HistoryPoint(
                hour=r["valuation_hour"],
                net_worth=data.decimal_text(r["net_worth"]),
                total_assets=data.decimal_text(r["total_assets"]),
                total_liabilities=data.decimal_text(r["total_liabilities"]),
            )
            for r in rows
        ],
    )


@router.get("/profiles/{profile_id}/holdings", response_model=Holdings, tags=["valuation"])
def holdings(profile_id: str, principal: Caller, state: State) -> Holdings:
    """The linked account > sub-account > item tree at the latest hour, with the change of
    each node over 1h, 1d, 1w, 1m, 6m, 1y and 2y."""
    p, _ = _profile(state, principal, profile_id)
    ccy = p.valuation_ccy
    with _cursor(state) as cur:
        row = data.latest(cur, profile_id)
        hour = row["valuation_hour"] if row else None
        nodes = data.holdings(cur, profile_id, hour) if hour else []
    return Holdings(
        profile_id=profile_id,
        valuation_hour=hour,
        nodes=[
            HoldingNode(
                level=n["level"],
                id=n["entity_id"],
                parent_id=n["parent_id"],
                linked_account_id=n["linked_account_id"],
                name=str(n["name"]),
                provider_id=n["provider_id"],
                account_state=n["account_state"],
                account_type=n["account_type"],
                currency=n["currency"],
                asset_class=n["asset_class"],
                symbol=n["symbol"],
                units=data.decimal_text(n["units"]) if n["units"] is not None else None,
                value=_money(n["value"], ccy),
                is_stale=n["is_stale"],
                is_unvalued=n["is_unvalued"],
                source_fetch_hour=n["source_fetch_hour"],
                changes=_changes(n["changes"], ccy),
            )
            for n in nodes
        ],
    )


@router.get("/profiles/{profile_id}/distribution", response_model=Distribution, tags=["valuation"])
def distribution(
    profile_id: str, principal: Caller, state: State, dimension: Dimension = "asset_class"
) -> Distribution:
    """Assets and liabilities at the latest hour by linked account, asset class or
    currency, with each bucket's share of its side."""
    p, _ = _profile(state, principal, profile_id)
    with _cursor(state) as cur:
        row = data.latest(cur, profile_id)
        hour = row["valuation_hour"] if row else None
        rows = data.distribution(cur, profile_id, hour, dimension) if hour else []
    return Distribution(
        profile_id=profile_id,
        dimension=dimension,
        valuation_hour=hour,
        buckets=[
            Bucket(
                side=str(r["side"]),
                bucket=str(r["bucket"]),
                value=_money(r["value"], p.valuation_ccy),
                share=_opt(r["share"]),
            )
            for r in rows
        ],
    )


@router.get("/profiles/{profile_id}/accounts", response_model=list[Account], tags=["accounts"])
def profile_accounts(profile_id: str, principal: Caller, state: State) -> list[Account]:
    """The profile's linked accounts: value, status, last error and its fix, warnings."""
    p, _ = _profile(state, principal, profile_id)
    with _cursor(state) as cur:
        row = data.latest(cur, profile_id)
        rows = data.accounts(
            cur, profile_id, row["valuation_hour"] if row else None, state.config().linked_accounts
        )
    return [account_model(profile_id, p.valuation_ccy, r) for r in rows]


@router.get(
    "/profiles/{profile_id}/performance", response_model=list[PerformanceRow], tags=["flows"]
)
def performance(
    profile_id: str,
    principal: Caller,
    state: State,
    level: Level = "profile",
    period_kind: PeriodKind | None = None,
) -> list[PerformanceRow]:
    """Start and end value, net contributions, income, costs, market gain, TWR and MWR of
    the profile (or each linked account) over each period."""
    p, _ = _profile(state, principal, profile_id)
    ccy = p.valuation_ccy
    with _cursor(state) as cur:
        rows = data.performance(cur, profile_id, level, period_kind)
    return [
        PerformanceRow(
            level=r["level"],
            entity_id=str(r["entity_id"]),
            period_kind=str(r["period_kind"]),
            period=str(r["period"]),
            start_day=_opt(r["start_day"]),
            end_day=_opt(r["end_day"]),
            end_hour=_opt(r["end_hour"]),
            start_value=_money(r["start_value"], ccy),
            end_value=_money(r["end_value"], ccy),
            net_contributions=_money(r["net_contributions"], ccy),
            income=_money(r["income"], ccy),
            costs=_money(r["costs"], ccy),
            market_gain=_money(r["market_gain"], ccy),
            twr=_opt(r["twr"]),
            mwr=_opt(r["mwr"]),
            unvalued_flows=_opt(r["unvalued_flows"]),
        )
        for r in rows
    ]


@router.get("/profiles/{profile_id}/cash-flows", response_model=list[CashFlowRow], tags=["flows"])
def cash_flows(
    profile_id: str,
    principal: Caller,
    state: State,
    level: Level = "profile",
    first_month: Annotated[date | None, Query(alias="from")] = None,
    last_month: Annotated[date | None, Query(alias="to")] = None,
) -> list[CashFlowRow]:
    """Money in and out per month, by flow class, kind and category."""
    p, _ = _profile(state, principal, profile_id)
    ccy = p.valuation_ccy
    with _cursor(state) as cur:
        rows = data.cash_flows(cur, profile_id, level, first_month, last_month)
    return [
        CashFlowRow(
            level=r["level"],
            linked_account_id=_opt(r["linked_account_id"]),
            month_start=r["month_start"],
            flow_class=_opt(r["flow_class"]),
            kind=_opt(r["kind"]),
            category=_opt(r["category"]),
            inflow=_money(r["inflow"], ccy),
            outflow=_money(r["outflow"], ccy),
            net=_money(r["net"], ccy),
            transactions=int(r["transactions"]),
            unvalued_transactions=int(r["unvalued_transactions"]),
        )
        for r in rows
    ]


@router.get("/profiles/{profile_id}/transactions", response_model=TransactionPage, tags=["flows"])
def transactions(
    profile_id: str,
    principal: Caller,
    state: State,
    account: Annotated[str | None, Query(description="a linked account id")] = None,
    kind: TransactionKind | None = None,
    first_day: Annotated[date | None, Query(alias="from")] = None,
    last_day: Annotated[date | None, Query(alias="to")] = None,
    q: Annotated[
        str | None, Query(max_length=200, description="text in description/merchant")
    ] = None,
    pending: bool = True,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> TransactionPage:
    """The profile's transactions, newest first, filtered and paginated."""
    p, _ = _profile(state, principal, profile_id)
    flt = data.TransactionFilter(account, kind, first_day, last_day, q or None, pending)
    with _cursor(state) as cur:
        total, rows = data.transactions(cur, profile_id, flt, limit, offset)
    return TransactionPage(
        profile_id=profile_id,
        total=total,
        limit=limit,
        offset=offset,
        items=[_transaction(p.valuation_ccy, r) for r in rows],
    )


@router.get("/accounts/{account_id}", response_model=Account, tags=["accounts"])
def account(account_id: str, principal: Caller, state: State) -> Account:
    """One linked account with its health."""
    profile_id = _account_owner(state, principal, account_id)
    p, _ = _profile(state, principal, profile_id)
    with _cursor(state) as cur:
        row = data.latest(cur, profile_id)
        rows = data.accounts(
            cur, profile_id, row["valuation_hour"] if row else None, state.config().linked_accounts
        )
    for r in rows:
        if r["linked_account_id"] == account_id:
            return account_model(profile_id, p.valuation_ccy, r)
    raise HTTPException(404, f"no linked account {account_id!r}")


@router.get(
    "/accounts/{account_id}/transactions/{transaction_id}",
    response_model=Transaction,
    tags=["flows"],
)
def transaction(
    account_id: str, transaction_id: str, principal: Caller, state: State
) -> Transaction:
    """One transaction of a linked account, by the provider's transaction id."""
    profile_id = _account_owner(state, principal, account_id)
    p, _ = _profile(state, principal, profile_id)
    with _cursor(state) as cur:
        r = data.transaction(cur, profile_id, account_id, transaction_id)
    if r is None:
        raise HTTPException(404, f"no transaction {transaction_id!r} in {account_id!r}")
    return _transaction(p.valuation_ccy, r)


def _configured_owner(state: WebState, principal: Principal, account_id: str) -> str:
    profile_id = _account_owner(state, principal, account_id)
    require_profile(principal, profile_id, write=True)
    if not any(a.id == account_id for a in state.config().linked_accounts):
        raise HTTPException(404, f"{account_id!r} is not in the config any more")
    return profile_id


def _act(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except actions.ActionError as exc:
        raise HTTPException(409, str(exc)) from exc


@router.post(
    "/accounts/{account_id}/freeze",
    response_model=ActionResult,
    tags=["accounts"],
    responses={409: {"model": Problem}},
)
def freeze(account_id: str, principal: Caller, state: State) -> ActionResult:
    """Stop fetching the account; it keeps counting at its last value."""
    _configured_owner(state, principal, account_id)
    return ActionResult(ok=True, message=_act(actions.set_frozen, state.paths, account_id, True))


@router.post(
    "/accounts/{account_id}/unfreeze",
    response_model=ActionResult,
    tags=["accounts"],
    responses={409: {"model": Problem}},
)
def unfreeze(account_id: str, principal: Caller, state: State) -> ActionResult:
    """Fetch the account again from the next run."""
    _configured_owner(state, principal, account_id)
    return ActionResult(ok=True, message=_act(actions.set_frozen, state.paths, account_id, False))


@router.post(
    "/accounts/{account_id}/test",
    response_model=TestResult,
    tags=["accounts"],
    responses={409: {"model": Problem}},
)
def test_account(account_id: str, principal: Caller, state: State) -> TestResult:
    """Fetch the account once now with its stored credentials (nothing is written)."""
    _configured_owner(state, principal, account_id)
    result = _act(actions.test, state.paths, account_id)
    return TestResult(**result)


@router.delete(
    "/accounts/{account_id}",
    response_model=ActionResult,
    tags=["accounts"],
    responses={409: {"model": Problem}},
)
def remove_account(account_id: str, principal: Caller, state: State) -> ActionResult:
    """Remove the account from the config; its history stays."""
    _configured_owner(state, principal, account_id)
    return ActionResult(ok=True, message=_act(actions.remove, state.paths, account_id))
