"""Promotion you can trust: same-test-data comparisons, metric-less versions, rollback marks, compare-and-set,
crash repair and concurrent writers, against a real MLflow SQLite store (versions created directly: no model
logging, so each case takes about a second)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

NAME = "eulernet-integrity"
REPO = Path(__file__).resolve().parents[2]
H1, H2 = "a" * 64, "b" * 64


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh SQLite registry; ``add(acer, data)`` creates a version with those tags and points candidate at
    it (what ``register`` does, minus the model upload)."""
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # Tracking URI only: the registry follows it (a process-global registry URI would outlive this fixture).
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(NAME)

    def add(acer: float | None = None, data: str | None = H1) -> str:
        tags = {}
        if acer is not None:
            tags["metric.acer"] = repr(acer)
        if data is not None:
            tags["test_data_hash"] = data
        mv = client.create_model_version(NAME, source=str(tmp_path / "model"), tags=tags)
        client.set_registered_model_alias(NAME, "candidate", str(mv.version))
        return str(mv.version)

    yield {"uri": uri, "client": client, "add": add, "root": tmp_path}
    mlflow.set_tracking_uri(previous)


def champion(client) -> str | None:
    from components.registry.versions import CHAMPION, _alias_version

    return _alias_version(client, NAME, CHAMPION)


def model_tags(client) -> dict:
    return dict(client.get_registered_model(NAME).tags or {})


def assert_consistent(client) -> None:
    """History ends at the live champion, no intent is pending and the lock is released."""
    from components.registry.champion import LOCK_SUFFIX
    from components.registry.versions import INTENT_TAG, champion_history

    tags = model_tags(client)
    assert INTENT_TAG not in tags
    assert champion_history(NAME)[-1] == champion(client)
    assert not client.search_registered_models(filter_string=f"name = '{NAME}{LOCK_SUFFIX}'")


# ------------------------------------------------------------------------------------------ the rule
def test_hash_test_data_covers_only_the_test_rows(tmp_path):
    from components.registry.register import hash_test_data
    from components.registry.versions import RegistryError

    head = "video_id,cache_key,split,label,status\n"
    rows = ["t0,k0,test,1,ok", "t1,k1,test,0,ok", "d0,k2,dev,1,ok", "x,k9,test,1,failed"]
    (tmp_path / "a.csv").write_text(head + "\n".join(rows) + "\n")
    (tmp_path / "b.csv").write_text(head + "\n".join(reversed(rows[:3])) + "\n")  # order and failures: no matter
    (tmp_path / "c.csv").write_text(head + "t0,k0,test,1,ok\nt1,OTHER,test,0,ok\n")  # re-encoded test video
    (tmp_path / "d.csv").write_text(head + "d0,k2,dev,1,ok\n")
    a, b, c = (hash_test_data(tmp_path / f"{x}.csv") for x in "abc")
    assert a == b != c and len(a) == 64
    with pytest.raises(RegistryError, match="no labeled 'test' videos"):
        hash_test_data(tmp_path / "d.csv")
    with pytest.raises(RegistryError, match="not found"):
        hash_test_data(tmp_path / "missing.csv")


def test_different_test_data_is_not_compared(store):
    from components.registry.champion import promote

    v1 = store["add"](0.30, H1)
    assert promote(NAME).promoted
    store["add"](0.10, H2)  # far better, but on another test set
    d = promote(NAME)
    assert not d.promoted and "different test sets" in d.reason and H1[:12] in d.reason and H2[:12] in d.reason
    assert champion(store["client"]) == v1
    d = promote(NAME, force=True)
    assert d.promoted and d.forced and "forced despite: not comparable" in d.reason


def test_unknown_test_data_is_not_compared(store):
    from components.registry.champion import promote

    store["add"](0.30, None)
    assert promote(NAME).reason == "no champion yet"  # nothing to compare with: the hash is not needed
    store["add"](0.10, H1)
    d = promote(NAME)
    assert not d.promoted and "champion v1 has no 'test_data_hash' tag" in d.reason


def test_champion_without_metric_is_replaced_only_with_force(store):
    from components.registry.champion import promote

    store["add"](None)
    assert promote(NAME, force=True).promoted  # no champion, no metric: only by force
    v2 = store["add"](0.10)
    d = promote(NAME)
    assert not d.promoted and "champion v1 has no 'acer' metric" in d.reason and "--force" in d.reason
    d = promote(NAME, force=True)
    assert d.promoted and champion(store["client"]) == v2
    assert_consistent(store["client"])


