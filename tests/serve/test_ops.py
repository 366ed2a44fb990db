"""What an operator relies on (issue 12, items 2-6 and 8): honest health, 5xx answers that say nothing of the
internals, request ids, metrics read back from Ray's Prometheus export, the API key and rate limit, batching
under load, and `eulernet serve` draining on SIGTERM. Health and the 500 path are tested on the replica class
without Serve; the rest over real HTTP on 127.0.0.1."""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from tests.serve.conftest import MODEL_NAME

TIMEOUT = 120


@pytest.fixture(scope="module")
def one_clip_frames(videos):
    from components.data.video import read_frames

    return read_frames(videos["live"], max_frames=10)  # (10, H, W, 3): exactly one clip's span


def post_frames(url: str, frames, headers: dict | None = None) -> httpx.Response:
    from components.serving.inputs import encode_frames_json

    return httpx.post(f"{url}/v1/liveness", json=encode_frames_json(frames), headers=headers, timeout=TIMEOUT)


# ------------------------------------------------------------------------------------------ the replica, bare
class Recorder:
    """Stands in for telemetry.Metrics: keeps the answers counted."""

    def __init__(self):
        self.answers = []

    def answered(self, status, error):
        self.answers.append((status, error))

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


@pytest.fixture
def bare():
    """A LivenessService instance without its constructor (no model, no Serve): the state health checks read."""
    from components.serving.access import ApiKeys, RateLimiter
    from components.serving.app import LivenessService
    from components.serving.config import ServeConfig
    from components.serving.slot import Loaded, ModelSlot

    cls = LivenessService.func_or_class.__bases__[0]  # the class as written, under Serve's ASGI wrapper
    svc = cls.__new__(cls)
    svc._slot = ModelSlot(lambda version: Loaded(None, {"name": "m", "version": "1"}, 0.0), champion=None)
    svc._slot.start()
    svc._pre_pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="prep")
    svc._infer_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="infer")
    svc._cfg = ServeConfig(health_timeout_s=0.5)
    svc._metrics = Recorder()
    svc._api_keys, svc._rate_limiter = ApiKeys(), RateLimiter(0, 1)
    svc._max_clips, svc._in_flight = 2, 0
    svc._decoder_problem = None
    svc._decoder = SimpleNamespace(health=lambda: svc._decoder_problem)  # DecodePool.health's contract
    yield svc
    svc._slot.stop()
    svc._pre_pool.shutdown(wait=False, cancel_futures=True)
    svc._infer_pool.shutdown(wait=False, cancel_futures=True)


def check_health(svc) -> None:
    asyncio.run(svc.check_health())


def test_health_passes_when_everything_works(bare):
    check_health(bare)


def test_health_fails_without_a_model(bare):
    bare._slot.current = None
    with pytest.raises(RuntimeError, match="no model loaded"):
        check_health(bare)


def test_health_fails_when_the_champion_poller_died(bare):
    from components.serving.slot import Loaded, ModelSlot

    bare._slot = ModelSlot(lambda version: Loaded(None, {"name": "m", "version": "1"}, 0.0),
                           champion=lambda: "1", interval_s=0.01)  # nothing to reload
    bare._slot.start()
    time.sleep(0.1)
    assert bare._slot.last_poll is not None  # it polls
    check_health(bare)
    bare._slot.stop()  # the loop ends: the thread is gone, as after any escaped error
    bare._slot._poller.join(timeout=5)
    with pytest.raises(RuntimeError, match="champion poller thread is not running"):
        check_health(bare)


def test_health_fails_when_the_decode_pool_cannot_decode(bare):
    check_health(bare)
    bare._decoder_problem = "no decoder worker has been running for 40 s"
    with pytest.raises(RuntimeError, match="no decoder worker has been running"):
        check_health(bare)


