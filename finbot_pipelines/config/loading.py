"""Finding, loading and saving ``$FINBOT_HOME/finbot.yaml``.

Every problem with the file becomes one :class:`ConfigError` whose message
names the file, the line, the field path and what was expected, e.g.::

    /x/finbot.yaml, line 14, linked_accounts[1].profile: unknown profile 'carol'
    (known: alice, bruno)

(on one line).
"""

from __future__ import annotations

import contextlib
import difflib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from finbot_pipelines.config.schema import FieldPathError, FinbotConfig, format_path

CONFIG_FILE_NAME = "finbot.yaml"
#: A household's config is a few kilobytes; a file this big is a mistake.
MAX_CONFIG_BYTES = 4_000_000
_INIT_HINT = "run `finbot init` to create one, or `./finbotctl demo` for a demo household"


def finbot_home() -> Path:
    """``$FINBOT_HOME`` if set (absolute), else ``<checkout>/.finbot``."""
    env = os.environ.get("FINBOT_HOME", "").strip()
    if env:
        return Path(env).expanduser().resolve()
    # finbot_pipelines/config/loading.py -> parents[2] is the checkout
    return Path(__file__).resolve().parents[2] / ".finbot"


def config_path(home: Path | None = None) -> Path:
    return (home if home is not None else finbot_home()) / CONFIG_FILE_NAME


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class ConfigIssue:
    field: str  # e.g. "linked_accounts[1].profile"; "" for the whole file
    line: int | None  # 1-based
    message: str
    column: int | None = None  # 1-based, for YAML syntax errors


class ConfigError(Exception):
    """``finbot.yaml`` is missing or invalid. ``str()`` is ready to show a user:
    one issue per line, each naming the file, line and field."""

    def __init__(self, path: Path, issues: list[ConfigIssue]) -> None:
        self.path = path
        self.issues = issues
        super().__init__("\n".join(self._format(i) for i in issues))

    def _format(self, issue: ConfigIssue) -> str:
        parts = [str(self.path)]
        if issue.line is not None:
            parts.append(f"line {issue.line}")
        if issue.column is not None:
            parts.append(f"column {issue.column}")
        head = ", ".join(parts)
        return (
            f"{head}, {issue.field}: {issue.message}" if issue.field else f"{head}: {issue.message}"
        )

    @property
    def line(self) -> int | None:
        return self.issues[0].line if self.issues else None

    @property
    def field(self) -> str:
        return self.issues[0].field if self.issues else ""


def _error(path: Path, message: str, field: str = "", line: int | None = None) -> ConfigError:
    return ConfigError(path, [ConfigIssue(field, line, message)])


# --------------------------------------------------------------------------- load


