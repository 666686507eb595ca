"""Exact numbers out: decimals as their digits, floats as their shortest form.

Amounts are DECIMAL in the warehouse and the marts (``DECIMAL(38, 18)`` in a
sub-account's own currency, ``DECIMAL(38, 10)`` in a valuation currency); rates
and shares are doubles. Whatever prints them (``finbot sql``, ``accounts test
--format json``, the report) goes through here, so no output shows float noise
(``-197011.41999999998``) and none rounds a unit count or a rate away.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

#: the scale of amounts in a valuation currency (DECIMAL(38, 10)): shown with >= 2 decimals
VALUATION_SCALE = 10

_MARK = "@@finbot-decimal@@"
_MARK_RE = re.compile(f'"{_MARK}(-?[0-9]+(?:\\.[0-9]+)?)"')


def decimal_text(d: Decimal, min_places: int = 0) -> str:
    """``Decimal('110.010000')`` -> ``'110.01'`` (no exponent, no trailing zeros beyond
    ``min_places``)."""
    if not d.is_finite():
        return str(d)
    text = format(d.normalize() if d != 0 else Decimal(0), "f")
    if min_places:
        whole, _, frac = text.partition(".")
        if len(frac) < min_places:
            text = f"{whole}.{frac.ljust(min_places, '0')}"
    return text


def grouped(text: str) -> str:
    """``'-1234567.5'`` -> ``'-1,234,567.5'``."""
    sign = "-" if text.startswith("-") else ""
    whole, dot, frac = text.lstrip("-").partition(".")
    if not whole.isdigit():
        return text
    return f"{sign}{int(whole):,}{dot}{frac}"


def _marked(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"{_MARK}{decimal_text(value)}" if value.is_finite() else None
    if isinstance(value, dict):
        return {k: _marked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_marked(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` that writes every Decimal as a bare JSON number with its exact
    digits (``1234.56``, never ``1234.5599999999999`` nor ``"1234.56"``)."""
    text = json.dumps(_marked(value), **kwargs)
    return _MARK_RE.sub(r"\1", text)


def scale_of(type_code: object) -> int | None:
    """The scale of a DuckDB ``DECIMAL(w, s)`` column type, else None."""
    m = re.fullmatch(r"DECIMAL\(\d+,\s*(\d+)\)", str(type_code).strip().upper())
    return int(m[1]) if m else None
