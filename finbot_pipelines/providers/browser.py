"""Shared Playwright plumbing for the providers that scrape a web portal.

One :func:`portal_session` per fetch: it launches Chromium (headless, the binary
named by the fetch context, ``ctx.browser``: the ingest fills it), applies the
fetch's timeout to every navigation and every wait, maps Playwright's exceptions
to the typed provider errors, takes a screenshot when the fetch fails, and
always closes the browser. It never retries: retries and backoff belong to
:mod:`finbot_pipelines.providers.fetching`. Like every provider module, it reads
nothing from the environment and nothing of finbot's configuration.

Error mapping
-------------
- Playwright ``TimeoutError`` (a navigation or a wait ran out of time while the
  page was still loading something) -> :class:`FetchTimeout`.
- ``net::ERR_CONNECTION_REFUSED`` and the other network-level failures, a
  crashed browser -> :class:`TransientError`.
- HTTP 5xx -> :class:`TransientError`, HTTP 429 -> :class:`RateLimited`, both
  with the answer's ``Retry-After`` (:func:`.http.error_for_status`): for a page
  opened with :meth:`PortalSession.goto`, and for the page's own requests (an
  XHR login, a keypad) when the element the scraper waits for never shows up.
- An element the scraper needs is absent although the page has finished
  loading (no request in flight) -> :class:`ProviderPayloadError` saying the
  page layout changed and naming the element: never a guessed value.
- Chromium missing or unable to start -> :class:`ProviderError` (not retried).

Screenshots
-----------
On any failure after a page was rendered (authentication failures included: the
page shows why, e.g. a locked account or a demanded strong authentication), a
full-page PNG goes to ``<debug_dir>/<provider>-<linked account>-<UTC time>.png``
(the provider's ``debug_dir`` option, else the context's ``ctx.debug_dir``; no
screenshot when neither is set; the linked account is ``ctx.linked_account_id``)
and the error message ends with its path. Network failures (nothing rendered)
get none. Before the shot, every password field is cleared, every input holding
a credential is cleared, the focus is blurred and every credential value (4+
characters) found in the page text is masked. Only the newest :data:`KEEP_SCREENSHOTS` files per
(provider, linked account) are kept.

Secrets
-------
Steps that type or click a credential are marked ``sensitive``: their errors
never carry Playwright's own message (which names the locator being waited
for). Every error message leaving a session goes through :class:`.http.Masker`
(a portal may echo a credential). No credential is ever logged.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Locator, Page, Request, Response, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from finbot_pipelines.providers.base import DEFAULT_BROWSER, FetchContext
from finbot_pipelines.providers.contract import (
    FetchTimeout,
    ProviderError,
    ProviderPayloadError,
    TransientError,
)
from finbot_pipelines.providers.http import Masker, encoded_forms, error_for_status

logger = logging.getLogger(__name__)

LAUNCH_ARGS: tuple[str, ...] = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
#: screenshots kept per (provider, linked account); older ones are deleted
KEEP_SCREENSHOTS = 20
#: the part of an error message kept before the screenshot path is appended
_MESSAGE_BUDGET = 300
#: credential values shorter than this are not scrubbed from the page (false hits)
_MIN_SCRUB_LEN = 4
_SCRUB_TIMEOUT_MS = 3_000

# Chromium network errors worth a retry (the portal or the network is down).
_TRANSIENT_NET_ERRORS = (
    "ERR_CONNECTION_REFUSED",
    "ERR_CONNECTION_RESET",
    "ERR_CONNECTION_CLOSED",
    "ERR_CONNECTION_ABORTED",
    "ERR_CONNECTION_FAILED",
    "ERR_CONNECTION_TIMED_OUT",
    "ERR_TIMED_OUT",
    "ERR_NAME_NOT_RESOLVED",
    "ERR_NAME_RESOLUTION_FAILED",
    "ERR_INTERNET_DISCONNECTED",
    "ERR_ADDRESS_UNREACHABLE",
    "ERR_NETWORK_CHANGED",
    "ERR_NETWORK_ACCESS_DENIED",
    "ERR_EMPTY_RESPONSE",
    "ERR_PROXY_CONNECTION_FAILED",
    "ERR_TUNNEL_CONNECTION_FAILED",
    "ERR_SSL_PROTOCOL_ERROR",
    "ERR_HTTP2_PROTOCOL_ERROR",
    "ERR_QUIC_PROTOCOL_ERROR",
    "ERR_ABORTED",
)
_NET_ERROR_RE = re.compile(r"net::(ERR_[A-Z0-9_]+)")
_BROWSER_GONE = ("Target page, context or browser has been closed", "crashed", "Target closed")
_SAFE_NAME_RE = re.compile(r"[^A-Za-z0-9_.-]+")
#: the requests a page waits on (not images, fonts, media, beacons or websockets)
_PAGE_RESOURCE_TYPES = frozenset({"document", "xhr", "fetch", "script", "stylesheet"})
#: the requests whose 429/5xx explains a page that never showed what was expected
_DATA_RESOURCE_TYPES = frozenset({"document", "xhr", "fetch"})


def chromium_executable() -> str:
    """The default Chromium binary (a fetch drives ``ctx.browser``, which the ingest
    fills from ``$FINBOT_CHROMIUM``; this module reads no environment)."""
    return DEFAULT_BROWSER


# --------------------------------------------------------------------------- errors


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:200]


def _with_suffix(exc: ProviderError, suffix: str) -> None:
    msg = str(exc)
    if len(msg) > _MESSAGE_BUDGET:
        msg = msg[: _MESSAGE_BUDGET - 1] + "…"
    exc.args = (f"{msg}{suffix}",)


def map_playwright_error(
    exc: PlaywrightError, prefix: str, step: str, timeout_s: float, sensitive: bool = False
) -> ProviderError:
    """The typed provider error for a Playwright exception raised while ``step``."""
    text = str(exc)
    if isinstance(exc, PlaywrightTimeoutError):
        return FetchTimeout(f"{prefix}: no answer within {timeout_s:g} s while {step}")
    m = _NET_ERROR_RE.search(text)
    if m:
        code = m.group(1)
        if code in _TRANSIENT_NET_ERRORS:
            return TransientError(f"{prefix}: portal unreachable while {step} ({code})")
        return ProviderError(f"{prefix}: browser refused the portal while {step} ({code})")
    if any(marker in text for marker in _BROWSER_GONE):
        return TransientError(f"{prefix}: the browser closed or crashed while {step}")
    detail = "" if sensitive else f": {_first_line(text)}"
    return ProviderError(f"{prefix}: browser error while {step}{detail}")


@dataclass(frozen=True)
class FailedAnswer:
    """A 429 or 5xx answer to one of the page's own requests (an XHR, a keypad)."""

    status: int
    path: str
    headers: Mapping[str, str]


