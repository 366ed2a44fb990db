"""Decoding in worker processes (components/serving/decode.py), without Ray: a crash, a timeout, a memory
blow-up or a cancelled request costs that one request (503/413) and the next request is served; no temporary
file and no worker process outlives its request or its replica."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from components.serving.decode import DecodePool, DecoderUnavailable, DecodeWorkerError, _decoded, _Ticket
from components.serving.inputs import ClipPlan, InputError, Limits, decode_frames_json, decode_video, encode_frames_json
from tests.serve.decode_faults import call

LIMITS = Limits(max_upload_bytes=1_000_000, max_frames=60, max_resolution=640)
FAULTS = "tests.serve.decode_faults"


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie still answers kill(0): count it as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # reaped between the two looks (read gives ESRCH): gone
        return False


def wait_for(cond, timeout: float = 15.0) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


@pytest.fixture(scope="module")
def worker_tmp(tmp_path_factory):
    """The workers' TMPDIR: whatever a decoder would leave in a temp folder lands here, where tests look."""
    path = tmp_path_factory.mktemp("decoder-tmp")
    old = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = old


@pytest.fixture(scope="module")
def pool(worker_tmp):
    p = DecodePool(workers=2, memory_mb=256, deadline_s=5.0, worker_module=FAULTS)
    yield p
    p.close()


@pytest.fixture()
def solo(worker_tmp):
    """One worker: for faults that need to know which worker runs the request. A request waits up to 15 s for it,
    which covers its replacement's start on a loaded machine (a second or more when the CI's other worker is busy)."""
    p = DecodePool(workers=1, memory_mb=256, deadline_s=5.0, queue_timeout_s=15.0, worker_module=FAULTS)
    yield p
    p.close()


def test_pool_decodes_exactly_as_in_process(pool, videos):
    data = videos["live"].read_bytes()
    assert np.array_equal(pool.decode("video", data, LIMITS, 480).to_array(), decode_video(data, LIMITS, 480))
    plan = ClipPlan(4, 3, 2)
    assert np.array_equal(pool.decode("video", data, LIMITS, 480, plan).to_array(),
                          decode_video(data, LIMITS, 480, plan))
    body = json.dumps(encode_frames_json(decode_video(data, LIMITS, 480)[:12])).encode()
    assert np.array_equal(pool.decode("frames", body, LIMITS, 480, plan).to_array(),
                          decode_frames_json(body, LIMITS, 480, plan))


def test_async_api(pool, videos):
    data = videos["live"].read_bytes()

    async def many():
        return await asyncio.gather(*[pool.decode_video(data, LIMITS, 480, ClipPlan(4, 3, 2)) for _ in range(5)])

    decoded = asyncio.run(many())
    assert [d.to_array().shape for d in decoded] == [(22, 192, 192, 3)] * 5
    assert {(d.source, d.fps) for d in decoded} == {((192, 192), 15.0)}  # what the upload declared, for monitoring


def test_input_errors_are_4xx_and_keep_the_worker(pool, videos):
    before = sorted(pool.pids())
    with pytest.raises(InputError) as err:
        pool.decode("video", videos["truncated"].read_bytes(), LIMITS, 480)
    assert (err.value.status, err.value.code) == (422, "corrupt_video")
    assert not isinstance(err.value, DecoderUnavailable)
    with pytest.raises(InputError) as err:
        pool.decode("video", videos["huge"].read_bytes(), LIMITS, 480)
    assert (err.value.status, err.value.code) == (413, "resolution_too_large")
    assert sorted(pool.pids()) == before  # refusing an input costs no worker


def test_worker_crash_is_one_503_and_the_next_request_succeeds(pool, videos):
    with pytest.raises(DecoderUnavailable) as err:
        call(pool, f"{FAULTS}:exit_now", 3)
    assert (err.value.status, err.value.code) == (503, "decoder_unavailable")
    assert err.value.to_json()["error"] == "decoder_unavailable"
    frames = pool.decode("video", videos["live"].read_bytes(), LIMITS, 480).to_array()  # by the other or a new worker
    assert frames.shape == (22, 192, 192, 3)
    assert wait_for(lambda: len(pool.pids()) == 2)
    assert pool.stats()["crashes"] >= 1 and pool.health() is None


