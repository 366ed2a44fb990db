"""Request decoding in worker processes: a decoder crash, a memory blow-up or a stuck decode costs one request.

``DecodePool(workers, memory_mb, deadline_s)`` keeps ``workers`` long-lived decoder processes per replica. Each
request takes an idle worker, sends it the body and waits at most ``deadline_s`` for the frames:

- the worker caps its own address space (``RLIMIT_AS``: its start-up size + ``memory_mb``), so a bomb that gets
  past the header checks fails an allocation there (413 ``decode_memory_limit``), not in the replica;
- a worker that dies (segfault in FFmpeg, OOM kill, ``os._exit``) answers that one request with 503
  ``decoder_unavailable`` and is replaced in the background; the other workers' requests carry on;
- a worker that dies before it has read the request (killed while idle: it still looked alive for the
  milliseconds the kernel takes to tear it down) cost the input nothing, so the request goes to the next worker;
  a worker says it has read the request (a one-byte receipt) before it parses a byte of it;
- a decode over its deadline, or whose request was cancelled (client gone, proxy timeout), gets its worker
  killed (SIGKILL) and replaced: 503 ``decode_timeout``; the worker also arms ``alarm()`` for itself, so one
  orphaned by a dead replica cannot run on;
- no idle worker within ``queue_timeout_s``: 503 ``decoder_unavailable``.

Nothing a worker sends back is unpickled: replies are a JSON header (validated against the request's limits) and
raw frame bytes of exactly the announced size, so even a decoder subverted by a hostile file cannot run code in
the replica. Decoding reads the bytes from memory (no temporary files to leak on any path).

    pool = DecodePool(workers=2, memory_mb=512, deadline_s=10)
    decoded = await pool.decode_video(body, limits, work_side, ClipPlan(4, 3, 4))  # Decoded; or decode_frames_json
    pool.health()   # None, or why the pool cannot decode
    pool.close()
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import logging
import math
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np

from .inputs import ClipPlan, Decoded, InputError, Limits

log = logging.getLogger("ray.serve")
# The module whose worker_main a decoder process runs (decode_worker.py). Tests start pools on a module of their
# own that adds fault-injection ops; production decoders have none.
WORKER_MODULE = "components.serving.decode_worker"

_MB = 1 << 20
_READY_TIMEOUT_S = 60.0
_HEADER_MAX = 1 << 20  # a reply header: a few hundred bytes (indices of at most max_frames frames)
RECEIPT = b"+"  # a worker's first answer to a request: it has read the whole of it (decode_worker.py sends it)


class DecoderUnavailable(InputError):
    """503: the decoder could not answer this request (worker crashed, over its deadline, all busy). The replica
    itself is fine and a retry is safe. ``code`` is ``decoder_unavailable`` or ``decode_timeout``."""

    def __init__(self, code: str, detail: str):
        super().__init__(503, code, detail)


class DecodeWorkerError(RuntimeError):
    """The decoder hit a bug (not the input's fault): the service answers 500."""


# ------------------------------------------------------------------------------------------------ replica side
# The only names a decoder inherits from the replica. It parses untrusted uploads with FFmpeg, so it must hold
# no secret: not RAY_AUTH_TOKEN, cloud or MLflow credentials, nor EULERNET_API_KEY*. TMPDIR: where FFmpeg and
# OpenCV may write scratch files; the locale and time zone keep messages and timestamps as the replica's.
DECODER_ENV_ALLOW = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "LD_LIBRARY_PATH")


def decoder_env(fd: int, memory_mb: int) -> dict[str, str]:
    """The whole environment of a decoder process: the allow-listed names the replica has, plus its own."""
    env = {k: os.environ[k] for k in DECODER_ENV_ALLOW if k in os.environ}
    env.update({
        "EULERNET_DECODE_FD": str(fd),
        "EULERNET_DECODE_MEMORY_MB": str(memory_mb),
        # The worker imports what the replica imports, from the same places.
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        # One thread each: a decoder is one request's work, and every thread stack counts against its cap.
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "OPENCV_LOG_LEVEL": "ERROR", "OPENCV_FFMPEG_LOGLEVEL": "-8",  # hostile input is expected, not news
    })
    return env