# --------------------------------------------------------------------------- session


@dataclass
class PortalSession:
    """One browser page plus the helpers a scraper needs. Use through :func:`portal_session`."""

    page: Page
    provider_id: str
    timeout_s: float
    _inflight: dict[Request, float] = field(default_factory=dict)
    _failed: list[FailedAnswer] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return self.provider_id

    # -- tracking of in-flight requests (tells a slow page from a changed one)

    def _track(self) -> None:
        inflight = self._inflight
        failed = self._failed

        def started(request: Request) -> None:
            if request.resource_type in _PAGE_RESOURCE_TYPES:
                inflight[request] = time.monotonic()

        def ended(request: Request) -> None:
            inflight.pop(request, None)

        def answered(response: Response) -> None:
            status = response.status
            if (status == 429 or status >= 500) and (
                response.request.resource_type in _DATA_RESOURCE_TYPES
            ):
                path = urlsplit(response.url).path or response.url
                failed.append(FailedAnswer(status, path, dict(response.headers)))

        self.page.on("request", started)
        self.page.on("requestfinished", ended)
        self.page.on("requestfailed", ended)
        self.page.on("response", answered)

    def page_settled(self) -> bool:
        """The document has loaded and nothing it depends on is still loading.

        Requests in flight for over twice the timeout are taken for background
        streams (long polling, analytics), not for the page being waited for."""
        horizon = time.monotonic() - 2 * self.timeout_s
        if any(t > horizon for t in list(self._inflight.values())):
            return False
        try:
            state = self.page.evaluate("document.readyState")
        except PlaywrightError:
            return False
        return state == "complete"

    def failed_answer_error(self) -> ProviderError | None:
        """The typed error (with its Retry-After) for the newest 429/5xx answer one of
        the page's requests received, if any: why an expected element never showed up."""
        if not self._failed:
            return None
        last = self._failed[-1]
        return error_for_status(
            last.status, f"{self.prefix}: the request for {last.path}", headers=last.headers
        )

    def _not_found(self, element: str) -> ProviderError:
        """``element`` did not show up in time: a failed request, a changed layout, or a
        page still loading."""
        failed = self.failed_answer_error()
        if failed is not None:
            return failed
        if self.page_settled():
            return self.layout_changed(element)
        return FetchTimeout(
            f"{self.prefix}: no answer within {self.timeout_s:g} s while waiting for {element}"
        )

    # -- steps

    @contextmanager
    def step(self, what: str, *, sensitive: bool = False) -> Iterator[None]:
        """Map Playwright errors raised inside to typed errors mentioning ``what``.

        ``sensitive`` steps (typing or clicking a credential) never repeat
        Playwright's message."""
        logger.debug("%s: %s", self.prefix, what)
        try:
            yield
        except PlaywrightError as exc:
            raise map_playwright_error(
                exc, self.prefix, what, self.timeout_s, sensitive=sensitive
            ) from None

    def layout_changed(self, element: str, detail: str = "") -> ProviderPayloadError:
        where = urlsplit(self.page.url).path or self.page.url
        extra = f" ({detail})" if detail else ""
        return ProviderPayloadError(
            f"{self.prefix}: the page layout changed: {element} not found on {where}{extra}"
        )

    def goto(self, url: str, what: str) -> Response | None:
        """Open ``url``: HTTP 429 -> RateLimited, 5xx -> TransientError (both with the
        page's Retry-After), other 4xx -> page layout/address changed."""
        with self.step(f"opening {what}"):
            response = self.page.goto(url, wait_until="load")
        if response is not None:
            status = response.status
            path = urlsplit(url).path
            if status >= 500 or status == 429:
                raise error_for_status(
                    status, f"{self.prefix}: {what} ({path})", headers=response.headers
                )
            if status >= 400:
                raise ProviderPayloadError(
                    f"{self.prefix}: {what} answered HTTP {status} ({path}): the portal address "
                    "or its layout changed (check the options)"
                )
        return response

    def expect(self, locator: Locator, element: str, *, visible: bool = False) -> Locator:
        """Wait for ``locator`` (its first match); absent on a settled page -> layout changed."""
        try:
            locator.first.wait_for(state="visible" if visible else "attached")
        except PlaywrightTimeoutError:
            raise self._not_found(element) from None
        except PlaywrightError as exc:
            raise map_playwright_error(
                exc, self.prefix, f"waiting for {element}", self.timeout_s
            ) from None
        return locator

    def expect_any(self, candidates: Mapping[str, Locator], what: str) -> str:
        """Wait until one of ``candidates`` is visible; return its key (first visible wins)."""
        keys = list(candidates)
        combined = candidates[keys[0]]
        for key in keys[1:]:
            combined = combined.or_(candidates[key])
        try:
            combined.first.wait_for(state="visible")
        except PlaywrightTimeoutError:
            raise self._not_found(what) from None
        except PlaywrightError as exc:
            raise map_playwright_error(
                exc, self.prefix, f"waiting for {what}", self.timeout_s
            ) from None
        with self.step(f"reading {what}"):
            for key in keys:
                if candidates[key].first.is_visible():
                    return key
        raise self.layout_changed(what)  # it vanished between the wait and the check

    def text(self, locator: Locator, element: str) -> str:
        """The inner text of ``locator`` (first match), stripped; absent -> layout changed."""
        self.expect(locator, element)
        with self.step(f"reading {element}"):
            return locator.first.inner_text().strip()