@pytest.mark.parametrize("pool,name", [("_pre_pool", "preprocessing"), ("_infer_pool", "inference")])
def test_health_fails_when_a_pool_is_wedged_and_recovers(bare, pool, name):
    release = threading.Event()
    executor = getattr(bare, pool)
    stuck = [executor.submit(release.wait, 30) for _ in range(executor._max_workers)]  # every worker blocked
    try:
        t0 = time.monotonic()
        with pytest.raises(RuntimeError, match=f"the {name} pool ran no task within 0.5 s"):
            check_health(bare)
        assert time.monotonic() - t0 < 5  # bounded by health_timeout_s, not by the stuck work
    finally:
        release.set()
    for f in stuck:
        f.result(timeout=5)
    check_health(bare)  # the pool runs again: healthy again


def test_a_bug_answers_500_with_only_the_request_id_and_logs_one_traceback(bare):
    from starlette.requests import Request

    secret = "OpenCV(4.10.0) /io/opencv/modules/imgproc/src/resize.cpp:4152: error: (-215:Assertion failed)"

    async def broken(*args, **kwargs):
        raise RuntimeError(secret)

    bare._read_frames = broken
    request = Request({"type": "http", "method": "POST", "path": "/v1/liveness", "query_string": b"",
                       "headers": [(b"content-type", b"video/mp4"), (b"x-request-id", b"rid-500-test")]})
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("ray.serve")
    logger.addHandler(handler)
    try:
        resp = asyncio.run(bare.liveness(request))
    finally:
        logger.removeHandler(handler)
    assert resp.status_code == 500
    assert json.loads(resp.body) == {"error": "internal", "request_id": "rid-500-test"}
    tracebacks = [r for r in records if r.exc_info]
    assert len(tracebacks) == 1 and "rid-500-test" in tracebacks[0].getMessage()
    assert secret in str(tracebacks[0].exc_info[1])  # the operator gets the details, the client does not
    assert bare._metrics.answers == [(500, "internal")]


def test_any_route_that_raises_answers_the_same_500():
    from fastapi import FastAPI

    from components.serving.telemetry import InternalErrors

    app = FastAPI()
    app.add_middleware(InternalErrors)

    @app.get("/boom")
    async def boom():
        raise ValueError("/srv/models/secret-path.pt is broken")

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("ray.serve")
    logger.addHandler(handler)
    try:
        async def get():
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
                return await client.get("/boom", headers={"X-Request-ID": "rid-mw"})

        r = asyncio.run(get())
    finally:
        logger.removeHandler(handler)
    assert r.status_code == 500 and r.json() == {"error": "internal", "request_id": "rid-mw"}
    assert "secret-path" not in r.text
    assert len([rec for rec in records if rec.exc_info]) == 1


# ------------------------------------------------------------------------------------------ access, unit
def test_api_keys_from_env_and_file(tmp_path):
    from components.serving.access import AccessConfigError, ApiKeys, key_id, load_api_keys, presented_key

    assert load_api_keys({}) == ()
    key_file = tmp_path / "keys"
    key_file.write_text("# rotated 2026-01\nfile-key-0123456789abcdef\n\n")
    keys = load_api_keys({"EULERNET_API_KEY": "env-key-0123456789abc, env-key-two-0123456789",
                          "EULERNET_API_KEY_FILE": str(key_file)})
    assert keys == ("env-key-0123456789abc", "env-key-two-0123456789", "file-key-0123456789abcdef")
    with pytest.raises(AccessConfigError, match="at least 16"):
        load_api_keys({"EULERNET_API_KEY": "short"})
    with pytest.raises(AccessConfigError, match="cannot read the key file"):
        load_api_keys({"EULERNET_API_KEY_FILE": str(tmp_path / "missing")})
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(AccessConfigError, match="holds no key"):
        load_api_keys({"EULERNET_API_KEY_FILE": str(tmp_path / "empty")})
    checker = ApiKeys(keys)
    assert checker.identify("file-key-0123456789abcdef") == key_id("file-key-0123456789abcdef")
    assert checker.identify("file-key-0123456789abcdeX") is None and checker.identify(None) is None
    assert presented_key({"authorization": "Bearer abc"}) == "abc"
    assert presented_key({"x-api-key": "xyz"}) == "xyz"
    assert presented_key({"authorization": "Basic abc"}) is None


