"""What the product cards show -> a snapshot (pure: no browser).

Every product card becomes a sub-account: name from ``.card-body h3``, value
from ``.card-body span.currency-hero`` ("£12,345.67", the exact
:class:`~decimal.Decimal` ``12345.67``), id the last word of ``.card-footer``
(the policy number). Currency GBP, account_type investment, one item: asset_class
pension, asset_type fund. A card without a name, a policy number or a readable
value fails the fetch with :class:`ProviderPayloadError` naming the product.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from finbot_pipelines.providers.aegon_targetplan.options import PROVIDER_ID
from finbot_pipelines.providers.contract import (
    Item,
    ProviderPayloadError,
    Snapshot,
    SubAccount,
)

SEL_CARDS = ".card-product-1"

_GBP_RE = re.compile(
    r"^(?P<sign>[-\u2212])?\s*£\s*(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<dec>\d{2}))?$"
)


def parse_gbp_amount(text: str) -> Decimal:
    """``"£12,345.67"`` -> ``Decimal("12345.67")``. Comma thousands, two decimals
    (or none), an optional leading minus. Anything else raises ``ValueError``."""
    m = _GBP_RE.match(text.strip().replace("\u00a0", " "))
    if not m:
        raise ValueError(f"not a sterling amount: {text!r}")
    value = Decimal(f"{m['int'].replace(',', '')}.{m['dec'] or '00'}")
    return (-value if m["sign"] else value) + 0  # -0.00 -> 0.00


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    value: Decimal


def parse_cards(raw_cards: Sequence[Mapping[str, Any]], prefix: str = PROVIDER_ID) -> list[Product]:
    """Validate what the cards showed; raise ProviderPayloadError naming the product."""
    if not raw_cards:
        raise ProviderPayloadError(
            f"{prefix}: the page layout changed: no product card ({SEL_CARDS}) on the "
            "investments page"
        )
    products: list[Product] = []
    for i, raw in enumerate(raw_cards):
        name = str(raw.get("name") or "").strip()
        if not name:
            raise ProviderPayloadError(
                f"{prefix}: the page layout changed: product name (.card-body h3) not found "
                f"on product card {i + 1}"
            )
        footer = str(raw.get("footer") or "").split()
        if not footer:
            raise ProviderPayloadError(
                f"{prefix}: the page layout changed: policy number (.card-footer) not found "
                f"for product {name!r}"
            )
        value_text = raw.get("value")
        if value_text is None:
            raise ProviderPayloadError(
                f"{prefix}: the page layout changed: value (span.currency-hero) not found for "
                f"product {name!r}"
            )
        try:
            value = parse_gbp_amount(str(value_text))
        except ValueError:
            raise ProviderPayloadError(
                f"{prefix}: unreadable value {value_text!r} for product {name!r}"
            ) from None
        if value < 0:
            raise ProviderPayloadError(f"{prefix}: negative value {value_text!r} for {name!r}")
        products.append(Product(footer[-1], name, value))
    return products


def build_snapshot(products: Sequence[Product]) -> Snapshot:
    """One GBP pension sub-account per product, its value exactly as shown."""
    return Snapshot(
        tuple(
            SubAccount(
                p.id,
                p.name,
                "GBP",
                "investment",
                (Item(p.name, "asset", "pension", "fund", p.value),),
            )
            for p in products
        )
    )