def test_no_champion_and_no_metric_needs_force(store):
    from components.registry.champion import promote

    store["add"](None)
    d = promote(NAME)
    assert not d.promoted and "no 'acer' metric tag" in d.reason and "no champion yet" in d.reason
    assert champion(store["client"]) is None
    assert promote(NAME, force=True).promoted and champion(store["client"]) == "1"


def test_rolled_back_version_is_never_repromoted_by_a_plain_promote(store):
    from components.registry.champion import promote, rollback
    from components.registry.versions import champion_history

    client = store["client"]
    v1 = store["add"](0.30)
    promote(NAME)
    v2 = store["add"](0.10)
    assert promote(NAME).promoted
    assert rollback(NAME) == (v2, v1)
    tags = client.get_model_version(NAME, v2).tags
    assert tags["rolled_back"] == "true" and tags["rolled_back_at"]
    assert str(client.get_model_version_by_alias(NAME, "candidate").version) == v2  # still the candidate ...
    d = promote(NAME)  # ... and still better on paper, yet refused
    assert not d.promoted and "rolled back" in d.reason and champion(client) == v1
    assert not promote(NAME, version=v2, metric="acer").promoted
    d = promote(NAME, force=True)  # an operator's explicit decision re-promotes it and clears the mark
    assert d.promoted and client.get_model_version(NAME, v2).tags["rolled_back"] == "false"
    assert champion_history(NAME) == [v1, v2]
    assert_consistent(client)


# ------------------------------------------------------------------------------------------ writers
def test_alias_moved_between_read_and_write_is_refused(store, monkeypatch):
    """Compare-and-set: a writer that does not take the lock (the MLflow UI, an old client) moves champion while
    promote is deciding; promote re-reads the alias before writing and changes nothing."""
    from components.registry import champion as registry
    from components.registry import versions

    client = store["client"]
    v1 = store["add"](0.30)
    registry.promote(NAME)
    v2 = store["add"](0.20)
    v3 = store["add"](0.10)
    decide = registry._decide

    def decide_while_someone_moves_the_alias(*args, **kwargs):
        out = decide(*args, **kwargs)
        client.set_registered_model_alias(NAME, "champion", v2)  # the concurrent writer
        return out

    monkeypatch.setattr(registry, "_decide", decide_while_someone_moves_the_alias)
    with pytest.raises(registry.ConcurrentChangeError, match="moved from v1 to v2 while this promote"):
        registry.promote(NAME, version=v3)
    assert champion(client) == v2 and versions.champion_history(NAME) == [v1]  # v3 was not written
    assert "promoted_at" not in client.get_model_version(NAME, v3).tags
    monkeypatch.setattr(registry, "_decide", decide)
    d = registry.promote(NAME, version=v3)  # the next command adopts the hand-moved champion into the history
    assert d.promoted and d.champion_version == v2 and "set outside promote/rollback" in d.repaired
    assert versions.champion_history(NAME) == [v1, v2, v3]
    assert_consistent(client)


CRASH = textwrap.dedent("""
    import os, signal, sys
    from mlflow import MlflowClient
    from components.registry import champion as registry
    from components.registry import versions

    write = MlflowClient.set_registered_model_tag
    def die_before_history(self, name, key, value):
        if key == registry.HISTORY_TAG:  # the alias is written, the history is not: a real SIGKILL
            os.kill(os.getpid(), signal.SIGKILL)
        return write(self, name, key, value)
    MlflowClient.set_registered_model_tag = die_before_history
    registry.promote(sys.argv[1])
""")


def test_crash_between_alias_and_history_is_repaired_by_the_next_command(store):
    """SIGKILL a promote between its alias write and its history write: the next rollback finds the intent,
    completes the move (and breaks the dead process's lock), then rolls back through a consistent history."""
    from components.registry import champion as registry
    from components.registry import versions

    client = store["client"]
    v1 = store["add"](0.30)
    registry.promote(NAME)
    v2 = store["add"](0.10)
    proc = subprocess.run([sys.executable, "-c", CRASH, NAME], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "MLFLOW_TRACKING_URI": store["uri"]})
    assert proc.returncode == -9, proc.stderr[-2000:]
    intent = json.loads(model_tags(client)[registry.INTENT_TAG])
    assert champion(client) == v2 and versions.champion_history(NAME) == [v1]  # the torn state
    assert intent["op"] == "promote" and intent["to"] == v2 and intent["history"] == [v1, v2]
    assert client.search_registered_models(filter_string=f"name = '{NAME}{registry.LOCK_SUFFIX}'")  # left held

    with pytest.warns(UserWarning, match="breaking a stale registry lock"):
        assert registry.rollback(NAME) == (v2, v1)
    assert versions.champion_history(NAME) == [v1]
    assert client.get_model_version(NAME, v2).tags["promoted_at"]  # the interrupted promote's tags landed too
    assert_consistent(client)