def load_config(path: Path | None = None) -> FinbotConfig:
    """Read and validate ``finbot.yaml`` (default: ``config_path()``). Writes nothing."""
    path = path if path is not None else config_path()
    if not path.exists():
        raise _error(path, f"no config file; {_INIT_HINT}")
    if not path.is_file():
        raise _error(path, "is not a file")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise _error(
            path,
            f"the file is {size:,} bytes: a finbot config is at most {MAX_CONFIG_BYTES:,} "
            "(is it the right file?)",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _error(path, f"not valid UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise _error(path, f"cannot read: {exc.strerror}") from None
    return parse_config(text, path)


def parse_config(text: str, path: Path) -> FinbotConfig:
    """Validate YAML ``text``; ``path`` is only used in messages."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is not None:
            alias_issue = _check_expansion(root)
            if alias_issue is not None:
                raise ConfigError(path, [alias_issue])
        data = yaml.safe_load(text)
    except RecursionError:
        raise _error(path, "invalid YAML: nested too deeply") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = str(exc.problem or exc.context or "syntax error")
        if exc.context and exc.problem:
            started = ""
            if exc.context_mark is not None and exc.context_mark is not exc.problem_mark:
                cm = exc.context_mark
                started = f" started at line {cm.line + 1}, column {cm.column + 1}"
            what += f" ({exc.context}{started})"
        raise ConfigError(
            path,
            [
                ConfigIssue(
                    "",
                    mark.line + 1 if mark else None,
                    f"invalid YAML: {what}",
                    column=mark.column + 1 if mark else None,
                )
            ],
        ) from None
    except yaml.YAMLError as exc:
        raise _error(path, f"invalid YAML: {exc}") from None

    if root is None or data is None:
        raise _error(
            path,
            "the file is empty; expected a mapping with at least a `profiles:` list "
            f"({_INIT_HINT})",
            line=1,
        )
    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        raise _error(
            path,
            "expected a mapping of settings at the top level (with at least `profiles:`), "
            f"got {_yaml_kind(root)}",
            line=root.start_mark.line + 1,
        )
    duplicate = _find_duplicate_key(root, ())
    if duplicate is not None:
        raise ConfigError(path, [duplicate])
    try:
        return FinbotConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(path, [_issue_from(err, root) for err in exc.errors()]) from None


#: At most this many values once every YAML alias is expanded: a real config holds a few
#: thousand; a "billion laughs" alias bomb holds billions and would hang every command.
MAX_EXPANDED_VALUES = 100_000


class _TooBig(Exception):
    def __init__(self, issue: ConfigIssue) -> None:
        self.issue = issue


def _check_expansion(root: yaml.Node) -> ConfigIssue | None:
    """An issue when aliases expand the document beyond :data:`MAX_EXPANDED_VALUES`
    values, or an alias refers to a node containing it (a cycle). Each node is sized
    once (aliases share their node), so this takes milliseconds even on a bomb."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node, loc: tuple[str | int, ...]) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise _TooBig(
                ConfigIssue(
                    format_path(loc),
                    node.start_mark.line + 1,
                    "a YAML alias refers to a value that contains it (a recursive alias): "
                    "write the value out instead",
                )
            )
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                name = k.value if isinstance(k, yaml.ScalarNode) else "?"
                total += size(k, loc) + size(v, (*loc, name))
        elif isinstance(node, yaml.SequenceNode):
            for i, child in enumerate(node.value):
                total += size(child, (*loc, i))
        open_nodes.discard(key)
        if total > MAX_EXPANDED_VALUES:
            raise _TooBig(
                ConfigIssue(
                    format_path(loc),
                    node.start_mark.line + 1,
                    f"YAML aliases expand this value to more than {MAX_EXPANDED_VALUES:,} "
                    "values (an alias bomb?): refused; write the values out or use fewer "
                    "aliases",
                )
            )
        sizes[key] = total
        return total

    try:
        size(root, ())
    except _TooBig as exc:
        return exc.issue
    return None


def _yaml_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    return f"the scalar {node.value!r}"


def _find_duplicate_key(node: yaml.Node, loc: tuple[str | int, ...]) -> ConfigIssue | None:
    if isinstance(node, yaml.MappingNode):
        first: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None:
                if key in first:
                    return ConfigIssue(
                        format_path((*loc, key)),
                        key_node.start_mark.line + 1,
                        f"duplicate key {key!r} (first defined at line {first[key]})",
                    )
                first[key] = key_node.start_mark.line + 1
            found = _find_duplicate_key(value_node, (*loc, key if key is not None else "?"))
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, child in enumerate(node.value):
            found = _find_duplicate_key(child, (*loc, i))
            if found:
                return found
    return None


# --------------------------------------------------------------------------- error mapping


def _node_at(root: yaml.Node, loc: tuple[str | int, ...], key_line: bool) -> yaml.Node:
    """The deepest YAML node along ``loc``. With ``key_line``, the key node of the
    last mapping step (for errors about a key itself)."""
    node = root
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(part):
                    node = key_node if (last and key_line) else value_node
                    break
            else:
                return node
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if 0 <= part < len(node.value):
                node = node.value[part]
            else:
                return node
        else:
            return node
    return node


def _type_at(loc: tuple[str | int, ...]) -> Any:
    """The schema type found by following ``loc`` from :class:`FinbotConfig`
    (``None`` when ``loc`` leaves the typed part, e.g. inside ``options``)."""
    current: Any = FinbotConfig
    for part in loc:
        if isinstance(part, str) and isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part)
            if field is None:
                return None
            current = field.annotation
        elif isinstance(part, int) and get_origin(current) is list:
            current = get_args(current)[0]
        else:
            return None
    return current


def _field_at(loc: tuple[str | int, ...]) -> FieldInfo | None:
    if not loc or not isinstance(loc[-1], str):
        return None
    owner = _type_at(loc[:-1])
    if isinstance(owner, type) and issubclass(owner, BaseModel):
        return owner.model_fields.get(loc[-1])
    return None


