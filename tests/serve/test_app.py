"""The liveness service over real HTTP on 127.0.0.1, backed by a real MLflow registry (package fixture)."""
from __future__ import annotations

import concurrent.futures
import time

import httpx
import numpy as np
import pytest

from tests.serve.conftest import MODEL_NAME, SERVE_LIMITS

TIMEOUT = 120


def post_video(url: str, data: bytes, name: str = "clip.mp4", ctype: str = "video/mp4", **params) -> httpx.Response:
    return httpx.post(f"{url}/v1/liveness", files={"video": (name, data, ctype)}, params=params, timeout=TIMEOUT)


def post_frames(url: str, frames: np.ndarray) -> httpx.Response:
    from components.serving.inputs import encode_frames_json

    return httpx.post(f"{url}/v1/liveness", json=encode_frames_json(frames), timeout=TIMEOUT)


@pytest.fixture(scope="module")
def one_clip_frames(videos):
    from components.data.video import read_frames

    return read_frames(videos["live"], max_frames=10)  # (10, H, W, 3): exactly one clip's span


def test_live_scores_above_attack_and_matches_predictor(service, videos, checkpoints):
    from components.data.video import read_frames
    from components.face.landmarks import make_backend
    from components.inference.predictor import Predictor

    live = post_video(service["url"], videos["live"].read_bytes())
    attack = post_video(service["url"], videos["attack"].read_bytes())
    assert live.status_code == 200, live.text
    assert attack.status_code == 200, attack.text
    lj, aj = live.json(), attack.json()
    assert lj["score"] > aj["score"] + 0.1
    assert lj["decision"] == "live"
    assert lj["threshold"] == pytest.approx(0.5)
    assert len(lj["clip_scores"]) == 2 and len(lj["box"]) == 4
    assert lj["model"] == {"name": MODEL_NAME, "version": service["v1"]}
    assert lj["latency_ms"] > 0
    # The service must score exactly as the Predictor does on the same frames (same crops, same model).
    direct = Predictor.from_checkpoint(checkpoints["trained"]).predict_video(
        read_frames(videos["live"], max_side=480), backend=make_backend("dlib"), max_clips=2)
    assert lj["score"] == pytest.approx(direct["score"], abs=1e-5)
    assert lj["clip_scores"] == pytest.approx(direct["clip_scores"], abs=1e-5)
    assert lj["box"] == pytest.approx(direct["box"])


def test_frames_json_path_matches_predictor(service, checkpoints, one_clip_frames):
    from components.face.landmarks import make_backend
    from components.inference.predictor import Predictor

    r = post_frames(service["url"], one_clip_frames)
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["clip_scores"]) == 1 and body["frames"] == 10
    direct = Predictor.from_checkpoint(checkpoints["trained"]).predict_video(
        one_clip_frames, backend=make_backend("dlib"), max_clips=2)
    assert body["score"] == pytest.approx(direct["score"], abs=1e-5)