def test_worker_killed_mid_decode_is_a_503_then_served(solo, videos):
    victim = solo.pids()[0]
    result: dict = {}

    def slow():
        try:
            call(solo, f"{FAULTS}:sleep", 30)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            result["exc"] = exc

    t = threading.Thread(target=slow)
    t.start()
    assert wait_for(lambda: solo._all[0].read_at is not None, 5)  # the worker has the request: the input's turn
    os.kill(victim, signal.SIGKILL)  # an OOM kill or a segfault, from the replica's point of view
    t.join(10)
    assert isinstance(result.get("exc"), DecoderUnavailable) and result["exc"].code == "decoder_unavailable"
    assert solo.decode("video", videos["live"].read_bytes(), LIMITS, 480).to_array().shape == (22, 192, 192, 3)
    assert victim not in solo.pids()


def test_deadline_kills_the_decode(solo):
    victim = solo.pids()[0]
    t0 = time.monotonic()
    with pytest.raises(DecoderUnavailable) as err:
        call(solo, f"{FAULTS}:sleep", 60, deadline_s=1.0)
    assert (err.value.status, err.value.code) == (503, "decode_timeout")
    assert time.monotonic() - t0 < 3.0
    assert wait_for(lambda: not running(victim), 5)  # killed, not left running in the background
    assert call(solo, f"{FAULTS}:sleep", 0) == 0  # the replacement answers


def test_memory_cap_is_the_workers_413_not_the_replicas(pool):
    with pytest.raises(InputError) as err:
        call(pool, f"{FAULTS}:alloc", 2048)  # 2 GiB against a 256 MB cap
    assert (err.value.status, err.value.code) == (413, "decode_memory_limit")
    assert call(pool, f"{FAULTS}:alloc", 16) == 16
    assert pool.stats()["memory_limit"] >= 1


def test_cancelled_request_stops_its_decode(solo):
    victim = solo.pids()[0]
    ticket = _Ticket()
    result: dict = {}

    def slow():
        try:
            solo.run({"op": "call", "target": f"{FAULTS}:sleep", "args": [60]}, ticket=ticket)
        except Exception as exc:  # noqa: BLE001
            result["exc"] = exc

    t = threading.Thread(target=slow)
    t.start()
    assert wait_for(lambda: ticket.worker is not None, 5)
    t0 = time.monotonic()
    ticket.cancel()  # what the coroutine does when the client goes away
    t.join(5)
    assert time.monotonic() - t0 < 2.0
    assert isinstance(result.get("exc"), DecoderUnavailable)
    assert wait_for(lambda: not running(victim), 5)


def test_no_free_worker_is_a_503(worker_tmp):
    p = DecodePool(workers=1, memory_mb=256, deadline_s=5.0, queue_timeout_s=0.5, worker_module=FAULTS)
    try:
        t = threading.Thread(target=lambda: call(p, f"{FAULTS}:sleep", 2))
        t.start()
        assert wait_for(lambda: p._all[0].busy_since is not None, 5)
        with pytest.raises(DecoderUnavailable, match="no decoder was free"):  # before the busy one is free
            call(p, f"{FAULTS}:sleep", 0)
        t.join()
    finally:
        p.close()


def test_idle_worker_killed_from_outside_costs_no_request(solo, videos):
    os.kill(solo.pids()[0], signal.SIGKILL)
    assert wait_for(lambda: not solo._all[0].alive(), 5)
    assert solo.decode("video", videos["live"].read_bytes(), LIMITS, 480).to_array().shape == (22, 192, 192, 3)


def test_request_to_a_worker_gone_before_reading_it_goes_to_the_next(worker_tmp, videos):
    """A worker that dies while idle can look alive for a moment (a process being torn down): a request sent to it
    that it never read is the input's fault in no way, so it is resent, not answered 503."""
    p = DecodePool(workers=1, memory_mb=256, deadline_s=5.0, queue_timeout_s=30.0, worker_module=FAULTS)
    try:
        victim = call(p, f"{FAULTS}:hang_up_later", 0.1)
        w = p._all[0]
        assert wait_for(lambda: w.conn.poll(0), 5)  # its socket is shut ...
        assert w.alive() and running(victim)  # ... while the process still runs
        assert p.decode("video", videos["live"].read_bytes(), LIMITS, 480).to_array().shape == (22, 192, 192, 3)
        assert p.stats()["crashes"] == 1 and victim not in p.pids()
    finally:
        p.close()
    assert wait_for(lambda: not running(victim), 5)


