"""How the store calls its resolve script (``redis.script_command``, ``script_call.py``): as a
function library where Redis takes one, with ``EVALSHA`` where it does not, and the same
answers either way (the differential test runs both against the reference model)."""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.integration.test_redis_store import TENANT, ev, person, run
from worker.errors import PermanentStoreError, TransientStoreError
from worker.identity.config import IdentityConfig
from worker.identity.model import IdentityEvent
from worker.store.lua_loader import LIBRARY_PREFIX, load_library
from worker.store.redis_store import RedisIdentityStore
from worker.store.script_call import ScriptCommand

pytestmark = pytest.mark.integration


def _major(client: redis.Redis) -> int:
    return int(str(client.info("server")["redis_version"]).split(".")[0])


@pytest.fixture
def functions(client: redis.Redis) -> None:
    if _major(client) < 7:
        pytest.skip("Redis functions need Redis 7")


def _story() -> list[list[IdentityEvent]]:
    """Merges, property operations and a refused merge, in batches."""
    return [
        [ev("track", "anon-1", set={"plan": "free"}), ev("track", "anon-2")],
        [ev("identify", "user-1", other="anon-1", set={"email": "a@example.com"})],
        [ev("alias", "user-1", other="anon-2"), ev("track", "user-1", set_once={"first": 1})],
        [ev("identify", "user-2", other="user-1"), ev("track", "anon-2", unset=("plan",))],
    ]


@pytest.mark.usefixtures("functions")
def test_auto_calls_the_function_library_and_answers_as_evalsha(
    client: redis.Redis, prefix: str
) -> None:
    library = load_library("resolve_batch.lua")
    fcall = RedisIdentityStore(client, IdentityConfig(), prefix=prefix + "-f")
    evalsha = RedisIdentityStore(
        client, IdentityConfig(), prefix=prefix + "-e", script_command=ScriptCommand.EVALSHA
    )
    story = _story()
    assert [run(fcall, *batch) for batch in story] == [run(evalsha, *batch) for batch in story]
    assert person(fcall, "anon-2") == person(evalsha, "anon-2")
    assert fcall.script_call().command == b"FCALL"
    assert fcall.script_call().target == library.function.encode()
    assert evalsha.script_call().command == b"EVALSHA"
    listed = client.function_list(library=library.name)
    names = [dict(zip(entry[::2], entry[1::2], strict=True))[b"library_name"] for entry in listed]
    assert names == [library.name.encode()]
    assert library.name.startswith(LIBRARY_PREFIX)


@pytest.mark.usefixtures("functions")
def test_a_store_started_while_the_library_is_loaded_reuses_it(
    client: redis.Redis, prefix: str
) -> None:
    """The second worker's ``FUNCTION LOAD`` finds the library its code names: not an error."""
    first = RedisIdentityStore(client, IdentityConfig(), prefix=prefix)
    second = RedisIdentityStore(
        client, IdentityConfig(), prefix=prefix, script_command=ScriptCommand.FCALL
    )
    run(first, ev("track", "a"))
    assert run(second, ev("alias", "a", other="b"))[0].merged
    assert second.script_call().command == b"FCALL"


@pytest.fixture
def user_without_functions(client: redis.Redis, redis_url: str) -> Iterator[redis.Redis]:
    """A client of an ACL user who may run scripts but not ``FUNCTION LOAD``."""
    name = f"iw-nofn-{uuid.uuid4().hex[:8]}"
    try:
        client.acl_setuser(
            name,
            enabled=True,
            passwords=["+secret"],
            keys=["*"],
            channels=["*"],
            commands=["+@all", "-function"],
        )
    except redis.exceptions.ResponseError as exc:  # a managed Redis may refuse ACL changes
        pytest.skip(f"cannot make an ACL user here: {exc}")
    limited = redis.Redis.from_url(redis_url, username=name, password="secret")
    yield limited
    limited.close()
    client.acl_deluser(name)


@pytest.mark.usefixtures("functions")
def test_auto_falls_back_to_evalsha_when_function_load_is_refused(
    user_without_functions: redis.Redis, prefix: str
) -> None:
    store = RedisIdentityStore(user_without_functions, IdentityConfig(), prefix=prefix)
    assert run(store, ev("identify", "u", other="anon"))[0].merged
    assert store.script_call().command == b"EVALSHA"
    assert person(store, "anon").distinct_ids == frozenset({"u", "anon"})


@pytest.mark.usefixtures("functions")
def test_fcall_refused_is_a_permanent_error_that_says_so(
    user_without_functions: redis.Redis, prefix: str
) -> None:
    store = RedisIdentityStore(
        user_without_functions,
        IdentityConfig(),
        prefix=prefix,
        script_command=ScriptCommand.FCALL,
    )
    with pytest.raises(PermanentStoreError, match="refused FUNCTION LOAD"):
        run(store, ev("track", "a"))
    assert store.person_for(TENANT, "a") is None


def test_an_unreachable_redis_is_not_taken_for_one_without_functions() -> None:
    """A connection failure while choosing is transient: no fallback to EVALSHA is kept."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: nobody listens
    client = redis.Redis(port=port, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    store = RedisIdentityStore(client, IdentityConfig(), retry_attempts=1, retry_base_delay_s=0.001)
    for _ in range(2):
        with pytest.raises(TransientStoreError):
            store.script_call()
    with pytest.raises(TransientStoreError):
        run(store, ev("track", "a"))
    client.close()


@pytest.mark.usefixtures("functions")
def test_a_full_redis_is_not_taken_for_one_without_functions(
    client: redis.Redis, prefix: str
) -> None:
    """``FUNCTION LOAD`` refused for ``maxmemory`` (deny-oom): the error is raised and no
    fallback kept; once Redis takes writes again, the library is loaded and called."""
    config = client.config_get("maxmemory*")
    if config.get("maxmemory-policy") != "noeviction":
        pytest.skip("would evict keys: the test Redis is not noeviction")
    with contextlib.suppress(redis.exceptions.ResponseError):  # not loaded yet
        client.function_delete(load_library("resolve_batch.lua").name)
    store = RedisIdentityStore(client, IdentityConfig(), prefix=prefix)
    client.config_set("maxmemory", 1)
    try:
        with pytest.raises(PermanentStoreError, match="maxmemory"):
            run(store, ev("track", "a"))
    finally:
        client.config_set("maxmemory", str(config["maxmemory"]))
    assert run(store, ev("alias", "a", other="b"))[0].merged
    assert store.script_call().command == b"FCALL"
