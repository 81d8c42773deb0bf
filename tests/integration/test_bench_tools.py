"""The benchmark scripts that need only Redis run end to end on the test Redis (their figures
are docs/BENCHMARKS.md's, never asserted here)."""

from __future__ import annotations

import pytest
import redis

from tests.bench import store_primitives

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
