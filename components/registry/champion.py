"""Move ``champion``: promote a candidate by a metric comparison, roll back, behind one writer lock.

Writers of ``champion`` (``promote``, ``rollback``) serialise on a lock (a registered model named
``<name>.promotion-lock``: creating a registered model is atomic in every MLflow backend, so exactly one
process holds it), re-read the alias right before writing and fail if it moved (compare-and-set), and record an
intent (registered-model tag ``champion_intent``) before moving the alias and the history, cleared after both:
the next ``promote``/``rollback`` that finds an intent left by a crash completes it first (or drops it, saying
so, when its target version was deleted since).

The lock stays a registry object, though it shows in the MLflow UI: creating a registered model is the one
operation every MLflow backend (SQLite, a database server, the REST tracking server) makes atomic for any client,
where a file lock covers one machine's local store and a database advisory lock needs credentials that CI runners
and operators' laptops talking to the tracking server do not have.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import socket
import threading
import time
import uuid
import warnings
from typing import Any

from .versions import (
    CANDIDATE,
    CHAMPION,
    DATA_GATES_TAG,
    HISTORY_TAG,
    INTENT_TAG,
    METRIC_PREFIX,
    ROLLED_BACK_TAG,
    TEST_DATA_TAG,
    ConcurrentChangeError,
    RegistryError,
    _alias_version,
    _client,
    _higher_is_better,
    _history,
    _model_tags,
    _now,
    _require_model,
    _tag_metric,
    _version_tags,
)

LOCK_SUFFIX = ".promotion-lock"      # registered model whose existence is the promote/rollback lock
LOCK_WAIT_S = 60.0                   # how long a writer waits for another writer's lock
# A lock is a lease: its holder bumps the tag `lock_beat` every LOCK_BEAT_S; a waiter that sees neither owner nor
# beat change for LOCK_STALE_S, on its own monotonic clock, takes the holder for dead and breaks the lock. No two
# machines' clocks are ever compared, so a skewed clock can neither break a live lock nor keep a dead one.
LOCK_BEAT_S = 2.0
LOCK_STALE_S = 30.0


@dataclasses.dataclass
class Decision:
    """Outcome of a promotion attempt; ``str(decision)`` is the readable comparison printed by the CLI."""

    name: str
    metric: str
    candidate_version: str
    candidate_value: float | None
    champion_version: str | None
    champion_value: float | None
    promoted: bool
    forced: bool
    reason: str
    candidate_test_data: str | None = None
    champion_test_data: str | None = None
    repaired: str | None = None   # what an interrupted earlier move left and this command completed

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        def fmt(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.4f}"

        direction = "higher" if _higher_is_better(self.metric) else "lower"
        champ = f"v{self.champion_version}" if self.champion_version else "none"
        lines = [
            f"model {self.name}: {self.metric} ({direction} is better)",
            f"  candidate v{self.candidate_version}: {fmt(self.candidate_value)}",
            f"  champion  {champ}: {fmt(self.champion_value)}",
            f"  -> {'PROMOTED' if self.promoted else 'KEPT champion'}{' (forced)' if self.forced else ''}: "
            f"{self.reason}",
        ]
        if self.repaired:
            lines.insert(0, f"registry repaired first: {self.repaired}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------ writer lock
def _holder_gone(owner: str) -> bool:
    """True when the lock owner (``host:pid:nonce``) ran on this host and that process no longer exists."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def _heartbeat(client, lock: str, owner: str, stop: threading.Event) -> None:
    """Bump the lock's beat while its holder works (a writer that stops beating is taken for dead)."""
    from mlflow.exceptions import MlflowException

    beat = 0
    while not stop.wait(LOCK_BEAT_S):
        beat += 1
        with contextlib.suppress(MlflowException):  # a busy store skips a beat; the next one lands
            if (client.get_registered_model(lock).tags or {}).get("lock_owner") == owner:
                client.set_registered_model_tag(lock, "lock_beat", str(beat))