def test_a_workers_reply_is_checked_before_use():
    ok = {"ok": True, "n": 10, "height": 4, "width": 4, "indices": [0, 3]}
    assert _decoded(ok, b"\0" * 96, LIMITS, 8).n == 10
    declared = _decoded({**ok, "source": [640, 360], "fps": 29.97}, b"\0" * 96, LIMITS, 8)
    assert (declared.source, declared.fps) == ((640, 360), 29.97)  # monitored only, still bounds-checked
    for bad, payload in (({**ok, "indices": [3, 0]}, b"\0" * 96), ({**ok, "indices": [0, 10]}, b"\0" * 96),
                         ({**ok, "height": 4096}, b"\0" * 96), (ok, b"\0" * 95), ({**ok, "n": 10 ** 9}, b"\0" * 96),
                         ({"ok": True}, b""), ({**ok, "source": [10 ** 6, 4]}, b"\0" * 96),
                         ({**ok, "source": [4]}, b"\0" * 96), ({**ok, "fps": float("nan")}, b"\0" * 96)):
        with pytest.raises(DecodeWorkerError):
            _decoded(bad, payload, LIMITS, 8)


def test_no_temp_file_survives_success_failure_or_a_killed_worker(pool, solo, worker_tmp, videos):
    import tempfile

    before = set(os.listdir(tempfile.gettempdir()))
    pool.decode("video", videos["live"].read_bytes(), LIMITS, 480)
    with pytest.raises(InputError):
        pool.decode("video", videos["truncated"].read_bytes(), LIMITS, 480)
    with pytest.raises(DecoderUnavailable):
        call(pool, f"{FAULTS}:exit_now", 9)
    with pytest.raises(DecoderUnavailable):
        call(solo, f"{FAULTS}:sleep", 60, deadline_s=0.5)
    assert os.listdir(worker_tmp) == []  # the workers' own temp folder: decoding reads from memory
    assert not [n for n in set(os.listdir(tempfile.gettempdir())) - before if n.startswith("liveness-")]


