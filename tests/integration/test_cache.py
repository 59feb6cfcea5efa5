"""The read-through cache against real Redis (and in process) over either database, including a Redis outage."""

import time
import uuid

import pytest
import redis
import sqlalchemy as sa

from shared.cache import Cache, _MemoryBackend
from shared.config import load_settings
from shared.db import Database
from launch.catalog import credentials
from shared.web import create_service_app
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration


# A scratch table outside the migrated schema, standing in for any row the platform caches.
THINGS = sa.Table("cache_probe_things", sa.MetaData(),
                  sa.Column("id", sa.Uuid, primary_key=True), sa.Column("name", sa.Text, nullable=False))


@pytest.fixture(scope="module")
def db(database_url):
    database = Database(database_url)
    THINGS.create(database.engine)
    yield database
    THINGS.drop(database.engine)
    database.dispose()


@pytest.fixture
def prefix(settings_overrides, servers):
    """A key prefix of this test's own, removed from the shared Redis afterwards."""
    prefix = f"{settings_overrides['cache_prefix']}{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis.Redis.from_url(servers["REDIS"])
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


def make_cache(settings_overrides, prefix, **overrides) -> Cache:
    settings = load_settings({**settings_overrides, "cache_prefix": prefix, **overrides}, environ={})
    return Cache.from_settings(settings, retry_after=0.3)


@pytest.fixture(params=["redis", "in-process"])
def cache(request, settings_overrides, prefix) -> Cache:
    redis_url = settings_overrides["redis_url"] if request.param == "redis" else ""
    return make_cache(settings_overrides, prefix, redis_url=redis_url)


class Things:
    """Reads and writes of the scratch table, each in its own transaction like separate requests."""

    def __init__(self, db: Database):
        self.db = db
        self.loads = 0

    def add(self, name: str) -> uuid.UUID:
        thing_id = uuid.uuid4()
        with self.db.transaction() as session:
            session.execute(sa.insert(THINGS).values(id=thing_id, name=name))
        return thing_id

    def load(self, thing_id: uuid.UUID) -> dict | None:
        self.loads += 1
        with self.db.transaction() as session:
            name = session.scalar(sa.select(THINGS.c.name).where(THINGS.c.id == thing_id))
        return None if name is None else {"id": str(thing_id), "name": name}

    def rename(self, cache: Cache, thing_id: uuid.UUID, name: str) -> None:
        with self.db.transaction() as session:
            session.execute(sa.update(THINGS).where(THINGS.c.id == thing_id).values(name=name))
            cache.invalidate_on_commit(session, f"thing:{thing_id}")


@pytest.fixture
def things(db) -> Things:
    return Things(db)


def read(cache: Cache, things: Things, thing_id: uuid.UUID) -> dict | None:
    return cache.get_or_load(f"thing:{thing_id}", lambda: things.load(thing_id))


def test_a_second_read_is_served_from_the_cache(cache, things):
    thing_id = things.add("first")
    assert read(cache, things, thing_id) == {"id": str(thing_id), "name": "first"}
    assert read(cache, things, thing_id) == {"id": str(thing_id), "name": "first"}
    assert things.loads == 1


def test_a_read_after_an_update_never_returns_the_old_value(cache, things):
    thing_id = things.add("before")
    assert read(cache, things, thing_id)["name"] == "before"
    things.rename(cache, thing_id, "after")
    assert read(cache, things, thing_id)["name"] == "after"


def test_the_cached_value_stays_until_the_update_commits(cache, things):
    thing_id = things.add("before")
    read(cache, things, thing_id)
    with things.db.transaction() as session:
        session.execute(sa.update(THINGS).where(THINGS.c.id == thing_id).values(name="after"))
        cache.invalidate_on_commit(session, f"thing:{thing_id}")
        assert read(cache, things, thing_id)["name"] == "before"
    assert read(cache, things, thing_id)["name"] == "after"


def test_the_keys_of_a_rolled_back_transaction_are_never_invalidated(cache, things):
    thing_id = things.add("cached")
    read(cache, things, thing_id)
    session = things.db.sessions()
    try:
        session.execute(sa.update(THINGS).where(THINGS.c.id == thing_id).values(name="undone"))
        cache.invalidate_on_commit(session, f"thing:{thing_id}")
        session.rollback()
        cache.invalidate_on_commit(session, "thing:another")
        session.commit()  # the session's next transaction invalidates only its own keys
    finally:
        session.close()
    assert read(cache, things, thing_id)["name"] == "cached"
    assert things.loads == 1


