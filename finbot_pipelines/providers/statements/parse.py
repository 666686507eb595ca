"""Reading one statement file: :func:`parse_statement`.

Pure: no Dagster, no warehouse, nothing written. The file is read once; its
fingerprint is the SHA-256 of its bytes. Either the whole file is read, or a
:class:`~.model.StatementError` names the file, the line and what is wrong:
nothing partial is ever returned.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from finbot_pipelines.providers.contract import ProviderPayloadError, Snapshot
from finbot_pipelines.providers.statements.csvfile import parse_csv
from finbot_pipelines.providers.statements.model import (
    Statement,
    StatementAccount,
    StatementError,
    StatementFormat,
)
from finbot_pipelines.providers.statements.ofx import looks_like_ofx, parse_ofx
from finbot_pipelines.providers.statements.options import StatementsOptions

#: The largest statement file read (a year of a busy account is well under 5 MB).
MAX_FILE_BYTES = 50 * 1024 * 1024
OFX_SUFFIXES = (".ofx", ".qfx", ".qbo")
CSV_SUFFIXES = (".csv", ".txt", ".tsv")


def fingerprint(data: bytes) -> str:
    """The content fingerprint of a file: SHA-256, hex."""
    return hashlib.sha256(data).hexdigest()


def detect_format(path: Path, data: bytes) -> StatementFormat:
    """``ofx`` for an OFX/QFX file (by its content, whatever its name), ``csv`` for a
    file named ``.csv``/``.txt``/``.tsv``; anything else is a :class:`StatementError`."""
    if looks_like_ofx(data):
        return "ofx"
    suffix = path.suffix.lower()
    if suffix in OFX_SUFFIXES:
        raise StatementError(path, 1, "named like an OFX file but has no OFX header")
    if suffix in CSV_SUFFIXES:
        return "csv"
    raise StatementError(
        path, None, "not a statement file finbot reads (OFX/QFX, or CSV named .csv)"
    )


def parse_statement(path: Path | str, options: StatementsOptions | None = None) -> Statement:
    """Read the statement file ``path`` with the linked account's ``options``.

    Raises :class:`StatementError` (file, line, message) for a file that cannot be
    read whole; the CSV options are required for a CSV file."""
    path = Path(path)
    options = options or StatementsOptions()
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise StatementError(path, None, f"{size} bytes: larger than {MAX_FILE_BYTES}")
        data = path.read_bytes()
    except OSError as exc:
        raise StatementError(path, None, f"cannot be read: {exc.strerror or exc}") from None
    if not data.strip():
        raise StatementError(path, None, "the file is empty")
    fmt = detect_format(path, data)
    institution = None
    if fmt == "ofx":
        accounts, institution, warnings = parse_ofx(path, data, options.ofx)
    else:
        if options.csv is None:
            raise StatementError(
                path,
                None,
                "a CSV statement needs the csv options: a preset (or the columns) and the "
                "account's currency",
            )
        account, warnings = parse_csv(path, data, options.csv)
        accounts = (account,)
    _validate(path, accounts)
    return Statement(
        path=path,
        format=fmt,
        fingerprint=fingerprint(data),
        accounts=accounts,
        institution=institution,
        warnings=warnings,
    )


def _validate(path: Path, accounts: tuple[StatementAccount, ...]) -> None:
    """The contract's own checks (sub-accounts, unique ids, exact amounts, kinds)."""
    try:
        Snapshot(
            tuple(a.sub_account for a in accounts),
            transactions=tuple(t for a in accounts for t in a.transactions),
        ).validate()
    except ProviderPayloadError as exc:
        raise StatementError(path, None, str(exc)) from None
