"""The ASGI application: `create_app(paths)` for uvicorn (`finbot web`).

It reads only the published marts and its own users file, so it never blocks a run; it
binds 127.0.0.1 unless told otherwise (see the README for TLS behind a reverse proxy).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from finbot_pipelines import __version__, visual
from finbot_pipelines.config.paths import HomePaths
from finbot_pipelines.web import api, linking, pages
from finbot_pipelines.web.cache import AnswerCache
from finbot_pipelines.web.data import NotPublished
from finbot_pipelines.web.pages import STATIC_DIR
from finbot_pipelines.web.state import WebState

#: No outside request of any kind: scripts, styles, images and fonts come from the app.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def create_app(paths: HomePaths) -> FastAPI:
    app = FastAPI(
        title="finbot",
        version=__version__,
        summary="The household's wealth: net worth, holdings, accounts and transactions",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # Swagger UI would load scripts from a CDN: the app stays offline
        redoc_url=None,
        # FastAPI's OpenTelemetry instrumentation stays off whatever the environment says
        # (FASTAPI_OTEL_AUTO_CONFIGURE, a global provider): request paths, ids and errors
        # of a household's finances are not exported anywhere
        telemetry={
            "tracing": False,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
            "auto_configure": False,
        },
    )
    app.state.finbot = WebState.open(paths)

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        h = response.headers
        h.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("Referrer-Policy", "no-referrer")
        h.setdefault("X-Frame-Options", "DENY")
        if not request.url.path.startswith("/static/"):
            h.setdefault("Cache-Control", "no-store")
        return response

    # outermost: a kept answer is replayed with the headers it was first sent with
    app.add_middleware(AnswerCache, state=lambda: app.state.finbot)

    @app.exception_handler(NotPublished)
    async def not_published(request: Request, exc: NotPublished) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": str(exc)}, status_code=503)
        return pages.not_published_page(request, exc)

    @app.get("/charts.css", include_in_schema=False)
    def chart_css() -> Response:
        """The charts' rules, from the visual language itself (the report inlines them)."""
        return Response(
            visual.CHART_CSS,
            media_type="text/css",
            headers={"Cache-Control": "public, max-age=3600"},
        )

    app.include_router(api.router)
    app.include_router(linking.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