def test_a_held_lock_makes_the_second_writer_wait_then_fail_clearly(store, monkeypatch):
    from components.registry import champion as registry

    client = store["client"]
    store["add"](0.30)
    client.create_registered_model(f"{NAME}{registry.LOCK_SUFFIX}", tags={"lock_owner": "elsewhere:1:x"})
    t0 = time.monotonic()
    with pytest.raises(registry.RegistryError, match="holds the lock .*elsewhere:1:x"):
        registry.promote(NAME, lock_wait_s=1.0)
    assert 1.0 <= time.monotonic() - t0 < 30 and champion(client) is None
    monkeypatch.setattr(registry, "LOCK_STALE_S", 0.5)  # the foreign holder never comes back
    time.sleep(0.6)
    with pytest.warns(UserWarning, match="breaking a stale registry lock"):
        assert registry.promote(NAME, lock_wait_s=1.0).promoted
    assert_consistent(client)


def test_lock_staleness_is_measured_on_the_registrys_clock(store, monkeypatch):
    """A waiter whose own clock runs an hour ahead must not take a live lock for a stale one (before: its
    time.time() minus the store's creation stamp said 3600 s, and it broke the lock)."""
    from components.registry import champion as registry

    client = store["client"]
    store["add"](0.30)
    client.create_registered_model(f"{NAME}{registry.LOCK_SUFFIX}", tags={"lock_owner": "elsewhere:1:x"})
    real = time.time
    monkeypatch.setattr(registry.time, "time", lambda: real() + 3600.0)
    with pytest.raises(registry.RegistryError, match="holds the lock .*elsewhere:1:x"):
        registry.promote(NAME, lock_wait_s=1.0)
    assert champion(client) is None


def test_a_rollback_to_a_deleted_version_is_refused_and_leaves_no_intent(store):
    from components.registry import champion as registry

    client = store["client"]
    v1 = store["add"](0.30)
    registry.promote(NAME)
    v2 = store["add"](0.10)
    registry.promote(NAME)
    client.delete_model_version(NAME, v1)
    with pytest.raises(registry.RegistryError, match=f"previous champion v{v1} was deleted"):
        registry.rollback(NAME)
    assert champion(client) == v2
    assert_consistent(client)


def test_an_interrupted_move_to_a_since_deleted_version_is_dropped_not_retried_forever(store):
    """An intent left by a crash whose target was deleted afterwards: completing it can never succeed, so the
    next command drops it (and says so) instead of failing on it, and every later command works."""
    from components.registry import champion as registry
    from components.registry.versions import INTENT_TAG

    client = store["client"]
    v1 = store["add"](0.30)
    registry.promote(NAME)
    v2 = store["add"](0.20)
    client.set_registered_model_tag(NAME, INTENT_TAG, json.dumps(
        {"op": "promote", "from": v1, "to": v2, "history": [v1, v2], "at": "then", "version_tags": {}}))
    client.delete_model_version(NAME, v2)
    v3 = store["add"](0.10)
    decision = registry.promote(NAME)
    assert decision.repaired and f"dropped an interrupted promote to v{v2}" in decision.repaired
    assert decision.promoted and champion(client) == v3
    assert_consistent(client)
    assert registry.promote(NAME).repaired is None  # nothing left to repair


RACER = textwrap.dedent("""
    import sys, time
    from components.registry import champion as registry
    from components.registry import versions

    decide = registry._decide
    def slow_decide(*args, **kwargs):  # widen the read-decide-write window so the two runs overlap in it
        out = decide(*args, **kwargs)
        time.sleep(1.0)
        return out
    registry._decide = slow_decide
    from flows.cli import main
    import os, pathlib
    import mlflow.store.model_registry.sqlalchemy_store  # noqa: F401  (warm up: the race is in promote itself)
    registry._client().search_registered_models(max_results=1)
    barrier = pathlib.Path(sys.argv[1])  # both interpreters imported: go together
    (barrier / str(os.getpid())).touch()
    deadline = time.time() + 120
    while len(list(barrier.iterdir())) < 2 and time.time() < deadline:
        time.sleep(0.01)
    sys.exit(main(["promote", "--params", sys.argv[2], "--version", sys.argv[3]]))
""")


