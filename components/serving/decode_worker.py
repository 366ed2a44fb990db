"""The decoder process: decodes one request's upload at a time under its own memory cap and deadline, and
answers with a JSON header and raw frame bytes (decode.py, the replica side, starts and talks to it)."""
from __future__ import annotations

import json
import math
import os
import signal
import sys
from collections.abc import Callable, Mapping

import numpy as np

from .decode import RECEIPT
from .inputs import ClipPlan, InputError, Limits

_MB = 1 << 20
def _vm_size() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _decode(req: dict, blob: bytes) -> tuple[dict, bytes]:
    from . import inputs

    limits = Limits(**req["limits"])
    plan = ClipPlan(*req["plan"]) if req.get("plan") else None
    fn = inputs.decode_video_sparse if req["op"] == "video" else inputs.decode_frames_json_sparse
    extra = {"threads": int(req.get("threads", 1))} if req["op"] == "video" else {}
    d = fn(blob, limits, int(req["work_side"]), plan, **extra)
    pixels = np.ascontiguousarray(d.pixels, dtype=np.uint8)
    head = {"ok": True, "n": d.n, "height": d.height, "width": d.width, "indices": [int(i) for i in d.indices],
            "source": [int(v) for v in d.source], "fps": float(d.fps)}
    return head, pixels.tobytes()


def _ping(req: dict, blob: bytes) -> tuple[dict, bytes]:
    return {"ok": True, "pid": os.getpid()}, b""


# What a production decoder does, and all it does: a request names one of these, never code to run.
HANDLERS: dict[str, Callable[[dict, bytes], tuple[dict, bytes]]] = {"video": _decode, "frames": _decode,
                                                                    "ping": _ping}


def _handle(req: dict, blob: bytes, handlers: Mapping[str, Callable]) -> tuple[dict, bytes]:
    op = req.get("op")
    if op not in handlers:
        raise ValueError(f"unknown op {op!r}")
    return handlers[op](req, blob)


def worker_main(handlers: Mapping[str, Callable[[dict, bytes], tuple[dict, bytes]]] | None = None) -> None:
    """A decoder process (``DecodePool`` starts ``python -c 'from <module> import worker_main; worker_main()'``),
    talking over the socket whose fd is in ``EULERNET_DECODE_FD``; ``handlers`` default to :data:`HANDLERS`
    (tests start workers with extra fault-injection ops of their own). Exits when the replica closes its end."""
    handlers = HANDLERS if handlers is None else handlers
    from multiprocessing.connection import Connection

    import cv2

    # Two OpenCV threads for the per-frame downscale (most of a decode: 854x480 -> 480x270 INTER_AREA is ~2 ms a
    # frame, the H.264 decode ~0.2): a lone request decodes ~30 % faster, and with the other core busy it costs
    # the same wall and CPU time as one thread (measured; OpenCV's pool here is pthreads without spinning).
    cv2.setNumThreads(2)
    from PIL import JpegImagePlugin, PngImagePlugin  # noqa: F401  (image headers: imported before the cap too)

    from . import inputs  # noqa: F401  (imported before the cap: start-up memory is not the requests')

    conn = Connection(int(os.environ["EULERNET_DECODE_FD"]))
    memory_mb = int(os.environ.get("EULERNET_DECODE_MEMORY_MB", "0"))
    if memory_mb > 0:
        import resource

        cap = _vm_size() + memory_mb * _MB
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    import traceback  # noqa: F401  (imported while files can still be read: _bug_reply needs it)

    from .sandbox import confine

    # Before the first untrusted byte: no new privileges, no network, not root (sandbox.py says what and why).
    sandbox = confine()
    conn.send_bytes(json.dumps({"ready": True, "pid": os.getpid(), "sandbox": sandbox}).encode())
    while True:
        try:
            req = json.loads(conn.recv_bytes())
            blob = conn.recv_bytes()
            conn.send_bytes(RECEIPT)  # before parsing: a death from here on may be the input's doing
        except (EOFError, OSError):
            return  # the replica is gone (or closed this worker): nothing left to do
        recycle = False
        # Backstop for a worker whose replica died mid-request: the default SIGALRM action ends the process.
        signal.alarm(max(1, math.ceil(float(req.get("deadline_s", 30))) + 5))
        try:
            head, out = _handle(req, blob, handlers)
        except InputError as exc:
            head, out = {"ok": False, "status": exc.status, "code": exc.code, "detail": exc.detail}, b""
        except MemoryError:
            head, out, recycle = _memory_reply(memory_mb), b"", True
        except cv2.error as exc:
            if exc.code == cv2.Error.StsNoMem:
                head, out, recycle = _memory_reply(memory_mb), b"", True
            else:
                head, out, recycle = _bug_reply(exc), b"", True
        except Exception as exc:  # a bug, not the input: reported as such, traceback in this worker's log
            head, out, recycle = _bug_reply(exc), b"", True
        finally:
            signal.alarm(0)
        del blob
        try:
            conn.send_bytes(json.dumps(head).encode())
            conn.send_bytes(out)
        except (EOFError, OSError):
            return
        if recycle:  # after a failed allocation or a bug, start clean rather than trust this process's state
            return


def _memory_reply(memory_mb: int) -> dict:
    return {"ok": False, "status": 413, "code": "decode_memory_limit",
            "detail": f"decoding this input needs more than the decoder's {memory_mb} MB"}


def _bug_reply(exc: BaseException) -> dict:
    import traceback

    traceback.print_exc(file=sys.stderr)
    return {"ok": False, "bug": type(exc).__name__}
