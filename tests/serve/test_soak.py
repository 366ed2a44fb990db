"""The soak benchmark's fast variant (benchmarks/serve_soak.py --minutes 0.5): mixed valid, bad and hostile
traffic at concurrency 8 against two replicas, one of them killed mid-run and the champion alias moved.

It runs in a subprocess with a Ray cluster and Serve instance of its own (this folder's `service` fixture holds
the Serve singleton of the test session's cluster). ~2 min on 2 busy cores, most of it set-up."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.quiet  # its rates and timeouts assume the cores are its own (bin/test)
def test_soak_with_a_killed_replica_and_a_moved_alias(tmp_path):
    out = tmp_path / "soak.json"
    proc = subprocess.run([sys.executable, "benchmarks/serve_soak.py", "--minutes", "0.5", "--json", str(out)],
                          capture_output=True, text=True, timeout=900)
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0 and out.exists(), tail
    res = json.loads(out.read_text())
    assert res["requests"] >= 40, tail
    assert res["valid"] >= 15 and res["valid_lost"] == 0, res["lost_detail"]
    assert res["app_500"] == 0 and res["status_5xx_final"] == 0, tail
    assert res["unexpected"] == 0, res["unexpected_detail"]
    # Every retry was a request in flight on the killed replica (at most one per client thread), and it succeeded.
    assert res["retried"] == res["retried_near_kill"] <= res["concurrency"], res["retried_first"]
    assert res["retried_ok"] == res["retried"]
    assert res["kill_at_s"] is not None and len(res["decoders_per_replica_end"]) == res["replicas"]
    assert all(n == 2 for n in res["decoders_per_replica_end"].values())  # the replacement has its decoders
    assert res["temp_files_left"] == 0 and res["temp_files_after_shutdown"] == 0, res["temp_file_names"]
    # Half a minute still includes allocator warm-up (22 % once under a loaded full suite); a leak of one
    # decoded upload per request would be far above this. The 10 % target is the 5-minute run's (docs/serving.md).
    assert res["rss_growth"] and max(res["rss_growth"].values()) <= 0.35, res["rss_growth"]
    assert res["versions_after_move"] and set(res["versions_after_move"]) == {res["v2"]}
    # Hostile inputs were answered with their own 4xx (none slipped through as a 200 or a 5xx).
    for kind in ("png_bomb", "jpeg_bomb", "res_bomb", "chunked_over_cap", "thin_1000x1"):
        assert set(res["by_kind"].get(kind, {})) <= {"413", "422"}, (kind, res["by_kind"][kind])