def test_no_key_and_no_explicit_anonymous_access_fails_closed(monkeypatch, capsys):
    """The default serves nobody anonymously: the key check refuses, a replica refuses to start (before any model
    work) and `eulernet serve` stops before Ray starts, each naming what to set."""
    from components.serving.access import AccessConfigError, require_keys
    from components.serving.app import LivenessService
    from components.serving.config import ServeConfig
    from flows.cli import main

    assert ServeConfig().allow_anonymous is False and ServeConfig().rate_limit_per_s > 0
    with pytest.raises(AccessConfigError, match="no API key configured.*allow_anonymous"):
        require_keys((), allow_anonymous=False)
    require_keys((), allow_anonymous=True)
    require_keys(("k" * 16,), allow_anonymous=False)
    for name in ("EULERNET_API_KEY", "EULERNET_API_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    cls = LivenessService.func_or_class.__bases__[0]  # the class as written, under Serve's ASGI wrapper
    with pytest.raises(AccessConfigError, match="no API key configured"):
        cls(ServeConfig(model_name="m"), checkpoint="/nonexistent.pt")  # refused before the checkpoint is even opened
    assert main(["serve", "--checkpoint", "/nonexistent.pt", "--params", "params.yaml"]) == 2
    assert "no API key configured" in capsys.readouterr().err


def test_client_request_ids_are_kept_only_when_short_and_plain():
    from components.serving.telemetry import request_id

    assert request_id({"x-request-id": "abc-123_X.y:z"}) == "abc-123_X.y:z"
    for hostile in ("a" * 65, "id with spaces", "id\nforged-log-line", "<script>", "ü"):
        got = request_id({"x-request-id": hostile})
        assert got != hostile and len(got) == 32 and got.isalnum()


def test_rate_limiter_token_bucket():
    from components.serving.access import RateLimiter

    now = [0.0]
    limiter = RateLimiter(2.0, 3, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)  # empty: the next token in 1/rate s
    assert limiter.take("b") == 0.0  # per caller
    now[0] += 0.5
    assert limiter.take("a") == 0.0
    assert not RateLimiter(0, 1).enabled and RateLimiter(0, 1).take("a") == 0.0


# ------------------------------------------------------------------------------------------ over HTTP
def test_health_endpoints(service):
    url = service["url"]
    health = httpx.get(f"{url}/healthz", headers={"X-Request-ID": "rid-health"}, timeout=10)
    assert health.json() == {"status": "ok", "request_id": "rid-health"}
    ready = httpx.get(f"{url}/readyz", timeout=60)
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready" and body["problems"] == []
    assert body["model"]["name"] == MODEL_NAME and body["reload_failing"] is False


def test_model_card_is_served_for_the_loaded_version(service):
    """/v1/model/card: the card of the version the replica serves, from its registry record (v1 was registered
    with ACER 0.20), as markdown."""
    r = httpx.get(f"{service['url']}/v1/model/card", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/markdown")
    assert r.text.startswith(f"# Model card: {MODEL_NAME} v") and "| 20.00 % |" in r.text


def _replica_log_lines(app_name: str) -> list[dict]:
    import ray

    folder = Path(ray._private.worker._global_node.get_logs_dir_path()) / "serve"
    lines = []
    for path in folder.glob(f"replica_{app_name}_LivenessService_*.log"):
        for line in path.read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass
    return lines


def test_request_id_in_header_body_and_json_logs(service, videos, one_clip_frames):
    url = service["url"]
    r = post_frames(url, one_clip_frames, headers={"X-Request-ID": "rid-mine-1"})
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == "rid-mine-1" == r.json()["request_id"]
    r = post_frames(url, one_clip_frames)  # none sent: Serve makes one, the body carries the same
    assert r.headers["x-request-id"] and r.json()["request_id"] == r.headers["x-request-id"]
    bad = httpx.post(f"{url}/v1/liveness", files={"video": ("s.mp4", videos["short"].read_bytes(), "video/mp4")},
                     headers={"X-Request-ID": "rid-short-1"}, timeout=TIMEOUT)
    assert bad.status_code == 422 and bad.json()["request_id"] == "rid-short-1" == bad.headers["x-request-id"]
    # The replica's log file is JSON, one object per line, each request's lines tagged with its id.
    deadline = time.time() + 20
    mine: list[dict] = []
    while time.time() < deadline and not mine:
        mine = [ln for ln in _replica_log_lines("eulernet-test") if ln.get("request_id") == "rid-mine-1"]
        time.sleep(0.5)
    assert mine, "no JSON log line carries the request id"
    assert any("POST /v1/liveness 200" in ln["message"] for ln in mine)


def test_model_info_shows_no_internals_unless_authorised(service):
    url = service["url"]
    r = httpx.get(f"{url}/v1/model", timeout=10)
    assert r.status_code == 200
    info = r.json()
    assert "source" not in info and "tags" not in info and "internal" not in info
    assert "pid" not in info["replica"] and info["replica"]["id"]
    registry_root = str(Path(service["tracking_uri"].removeprefix("sqlite:///")).parent)  # db and artifacts
    assert registry_root not in r.text
    assert info["access"] == {"api_key": False, "rate_limit_per_s": 0.0, "rate_limit_burst": 20}
    # No key configured: nobody is authorised for the internal view.
    denied = httpx.get(f"{url}/v1/model", params={"internal": "true"}, timeout=10)
    assert denied.status_code == 403 and denied.json()["error"] == "forbidden"


def _scrape(port: int) -> list[tuple[str, dict, float]]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out = []
    for line in text.splitlines():
        m = re.match(r"^(ray_eulernet_\w+)\{(.*)\} (\S+)$", line)
        if m:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2)))
            out.append((m.group(1), labels, float(m.group(3))))
    return out


