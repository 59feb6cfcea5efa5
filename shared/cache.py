"""A read-through cache for hot reads: Redis when configured, else a bounded in-process store.

Correctness before speed:
- Writers invalidate after their transaction commits (`invalidate_on_commit`).
- A reader that missed may have loaded a row just before a commit and try to cache it just after
  the invalidation. To stop that, every invalidation bumps the key's generation; a reader notes the
  generation before loading and stores its value only if the generation is still the same. (This
  relies on READ COMMITTED: a load that starts after an invalidation sees the committed row.)
- Redis being down must never fail a read: calls have short timeouts, and after one failure a
  circuit breaker skips Redis for a couple of seconds. Invalidations that could not reach Redis are
  kept and applied before this process uses the cache again; until then it reads straight through.
  (Other processes may still read the old value from Redis until this one next uses the cache,
  and never longer than one TTL.)
Values are stored as JSON in both backends, so the embedded default behaves like production.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Callable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.db import after_commit, transaction_info

log = logging.getLogger(__name__)

# A cache that answers slower than this is worse than no cache; Redis on a LAN answers in < 1 ms.
REDIS_TIMEOUT_SECONDS = 0.25
# How long to skip Redis after a failure, so an outage costs one timeout per window, not per read.
RETRY_AFTER_SECONDS = 2.0
# Generations must outlive any in-flight load by far; a day also bounds keys of deleted things.
GENERATION_TTL_SECONDS = 86_400
MEMORY_MAX_ENTRIES = 10_000

# Store the value only if no invalidation happened since the reader noted the generation.
_SET_IF_GENERATION = """
if (redis.call('GET', KEYS[2]) or '') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""


class _RedisBackend:
    def __init__(self, url: str):
        # One client, one connection pool per process. One immediate retry replaces a pooled
        # connection that died with a Redis restart; more would only stretch an outage.
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 1),
        )
        self._set_if_generation = self.client.register_script(_SET_IF_GENERATION)

    def lookup(self, value_key: str, generation_key: str) -> tuple[bytes | None, str]:
        value, generation = self.client.mget(value_key, generation_key)
        return value, (generation or b"").decode()

    def store(self, value_key: str, generation_key: str, generation: str, payload: str, ttl: int) -> None:
        self._set_if_generation(keys=[value_key, generation_key], args=[generation, payload, ttl])

    def invalidate(self, pairs: list[tuple[str, str]]) -> None:
        pipe = self.client.pipeline(transaction=True)
        for value_key, generation_key in pairs:
            pipe.incr(generation_key)
            pipe.expire(generation_key, GENERATION_TTL_SECONDS)
            pipe.delete(value_key)
        pipe.execute()

    def ping(self) -> None:
        self.client.ping()


class _MemoryBackend:
    """Thread-safe TTL store with LRU eviction, and generations kept as a global invalidation clock.

    Per-key generations would have to be forgotten to stay bounded, and a forgotten one reads as
    "never invalidated". Instead each invalidation stamps the key with the next tick of one clock;
    the oldest stamps are dropped past the bound, raising a floor below which stores are refused.
    """

    def __init__(self, max_entries: int = MEMORY_MAX_ENTRIES):
        self._lock = threading.Lock()
        self._values: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._invalidated_at: OrderedDict[str, int] = OrderedDict()
        self._clock = 0
        self._floor = 0
        self._max = max_entries

    def lookup(self, value_key: str, generation_key: str) -> tuple[str | None, str]:
        with self._lock:
            entry = self._values.get(value_key)
            if entry is not None and entry[0] > time.monotonic():
                self._values.move_to_end(value_key)
                return entry[1], str(self._clock)
            self._values.pop(value_key, None)
            return None, str(self._clock)

    def store(self, value_key: str, generation_key: str, generation: str, payload: str, ttl: int) -> None:
        started = int(generation)
        with self._lock:
            if started < self._floor or self._invalidated_at.get(value_key, 0) > started:
                return
            self._values[value_key] = (time.monotonic() + ttl, payload)
            self._values.move_to_end(value_key)
            while len(self._values) > self._max:
                self._values.popitem(last=False)

    def invalidate(self, pairs: list[tuple[str, str]]) -> None:
        with self._lock:
            for value_key, _ in pairs:
                self._clock += 1
                self._invalidated_at[value_key] = self._clock
                self._invalidated_at.move_to_end(value_key)
                self._values.pop(value_key, None)
            while len(self._invalidated_at) > self._max:
                _, stamp = self._invalidated_at.popitem(last=False)
                self._floor = max(self._floor, stamp)

    def ping(self) -> None:
        """Always reachable."""


