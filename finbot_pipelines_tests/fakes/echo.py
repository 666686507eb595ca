"""What a careless upstream sends back: the request it received, in every form.

The fakes' echo modes (off by default) answer errors that quote the request
(method, path and query, headers, body) verbatim, as JSON, URL-encoded, and as
an HTML page, the way real servers, gateways and debug pages do. The canary
test (``test_secrets_canary.py``) runs the pipeline against them.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, quote_plus


def echo_record(
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: str = "",
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """The request as a JSON-able object: verbatim, and in the encoded forms a server
    writes (URL-encoded, percent-encoded in lower case, base64), plus ``extra`` texts
    (e.g. a credential the server knows, quoted back)."""
    texts = [body, *extra, *headers.values()]
    return {
        "request": f"{method} {path}",
        "headers": dict(headers),
        "body": body,
        "encoded": [quote_plus(t) for t in texts],
        "encoded_lower": [_lower_escapes(quote(t, safe="")) for t in texts],
        "double_encoded": [quote(quote(t, safe=""), safe="") for t in texts],
        "base64": [base64.b64encode(t.encode()).decode() for t in texts],
        "unicode_escaped": json.dumps(texts, ensure_ascii=True).replace("+", "\\u002b"),
        "extra": list(extra),
    }


def echo_message(method: str, path: str, headers: Mapping[str, str], body: str = "") -> str:
    """One line quoting the request, URL-encoded (what an error message of a gateway says)."""
    quoted = " ".join(f"{k}={quote_plus(v)}" for k, v in headers.items())
    return f"could not process {method} {path} with {quoted} body={quote_plus(body)}"


def echo_page(
    method: str, path: str, headers: Mapping[str, str], body: str = "", extra: Sequence[str] = ()
) -> str:
    """An HTML debug page echoing the request: HTML-escaped (also as character
    references), URL-encoded, and in a form field's value."""
    texts = [body, *extra, *headers.values()]
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in headers.items()
    )
    refs = "".join(f"<li>{_char_refs(t)}</li>" for t in texts)
    encoded = "".join(f"<li>{html.escape(quote(t, safe=''))}</li>" for t in texts)
    return (
        "<!doctype html><html><head><title>502 Bad Gateway</title></head><body>"
        "<h1>Bad Gateway</h1>"
        f"<p>The upstream failed while serving {html.escape(method)} {html.escape(path)}</p>"
        f"<table>{rows}</table><pre>{html.escape(body)}</pre><ul>{refs}</ul><ul>{encoded}</ul>"
        f'<form><input name="echo" value="{html.escape(body, quote=True)}"></form>'
        "</body></html>"
    )


def _lower_escapes(text: str) -> str:
    """``text`` with its percent escapes in lower case (``%2b``), as some servers write them."""
    return re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)


def _char_refs(text: str) -> str:
    """``text`` with every character but letters and digits as a character reference."""
    return "".join(c if c.isalnum() else f"&#x{ord(c):x};" for c in text)