def _model_info(samples, version: str) -> list[float]:
    return [v for n, lab, v in samples if n == "ray_eulernet_model_info" and lab.get("application") == "eulernet-test"
            and lab.get("model") == MODEL_NAME and lab.get("version") == str(version)]


def test_metrics_reach_the_prometheus_export(service, videos, one_clip_frames, ray_session):
    """Counters, histograms and the model gauge, read back from the node's Prometheus endpoint."""
    url = service["url"]
    assert post_frames(url, one_clip_frames).status_code == 200
    short = httpx.post(f"{url}/v1/liveness", files={"video": ("s.mp4", videos["short"].read_bytes(), "video/mp4")},
                       timeout=TIMEOUT)
    assert short.status_code == 422
    port = ray_session.nodes()[0]["MetricsExportPort"]

    def value(samples, name, **labels):
        return sum(v for n, lab, v in samples if n == name and lab.get("application") == "eulernet-test"
                   and all(lab.get(k) == str(x) for k, x in labels.items()))

    wanted = {
        "200 counted": lambda s: value(s, "ray_eulernet_requests_total", status=200, error="none") >= 1,
        "422 counted by code": lambda s: value(s, "ray_eulernet_requests_total", status=422, error="too_short") >= 1,
        **{f"{stage} latency": (lambda s, stage=stage: value(s, "ray_eulernet_stage_seconds_count", stage=stage) >= 1)
           for stage in ("decode", "faces", "model", "total")},
        "decisions": lambda s: value(s, "ray_eulernet_decisions_total") >= 1,
        "scores": lambda s: value(s, "ray_eulernet_score_count") >= 1,
        "batch sizes": lambda s: value(s, "ray_eulernet_batch_requests_count") >= 1,
        "upload profile": lambda s: min(value(s, f"ray_eulernet_{m}_count")
                                        for m in ("input_height", "brightness", "face_fraction")) >= 1,
        # One series per replica: under load Serve may add a replica, and each one serving v1 reports 1.
        "model version": lambda s: _model_info(s, service["v1"]) and set(_model_info(s, service["v1"])) == {1.0},
    }
    deadline = time.time() + 90  # workers report to the metrics agent every few seconds
    missing = list(wanted)
    while time.time() < deadline:
        samples = _scrape(port)
        missing = [k for k, ok in wanted.items() if not ok(samples)]
        if not missing:
            break
        time.sleep(2)
    assert not missing, f"not exported: {missing}"
    # The score histogram's buckets hold every scored request, in [0, 1].
    buckets = [(lab["le"], v) for n, lab, v in samples
               if n == "ray_eulernet_score_bucket" and lab.get("application") == "eulernet-test"]
    assert buckets and max(v for _, v in buckets) == value(samples, "ray_eulernet_score_count")