class _Worker:
    """One decoder process and its socket. Used by one request at a time (the pool's idle queue)."""

    def __init__(self, index: int, memory_mb: int, entry: str):
        self.index = index
        self.memory_mb = memory_mb
        self.entry = entry
        self.proc: subprocess.Popen | None = None
        self.sandbox: dict[str, str] = {}  # what the process gave up (sandbox.confine), from its hello
        self.conn = None
        self.pid: int | None = None
        self.busy_since: float | None = None  # a request was sent to it
        self.read_at: float | None = None  # ... and it said it has read all of it (its receipt)
        self.killed = False  # set by whoever kills it (deadline, cancellation), read by the waiting thread
        self._reap_lock = threading.Lock()

    def spawn(self) -> None:
        from multiprocessing.connection import Connection

        parent, child = socket.socketpair()
        env = decoder_env(child.fileno(), self.memory_mb)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", f"from {self.entry} import worker_main; worker_main()"],
                pass_fds=(child.fileno(),), env=env, stdin=subprocess.DEVNULL, close_fds=True)
        finally:
            child.close()
        conn = Connection(parent.detach())
        try:
            if not conn.poll(_READY_TIMEOUT_S):
                raise RuntimeError(f"decoder worker did not start within {_READY_TIMEOUT_S:.0f} s")
            hello = json.loads(conn.recv_bytes(_HEADER_MAX))
            if not hello.get("ready"):
                raise RuntimeError(f"decoder worker said {hello!r}")
        except BaseException:
            proc.kill()
            proc.wait()
            conn.close()
            raise
        self.proc, self.conn, self.pid, self.killed = proc, conn, proc.pid, False
        self.sandbox = dict(hello.get("sandbox") or {})

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        self.killed = True
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                proc.kill()
            except ProcessLookupError:
                pass

    def reap(self) -> None:
        """Kill (if still running) and wait for the process; close the socket. Safe from several threads."""
        with self._reap_lock:
            proc, conn = self.proc, self.conn
            self.proc, self.conn, self.pid = None, None, None
        if proc is not None:
            self.killed = True
            if proc.poll() is None:
                try:
                    proc.kill()
                except ProcessLookupError:
                    pass
            proc.wait()
        if conn is not None:
            conn.close()


class _NotDelivered(Exception):
    """The worker died before it read the request: the input had no part in it, another worker may take it."""