def race(store, *versions: str) -> list[subprocess.CompletedProcess]:
    params = store["root"] / "params.yaml"
    params.write_text(f"register:\n  model_name: {NAME}\n  metric: acer\n")
    env = {**os.environ, "MLFLOW_TRACKING_URI": store["uri"]}
    barrier = store["root"] / f"barrier-{'-'.join(versions)}"
    barrier.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(barrier), str(params), v], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for v in versions]
    done = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


def test_two_concurrent_promote_processes(store):
    """Two `eulernet promote` processes at once: the same candidate is promoted exactly once; two different
    candidates end with the better one as champion. History stays consistent either way."""
    from components.registry.versions import champion_history

    client = store["client"]
    v1 = store["add"](0.30)
    v2 = store["add"](0.20)
    v3 = store["add"](0.10)
    client.set_registered_model_alias(NAME, "champion", v1)
    client.set_registered_model_tag(NAME, "champion_history", json.dumps([v1]))

    a, b = race(store, v2, v2)
    assert a.returncode == 0 and b.returncode == 0, (a.stderr[-2000:], b.stderr[-2000:])
    outs = [a.stdout, b.stdout]
    assert sum("PROMOTED" in o for o in outs) == 1, outs
    assert sum(f"v{v2} is already the champion" in o for o in outs) == 1, outs
    assert champion(client) == v2 and champion_history(NAME) == [v1, v2]
    assert_consistent(client)

    a, b = race(store, v3, v1)  # v3 better than v2; v1 worse: whichever runs first, v3 ends champion
    assert a.returncode == 0 and b.returncode == 0, (a.stderr[-2000:], b.stderr[-2000:])
    assert "PROMOTED" in a.stdout and "KEPT" in b.stdout, (a.stdout, b.stdout)
    assert champion(client) == v3 and champion_history(NAME) == [v1, v2, v3]
    assert_consistent(client)


# ------------------------------------------------------------------------------------------ fail closed
def test_a_registry_read_error_never_promotes(store, monkeypatch):
    """Fault injection: the champion alias cannot be read (a locked SQLite file, an HTTP 5xx). Before the fix
    such an error read as "no champion" and a worse candidate was promoted with "no champion yet"."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from components.registry import champion as registry

    client = store["client"]
    v1 = store["add"](0.10)
    registry.promote(NAME)
    v2 = store["add"](0.50)  # much worse
    read = MlflowClient.get_model_version_by_alias
    failures = {"left": 3}

    def flaky(self, name, alias):
        if alias == "champion" and failures["left"] > 0:
            failures["left"] -= 1
            raise MlflowException("(sqlite3.OperationalError) database is locked", error_code="INTERNAL_ERROR")
        return read(self, name, alias)

    monkeypatch.setattr(MlflowClient, "get_model_version_by_alias", flaky)
    for _ in range(3):
        with pytest.raises(registry.RegistryError, match="reading alias 'champion' failed.*INTERNAL_ERROR"):
            registry.promote(NAME)
    assert champion(client) == v1  # the outage moved nothing
    d = registry.promote(NAME)  # the registry answers again: the real comparison runs and refuses v2
    assert not d.promoted and "worse than champion" in d.reason
    assert champion(client) == v1 and v2 != v1


def test_a_missing_champion_with_history_is_not_replaced_without_force(store):
    """The champion alias was deleted (by hand, in the UI) but the model had champions: promoting the next
    candidate would skip the comparison, so it is refused until a person decides."""
    from components.registry import champion as registry

    client = store["client"]
    v1 = store["add"](0.10)
    registry.promote(NAME)
    client.delete_registered_model_alias(NAME, "champion")
    v2 = store["add"](0.50)
    d = registry.promote(NAME)
    assert not d.promoted and "had champions before" in d.reason and "--force" in d.reason
    assert champion(client) is None
    forced = registry.promote(NAME, force=True)
    assert forced.promoted and champion(client) == v2 and v1 != v2


def test_a_model_trained_past_the_quality_gates_is_never_promoted_without_force(store):
    """`eulernet train --skip-gates` records data_gates=skipped on the checkpoint, register copies it onto the
    version: a better metric alone does not move champion to it."""
    from components.registry import champion as registry

    client = store["client"]
    v1 = store["add"](0.20)
    registry.promote(NAME)
    v2 = store["add"](0.01)
    client.set_model_version_tag(NAME, v2, "data_gates", "skipped")
    d = registry.promote(NAME)
    assert not d.promoted and "--skip-gates" in d.reason and champion(client) == v1
    assert registry.promote(NAME, force=True).promoted and champion(client) == v2