# --------------------------------------------------------------------------- screenshots


_SCRUB_JS = """
(_root, secrets) => {
  const hit = (s) => typeof s === 'string' && secrets.some((x) => s.includes(x));
  for (const el of document.querySelectorAll('input, textarea')) {
    if ((el.type || '').toLowerCase() === 'password' || hit(el.value)) {
      el.value = '';
      el.setAttribute('value', '');
    }
  }
  if (document.activeElement && document.activeElement.blur) document.activeElement.blur();
  if (!document.body || !secrets.length) return;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const mask = (t) => {
    for (const s of secrets) t = t.split(s).join('\u2022\u2022\u2022\u2022');
    return t;
  };
  let node;
  while ((node = walker.nextNode())) {
    if (hit(node.nodeValue)) node.nodeValue = mask(node.nodeValue);
  }
  for (const el of document.querySelectorAll('*')) {
    for (const attr of Array.from(el.attributes)) {
      if (hit(attr.value)) el.setAttribute(attr.name, mask(attr.value));
    }
  }
}
"""


def scrub_page(page: Page, secrets: Sequence[str]) -> bool:
    """Clear password fields and credential values from every frame of ``page``.

    Returns False when the main frame could not be scrubbed (e.g. it is in the
    middle of a navigation); each frame gets at most :data:`_SCRUB_TIMEOUT_MS`."""
    values = _scrub_values(secrets)
    ok = True
    for frame in page.frames:
        try:
            frame.locator("html").evaluate(_SCRUB_JS, values, timeout=_SCRUB_TIMEOUT_MS)
        except PlaywrightError:
            logger.debug("could not scrub a frame before the screenshot")
            if frame == page.main_frame:
                ok = False
    return ok


def _scrub_values(secrets: Sequence[str]) -> list[str]:
    """Every credential value, and its encoded forms (a portal may echo a form field
    URL-encoded, or a header in base64)."""
    values = {f for s in secrets if len(s) >= _MIN_SCRUB_LEN for f in encoded_forms(s)}
    return sorted(values, key=len, reverse=True)