def _short(value: object) -> str | None:
    if isinstance(value, str | int | float | bool) or value is None:
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return None


def _num(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _describe(err: Any, loc: tuple[str | int, ...]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = _short(err.get("input"))
    got_text = f", got {got}" if got is not None else ""
    if kind == "missing":
        field = _field_at(loc)
        desc = field.description if field is not None else None
        return "required field is missing" + (f": expected {desc}" if desc else "")
    if kind == "extra_forbidden":
        owner = _type_at(loc[:-1])
        key = loc[-1]
        if isinstance(owner, type) and issubclass(owner, BaseModel):
            allowed = ", ".join(owner.model_fields)
            text = f"unknown key {key!r} (allowed: {allowed})"
            close = difflib.get_close_matches(str(key), list(owner.model_fields), n=1)
            return text + (f"; did you mean {close[0]!r}?" if close else "")
        return f"unknown key {key!r}"
    simple = {
        "bool_type": "expected true or false",
        "bool_parsing": "expected true or false",
        "int_type": "expected a whole number",
        "int_parsing": "expected a whole number",
        "int_from_float": "expected a whole number",
        "float_type": "expected a number",
        "float_parsing": "expected a number",
        "finite_number": "expected a finite number",
        "string_type": "expected a string",
        "list_type": "expected a list",
        "dict_type": "expected a mapping",
        "model_type": "expected a mapping",
        "model_attributes_type": "expected a mapping",
    }
    if kind in simple:
        return simple[kind] + got_text
    if kind == "greater_than":
        return f"expected a number greater than {_num(ctx.get('gt'))}{got_text}"
    if kind == "greater_than_equal":
        return f"expected a number >= {_num(ctx.get('ge'))}{got_text}"
    if kind == "less_than":
        return f"expected a number less than {_num(ctx.get('lt'))}{got_text}"
    if kind == "less_than_equal":
        return f"expected a number <= {_num(ctx.get('le'))}{got_text}"
    if kind == "too_short":
        n = ctx.get("min_length")
        return f"expected at least {n} item{'s' if n != 1 else ''}, got {ctx.get('actual_length')}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}{got_text}"
    if kind == "value_error":
        exc = ctx.get("error")
        return str(exc) if exc is not None else str(err["msg"]).removeprefix("Value error, ")
    msg = str(err["msg"])
    if msg.startswith("Input should be "):
        return "expected " + msg.removeprefix("Input should be ") + got_text
    return msg


def _issue_from(err: Any, root: yaml.Node) -> ConfigIssue:
    loc: tuple[str | int, ...] = tuple(err["loc"])
    exc = (err.get("ctx") or {}).get("error")
    if err["type"] == "value_error" and isinstance(exc, FieldPathError):
        loc = (*loc, *exc.path)
        message = exc.message
    else:
        message = _describe(err, loc)
    key_line = err["type"] == "extra_forbidden"
    node = _node_at(root, loc, key_line)
    return ConfigIssue(format_path(loc), node.start_mark.line + 1, message)


# --------------------------------------------------------------------------- save


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same
    directory, created with ``mode`` (never wider), fsynced, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # make the rename durable where possible
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _sorted_dicts(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_dicts(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list):
        return [_sorted_dicts(v) for v in value]
    return value


def config_to_yaml(cfg: FinbotConfig) -> str:
    """YAML text for ``cfg``: model keys in schema order, free mappings
    (options, rates) sorted, so the output is stable."""
    data = cfg.model_dump(mode="json")
    data["fx_static_rates"] = _sorted_dicts(data["fx_static_rates"])
    for la in data["linked_accounts"]:
        la["options"] = _sorted_dicts(la["options"])
    header = "# finbot configuration (written by finbot)\n"
    return header + yaml.safe_dump(
        data, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100
    )


def save_config(cfg: FinbotConfig, path: Path) -> None:
    """Write ``cfg`` to ``path`` atomically (mode 0600); ``load_config(path)`` gives it back.

    This writes a whole new file (no comments): commands that change an existing
    config use :func:`finbot_pipelines.config.editing.edit_config` instead."""
    text = config_to_yaml(cfg)
    parse_config(text, path)  # never write a file we could not read back
    atomic_write_bytes(path, text.encode("utf-8"), 0o600)
