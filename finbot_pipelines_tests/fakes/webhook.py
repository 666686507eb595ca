"""A local webhook on 127.0.0.1 that records what notifications post to it (apprise's
``json://`` URLs post ``{title, message, type}``)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookReceiver:
    """Records each POST's body (as text) and path; answers ``status`` (200 by default)."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.paths: list[str] = []
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                outer.paths.append(self.path)
                outer.bodies.append(self.rfile.read(length).decode("utf-8", "replace"))
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def posts(self) -> list[dict[str, Any]]:
        """The bodies posted, as JSON objects."""
        return [json.loads(b) for b in self.bodies]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