class _Ticket:
    """One request's claim on a worker, so the coroutine can kill the worker when it is cancelled."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.worker: _Worker | None = None
        self.cancelled = False
        self.created = time.monotonic()  # the wait for a free worker counts from here (queued threads included)

    def cancel(self) -> None:
        with self.lock:
            self.cancelled = True
            if self.worker is not None:
                self.worker.kill()


@dataclasses.dataclass
class _Counters:
    requests: int = 0
    ok: int = 0
    input_errors: int = 0
    memory_limit: int = 0
    crashes: int = 0
    timeouts: int = 0
    cancelled: int = 0
    busy: int = 0
    bugs: int = 0
    restarts: int = 0
    spawn_failures: int = 0


class DecodePool:
    """``workers`` decoder processes, each capped at its start-up size + ``memory_mb`` of address space; a
    request waits at most ``queue_timeout_s`` (default ``deadline_s``) for one and ``deadline_s`` for its frames.

    ``decode_video``/``decode_frames_json`` (async) return frames (F, H, W, 3) uint8 RGB as
    :func:`inputs.decode_video` does, or raise :class:`InputError` (4xx, the input's fault),
    :class:`DecoderUnavailable` (503) or :class:`DecodeWorkerError` (a decoder bug: 500). Thread-safe; the
    blocking ``run`` is the same call for threads and tests."""

    def __init__(self, workers: int = 2, memory_mb: int = 512, deadline_s: float = 10.0,
                 queue_timeout_s: float | None = None, worker_module: str = WORKER_MODULE, threads: int = 1):
        from .inputs import MAX_DECODE_THREADS

        if workers < 1:
            raise ValueError(f"decode workers must be >= 1, got {workers}")
        if not 1 <= threads <= MAX_DECODE_THREADS:
            raise ValueError(f"decode threads must be within 1..{MAX_DECODE_THREADS}, got {threads}")
        self.threads = int(threads)
        if memory_mb < 0:
            raise ValueError(f"decode memory_mb must be >= 0 (0: no cap), got {memory_mb}")
        if not deadline_s > 0:
            raise ValueError(f"decode deadline_s must be > 0, got {deadline_s}")
        self.workers = workers
        self.memory_mb = memory_mb
        self.deadline_s = float(deadline_s)
        self.queue_timeout_s = float(queue_timeout_s if queue_timeout_s is not None else deadline_s)
        self.counters = _Counters()
        self._lock = threading.Lock()
        self._closed = False
        self._idle: queue.Queue[_Worker] = queue.Queue()
        if not re.fullmatch(r"[A-Za-z_][\w.]*", worker_module):
            raise ValueError(f"worker_module must be a dotted module name, got {worker_module!r}")
        self._all = [_Worker(i, memory_mb, worker_module) for i in range(workers)]
        self._respawning: set[int] = set()
        self._dead_since: float | None = None
        # Threads that wait on workers' sockets (blocking, cheap): enough for every request a replica admits.
        self._waiters = concurrent.futures.ThreadPoolExecutor(max(16, 4 * workers), thread_name_prefix="decode-wait")
        errors = []
        with concurrent.futures.ThreadPoolExecutor(workers) as starter:
            for w, f in [(w, starter.submit(w.spawn)) for w in self._all]:
                try:
                    f.result()
                    self._idle.put(w)
                except Exception as exc:
                    errors.append(exc)
                    self._respawn_later(w)
        if len(errors) == workers:
            self.close()
            raise RuntimeError(f"no decoder worker could start: {errors[0]}")

    # ------------------------------------------------------------------ lifecycle
    def _respawn_later(self, w: _Worker) -> None:
        """Replace a dead worker in the background, then make it available again (retrying with backoff)."""
        with self._lock:
            if self._closed or w.index in self._respawning:
                return
            self._respawning.add(w.index)

        def respawn() -> None:
            delay = 0.5
            while True:
                w.reap()
                with self._lock:
                    if self._closed:
                        self._respawning.discard(w.index)
                        return
                try:
                    w.spawn()
                except Exception as exc:  # keep trying: a slot must not drop out of the pool for good
                    self.counters.spawn_failures += 1
                    log.warning("decoder worker %d failed to start: %s (retrying in %.1f s)", w.index, exc, delay)
                    time.sleep(delay)
                    delay = min(delay * 2, 30.0)
                    continue
                with self._lock:
                    self._respawning.discard(w.index)
                    self.counters.restarts += 1
                    if self._closed:
                        w.reap()
                        return
                self._idle.put(w)
                return

        threading.Thread(target=respawn, name=f"decode-respawn-{w.index}", daemon=True).start()

    def close(self) -> None:
        """Stop every worker (they also exit by themselves when this process goes away)."""
        with self._lock:
            self._closed = True
        for w in self._all:
            w.reap()
        self._waiters.shutdown(wait=False, cancel_futures=True)

    def pids(self) -> list[int]:
        return [w.pid for w in self._all if w.pid is not None and w.alive()]

    def health(self) -> str | None:
        """None while the pool can decode; else why not (every worker dead for a while, or one stuck past its
        deadline, which the waiting thread should have killed): a replica reporting this should be replaced."""
        now = time.monotonic()
        if self._closed:
            return "decode pool is closed"
        alive = [w for w in self._all if w.alive()]
        if alive:
            self._dead_since = None
        else:
            self._dead_since = self._dead_since or now
            if now - self._dead_since > max(30.0, 3 * self.deadline_s):
                return f"no decoder worker has been running for {now - self._dead_since:.0f} s"
        stuck = [w for w in alive if w.busy_since is not None and now - w.busy_since > 2 * self.deadline_s + 10]
        if stuck:
            return f"decoder worker {stuck[0].index} has been busy for {now - stuck[0].busy_since:.0f} s"
        return None

    def stats(self) -> dict[str, Any]:
        sandbox = next((w.sandbox for w in self._all if w.sandbox), {})
        return {"workers": self.workers, "alive": sum(w.alive() for w in self._all), "idle": self._idle.qsize(),
                "memory_mb": self.memory_mb, "deadline_s": self.deadline_s, "threads": self.threads, "sandbox": sandbox,
                **dataclasses.asdict(self.counters)}

    # ------------------------------------------------------------------ one request
    def run(self, header: dict, blob: bytes = b"", deadline_s: float | None = None,
            ticket: _Ticket | None = None) -> tuple[dict, bytes]:
        """Send one request to an idle worker; its reply header and payload (``ok`` true or false). Raises
        DecoderUnavailable when no worker answers in time."""
        if self._closed:
            raise DecoderUnavailable("decoder_unavailable", "the decode pool is shut down")
        deadline_s = self.deadline_s if deadline_s is None else float(deadline_s)
        ticket = ticket or _Ticket()
        self.counters.requests += 1
        end = ticket.created + self.queue_timeout_s
        # A request no worker has read is resent: bounded, since each try waits for a worker and costs a restart.
        for _ in range(2 * self.workers):
            w = self._take(ticket, end)
            try:
                return self._exchange(w, header, blob, deadline_s, ticket)
            except _NotDelivered:
                continue
        raise DecoderUnavailable("decoder_unavailable", "every decoder died before it read the request")

    def _take(self, ticket: _Ticket, end: float) -> _Worker:
        """An idle, live worker, claimed for ``ticket``; DecoderUnavailable past ``end`` or once cancelled."""
        while True:
            try:
                w = self._idle.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                self.counters.busy += 1
                raise DecoderUnavailable("decoder_unavailable", f"no decoder was free within "
                                                                f"{self.queue_timeout_s:g} s") from None
            if w.alive():
                break
            # Died while idle (killed from outside, OOM killer): replace it and take the next one.
            self.counters.crashes += 1
            self._respawn_later(w)
        with ticket.lock:
            if ticket.cancelled:
                self._idle.put(w)
                raise DecoderUnavailable("decoder_unavailable", "the request was cancelled")
            ticket.worker = w
        return w

    def _wait(self, w: _Worker, stop: float, deadline_s: float) -> None:
        """Until ``w`` has something to read (or has closed); past ``stop``, kill it: a 503 decode_timeout."""
        if not w.conn.poll(max(0.0, stop - time.monotonic())):
            w.kill()
            self.counters.timeouts += 1
            raise DecoderUnavailable("decode_timeout", f"decoding took longer than {deadline_s:g} s")

    def _exchange(self, w: _Worker, header: dict, blob: bytes, deadline_s: float,
                  ticket: _Ticket) -> tuple[dict, bytes]:
        """One request on the claimed worker ``w``; raises _NotDelivered when it died before reading it."""
        healthy = False
        try:
            w.busy_since = time.monotonic()
            stop = w.busy_since + deadline_s
            try:
                w.conn.send_bytes(json.dumps({**header, "deadline_s": deadline_s}).encode())
                w.conn.send_bytes(blob)
                self._wait(w, stop, deadline_s)
                if w.conn.recv_bytes(_HEADER_MAX) != RECEIPT:
                    raise ValueError("the worker's receipt is malformed")
                w.read_at = time.monotonic()  # from here on, the worker's death may be the input's doing
                self._wait(w, stop, deadline_s)
                head = json.loads(w.conn.recv_bytes(_HEADER_MAX))
                if not isinstance(head, dict):
                    raise ValueError("reply header is not an object")
                payload = w.conn.recv_bytes(_payload_max(header))
            except DecoderUnavailable:  # the deadline's (an InputError is a ValueError: not a malformed reply)
                raise
            except (EOFError, OSError, ValueError) as exc:
                if ticket.cancelled:
                    self.counters.cancelled += 1
                    raise DecoderUnavailable("decode_timeout", "the request was cancelled while decoding") from None
                if w.killed:
                    raise DecoderUnavailable("decode_timeout", "the decoder was stopped") from None
                self.counters.crashes += 1
                if w.read_at is None and not isinstance(exc, ValueError):
                    log.warning("decoder worker %d (pid %s) was gone before it read a request: resending it",
                                w.index, w.pid)
                    raise _NotDelivered from None
                code = w.proc.poll() if w.proc is not None else None
                log.warning("decoder worker %d (pid %s) failed mid-request: %s, exit code %s",
                            w.index, w.pid, type(exc).__name__, code)
                raise DecoderUnavailable("decoder_unavailable", "the decoder process crashed on this input; "
                                                                "it is restarting") from None
            finally:
                w.busy_since = w.read_at = None
            # A worker that answers a bug or a failed allocation exits after replying: replace it.
            healthy = head.get("ok") is True or "status" in head and head.get("code") != "decode_memory_limit"
            return head, payload
        finally:
            with ticket.lock:
                ticket.worker = None
            if healthy and w.alive() and not w.killed:
                self._idle.put(w)
            else:
                self._respawn_later(w)

    def decode(self, op: str, data: bytes, limits: Limits, work_side: int, plan: ClipPlan | None = None,
               ticket: _Ticket | None = None) -> Decoded:
        """Blocking: ``op`` "video" or "frames" -> the :class:`Decoded` frames and what the upload declared."""
        header = {"op": op, "limits": dataclasses.asdict(limits), "work_side": int(work_side),
                  "plan": plan.to_list() if plan is not None else None, "threads": self.threads}
        head, payload = self.run(header, data, ticket=ticket)
        return self._unwrap(head, (payload, limits, int(work_side)))

    def _unwrap(self, head: dict, check: tuple | None) -> Any:
        if head.get("ok") is not True:
            if "bug" in head:
                self.counters.bugs += 1
                raise DecodeWorkerError(f"decoder raised {head['bug']}")
            status, code, detail = head.get("status"), head.get("code"), head.get("detail")
            if not (isinstance(status, int) and 400 <= status < 500 and isinstance(code, str)
                    and isinstance(detail, str)):
                raise DecodeWorkerError("decoder sent a malformed error")
            if code == "decode_memory_limit":
                self.counters.memory_limit += 1
            else:
                self.counters.input_errors += 1
            raise InputError(status, code, detail)
        self.counters.ok += 1
        if check is None:
            return head.get("value")
        return _decoded(head, *check)

    # ------------------------------------------------------------------ asyncio
    async def _async(self, op: str, data: bytes, limits: Limits, work_side: int, plan: ClipPlan | None):
        ticket = _Ticket()
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._waiters, self.decode, op, data, limits, work_side, plan, ticket)
        try:
            return await fut
        except asyncio.CancelledError:  # client gone or proxy timeout: stop the decode now, not at its deadline
            ticket.cancel()
            raise

    async def decode_video(self, data: bytes, limits: Limits, work_side: int,
                           plan: ClipPlan | None = None) -> Decoded:
        return await self._async("video", data, limits, work_side, plan)

    async def decode_frames_json(self, body: bytes, limits: Limits, work_side: int,
                                 plan: ClipPlan | None = None) -> Decoded:
        return await self._async("frames", body, limits, work_side, plan)


def _payload_max(header: dict) -> int:
    """Most bytes a reply to ``header`` may carry: every frame the limits allow, at the decode size."""
    if header.get("op") not in ("video", "frames"):
        return _HEADER_MAX
    side = int(header["work_side"])
    return int(header["limits"]["max_frames"]) * side * side * 3 + 1


def _decoded(head: dict, payload: bytes, limits: Limits, work_side: int) -> Decoded:
    """The worker's reply, checked against what the request allowed before any of it is used."""
    try:
        n, h, w, idx = int(head["n"]), int(head["height"]), int(head["width"]), [int(i) for i in head["indices"]]
    except (KeyError, TypeError, ValueError):
        raise DecodeWorkerError("decoder sent a malformed reply") from None
    ok = (1 <= n <= limits.max_frames and 1 <= h <= work_side and 1 <= w <= work_side and idx
          and 0 <= idx[0] and idx[-1] < n and all(a < b for a, b in zip(idx, idx[1:]))
          and len(payload) == len(idx) * h * w * 3)
    if not ok:
        raise DecodeWorkerError(f"decoder reply out of bounds (n={n}, {w}x{h}, {len(idx)} frames, "
                                f"{len(payload)} bytes)")
    pixels = np.frombuffer(payload, np.uint8).reshape(len(idx), h, w, 3)
    try:  # what the upload declared: only monitored, never used to index anything
        (sw, sh), fps = map(int, head.get("source", (0, 0))), float(head.get("fps", 0.0))
    except (TypeError, ValueError):
        raise DecodeWorkerError("decoder sent a malformed reply") from None
    if not (0 <= min(sw, sh) and max(sw, sh) <= limits.max_resolution and math.isfinite(fps) and 0 <= fps <= 1000):
        raise DecodeWorkerError(f"decoder reply out of bounds (source {sw}x{sh} at {fps} fps)")
    return Decoded(n, h, w, idx, pixels, (sw, sh), fps)