def test_workers_exit_with_their_replica(tmp_path):
    """A replica killed with SIGKILL (ray.kill) leaves no decoder behind: they exit on their socket's EOF."""
    script = tmp_path / "replica.py"
    script.write_text(
        "import os, signal, sys\n"
        f"sys.path.insert(0, {os.getcwd()!r})\n"
        "from components.serving.decode import DecodePool\n"
        "p = DecodePool(workers=2, memory_mb=128, deadline_s=5)\n"
        "print(' '.join(map(str, p.pids())), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 2, out.stderr
    assert wait_for(lambda: not any(running(p) for p in pids), 10)


def test_close_stops_every_worker(worker_tmp):
    p = DecodePool(workers=2, memory_mb=128, deadline_s=5, worker_module=FAULTS)
    pids = p.pids()
    p.close()
    assert not any(running(pid) for pid in pids)
    with pytest.raises(DecoderUnavailable):
        call(p, f"{FAULTS}:sleep", 0)


def test_a_decoder_inherits_no_secret(monkeypatch, worker_tmp, videos):
    """The process that parses untrusted uploads holds only allow-listed names: no Ray token, no cloud or
    MLflow credentials, no API keys, whatever the replica's environment carries."""
    from components.serving.decode import DECODER_ENV_ALLOW, decoder_env

    secrets = {"RAY_AUTH_TOKEN": "ray-secret", "AWS_SECRET_ACCESS_KEY": "aws-secret",
               "MLFLOW_TRACKING_PASSWORD": "mlflow-secret", "EULERNET_API_KEY": "api-secret",
               "EULERNET_API_KEY_FILE": "/run/secrets/key", "HOME": "/home/replica"}
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    p = DecodePool(workers=1, memory_mb=256, deadline_s=5.0)
    try:
        (pid,) = p.pids()
        raw = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        env = dict(item.decode().split("=", 1) for item in raw if item)
        assert set(env) <= set(DECODER_ENV_ALLOW) | set(decoder_env(0, 256)), set(env) - set(DECODER_ENV_ALLOW)
        assert not set(secrets) & set(env)
        assert not any(v in "".join(env.values()) for v in secrets.values())
        assert env["TMPDIR"] == str(worker_tmp)  # an allowed name still arrives
        data = videos["live"].read_bytes()  # and it still decodes as the replica would
        assert np.array_equal(p.decode("video", data, LIMITS, 480).to_array(), decode_video(data, LIMITS, 480))
        with pytest.raises(DecodeWorkerError):  # a production decoder runs no code a request names
            call(p, f"{FAULTS}:pid")
    finally:
        p.close()


def test_a_decoder_has_no_network_no_capabilities_and_cannot_read_the_replica():
    """The process that parses untrusted bytes gives up, before its first request, what a compromised decoder
    could use: the network (its own namespace, no interface up: a port the replica reaches is unreachable from
    it), new privileges (NoNewPrivs) and, started by root, every capability, so a non-dumpable replica's
    environment (keys, tokens) is out of its reach. What the platform refuses is reported, never assumed."""
    import socket

    from components.serving.sandbox import is_dumpable

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]
    # A stand-in replica holding a secret, made non-dumpable as LivenessService makes itself.
    code = ("import sys, time; from components.serving.sandbox import non_dumpable, is_dumpable; "
            "assert is_dumpable(); print(non_dumpable(), is_dumpable(), flush=True); time.sleep(60)")
    replica = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "EULERNET_API_KEY": "replica-secret-key-0123"})
    p = DecodePool(workers=1, memory_mb=256, deadline_s=5.0, worker_module=FAULTS)
    try:
        assert replica.stdout.readline().split() == ["ok", "False"]
        (pid,) = p.pids()
        status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":" in line)
        sandbox = p.stats()["sandbox"]
        assert sandbox["no_new_privs"] == "ok" and status["NoNewPrivs"].strip() == "1"
        if os.geteuid() == 0:
            assert sandbox["capabilities"] == "dropped" and int(status["CapEff"], 16) == 0
        if os.geteuid() == 0:  # root with its capabilities (this test) reads it: the secret is there to take
            assert "replica-secret" in open(f"/proc/{replica.pid}/environ").read()
        denied = call(p, f"{FAULTS}:read_environ", replica.pid)
        assert denied.startswith("PermissionError"), denied  # the decoder cannot
        assert socket.create_connection(("127.0.0.1", port), timeout=2)  # the replica's side reaches the port
        reached = call(p, f"{FAULTS}:connect", port)
        if sandbox["network"] == "isolated":
            assert reached != "connected" and "unreachable" in reached.lower(), reached
        else:  # a platform without network namespaces: said so, with the kernel's reason
            assert sandbox["network"].startswith("not isolated (") and reached == "connected"
    finally:
        p.close()
        server.close()
        replica.kill()
        replica.wait()
    assert is_dumpable()  # this test process was not touched


def test_decoder_threads_change_the_speed_not_the_frames(worker_tmp, videos):
    from components.data.video import encode_h264
    from components.serving.config import ServeConfig

    # H.264 with B-frames: what FFmpeg decodes with frame threads (mp4v would decode on one thread anyway).
    frames = decode_video(videos["live"].read_bytes(), LIMITS, 480)  # (22, 192, 192, 3)
    data = encode_h264(np.concatenate([frames, frames[::-1]]), fps=15.0, threads=1)
    plan = ClipPlan(4, 3, 2)
    one = decode_video(data, LIMITS, 480, plan, threads=1)
    assert one.shape == (44, 192, 192, 3) and one.any()
    np.testing.assert_array_equal(decode_video(data, LIMITS, 480, plan, threads=3), one)
    p = DecodePool(workers=1, memory_mb=256, deadline_s=5.0, threads=2)
    try:
        assert p.stats()["threads"] == 2
        np.testing.assert_array_equal(p.decode("video", data, LIMITS, 480, plan).to_array(), one)
    finally:
        p.close()
    with pytest.raises(ValueError, match="decode threads must be within 1..4"):
        decode_video(data, LIMITS, 480, threads=0)
    with pytest.raises(ValueError, match="decode threads must be within 1..4"):
        DecodePool(workers=1, threads=5)
    with pytest.raises(ValueError, match="decode_threads must be within 1..4"):
        ServeConfig(decode_threads=0)
    assert ServeConfig().decode_options()["threads"] == ServeConfig().decode_threads
