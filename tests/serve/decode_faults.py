"""Faults run inside a decoder worker: not tests. Pools made with ``DecodePool(..., worker_module=FAULTS)`` start
workers through :func:`worker_main` here, which serves the production ops plus ``call`` (run one of the functions
below); :func:`call` sends it. Production decoders have no such op (``decode_worker.HANDLERS``)."""
from __future__ import annotations

import os
import time


def exit_now(code: int = 3) -> None:
    """The worker dies mid-request, as a segfaulting decoder would (no reply, no cleanup)."""
    os._exit(code)


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def hang_up_later(delay_s: float = 0.2) -> int:
    """After this reply, shut the worker's socket and keep the process alive a while: to the replica, a worker
    that looks alive but is gone (what one killed from outside is for the milliseconds the kernel takes)."""
    import socket
    import threading

    def later() -> None:
        time.sleep(delay_s)
        socket.socket(fileno=os.dup(int(os.environ["EULERNET_DECODE_FD"]))).shutdown(socket.SHUT_RDWR)
        time.sleep(60)  # a non-daemon thread: the process outlives its serving loop

    threading.Thread(target=later).start()
    return os.getpid()


def alloc(mb: int) -> int:
    """Allocate ``mb`` MiB and touch it: fails with MemoryError once past the worker's RLIMIT_AS."""
    buf = bytearray(mb << 20)
    return len(buf) >> 20


def pid() -> int:
    return os.getpid()


def read_environ(pid: int) -> str:
    """Try to read another process's environment from inside the worker: its size, or the error."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return f"read {len(fh.read())} bytes"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def connect(port: int) -> str:
    """Try a TCP connection to 127.0.0.1:port from inside the worker: "connected" or the error."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return "connected"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def _call(req: dict, blob: bytes) -> tuple[dict, bytes]:
    import importlib

    module, _, name = req["target"].partition(":")
    value = getattr(importlib.import_module(module), name)(*req.get("args", []))
    return {"ok": True, "value": value}, b""


def worker_main() -> None:
    from components.serving.decode_worker import HANDLERS
    from components.serving.decode_worker import worker_main as serve

    serve({**HANDLERS, "call": _call})


def call(pool, target: str, *args, deadline_s: float | None = None):
    """Run ``module:function(*args)`` (JSON in, JSON out) in one of ``pool``'s workers; errors as for a decode."""
    head, _ = pool.run({"op": "call", "target": target, "args": list(args)}, deadline_s=deadline_s)
    return pool._unwrap(head, None)