# ------------------------------------------------------------------------------------------ secured app
def test_api_key_guards_scoring_and_model(secured_service, one_clip_frames):
    url, (alpha, _) = secured_service["url"], secured_service["keys"]
    r = post_frames(url, one_clip_frames)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized" and r.json()["request_id"]
    assert r.headers["www-authenticate"].startswith("Bearer")
    wrong = post_frames(url, one_clip_frames, headers={"Authorization": "Bearer not-the-key-0123456789"})
    assert wrong.status_code == 401
    good = post_frames(url, one_clip_frames, headers={"Authorization": f"Bearer {alpha}"})
    assert good.status_code == 200 and 0.0 <= good.json()["score"] <= 1.0
    other_header = httpx.post(f"{url}/v1/liveness", content=b"", timeout=TIMEOUT,
                              headers={"content-type": "video/mp4", "X-API-Key": alpha})
    assert other_header.status_code == 400  # past the key check, refused for its empty body
    assert httpx.get(f"{url}/v1/model", timeout=10).status_code == 401
    info = httpx.get(f"{url}/v1/model", headers={"X-API-Key": alpha}, timeout=10)
    assert info.status_code == 200 and "internal" not in info.json() and "trained.pt" not in info.text
    assert info.json()["access"]["api_key"] is True
    internal = httpx.get(f"{url}/v1/model", params={"internal": "true"}, headers={"X-API-Key": alpha}, timeout=10)
    assert internal.status_code == 200
    assert isinstance(internal.json()["internal"]["pid"], int)
    assert internal.json()["internal"]["checkpoint"].endswith("trained.pt")
    # The API's description follows the scoring rule; the static demo page does not need the key.
    for route in ("openapi.json", "docs", "redoc"):
        assert httpx.get(f"{url}/{route}", timeout=10).status_code == 401, route
        assert httpx.get(f"{url}/{route}", headers={"X-API-Key": alpha}, timeout=10).status_code == 200, route
    spec = httpx.get(f"{url}/openapi.json", headers={"X-API-Key": alpha}, timeout=10).json()
    assert "/v1/liveness" in spec["paths"] and "/docs" not in spec["paths"]
    page = httpx.get(f"{url}/", timeout=10)
    assert page.status_code == 200 and 'id="key"' in page.text
    # Probes need no key.
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    assert httpx.get(f"{url}/readyz", timeout=60).status_code == 200


def test_rate_limit_is_per_key(secured_service):
    url, (alpha, bravo), burst = secured_service["url"], secured_service["keys"], secured_service["burst"]

    def send(key):  # an empty body: refused with 400 right after the key and rate checks, no decoding
        return httpx.post(f"{url}/v1/liveness", content=b"", headers={"content-type": "video/mp4", "X-API-Key": key},
                          timeout=TIMEOUT)

    assert [send(bravo).status_code for _ in range(burst)] == [400] * burst
    limited = send(bravo)
    assert limited.status_code == 429, limited.text
    assert limited.json()["error"] == "rate_limited" and limited.json()["request_id"]
    assert int(limited.headers["retry-after"]) >= 1
    assert send(alpha).status_code == 400  # the other key still has its own budget


