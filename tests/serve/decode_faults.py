"""Faults run inside a decoder worker (``DecodePool.call("tests.serve.decode_faults:NAME", ...)``): not tests."""
from __future__ import annotations

import os
import time


def exit_now(code: int = 3) -> None:
    """The worker dies mid-request, as a segfaulting decoder would (no reply, no cleanup)."""
    os._exit(code)


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def alloc(mb: int) -> int:
    """Allocate ``mb`` MiB and touch it: fails with MemoryError once past the worker's RLIMIT_AS."""
    buf = bytearray(mb << 20)
    return len(buf) >> 20


def pid() -> int:
    return os.getpid()