def test_raw_video_body_and_heatmap(service, videos):
    r = httpx.post(f"{service['url']}/v1/liveness", content=videos["live"].read_bytes(),
                   headers={"content-type": "video/mp4"}, params={"heatmap": "true"}, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    body = r.json()
    m = np.asarray(body["map"])
    assert m.shape == (8, 8) and 0.0 <= m.min() <= m.max() <= 1.0
    assert m.mean() == pytest.approx(body["score"], abs=1e-3)  # the score is the mean of the map
    import base64

    assert base64.b64decode(body["heatmap_png"]).startswith(b"\x89PNG")


def _bad_requests(videos):
    import base64

    from components.serving.inputs import encode_frames_json

    return [
        ("empty body", dict(content=b"", headers={"content-type": "video/mp4"}), 400, "empty_body"),
        ("empty file part", dict(files={"video": ("a.mp4", b"", "video/mp4")}), 400, "empty_body"),
        ("non-video bytes", dict(files={"video": ("a.mp4", b"this is a text file, not a video" * 20,
                                                  "video/mp4")}), 422, "not_a_video"),
        ("truncated mp4", dict(files={"video": ("t.mp4", videos["truncated"].read_bytes(), "video/mp4")}),
         422, "corrupt_video"),
        ("too short", dict(files={"video": ("s.mp4", videos["short"].read_bytes(), "video/mp4")}),
         422, "too_short"),
        ("no face", dict(files={"video": ("n.mp4", videos["no_face"].read_bytes(), "video/mp4")}), 422, "no_face"),
        ("several faces", dict(files={"video": ("2.mp4", videos["two_faces"].read_bytes(), "video/mp4")}),
         422, "multiple_faces"),
        ("too large", dict(content=b"\0" * (SERVE_LIMITS["max_upload_bytes"] + 100_000),
                           headers={"content-type": "video/mp4"}), 413, "too_large"),
        # A video over max_frames is scored on its first frames (tests/serve/test_limits_http.py); JSON frames over
        # the count are refused.
        ("too many frames", dict(json=encode_frames_json(np.zeros((SERVE_LIMITS["max_frames"] + 1, 16, 16, 3),
                                                                  np.uint8))), 413, "too_long"),
        ("resolution", dict(files={"video": ("h.mp4", videos["huge"].read_bytes(), "video/mp4")}),
         413, "resolution_too_large"),
        ("wrong content type", dict(content=b"hello", headers={"content-type": "text/plain"}),
         415, "unsupported_media_type"),
        ("image uploaded as the video", dict(files={"video": ("a.png", b"\x89PNG\r\n\x1a\n", "image/png")}),
         415, "wrong_content_type"),
        ("malformed frames", dict(json={"frames": ["not base64!"]}), 400, "malformed_frames"),
        ("frames not images", dict(json={"frames": [base64.b64encode(b"plain bytes").decode()]}),
         400, "malformed_frames"),
        ("malformed json", dict(content=b"{frames", headers={"content-type": "application/json"}),
         400, "malformed_json"),
    ]


def test_each_bad_input_gets_its_4xx_and_service_keeps_serving(service, videos, one_clip_frames):
    url = service["url"]
    good = post_frames(url, one_clip_frames)
    assert good.status_code == 200
    seen = []
    for label, kwargs, status, code in _bad_requests(videos):
        r = httpx.post(f"{url}/v1/liveness", timeout=TIMEOUT, **kwargs)
        assert r.status_code == status, (label, r.status_code, r.text)
        body = r.json()
        assert body["error"] == code, (label, body)
        assert isinstance(body["detail"], str) and body["detail"], label
        # ... and the very next good request is still served, with the same answer as before.
        after = post_frames(url, one_clip_frames)
        assert after.status_code == 200, (label, after.text)
        assert after.json()["score"] == pytest.approx(good.json()["score"], abs=1e-6)
        seen.append(code)
    assert len(seen) == 15
    assert httpx.get(f"{url}/healthz", timeout=10).json()["status"] == "ok"
    assert httpx.get(f"{url}/readyz", timeout=60).json()["status"] == "ready"


def test_concurrent_requests_are_batched_consistently(service, one_clip_frames):
    url = service["url"]
    single = post_frames(url, one_clip_frames).json()["score"]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        rs = list(pool.map(lambda _: post_frames(url, one_clip_frames), range(6)))
    assert all(r.status_code == 200 for r in rs)
    assert [r.json()["score"] for r in rs] == pytest.approx([single] * 6, abs=1e-5)
    batching = httpx.get(f"{url}/v1/model", timeout=10).json()["batching"]
    assert batching["requests"] >= 7 and batching["max_batch_size"] == 8  # every request went through the model
    # A batch of more than one request under load: tests/serve/test_ops.py::test_concurrent_requests_form_batches


def test_model_health_and_docs(service):
    url = service["url"]
    info = httpx.get(f"{url}/v1/model", timeout=10).json()
    assert info["name"] == MODEL_NAME and info["alias"] == "champion"
    assert info["preprocess"]["crop_size"] == 64 and info["clip"]["length"] == 4
    assert info["threshold"] == pytest.approx(0.5) and info["metrics"]["acer"] == pytest.approx(0.2)
    assert info["limits"]["max_upload_bytes"] == SERVE_LIMITS["max_upload_bytes"]
    assert info["reload_failing"] is False and info["rejected_version"] is None
    health = httpx.get(f"{url}/healthz", timeout=10)
    assert health.json() == {"status": "ok", "request_id": health.headers["x-request-id"]}
    ready = httpx.get(f"{url}/readyz", timeout=60).json()
    assert ready["status"] == "ready" and ready["model"] == {"name": MODEL_NAME, "version": service["v1"]}
    docs = httpx.get(f"{url}/docs", timeout=10)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = httpx.get(f"{url}/openapi.json", timeout=10).json()
    assert {"/v1/liveness", "/v1/model", "/healthz", "/readyz"} <= set(spec["paths"])
    page = httpx.get(f"{url}/", timeout=10)
    assert page.status_code == 200 and 'id="verdict"' in page.text


def _wait_for_version(url: str, version: str, timeout: float = 60.0) -> dict:
    deadline = time.time() + timeout
    info = {}
    while time.time() < deadline:
        info = httpx.get(f"{url}/v1/model", timeout=10).json()
        if info["version"] == version:
            return info
        time.sleep(0.3)
    raise AssertionError(f"service still on v{info.get('version')} after {timeout}s, expected v{version}")


def test_promotion_gate_and_hot_reload_without_restart(service, checkpoints, videos, one_clip_frames):
    from components.registry.champion import promote, rollback
    from components.registry.register import register

    url = service["url"]
    before = httpx.get(f"{url}/v1/model", timeout=10).json()
    assert before["version"] == service["v1"]

    worse = register(checkpoints["untrained"], MODEL_NAME, {"acer": 0.35}, threshold=0.5, test_data_hash="serve-test")
    decision = promote(MODEL_NAME)
    assert not decision.promoted and decision.champion_version == service["v1"]
    assert "worse" in decision.reason
    time.sleep(1.5)  # three poll periods: the service must stay on the champion
    assert httpx.get(f"{url}/v1/model", timeout=10).json()["version"] == service["v1"]

    better = register(checkpoints["untrained"], MODEL_NAME, {"acer": 0.10}, threshold=0.5, test_data_hash="serve-test")
    decision = promote(MODEL_NAME)
    assert decision.promoted and decision.candidate_version == better != worse
    after = _wait_for_version(url, better)
    assert after["replica"] == before["replica"]  # same process: reloaded in place, not restarted
    assert after["loaded_at"] > before["loaded_at"]
    r = post_frames(url, one_clip_frames).json()
    assert r["model"]["version"] == better

    old, new = rollback(MODEL_NAME)
    assert (old, new) == (better, service["v1"])
    back = _wait_for_version(url, service["v1"])
    assert back["replica"] == before["replica"]
    live = post_video(url, videos["live"].read_bytes()).json()
    assert live["model"]["version"] == service["v1"] and live["decision"] == "live"


def test_serve_config_file_builds_the_app():
    """The file `serve deploy` reads passes Ray's schema and our own typed check, and a bad arg is refused."""
    from components.config import ConfigError
    from components.serving.app import app_builder
    from components.serving.config import USER_CONFIG_KEYS, read_serve_config

    sf = read_serve_config("infra/serve_config.yaml")
    assert sf.http_options["host"] == "127.0.0.1" and sf.deployment["autoscaling_config"]["max_replicas"] >= 1
    assert set(sf.user_config) == set(USER_CONFIG_KEYS)
    app = app_builder({**sf.args, "tracking_uri": "sqlite:////tmp/unused.db"})
    assert type(app).__name__ == "Application"
    with pytest.raises(ConfigError, match="max_frame"):
        app_builder({**sf.args, "max_frame": 10})
    with pytest.raises(ConfigError, match="max_frames: expected an integer"):
        app_builder({**sf.args, "max_frames": "ten"})