def test_concurrent_requests_form_batches(secured_service, one_clip_frames):
    """A batch of more than one request is observed, and batching does not change any score."""
    url, (alpha, _) = secured_service["url"], secured_service["keys"]
    headers = {"Authorization": f"Bearer {alpha}"}
    single = post_frames(url, one_clip_frames, headers=headers)
    assert single.status_code == 200, single.text
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        rs = list(pool.map(lambda _: post_frames(url, one_clip_frames, headers=headers), range(4)))
    assert [r.status_code for r in rs] == [200] * 4, [r.text for r in rs]
    assert [r.json()["score"] for r in rs] == pytest.approx([single.json()["score"]] * 4, abs=1e-5)
    assert max(r.json()["batch_requests"] for r in rs) >= 2, [r.json()["batch_requests"] for r in rs]
    batching = httpx.get(f"{url}/v1/model", headers=headers, timeout=10).json()["batching"]
    assert batching["max_requests"] >= 2 and batching["count"] < batching["requests"]


# ------------------------------------------------------------------------------------------ SIGTERM drain
@contextlib.contextmanager
def _serve_process(checkpoint, tmp_path):
    """`eulernet serve --checkpoint` as a real process on a free port, its console in ``tmp_path/serve.log``, with
    its own local Ray (not the test session's): yields ``(process, log path, port)``, kills it if still alive."""
    import os
    import shutil
    import subprocess
    import sys

    from tests.serve.conftest import free_port

    exe = shutil.which("eulernet", path=str(Path(sys.executable).parent)) or shutil.which("eulernet")
    assert exe, "the eulernet console script is not installed"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([exe, "serve", "--checkpoint", str(checkpoint), "--port", str(port),
                                 "--allow-anonymous"],
                                cwd=Path(__file__).resolve().parents[2], env=env, stdout=log_file,
                                stderr=subprocess.STDOUT, text=True)
    try:
        yield proc, log_path, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_eulernet_serve_drains_in_flight_requests_on_sigterm(checkpoints, videos, tmp_path):
    """`eulernet serve` as a real process: SIGTERM while a request is being uploaded; that request still gets its
    200, the process exits 0, and nothing on its console looks like a crash."""
    import signal

    with _serve_process(checkpoints["trained"], tmp_path) as (proc, log_path, port):
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 300
        while time.time() < deadline and "serving " not in log_path.read_text():
            assert proc.poll() is None, log_path.read_text()
            time.sleep(0.5)
        assert "serving " in log_path.read_text(), log_path.read_text()
        data = videos["live"].read_bytes()
        uploading = threading.Event()

        def slow_body():  # ~1.5 s of upload: the request is in flight when the signal comes
            for i in range(0, len(data), 4096):
                yield data[i:i + 4096]
                uploading.set()
                time.sleep(1.5 * 4096 / len(data))

        result = {}

        def request():
            try:
                r = httpx.post(f"{url}/v1/liveness", content=slow_body(), headers={"content-type": "video/mp4"},
                               timeout=120)
                result["status"], result["body"] = r.status_code, r.json()
            except Exception as exc:  # recorded, asserted below
                result["error"] = repr(exc)
            result["done"] = time.monotonic()

        client = threading.Thread(target=request)
        client.start()
        assert uploading.wait(30)
        time.sleep(0.3)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        client.join(timeout=120)
        rc = proc.wait(timeout=120)
    output = log_path.read_text()
    assert result.get("status") == 200, (result, output[-3000:])
    assert "score" in result["body"] and result["done"] > signalled  # it was in flight, and it was answered
    assert rc == 0, output[-3000:]
    assert "Traceback" not in output and "SIGTERM received" not in output, output[-3000:]
    assert "draining in-flight requests" in output and "stopped" in output


@pytest.mark.slow
def test_eulernet_serve_stops_cleanly_on_a_sigterm_during_start_up(checkpoints, tmp_path):
    """SIGTERM right after `eulernet serve` starts (Kubernetes stopping a pod that is still starting): the
    signal is kept, start-up finishes, Serve stops, exit 0, and no fatal-signal dump."""
    import signal

    with _serve_process(checkpoints["trained"], tmp_path) as (proc, log_path, _):
        deadline = time.time() + 120
        while time.time() < deadline and "== serve" not in log_path.read_text():
            assert proc.poll() is None, log_path.read_text()
            time.sleep(0.1)
        time.sleep(1.0)  # inside Ray's start-up (the header is printed just before it)
        assert "serving " not in log_path.read_text()  # still starting
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=300)
    output = log_path.read_text()
    assert rc == 0, output[-3000:]
    assert "SIGTERM during start-up: stopping" in output and "eulernet serve: stopped" in output, output[-3000:]
    assert "Traceback" not in output and "SIGTERM received" not in output, output[-3000:]


