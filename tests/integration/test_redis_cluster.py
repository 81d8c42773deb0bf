"""The store on a real Redis Cluster: three redis-server nodes made into one cluster here.

Every script call names keys of one tenant only, which share a hash tag, so each call runs on
the one node that owns the tenant's slot; tenants spread over the nodes.
"""

from __future__ import annotations

import gc
import random
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from worker.app import redis_client
from worker.config import Settings
from worker.identity.config import IdentityConfig
from worker.identity.model import EventKind, IdentityEvent, Outcome
from worker.store.codec import BufferPolicy
from worker.store.commit_plan import RulesMode
from worker.store.keys import TenantKeys
from worker.store.redis_store import RedisIdentityStore
from worker.store.script_call import ScriptCommand

pytestmark = pytest.mark.integration


def _free_ports(n: int) -> list[int]:
    """Ports whose cluster-bus port (port + 10000) is free too, so below 55536."""
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < n:
        port = rng.randrange(20_000, 45_000)
        if port in ports or not all(_free(p) for p in (port, port + 10_000)):
            continue
        ports.append(port)
    return ports


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        pytest.skip("redis-server and redis-cli are needed to build a local cluster")
    ports = _free_ports(3)
    procs = []
    for port in ports:
        directory: Path = tmp_path_factory.mktemp(f"node-{port}")
        procs.append(
            subprocess.Popen(
                [
                    server,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--dir",
                    str(directory),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                stdout=subprocess.DEVNULL,
            )
        )
    try:
        for port in ports:
            _wait_ping(port)
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *[f"127.0.0.1:{p}" for p in ports],
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while (
            "cluster_state:ok"
            not in subprocess.run(
                [cli, "-p", str(ports[0]), "cluster", "info"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("the local cluster did not become ok")
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


def _wait_ping(port: int) -> None:
    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 10
    try:
        while True:
            try:
                client.ping()
                return
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        client.close()


@pytest.mark.parametrize(
    ("command", "called_with", "rules"),
    [
        (ScriptCommand.AUTO, b"EVALSHA", RulesMode.SCRIPT),
        (ScriptCommand.FCALL, b"FCALL", RulesMode.SCRIPT),
        (ScriptCommand.AUTO, b"EVALSHA", RulesMode.WORKER),
    ],
    ids=["auto", "fcall", "rules-in-worker"],
)
def test_the_store_runs_on_a_cluster_with_tenants_on_several_nodes(
    cluster_url: str, command: ScriptCommand, called_with: bytes, rules: RulesMode
) -> None:
    """``auto`` calls the script with EVALSHA on a cluster (redis-py reads its keys itself);
    ``fcall`` loads the library on every primary and calls it there; with the rules in the
    worker, the reads and the commits go to the tenant's node."""
    settings = Settings(redis={"url": cluster_url, "cluster": True})  # type: ignore[arg-type]
    client = redis_client(settings)
    assert isinstance(client, redis.RedisCluster)
    prefix = f"iwc-{command}-{rules}"
    store = RedisIdentityStore(
        client,
        IdentityConfig(),
        prefix=prefix,
        buffer=BufferPolicy(delay_ms=60_000),
        script_command=command,
        rules=rules,
    )
    tenants = [f"team-{i}" for i in range(12)] + ["a:b{c}d%"]
    nodes = set()
    for n, tenant in enumerate(tenants):
        events = [
            IdentityEvent(
                tenant, EventKind.TRACK, "anon", f"00000000-0000-4000-8000-{n:06d}000001", 1000
            ),
            IdentityEvent(
                tenant,
                EventKind.IDENTIFY,
                "user",
                f"00000000-0000-4000-8000-{n:06d}000002",
                2000,
                other_id="anon",
            ),
        ]
        first, second = store.resolve_batch(tenant, events, 0)
        assert second.person_id == first.person_id
        assert second.merged
        person = store.person_for(tenant, "user")
        assert person is not None
        assert person.distinct_ids == {"anon", "user"}
        slot = key_slot(TenantKeys(prefix, tenant).ids.encode())
        nodes.add(client.nodes_manager.get_node_from_slot(slot).name)
    assert len(nodes) >= 2  # the tenants really live on different nodes
    assert store.script_call().command == called_with

    waiting = IdentityEvent(
        "team-0",
        EventKind.TRACK,
        "srv",
        "00000000-0000-4000-8000-00000000aaaa",
        1000,
        buffer_payload=b"{}",
    )
    assert (
        store.resolve_buffered("team-0", [waiting], 1000).resolutions[0].outcome is Outcome.BUFFER
    )
    (released,) = store.release_due("team-0", 61_000, 10)
    store.ack("team-0", [released.entry_id])
    stats = store.buffer_stats("team-0", 61_000)
    assert (stats.events, stats.leased) == (0, 0)
    assert store.buffered_tenants() == ["team-0"]
    assert {p.distinct_ids for p in store.persons("team-3")} == {frozenset({"anon", "user"})}
    counts = store.rules_stats
    if rules is RulesMode.WORKER:  # every call committed, none fell back to the script
        assert counts.commits >= len(tenants) + 2
        assert (counts.stale, counts.script) == (0, 0)
    else:
        assert counts.commits == 0
    client.close()
    # redis-py's cluster client opens a node connection while it loads a script on a node
    # (EVALSHA -> NOSCRIPT -> SCRIPT LOAD) and leaves it to the garbage collector; collect it
    # here, where its ResourceWarning is known and not ours
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
