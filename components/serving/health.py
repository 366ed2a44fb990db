"""What a replica checks about itself: its thread pools run work, and which replica it is."""
from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Mapping


def _canary() -> None:
    """The no-op task health checks submit to each thread pool: it runs unless the pool is wedged."""


async def pool_problems(pools: Mapping[str, concurrent.futures.Executor], timeout: float) -> list[str]:
    """One line per pool that does not run a no-op task within ``timeout`` seconds (every worker stuck) or is
    shut down; empty when all of them run."""

    async def canary(name: str, pool: concurrent.futures.Executor) -> str | None:
        try:
            future = pool.submit(_canary)
        except RuntimeError:  # shut down
            return f"the {name} pool is shut down"
        try:
            await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except TimeoutError:
            future.cancel()  # not left queued behind the stuck work
            return f"the {name} pool ran no task within {timeout:g} s (wedged)"
        return None

    found = await asyncio.gather(*(canary(name, pool) for name, pool in pools.items()))
    return [p for p in found if p]


def replica_id() -> str | None:
    """Serve's id of the replica this runs in; None outside one (unit use)."""
    try:
        from ray import serve

        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # outside a replica there is no context
        return None


__all__ = ["pool_problems", "replica_id"]
