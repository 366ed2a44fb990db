"""The upload bytes one replica holds at once: a bound on the replica, not only on each request.

A request body is held up to three times while it is read and handed to a decoder, so 32
uploads in flight at the 20-MB limit could ask a replica for over a gigabyte. Each request reserves the bytes its
``Content-Length`` declares (the upload limit when it declares none) times the copies it will be held in
(:data:`COPIES_HELD`) before it reads a byte; a reservation past
the budget is turned away at once (503 with ``Retry-After``: another replica, or this one a moment later, has
room), and the bytes are given back when its frames are decoded.
"""
from __future__ import annotations

import threading

MULTIPART_SLACK = 64 * 1024  # multipart framing overhead allowed above the upload limit


# How many copies of a body the replica holds at its peak, whatever its content type, so that the budget bounds
# memory, not declared lengths. Ray Serve's replica pulls a request's body from the proxy as one pickled batch of
# ASGI messages and unpickles it into a queue whether or not the app reads it yet (for a moment both are alive),
# and the app reads it into its own buffer: three at the peak, two after. A multipart body's file part is a view
# into that buffer (``upload.multipart_video``), not another copy. (Measured with ``benchmarks/upload_memory.py``,
# 200-MB budget, 20-MB uploads: one copy counted let the replica grow by 345 MB; two, by 122-237 MB over eight
# bursts, one over the budget; three: docs/serving.md.)
COPIES_HELD = 3


def budget_floor(max_upload_bytes: int) -> int:
    """The smallest budget that lets one upload at the limit in."""
    return COPIES_HELD * (max_upload_bytes + MULTIPART_SLACK)


class UploadBudget:
    def __init__(self, cap_bytes: int):
        if cap_bytes < 1:
            raise ValueError(f"upload budget must be >= 1 byte, got {cap_bytes}")
        self.cap = int(cap_bytes)
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    def reserve(self, n: int) -> bool:
        """Take ``n`` bytes of the budget; False (nothing taken) when they do not fit."""
        n = max(0, int(n))
        with self._lock:
            if self._used + n > self.cap:
                return False
            self._used += n
            return True

    def release(self, n: int) -> None:
        with self._lock:
            self._used = max(0, self._used - max(0, int(n)))