def test_the_upload_budget_bounds_the_bytes_a_replica_holds(bare):
    """Each request reserves its declared body size before reading it; one that does not fit is turned away
    (503, Retry-After) without a byte read, and every reservation comes back when its request ends, however."""
    from starlette.requests import Request

    from components.serving.budget import UploadBudget
    from components.serving.inputs import InputError, Limits

    budget = UploadBudget(1000)
    assert budget.reserve(600) and not budget.reserve(500) and budget.used == 600
    budget.release(600)
    assert budget.used == 0 and budget.reserve(1000)
    budget.release(1000)

    bare._limits = Limits(max_upload_bytes=2000, max_frames=30, max_resolution=640)
    bare._uploads = UploadBudget(6000)
    read = []

    def request(size: int) -> Request:
        async def receive():
            read.append(size)
            return {"type": "http.request", "body": b"\0" * size, "more_body": False}

        scope = {"type": "http", "method": "POST", "path": "/v1/liveness", "query_string": b"",
                 "headers": [(b"content-type", b"video/mp4"), (b"content-length", str(size).encode())]}
        return Request(scope, receive)

    async def decode_video(body, limits, side, plan):
        assert bare._uploads.used == 3 * 1500  # reserved while it decodes: Serve's messages (pickled, unpickled), our buffer
        raise InputError(422, "not_a_video", "zeros")

    bare._decoder = SimpleNamespace(decode_video=decode_video)
    state = SimpleNamespace(predictor=SimpleNamespace(inference=SimpleNamespace(decode_side=64, window_seconds=None), clip_len=4,
                                                      clip_interval=3))
    assert bare._uploads.reserve(3100)  # other requests in flight hold 3100 of 6000
    with pytest.raises(InputError) as busy:
        asyncio.run(bare._read_frames(request(1500), state, 2))
    assert busy.value.status == 503 and busy.value.code == "busy" and read == []  # refused before reading
    bare._uploads.release(3100)
    with pytest.raises(InputError) as bad:
        asyncio.run(bare._read_frames(request(1500), state, 2))
    assert bad.value.code == "not_a_video" and bare._uploads.used == 0  # given back after a failure too
    resp = bare._reply(503, {"error": "busy", "detail": busy.value.detail}, "rid-busy")
    assert resp.status_code == 503 and resp.headers["retry-after"] == "1"


def _chunked_request(chunks: list[bytes], ctype: bytes, declared: int | None):
    from starlette.requests import Request

    pending = list(chunks)

    async def receive():
        body = pending.pop(0) if pending else b""
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    headers = [(b"content-type", ctype)]
    if declared is not None:
        headers.append((b"content-length", str(declared).encode()))
    return Request({"type": "http", "method": "POST", "path": "/v1/liveness", "query_string": b"",
                    "headers": headers}, receive)