def _take_screenshot(page: Page, path: Path, secrets: Sequence[str] = ()) -> None:
    """Write the PNG (a separate function so tests can observe the page at that moment).

    Whatever the scrub missed (a page that navigated in between) is masked at
    capture time: every input, and every element showing a credential value."""
    masks = [page.locator("input:not([type=hidden]), textarea")]
    masks += [page.get_by_text(value) for value in _scrub_values(secrets)]
    page.screenshot(path=str(path), full_page=True, timeout=10_000, mask=masks)


def _account_part(linked_account_id: str) -> str:
    return _SAFE_NAME_RE.sub("_", linked_account_id)[:64] or "unknown"


def screenshot_path(debug_dir: Path, provider_id: str, linked_account_id: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return debug_dir / f"{provider_id}-{_account_part(linked_account_id)}-{stamp}.png"


def _prune(debug_dir: Path, provider_id: str, linked_account_id: str) -> None:
    shots = sorted(debug_dir.glob(f"{provider_id}-{_account_part(linked_account_id)}-*.png"))
    for old in shots[:-KEEP_SCREENSHOTS]:
        with suppress(OSError):
            old.unlink()


def save_failure_screenshot(
    page: Page,
    debug_dir: Path,
    provider_id: str,
    linked_account_id: str,
    secrets: Sequence[str],
) -> Path | None:
    """Scrub the page and write its screenshot; None when nothing worth a shot is shown."""
    url = page.url
    if not url or url == "about:blank" or url.startswith("chrome-error://"):
        return None
    try:
        debug_dir.mkdir(parents=True, exist_ok=True)
        path = screenshot_path(debug_dir, provider_id, linked_account_id)
        scrub_page(page, secrets)
        _take_screenshot(page, path, secrets)
        _prune(debug_dir, provider_id, linked_account_id)
    except (PlaywrightError, OSError) as exc:
        logger.warning("%s: could not save a failure screenshot: %s", provider_id, type(exc))
        return None
    return path


def debug_folder(option: str | None, ctx: FetchContext) -> Path | None:
    """Where failure screenshots go: the ``debug_dir`` option, else ``ctx.debug_dir``."""
    if option:
        return Path(option).expanduser()
    return ctx.debug_dir


# --------------------------------------------------------------------------- entry point


@contextmanager
def portal_session(
    provider_id: str,
    ctx: FetchContext,
    *,
    timeout_s: float,
    secrets: Sequence[str],
    debug_dir: str | None = None,
    locale: str = "en-GB",
) -> Iterator[PortalSession]:
    """A fresh headless Chromium page (``ctx.browser``) for one fetch; typed errors,
    masked messages, a screenshot on failure.

    ``secrets`` are the credential values: scrubbed from the page before a
    screenshot and masked in every error message. ``debug_dir`` is the
    provider's option (overrides ``ctx.debug_dir``)."""
    mask = Masker(secrets)
    folder = debug_folder(debug_dir, ctx)
    account = ctx.linked_account_id or "unknown"
    executable = ctx.browser
    if not Path(executable).exists():
        raise ProviderError(
            f"{provider_id}: Chromium not found at {executable} (install it, e.g. "
            "apt-get install chromium, or point FINBOT_CHROMIUM at it)"
        )
    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(
                executable_path=executable, headless=True, args=list(LAUNCH_ARGS)
            )
        except PlaywrightError as exc:
            raise ProviderError(
                f"{provider_id}: could not start Chromium at {executable}: "
                f"{mask(_first_line(str(exc)))}"
            ) from None
        try:
            context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})
            context.set_default_timeout(timeout_s * 1000)
            context.set_default_navigation_timeout(timeout_s * 1000)
            page = context.new_page()
            session = PortalSession(page, provider_id, timeout_s)
            session._track()
            try:
                yield session
            except PlaywrightError as exc:  # outside any step
                error = map_playwright_error(exc, provider_id, "scraping the portal", timeout_s)
                _attach_screenshot(error, page, folder, provider_id, account, secrets, mask)
                raise error from None
            except ProviderError as error:
                _attach_screenshot(error, page, folder, provider_id, account, secrets, mask)
                raise
        finally:
            try:
                browser.close()
            except PlaywrightError:
                logger.debug("%s: browser already closed", provider_id)


def _attach_screenshot(
    error: ProviderError,
    page: Page,
    debug_dir: Path | None,
    provider_id: str,
    account: str,
    secrets: Sequence[str],
    mask: Masker,
) -> None:
    """Mask credential values in ``error`` (a portal may echo them), then add the
    screenshot (when there is a folder for it)."""
    error.args = (mask(str(error)),)
    if debug_dir is None:
        return
    path = save_failure_screenshot(page, debug_dir, provider_id, account, secrets)
    if path is not None:
        _with_suffix(error, f" (screenshot: {path})")
