"""Changing ``finbot.yaml`` in place: locked, atomic, comments and layout kept.

Every command that changes the config goes through :func:`edit_config`: it takes
the config's lock, reads the file as it is now (not as it was when the command
started), applies the change to a round-trip YAML document (ruamel.yaml: comments,
key order, quoting and indentation survive), validates the result in full with
the same loader as every other command, writes a new 0600 file, renames it into
place and releases the lock. A change that would make the file invalid is not
written.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.util import load_yaml_guess_indent

from finbot_pipelines.config.loading import (
    ConfigError,
    ConfigIssue,
    atomic_write_bytes,
    load_config,
    parse_config,
)
from finbot_pipelines.config.locking import file_lock, lock_path_for
from finbot_pipelines.config.schema import FinbotConfig

CONFIG_FILE_MODE = 0o600


class EditRefused(Exception):
    """The change cannot be applied to the config as it is now (e.g. the id exists)."""


def _mapping_indent(text: str) -> int:
    """The indentation of the first nested mapping key under a top-level key (2 if none)."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    for above, line in itertools.pairwise(lines):
        if above[:1] not in " -" and above.rstrip().endswith(":"):
            body = line.lstrip(" ")
            if not body.startswith("-") and len(line) > len(body):
                return len(line) - len(body)
    return 2


def _load_document(text: str, path: Path) -> tuple[CommentedMap, YAML]:
    try:
        _, seq_indent, block_seq_indent = load_yaml_guess_indent(text)
        y = YAML(typ="rt")
        y.preserve_quotes = True
        y.width = 4096  # never re-wrap long lines
        offset = block_seq_indent or 0
        y.indent(
            mapping=_mapping_indent(text),
            sequence=max(seq_indent or 2, offset + 2),
            offset=offset,
        )
        doc = y.load(text)
    except YAMLError as exc:  # parse_config already accepted it: unlikely
        raise ConfigError(path, [ConfigIssue("", None, f"invalid YAML: {exc}")]) from None
    if not isinstance(doc, CommentedMap):
        raise ConfigError(path, [ConfigIssue("", 1, "expected a mapping at the top level")])
    return doc, y


def edit_config(
    path: Path,
    change: Callable[[CommentedMap], None],
    *,
    timeout_s: float | None = None,
) -> FinbotConfig:
    """Apply ``change`` to the document of ``path`` under its lock; return the new config.

    ``change`` mutates the document (raise :class:`EditRefused` to abort). Raises
    :class:`ConfigError` if the file as it is now, or the changed one, is invalid,
    and :class:`~finbot_pipelines.config.locking.LockTimeout`; nothing is written then.
    """
    with file_lock(lock_path_for(path), str(path), timeout_s=timeout_s):
        load_config(path)  # the file as it is now must be valid (and its aliases bounded)
        text = path.read_text(encoding="utf-8")
        doc, yaml_rt = _load_document(text, path)
        change(doc)
        out = io.StringIO()
        yaml_rt.dump(doc, out)
        new_text = out.getvalue()
        cfg = parse_config(new_text, path)  # never write a file we could not read back
        atomic_write_bytes(path, new_text.encode("utf-8"), CONFIG_FILE_MODE)
        return cfg


# --------------------------------------------------------------------------- changes


def _linked_accounts(doc: CommentedMap) -> CommentedSeq:
    seq = doc.get("linked_accounts")
    if seq is None or (isinstance(seq, list) and not seq):
        # absent or `[]`: a fresh block-style list reads best once it has entries
        fresh = CommentedSeq()
        if "linked_accounts" in doc:
            doc["linked_accounts"] = fresh
        else:
            doc.insert(len(doc), "linked_accounts", fresh)
        return fresh
    if not isinstance(seq, CommentedSeq):
        raise EditRefused("linked_accounts is not a list")
    return seq


def _block(value: Any) -> Any:
    """Plain dicts/lists as ruamel block-style nodes (empty ones stay flow: ``{}``)."""
    if isinstance(value, Mapping):
        m = CommentedMap()
        for k, v in value.items():
            m[k] = _block(v)
        if not value:
            m.fa.set_flow_style()
        return m
    if isinstance(value, list | tuple):
        s = CommentedSeq([_block(v) for v in value])
        if all(not isinstance(v, Mapping | list | tuple) for v in value):
            s.fa.set_flow_style()  # short scalar lists on one line: [cash, stocks]
        return s
    return value


def account_ids(doc: CommentedMap) -> list[str]:
    seq = doc.get("linked_accounts") or []
    return [str(a.get("id")) for a in seq if isinstance(a, Mapping)]


def add_account(account: Mapping[str, Any]) -> Callable[[CommentedMap], None]:
    """A change appending ``account`` (refused if its id exists by now)."""

    def change(doc: CommentedMap) -> None:
        if account["id"] in account_ids(doc):
            raise EditRefused(f"a linked account '{account['id']}' already exists")
        _linked_accounts(doc).append(_block(account))

    return change


def _find(doc: CommentedMap, account_id: str) -> tuple[CommentedSeq, int]:
    seq = doc.get("linked_accounts") or CommentedSeq()
    for i, a in enumerate(seq):
        if isinstance(a, Mapping) and a.get("id") == account_id:
            return seq, i
    known = ", ".join(sorted(account_ids(doc))) or "none"
    raise EditRefused(f"no linked account '{account_id}' (known: {known})")


def remove_account(account_id: str) -> Callable[[CommentedMap], None]:
    def change(doc: CommentedMap) -> None:
        seq, i = _find(doc, account_id)
        del seq[i]

    return change


def set_account_fields(account_id: str, **fields: Any) -> Callable[[CommentedMap], None]:
    """A change setting fields of one linked account (e.g. ``frozen=True``)."""

    def change(doc: CommentedMap) -> None:
        seq, i = _find(doc, account_id)
        for key, value in fields.items():
            seq[i][key] = _block(value)

    return change