@contextlib.contextmanager
def _writer_lock(client, name: str, wait_s: float | None = None):
    """Hold ``<name>.promotion-lock`` (a registered model: its creation is atomic, a second create fails) for
    the duration of one champion move, beating every ``LOCK_BEAT_S``. Waits up to ``wait_s`` for another holder;
    breaks a lock whose holder's process is gone (same host) or that did not beat for ``LOCK_STALE_S`` (its
    holder crashed: the intent it may have left is completed by the caller)."""
    from mlflow.exceptions import MlflowException

    lock = f"{name}{LOCK_SUFFIX}"
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + (LOCK_WAIT_S if wait_s is None else wait_s)
    seen, seen_at = None, time.monotonic()  # the holder's (owner, beat) last observed, and when it last changed
    while True:
        try:
            client.create_registered_model(lock, tags={"lock_owner": owner, "lock_for": name},
                                           description=f"promote/rollback lock for {name}; delete only if stale")
            break
        except MlflowException as exc:
            if "database is locked" in str(exc) and time.monotonic() < deadline:
                time.sleep(0.2 + 0.2 * random.random())  # SQLite busy under concurrent writers: try again
                continue
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        try:
            held = client.get_registered_model(lock)
        except MlflowException:
            continue  # released between our create and this read: try again at once
        tags = held.tags or {}
        holder = tags.get("lock_owner", "?")
        if (holder, tags.get("lock_beat")) != seen:
            seen, seen_at = (holder, tags.get("lock_beat")), time.monotonic()
        silent_s = time.monotonic() - seen_at
        if silent_s > LOCK_STALE_S or _holder_gone(holder):
            warnings.warn(f"breaking a stale registry lock {lock!r} held by {holder} (its process is gone, or it "
                          f"did not beat for {silent_s:.0f}s > {LOCK_STALE_S:.0f}s)", stacklevel=3)
            with contextlib.suppress(MlflowException):
                if (client.get_registered_model(lock).tags or {}).get("lock_owner") == holder:
                    client.delete_registered_model(lock)
            continue
        if time.monotonic() > deadline:
            raise RegistryError(
                f"another promote/rollback of {name!r} holds the lock {lock!r} ({holder}, silent for "
                f"{silent_s:.0f}s); retry later (a lock whose holder stops beating is broken after "
                f"{LOCK_STALE_S:.0f}s)")
        time.sleep(0.2 + 0.2 * random.random())
    stop = threading.Event()
    beater = threading.Thread(target=_heartbeat, args=(client, lock, owner, stop), name="lock-beat", daemon=True)
    beater.start()
    try:
        yield
    finally:
        stop.set()
        beater.join(timeout=10)
        with contextlib.suppress(MlflowException):
            if (client.get_registered_model(lock).tags or {}).get("lock_owner") == owner:
                client.delete_registered_model(lock)


# ------------------------------------------------------------------------------------------ champion moves
def _apply(client, name: str, intent: dict) -> None:
    """Carry out a recorded move (idempotent: a repair re-runs it whole): version tags, alias, history, then
    clear the intent."""
    for version, tags in (intent.get("version_tags") or {}).items():
        for k, v in tags.items():
            client.set_model_version_tag(name, version, k, v)
    client.set_registered_model_alias(name, CHAMPION, intent["to"])
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(intent["history"]))
    client.delete_registered_model_tag(name, INTENT_TAG)


def _repair(client, name: str) -> str | None:
    """Complete a move a crashed writer left half-done; adopt a champion alias moved by hand into the history.
    Call with the writer lock held. Returns what was repaired, or None."""
    tags = _model_tags(client, name)
    raw = tags.get(INTENT_TAG)
    if raw:
        try:
            intent = json.loads(raw)
            note = f"completed an interrupted {intent['op']} (champion v{intent['from']} -> v{intent['to']})"
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryError(f"model {name!r} has an unreadable '{INTENT_TAG}' tag ({raw!r}): inspect the "
                                f"'{CHAMPION}' alias and '{HISTORY_TAG}', then delete the tag") from exc
        if not _version_exists(client, name, str(intent["to"])):
            # Completing it could never succeed (every later command would fail on it): drop it and say so.
            client.delete_registered_model_tag(name, INTENT_TAG)
            return (f"dropped an interrupted {intent['op']} to v{intent['to']}, which was deleted since; "
                    f"'{CHAMPION}' left at {_v(_alias_version(client, name, CHAMPION))}")
        _apply(client, name, intent)
        return note
    champ = _alias_version(client, name, CHAMPION)
    history = [str(v) for v in json.loads(tags.get(HISTORY_TAG, "[]"))]
    if champ is not None and (not history or history[-1] != champ):
        history.append(champ)
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
        return f"champion v{champ} was set outside promote/rollback; appended to {HISTORY_TAG}"
    return None