def test_a_declared_body_is_read_into_one_buffer_of_its_size_and_checked_against_it():
    """The body a client declares is filled into one buffer allocated at that size (growing one re-allocates it
    and briefly holds two); the bytes come out unchanged, chunk boundaries or not, and a body longer than it
    declared is refused rather than overrunning the buffer."""
    from components.serving import upload
    from components.serving.inputs import InputError

    data = bytes(range(256)) * 400  # 102,400 bytes: over a 20,000-byte limit with the multipart slack
    chunks = [data[:1000], data[1000:1001], data[1001:70000], data[70000:]]
    body = asyncio.run(upload.read_body(_chunked_request(chunks, b"video/mp4", len(data)), limit=200_000))
    assert isinstance(body, bytearray) and bytes(body) == data
    short = asyncio.run(upload.read_body(_chunked_request(chunks[:2], b"video/mp4", len(data)), limit=200_000))
    assert bytes(short) == data[:1001]  # what arrived, not the zero-filled rest
    chunked = asyncio.run(upload.read_body(_chunked_request(chunks, b"video/mp4", None), limit=200_000))
    assert bytes(chunked) == data
    with pytest.raises(InputError) as longer:
        asyncio.run(upload.read_body(_chunked_request(chunks, b"video/mp4", 5000), limit=200_000))
    assert longer.value.status == 400 and longer.value.code == "length_mismatch"
    with pytest.raises(InputError) as too_big:
        asyncio.run(upload.read_body(_chunked_request(chunks, b"video/mp4", None), limit=20_000))
    assert too_big.value.status == 413


def test_a_multipart_upload_reserves_the_three_copies_a_body_holds_and_hands_over_a_view(bare):
    """A multipart body is held like a raw one (three copies at its peak: Serve's pickled and unpickled messages
    and the buffer): the file part reaches the decoder intact as a view into the buffer, not a fourth copy, and
    the body reserves three times its length: the budget bounds what the replica holds, not what the client
    declared."""
    from components.serving.budget import UploadBudget
    from components.serving.inputs import InputError, Limits

    video = b"\0\1video" * 100
    boundary = b"XyZ"
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"video\"; filename=\"a.mp4\"\r\n"
            b"Content-Type: video/mp4\r\n\r\n" + video + b"\r\n--XyZ--\r\n")
    ctype = b"multipart/form-data; boundary=" + boundary
    bare._limits = Limits(max_upload_bytes=10_000, max_frames=30, max_resolution=640)
    seen = {}

    async def decode_video(data, limits, side, plan):
        seen["used"], seen["data"], seen["view"] = bare._uploads.used, bytes(data), isinstance(data, memoryview)
        raise InputError(422, "not_a_video", "stand-in bytes")

    bare._decoder = SimpleNamespace(decode_video=decode_video)
    state = SimpleNamespace(predictor=SimpleNamespace(inference=SimpleNamespace(decode_side=64, window_seconds=None), clip_len=4,
                                                      clip_interval=3))
    bare._uploads = UploadBudget(3 * len(body))
    with pytest.raises(InputError):
        asyncio.run(bare._read_frames(_chunked_request([body[:50], body[50:]], ctype, len(body)), state, 2))
    assert seen == {"used": 3 * len(body), "data": video, "view": True} and bare._uploads.used == 0
    bare._uploads = UploadBudget(3 * len(body) - 1)  # one byte short of three copies: refused before reading
    with pytest.raises(InputError) as busy:
        asyncio.run(bare._read_frames(_chunked_request([body], ctype, len(body)), state, 2))
    assert busy.value.code == "busy"


def test_a_budget_too_small_for_one_multipart_upload_at_the_limit_is_refused_at_config():
    """Such a budget would answer 503 to every upload near the limit, forever: refused when the config is read."""
    from components.serving.config import ServeConfig

    with pytest.raises(ValueError, match="held three times"):
        ServeConfig(max_upload_bytes=70_000_000)  # 3 x 70 MB > the default 200-MB budget
    assert ServeConfig(max_upload_bytes=70_000_000, max_inflight_upload_bytes=211_000_000).max_upload_bytes


def test_a_503_from_the_decoder_says_nothing_inside_and_when_to_retry(bare):
    """Every 5xx body is `{"error": "internal", "request_id"}`; the precise code goes to the metric and the log."""
    resp = bare._reply(503, {"error": "decoder_unavailable", "detail": "worker 4242 died (SIGSEGV) in /tmp/x"},
                       "rid-503")
    assert resp.status_code == 503 and json.loads(resp.body) == {"error": "internal", "request_id": "rid-503"}
    assert resp.headers["retry-after"] == "1"
    assert bare._metrics.answers == [(503, "decoder_unavailable")]
