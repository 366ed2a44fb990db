"""Optional API key and per-key rate limit for the liveness endpoint (no Ray or FastAPI needed to import).

Keys come from the replica's environment, never from the Serve config (which the dashboard and ``serve status``
show): ``EULERNET_API_KEY`` (one key, or several separated by commas, for rotation) and/or
``EULERNET_API_KEY_FILE`` (a mounted secret, one key per line, ``#`` comments). Neither set: the replica refuses
to start, unless ``serve.allow_anonymous`` says in so many words that anyone who reaches the port may score
(:func:`require_keys`).
A client sends ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; every configured key is compared in
constant time (:func:`hmac.compare_digest`), all of them on every request, so timing says nothing about which
key or how much of it matched. Logs and metrics name a key only by :func:`key_id` (a short SHA-256 prefix).
"""
from __future__ import annotations

import hashlib
import hmac
import math
import os
import time
from collections.abc import Mapping

API_KEY_ENV = "EULERNET_API_KEY"
API_KEY_FILE_ENV = "EULERNET_API_KEY_FILE"
MIN_KEY_LENGTH = 16
ANONYMOUS = "anonymous"


class AccessConfigError(ValueError):
    """The key settings are unusable: the replica refuses to start rather than serve without the key asked for."""


def key_id(key: str) -> str:
    """What logs and metrics call a key: 12 hex digits of its SHA-256 (the key itself is never written)."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def load_api_keys(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The configured keys (empty: access is open). A named key file that cannot be read, holds no key, or a
    key shorter than ``MIN_KEY_LENGTH`` raises :class:`AccessConfigError`."""
    env = os.environ if environ is None else environ
    keys = [k.strip() for k in (env.get(API_KEY_ENV) or "").split(",") if k.strip()]
    path = env.get(API_KEY_FILE_ENV)
    if path:
        try:
            lines = open(path, encoding="utf-8").read().splitlines()
        except OSError as exc:
            raise AccessConfigError(f"{API_KEY_FILE_ENV}={path}: cannot read the key file ({exc.strerror})") from None
        from_file = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
        if not from_file:
            raise AccessConfigError(f"{API_KEY_FILE_ENV}={path}: the key file holds no key")
        keys += from_file
    short = [key_id(k) for k in keys if len(k) < MIN_KEY_LENGTH]
    if short:
        raise AccessConfigError(f"API keys must be at least {MIN_KEY_LENGTH} characters; too short: {short}")
    return tuple(dict.fromkeys(keys))


def require_keys(keys: tuple[str, ...], allow_anonymous: bool) -> None:
    """Fail closed: no configured key is an error unless anonymous access was asked for explicitly."""
    if not keys and not allow_anonymous:
        raise AccessConfigError(
            f"no API key configured: set {API_KEY_ENV} (or {API_KEY_FILE_ENV}, a mounted secret) on the replicas, "
            "or set serve.allow_anonymous: true (`eulernet serve --allow-anonymous`) to let anyone who reaches the "
            "port score videos")


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request carries: ``Authorization: Bearer <key>``, else ``X-API-Key``."""
    auth = headers.get("authorization") or ""
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return (headers.get("x-api-key") or "").strip() or None


class ApiKeys:
    """The configured keys and the constant-time check against them."""

    def __init__(self, keys: tuple[str, ...] = ()):
        self._keys = [(k.encode(), key_id(k)) for k in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def identify(self, presented: str | None) -> str | None:
        """The :func:`key_id` of the configured key ``presented`` equals, else None. Compares against every key."""
        if presented is None:
            return None
        candidate = presented.encode()
        found = None
        for key, kid in self._keys:
            if hmac.compare_digest(candidate, key) and found is None:
                found = kid
        return found


class RateLimiter:
    """A token bucket per caller (key id, or ``anonymous`` when no key is configured), in one replica.

    ``rate_per_s`` tokens are added per second up to ``burst``; a request takes one. ``rate_per_s <= 0``: off.
    Per replica, not global: N replicas let a key through at up to N times the rate (see docs/serving.md)."""

    def __init__(self, rate_per_s: float, burst: int, clock=time.monotonic):
        self.rate = float(rate_per_s)
        self.burst = max(1, int(burst))
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, last refill time)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, caller: str) -> float:
        """0.0 when the request may go ahead (a token is taken), else the seconds until a token is free."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        tokens, last = self._buckets.get(caller, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[caller] = (tokens - 1.0, now)
            return 0.0
        self._buckets[caller] = (tokens, now)
        return (1.0 - tokens) / self.rate


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