def _version_exists(client, name: str, version: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(name, version)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


def _move_champion(client, name: str, expected: str | None, version: str, history: list[str], op: str,
                   version_tags: dict[str, dict[str, str]] | None = None) -> None:
    """Compare-and-set ``champion`` from ``expected`` to ``version`` with ``history``: re-read the alias right
    before writing (fail if it moved), record the intent, write, then re-read to verify."""
    now = _alias_version(client, name, CHAMPION)
    if now != expected:
        raise ConcurrentChangeError(
            f"model {name!r}: '{CHAMPION}' moved from {_v(expected)} to {_v(now)} while this {op} was deciding "
            f"(another writer changed it); nothing was changed, run `eulernet {op}` again")
    intent = {"op": op, "from": expected, "to": version, "history": history, "at": _now(),
              "version_tags": version_tags or {}}
    client.set_registered_model_tag(name, INTENT_TAG, json.dumps(intent))
    _apply(client, name, intent)
    after, after_history = _alias_version(client, name, CHAMPION), _history(client, name)
    if after != version or after_history != history:
        raise ConcurrentChangeError(
            f"model {name!r}: after this {op} wrote '{CHAMPION}'=v{version} the registry shows {_v(after)} with "
            f"history {after_history}: another writer changed it at the same time")


def _v(version: str | None) -> str:
    return "none" if version is None else f"v{version}"


def _decide(metric: str, cand: str, cand_tags: dict[str, str], champ: str | None, champ_tags: dict[str, str],
            force: bool) -> tuple[bool, str]:
    """The promotion rule (without ``force``): ``(promote?, why)``."""
    cand_value, champ_value = _tag_metric(cand_tags, metric), _tag_metric(champ_tags, metric)
    if cand_tags.get(ROLLED_BACK_TAG) == "true":
        return False, (f"v{cand} was rolled back (at {cand_tags.get('rolled_back_at', '?')}); only --force "
                       f"promotes it again")
    if cand_tags.get(DATA_GATES_TAG) == "skipped":
        return False, (f"v{cand} was trained on data that skipped the quality gates (--skip-gates); only --force "
                       f"promotes it")
    if cand_value is None:
        return False, (f"candidate v{cand} has no '{metric}' metric tag to compare"
                       + ("" if champ else " (no champion yet; --force promotes it anyway)"))
    if champ is None:
        return True, "no champion yet"  # promote() refuses this when the model had a champion before
    if champ_value is None:
        return False, f"champion v{champ} has no '{metric}' metric tag to compare with; only --force replaces it"
    cand_data, champ_data = cand_tags.get(TEST_DATA_TAG), champ_tags.get(TEST_DATA_TAG)
    if not cand_data or not champ_data:
        unknown = " and ".join(f"{who} v{v}" for who, v, d in (("candidate", cand, cand_data),
                                                               ("champion", champ, champ_data)) if not d)
        return False, (f"not comparable: {unknown} has no '{TEST_DATA_TAG}' tag (evaluated on unknown test "
                       f"data); only --force promotes")
    if cand_data != champ_data:
        return False, (f"not comparable: candidate v{cand} was evaluated on test data {cand_data[:12]} and "
                       f"champion v{champ} on {champ_data[:12]} (different test sets); re-evaluate both on the "
                       f"same shards, or --force")
    if (cand_value >= champ_value) if _higher_is_better(metric) else (cand_value <= champ_value):
        return True, f"candidate {cand_value:.4f} is at least as good as champion {champ_value:.4f}"
    return False, f"candidate {cand_value:.4f} is worse than champion {champ_value:.4f}"


def promote(
    name: str,
    metric: str = "acer",
    force: bool = False,
    version: str | int | None = None,
    tracking_uri: str | None = None,
    lock_wait_s: float | None = None,
) -> Decision:
    """Move ``champion`` to ``version`` (default: the ``candidate`` alias) when it is at least as good on
    ``metric`` as the current champion on the same test data, or unconditionally with ``force`` (recorded on
    the version). See the module docstring for the lock, the compare-and-set and the crash repair."""
    client = _client(tracking_uri)
    metric = metric.lower()
    _require_model(client, name, f"no '{CANDIDATE}' alias")
    with _writer_lock(client, name, lock_wait_s):
        repaired = _repair(client, name)
        cand = str(version) if version is not None else _alias_version(client, name, CANDIDATE)
        if cand is None:
            raise RegistryError(f"model {name!r} has no '{CANDIDATE}' alias; register a model first")
        champ = _alias_version(client, name, CHAMPION)
        cand_tags, champ_tags = _version_tags(client, name, cand), _version_tags(client, name, champ)
        cand_value, champ_value = _tag_metric(cand_tags, metric), _tag_metric(champ_tags, metric)
        known = sorted(k[len(METRIC_PREFIX):] for k in {**cand_tags, **champ_tags} if k.startswith(METRIC_PREFIX))
        if cand_value is None and champ_value is None and known and not force:
            # A typo (`--metric bogus`) must not turn into a silent "nothing to compare".
            raise RegistryError(f"neither v{cand} nor the champion has a {metric!r} metric; the versions carry "
                                f"{known}")

        def decision(promoted: bool, forced: bool, reason: str) -> Decision:
            return Decision(name, metric, cand, cand_value, champ, champ_value, promoted, forced, reason,
                            cand_tags.get(TEST_DATA_TAG), champ_tags.get(TEST_DATA_TAG), repaired)

        if champ == cand:
            return decision(False, False, f"v{cand} is already the champion")
        if champ is None and _history(client, name) and not force:
            # A champion existed and its alias is gone (deleted by hand, or an outage answered as "absent"):
            # promoting now would skip the comparison. Fail closed; a person decides.
            return decision(False, False, f"no '{CHAMPION}' alias, but the model had champions before "
                                          f"({_history(client, name)}); restore it (`eulernet rollback` or set the "
                                          f"alias) or promote with --force")
        promoted, reason = _decide(metric, cand, cand_tags, champ, champ_tags, force)
        if not promoted and force:
            promoted, reason = True, f"forced despite: {reason}"
        if promoted:
            history = _history(client, name) + [cand]
            tags = {"promoted_at": _now(), "promoted_by_force": str(bool(force)).lower(), "promotion_reason": reason}
            if force and cand_tags.get(ROLLED_BACK_TAG) == "true":
                tags[ROLLED_BACK_TAG] = "false"  # re-promoted on purpose: rolled_back_at keeps the record
            _move_champion(client, name, champ, cand, history, "promote", {cand: tags})
        return decision(promoted, force and promoted, reason)


def rollback(name: str, tracking_uri: str | None = None, lock_wait_s: float | None = None) -> tuple[str, str]:
    """Point ``champion`` back at the previous champion and mark the removed one ``rolled_back=true`` (a plain
    ``promote`` never installs it again); returns ``(from_version, to_version)``."""
    client = _client(tracking_uri)
    _require_model(client, name, "nothing to roll back")
    with _writer_lock(client, name, lock_wait_s):
        _repair(client, name)
        history = _history(client, name)
        current = _alias_version(client, name, CHAMPION)
        # Drop trailing entries that are no longer the live champion (e.g. the alias was deleted by hand).
        while history and history[-1] != current:
            history.pop()
        if len(history) < 2:
            raise RegistryError(f"model {name!r} has no previous champion to roll back to (history {history})")
        history.pop()
        target = history[-1]
        if not _version_exists(client, name, target):  # refused before any intent is written
            raise RegistryError(f"model {name!r}: the previous champion v{target} was deleted; promote a version "
                                f"that exists instead (`eulernet promote --version N --force`)")
        _move_champion(client, name, current, target, history, "rollback",
                       {current: {ROLLED_BACK_TAG: "true", "rolled_back_at": _now()}})
    return current, target
