"""Fault injection for the training tests, through the loop's generic ``epoch_start_hook`` (nothing test-only
lives in ``components/``).

    fit(cfg, ..., epoch_start_hook=kill_rank0_at([{"epoch": 2, "marker": "/tmp/x/kill2"}]))

The hook runs inside the Ray Train workers, which import it by name: a local cluster's workers have the
driver's working directory (the repository root, where pytest runs) on their ``sys.path``.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

HOOK = "tests.harness.faults:kill_once"


def kill_rank0_at(faults: list[dict]) -> dict:
    """The ``epoch_start_hook`` spec that makes rank 0 die hard at the start of each epoch in ``faults``
    (``[{"epoch": 1-based epoch, "marker": path, "after_s": seconds (default 6)}, ...]``), once each."""
    return {"fn": HOOK, "kwargs": {"faults": [dict(f) for f in faults]}}


def kill_once(epoch: int, rank: int, faults: list[dict]) -> None:
    """Rank 0 exits with ``os._exit(1)`` (a hard worker death, as from an OOM kill or a lost node) at the start
    of a listed epoch, ``after_s`` seconds after the previous report, unless that fault's ``marker`` file
    exists; it writes the marker first, so the restarted worker group does not die there again."""
    for f in faults:
        if rank == 0 and f.get("epoch") == epoch and not os.path.exists(f["marker"]):
            Path(f["marker"]).write_text(f"killed at the start of epoch {epoch}\n")
            # The controller collects reports by polling (every 2 s): give it time to register the last
            # checkpoint, as a real failure minutes into an epoch would.
            time.sleep(float(f.get("after_s", 6.0)))
            os._exit(1)


def kill_ray_session(driver_output: str) -> None:
    """Kill what a SIGKILLed driver leaves of its local Ray, found by the session folder it printed
    ("Ray logs: /tmp/ray/session_.../logs"): a real crash leaves these processes behind too."""
    import re
    import subprocess

    m = re.search(r"Ray logs: (\S+)/logs", driver_output)
    if m:
        subprocess.run(["pkill", "-9", "-f", m.group(1).rsplit("/", 1)[-1]], check=False)
