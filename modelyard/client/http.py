"""One HTTP session to the gateway: credentials, problem+json errors, retries of safe requests, paging."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any, Callable, Iterator

import requests

from modelyard.client.errors import from_problem

API = "/api/v1"
# Requests that may be sent twice without doing twice: the methods HTTP calls idempotent, and a POST
# carrying an Idempotency-Key (the server answers a repeat with the first answer; shared/idempotency.py).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRIED_STATUSES = frozenset({502, 503, 504})
PAGE_SIZE = 500  # the server's largest page: fewest round trips for an iterator that reads every item


class Transport:
    """Sends requests under `base_url`/api/v1 with the client's credentials.

    Failures of the path to the server (a reset connection, a 503 while the database reconnects) are
    retried with exponential backoff and jitter, but only for requests that are safe to repeat; a 4xx
    is the server's answer and is raised at once as its typed exception.
    """

    def __init__(self, base_url: str, *, token: str | None = None, api_key: str | None = None,
                 username: str | None = None, password: str | None = None, timeout: float = 30.0,
                 retries: int = 4, backoff: float = 0.25):
        self.base_url = base_url.rstrip("/")
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "modelyard-client"
        self._login = (username, password) if username and password else None
        self.token = token  # the bearer token in use, if any: `modelyard login` keeps it
        if api_key:
            self.session.headers["X-API-Key"] = api_key
        elif token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        elif self._login:
            self.log_in()

    def log_in(self) -> str:
        """Exchange the username and password for a bearer token, used from now on; the token."""
        username, password = self._login
        answer = self.request("POST", "/auth/token", json={"username": username, "password": password},
                              authenticate=False)
        self.token = answer.json()["access_token"]
        self.session.headers["Authorization"] = f"Bearer {self.token}"
        return self.token

    def request(self, method: str, path: str, *, params: dict | None = None, json: Any = None,
                files: Callable[[], dict] | None = None, data: dict | None = None, idempotent_post: bool = False,
                stream: bool = False, authenticate: bool = True) -> requests.Response:
        """The answer to `method path` (under /api/v1), raising the typed error of a 4xx or 5xx.

        `files` is a function returning the multipart files, called per attempt: a retried upload
        reads its file again from the start. `idempotent_post` sends a fresh Idempotency-Key, the same
        on every attempt, which makes the POST safe to retry.
        """
        headers = {}
        if idempotent_post:
            headers["Idempotency-Key"] = str(uuid.uuid4())
        retry = method in IDEMPOTENT_METHODS or idempotent_post
        url = self.base_url + API + path

        def send() -> requests.Response:
            parts = files() if files else None
            try:
                return self.session.request(method, url, params=_clean(params), json=json, files=parts, data=data,
                                            headers=headers, timeout=self.timeout, stream=stream)
            finally:
                for _, handle in (parts or {}).values():
                    handle.close()

        relogged = False
        for attempt in range(self.retries + 1):
            last = attempt == self.retries or not retry
            try:
                answer = send()
            except (requests.ConnectionError, requests.Timeout):
                if last:
                    raise
                self._sleep(attempt, None)
                continue
            if answer.status_code in RETRIED_STATUSES and not last:
                self._sleep(attempt, answer.headers.get("Retry-After"))
                continue
            if answer.status_code == 401 and authenticate and self._login and not relogged:
                # An expired bearer token: log in again once, then send the same request.
                relogged = True
                self.log_in()
                answer = send()
            if answer.status_code >= 400:
                raise from_problem(answer.status_code, _json_or_none(answer), answer.reason)
            return answer
        raise AssertionError("unreachable: the last attempt returns or raises")

    def get(self, path: str, **params) -> Any:
        return self.request("GET", path, params=params).json()

    def post(self, path: str, body: Any = None, *, idempotent_post: bool = False) -> Any:
        return self.request("POST", path, json=body, idempotent_post=idempotent_post).json()

    def pages(self, path: str, **params) -> Iterator[dict]:
        """Every item of a list, page after page (`{items, next_cursor}`), fetched as the caller reads."""
        params = {"limit": PAGE_SIZE, **params}
        while True:
            page = self.get(path, **params)
            yield from page["items"]
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    def close(self) -> None:
        self.session.close()

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff * 2 ** attempt * (0.5 + random.random())
        if retry_after and retry_after.isdigit():
            delay = max(delay, min(float(retry_after), 30.0))
        time.sleep(delay)


def _clean(params: dict | None) -> dict | None:
    """Query parameters without the ones left at None, booleans as the server reads them."""
    if not params:
        return None
    return {key: (str(value).lower() if isinstance(value, bool) else value)
            for key, value in params.items() if value is not None}


def _json_or_none(answer: requests.Response) -> Any:
    try:
        return answer.json()
    except ValueError:
        return None