@functools.cache
def _process_store() -> _MemoryBackend:
    # One per process, shared by everything in it (the API and the event consumers of `make run`), so
    # an invalidation by one is seen by all; keys are prefixed, so settings still keep caches apart.
    return _MemoryBackend()


class Cache:
    """Read-through cache of JSON-serialisable values, keyed under one prefix."""

    def __init__(self, backend: _RedisBackend | _MemoryBackend, *, prefix: str, default_ttl: int,
                 retry_after: float = RETRY_AFTER_SECONDS):
        self._backend = backend
        self._prefix = prefix
        self._default_ttl = default_ttl
        self._retry_after = retry_after
        self._down_until = 0.0
        # key -> ticket of its latest invalidation; a flush removes only what it actually sent.
        self._pending: dict[str, int] = {}
        self._tickets = 0
        self._pending_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, retry_after: float = RETRY_AFTER_SECONDS) -> "Cache":
        """Redis when `redis_url` is set, else the process's one in-process store."""
        backend = _RedisBackend(settings.redis_url) if settings.redis_url else _process_store()
        return cls(backend, prefix=settings.cache_prefix, default_ttl=settings.cache_ttl_seconds,
                   retry_after=retry_after)

    def _keys(self, key: str) -> tuple[str, str]:
        return f"{self._prefix}v:{key}", f"{self._prefix}g:{key}"

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: redis.RedisError) -> None:
        if self._available():
            log.warning("cache unavailable for %.1fs, reading through: %s", self._retry_after, exc)
        self._down_until = time.monotonic() + self._retry_after

    def get_or_load(self, key: str, loader: Callable[[], Any], ttl: int | None = None) -> Any:
        """The cached value for `key`, else `loader()`'s result, cached unless it is None."""
        if not self._available() or (self._pending and not self._flush_pending()):
            return loader()
        value_key, generation_key = self._keys(key)
        try:
            payload, generation = self._backend.lookup(value_key, generation_key)
        except redis.RedisError as exc:
            self._failed(exc)
            return loader()
        if payload is not None:
            return json.loads(payload)
        value = loader()
        ttl = self._default_ttl if ttl is None else ttl
        if value is not None and ttl > 0:
            try:
                payload = json.dumps(value, separators=(",", ":"))
                self._backend.store(value_key, generation_key, generation, payload, ttl)
            except redis.RedisError as exc:
                self._failed(exc)
        return value

    def invalidate(self, *keys: str) -> None:
        """Forget `keys` now; if the cache is unreachable, forget them as soon as it is back."""
        with self._pending_lock:
            for key in keys:
                self._tickets += 1
                self._pending[key] = self._tickets
        if self._available():
            self._flush_pending()

    def _flush_pending(self) -> bool:
        """Apply remembered invalidations; True when none are left, so the cache may be read."""
        with self._pending_lock:
            sent = dict(self._pending)
        if not sent:
            return True
        try:
            self._backend.invalidate([self._keys(key) for key in sent])
        except redis.RedisError as exc:
            self._failed(exc)
            return False
        with self._pending_lock:
            for key, ticket in sent.items():
                # Invalidated again while this flush was in flight: that one is still owed.
                if self._pending.get(key) == ticket:
                    del self._pending[key]
            return not self._pending

    def invalidate_on_commit(self, session: Session, *keys: str) -> None:
        """Invalidate `keys` once `session`'s current transaction commits (nothing happens before, nor
        ever if it rolls back)."""
        kept = transaction_info(session)
        pending = kept.get(self)
        if pending is None:
            pending = kept[self] = set()
            # One call for all the keys the transaction changed: one round trip to Redis.
            after_commit(session, lambda: self.invalidate(*pending))
        pending.update(keys)

    def ping(self) -> None:
        """Raise if the cache backend cannot be reached (for /readyz)."""
        self._backend.ping()
