"""The benchmark scripts that need only Redis run end to end on the test Redis (their figures
are docs/BENCHMARKS.md's, never asserted here)."""

from __future__ import annotations

import re

import pytest
import redis

from tests.bench import engine_cost, store_primitives

pytestmark = pytest.mark.integration


def test_store_primitives_measures_and_leaves_nothing_behind(
    client: redis.Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if int(str(client.info("server")["redis_version"]).split(".")[0]) < 7:
        pytest.skip("the script calls Redis functions (Redis 7+)")
    assert store_primitives.main(["--redis-url", redis_url, "--batches", "1", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert "## Redis per op of the drain mix (" in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "µs" not in line]
    assert len(rows) == 4, out  # the script, the reads, the write, both
    for row in rows:
        assert float(row.rsplit("|", 2)[1]) > 0, row
    assert list(client.scan_iter(match="sp-*", count=1000)) == []
    assert list(client.scan_iter(match="lp-cap-*", count=1000)) == []
    listed = client.function_list(library=store_primitives.WRITE_LIBRARY)
    assert listed == []


def test_store_primitives_times_the_worker_side_records(
    client: redis.Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if int(str(client.info("server")["redis_version"]).split(".")[0]) < 7:
        pytest.skip("the script calls Redis functions (Redis 7+)")
    argv = ["--redis-url", redis_url, "--batches", "1", "--warmup", "1", "--records"]
    assert store_primitives.main(argv) == 0
    out = capsys.readouterr().out
    head = next(line for line in out.splitlines() if line.startswith("## The worker's side"))
    found = re.search(r"on the ([\d,]+) records the calls left \(([\d,]+) with", head)
    assert found is not None, head
    # the drain mix's persons, read back from the calls' ids hash, some with properties
    assert int(found[1].replace(",", "")) > int(found[2].replace(",", "")) > 0, head
    rows = out.split("## The worker's side", 1)[1].splitlines()
    timed = [line for line in rows if line.startswith("| ") and "µs" not in line]
    assert len(timed) == 5, out
    for row in timed:
        assert float(row.rsplit("|", 2)[1]) > 0, row
    assert list(client.scan_iter(match="sp-*", count=1000)) == []


def test_engine_cost_compares_the_engine_with_the_script_and_leaves_nothing_behind(
    client: redis.Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if int(str(client.info("server")["redis_version"]).split(".")[0]) < 7:
        pytest.skip("the script calls Redis functions (Redis 7+)")
    argv = ["--redis-url", redis_url, "--batches", "1", "--warmup", "1"]
    assert engine_cost.main(argv) == 0
    out = capsys.readouterr().out
    assert "every reply entry the same" in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "µs" not in line]
    assert len(rows) == 5, out  # the engine, the script, the reads, the commit, both
    for row in rows:
        assert float(row.rsplit("|", 2)[1]) > 0, row
    assert list(client.scan_iter(match="ec-*", count=1000)) == []
    assert list(client.scan_iter(match="lp-cap-*", count=1000)) == []
