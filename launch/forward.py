"""`make run`'s web process hands predictions to the serving process it runs beside it.

The embedded default has one address and no gateway, yet predictions are CPU-bound: served in the web
process they would hold its interpreter lock against every other request. So `make run` runs serving
in a process of its own (on a Unix socket in the var dir) and the web process forwards to it what
the serving manifest's gateway locations match, byte for byte, before any of its own Flask hooks
run: authentication, body limits and errors are serving's own, as behind nginx.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
from typing import Any, Callable, Iterable

from launch import catalog
from shared.errors import problem

# Hop-by-hop headers (RFC 9110 7.6.1) stay with their connection; the rest pass both ways.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade", "host", "content-length"})
TIMEOUT_SECONDS = 330  # past the longest deployment_config.timeout (300 s)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=TIMEOUT_SECONDS)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT_SECONDS)
        self.sock.connect(self._path)


def _matcher(service: str) -> re.Pattern:
    """One pattern for the paths the gateway sends to `service` (its manifest's locations)."""
    parts = []
    for location in catalog.service(service).locations:
        if location.match == "regex":
            parts.append(f"(?:{location.path})")
        elif location.match == "exact":
            parts.append(f"(?:{re.escape(location.path)}$)")
        else:
            parts.append(f"(?:{re.escape(location.path)})")
    return re.compile("|".join(parts))


class Forward:
    """WSGI: requests for `service` go to its process at `socket_path`; everything else to `app`."""

    def __init__(self, app: Callable, service: str, socket_path: str):
        self.app, self._socket = app, socket_path
        self._paths = _matcher(service)
        self._connections = threading.local()  # one keep-alive connection per web thread

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if not self._paths.match(environ.get("PATH_INFO", "")):
            return self.app(environ, start_response)
        try:
            status, headers, body = self._send(environ)
        except OSError:
            return problem(503, "Serving unavailable", "The serving process is not answering; it may be starting.",
                           slug="serving-unavailable")(environ, start_response)
        start_response(status, headers)
        return [body]

    def _send(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        data = environ["wsgi.input"].read(length) if length else environ["wsgi.input"].read()
        target = environ.get("PATH_INFO", "") + (f"?{environ['QUERY_STRING']}" if environ.get("QUERY_STRING") else "")
        headers = {key[5:].replace("_", "-").title(): value for key, value in environ.items()
                   if key.startswith("HTTP_") and key[5:].replace("_", "-").lower() not in HOP_BY_HOP}
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        for attempt in range(2):
            connection = getattr(self._connections, "open", None) or _UnixConnection(self._socket)
            self._connections.open = connection
            try:
                connection.request(environ["REQUEST_METHOD"], target, body=data, headers=headers)
                response = connection.getresponse()
                body = response.read()
                break
            except (http.client.HTTPException, OSError):
                # A kept-alive connection the serving process closed meanwhile: once more on a new one.
                connection.close()
                self._connections.open = None
                if attempt:
                    raise OSError("the serving process did not answer") from None
        kept = [(name, value) for name, value in response.getheaders() if name.lower() not in HOP_BY_HOP]
        return f"{response.status} {response.reason}", kept + [("Content-Length", str(len(body)))], body