def test_the_keys_of_one_transaction_are_invalidated_in_one_call(cache, things, monkeypatch):
    calls = []
    invalidate = cache._backend.invalidate
    monkeypatch.setattr(cache._backend, "invalidate", lambda pairs: (calls.append(pairs), invalidate(pairs)))
    with things.db.transaction() as session:
        cache.invalidate_on_commit(session, "thing:1")
        cache.invalidate_on_commit(session, "thing:2", "thing:3")
        assert calls == []
    assert [sorted(value_key.rsplit(":", 1)[1] for value_key, _ in pairs) for pairs in calls] == [["1", "2", "3"]]


def test_a_value_loaded_just_before_a_commit_is_not_cached_after_the_invalidation(cache, things):
    thing_id = things.add("before")

    def load_then_lose_the_race():
        stale = things.load(thing_id)
        things.rename(cache, thing_id, "after")  # another request commits while this one is loading
        return stale

    assert cache.get_or_load(f"thing:{thing_id}", load_then_lose_the_race)["name"] == "before"
    assert read(cache, things, thing_id)["name"] == "after"


def test_missing_rows_are_not_cached(cache, things):
    thing_id = uuid.uuid4()
    assert read(cache, things, thing_id) is None
    assert read(cache, things, thing_id) is None
    assert things.loads == 2


def test_the_in_process_cache_stays_correct_when_it_forgets_old_invalidations(things):
    cache = Cache(_MemoryBackend(max_entries=2), prefix="t:", default_ttl=60)
    thing_id = things.add("before")

    def load_while_many_keys_change():
        stale = things.load(thing_id)
        things.rename(cache, thing_id, "after")
        cache.invalidate("other:1", "other:2", "other:3")  # pushes this key's invalidation out of memory
        return stale

    cache.get_or_load(f"thing:{thing_id}", load_while_many_keys_change)
    assert read(cache, things, thing_id)["name"] == "after"


@pytest.fixture
def redis_proxy(servers):
    proxy = TcpProxy.for_url(servers["REDIS"])
    yield proxy
    proxy.cut()


@pytest.fixture
def cut_cache(settings_overrides, prefix, redis_proxy) -> Cache:
    """A Redis cache reached through a proxy the test can cut."""
    return make_cache(settings_overrides, prefix, redis_url=redis_proxy.url_for(settings_overrides["redis_url"]))


def test_with_redis_cut_reads_still_work_and_stay_fast(cut_cache, things, redis_proxy):
    thing_id = things.add("cached")
    read(cut_cache, things, thing_id)
    redis_proxy.cut()
    started = time.perf_counter()
    results = [read(cut_cache, things, thing_id) for _ in range(100)]
    elapsed = time.perf_counter() - started
    assert all(result["name"] == "cached" for result in results)
    # 100 database reads take well under a second; a Redis timeout or retry per read would not.
    assert elapsed < 1.0
    with pytest.raises(redis.RedisError):
        cut_cache.ping()


def test_an_invalidation_made_during_an_outage_is_honoured_when_redis_returns(
        cut_cache, things, redis_proxy, settings_overrides, prefix):
    thing_id = things.add("before")
    key = f"thing:{thing_id}"
    assert read(cut_cache, things, thing_id)["name"] == "before"
    redis_proxy.cut()
    things.rename(cut_cache, thing_id, "after")  # the invalidation cannot reach Redis
    assert read(cut_cache, things, thing_id)["name"] == "after"
    # Redis itself still holds the old value: nothing has told it otherwise yet.
    direct = make_cache(settings_overrides, prefix)
    assert direct.get_or_load(key, lambda: pytest.fail("the old value should still be in Redis"))["name"] == "before"

    redis_proxy.restore()
    deadline = time.monotonic() + 5
    while True:
        assert read(cut_cache, things, thing_id)["name"] == "after"
        # Peek as another process would; a loader returning None caches nothing.
        elsewhere = direct.get_or_load(key, lambda: None)
        if elsewhere is None or elsewhere["name"] == "after":
            break
        assert time.monotonic() < deadline, "the invalidation never reached Redis after it came back"
        time.sleep(0.05)
    assert direct.get_or_load(key, lambda: things.load(thing_id))["name"] == "after"


def test_readiness_reports_the_cache_and_stays_ready_when_redis_is_unreachable(settings_overrides, redis_proxy):
    settings = {**settings_overrides, "redis_url": redis_proxy.url_for(settings_overrides["redis_url"])}
    client = create_service_app("cache-probe", [], settings, credentials=credentials()).test_client()
    assert client.get("/readyz").json["dependencies"]["cache"] == "ok"
    redis_proxy.cut()
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["status"] == "ready"
    assert ready.json["dependencies"]["cache"].startswith("unavailable")


def test_the_embedded_default_has_no_cache_readiness_check(settings_overrides):
    client = create_service_app("cache-probe", [], {**settings_overrides, "redis_url": ""},
                                credentials=credentials()).test_client()
    assert "cache" not in client.get("/readyz").json["dependencies"]
