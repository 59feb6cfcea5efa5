"""Throttling: failed logins per user name and per client address, and requests per principal.

Counted with `limits`, the rate-limit engine flask-limiter is built on, in Redis when the platform
has one (every worker and service then shares the counts) and in process memory under `make run`.
flask-limiter's own request hooks do not fit these two checks: a login counts only its failures and
is keyed by the user name in its body, and a principal is known only once its credential has been
checked. Its hooks would also run on every request, where these checks cost nothing when allowed
but a counter's increment.

A storage that cannot answer lets requests through (logged): an outage of the cache must not lock
every user out.
"""

from __future__ import annotations

import logging
import math
import time
import unicodedata

from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from shared.config import ConfigError, Settings
from shared.errors import TooManyRequests

log = logging.getLogger(__name__)


def _limit(variable: str, text: str) -> RateLimitItem | None:
    if not text.strip():
        return None
    try:
        return parse(text)
    except ValueError as exc:
        raise ConfigError(f"{variable}: {exc} (write e.g. '10 per 15 minutes')") from exc


def login_name(username: str) -> str:
    """The name a login is counted under: BOB, Bob and a full-width Ｂｏｂ all count against bob."""
    return unicodedata.normalize("NFKC", username).casefold()


class Throttle:
    """Admits or refuses (429, with the seconds to wait) logins and requests, by their counts so far."""

    def __init__(self, settings: Settings):
        self._per_user = _limit("MODELYARD_LOGIN_FAILURES_PER_USER", settings.login_failures_per_user)
        self._per_address = _limit("MODELYARD_LOGIN_FAILURES_PER_ADDRESS", settings.login_failures_per_address)
        self._per_principal = _limit("MODELYARD_REQUESTS_PER_PRINCIPAL", settings.requests_per_principal)
        # Keys carry the settings' prefix, as the cache's do: test runs sharing one Redis never meet.
        self._prefix = settings.cache_prefix + "throttle"
        uri = settings.redis_url or "memory://"
        self._counter = FixedWindowRateLimiter(storage_from_string(uri, wrap_exceptions=True))

    def admit_login(self, *, username: str, address: str | None) -> None:
        """Refuse a login while its user name or client address has too many recent failures."""
        for limit, key in self._login_keys(username, address):
            self._refuse_if_spent(limit, key, f"Too many failed logins for this {key[0]}; wait before trying again.",
                                  count=False)

    def count_failed_login(self, *, username: str, address: str | None) -> None:
        for limit, key in self._login_keys(username, address):
            try:
                self._counter.hit(limit, self._prefix, *key)
            except StorageError:
                log.warning("could not count a failed login; the throttle's storage is unavailable", exc_info=True)

    def admit_request(self, *, principal: str) -> None:
        """Count a request of an authenticated user (or their keys); refuse it past the per-principal limit."""
        if self._per_principal is not None:
            self._refuse_if_spent(self._per_principal, ("principal", principal),
                                  "Too many requests from this user; slow down.", count=True)

    def _login_keys(self, username: str, address: str | None):
        if self._per_user is not None:
            yield self._per_user, ("user name", login_name(username))
        if self._per_address is not None and address:
            yield self._per_address, ("address", address)

    def _refuse_if_spent(self, limit: RateLimitItem, key: tuple[str, str], detail: str, *, count: bool) -> None:
        try:
            admitted = (self._counter.hit if count else self._counter.test)(limit, self._prefix, *key)
            if admitted:
                return
            reset_at = self._counter.get_window_stats(limit, self._prefix, *key).reset_time
        except StorageError:
            log.warning("the throttle's storage is unavailable; admitting the request", exc_info=True)
            return
        raise TooManyRequests(detail, retry_after=max(1, math.ceil(reset_at - time.time())))
