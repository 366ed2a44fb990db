"""Fixtures for the serving tests: real face videos, a quickly trained tiny model, a real MLflow registry and
one Ray Serve application shared by every test in this folder (Serve up + down costs ~12 s)."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

CROP = 64
CLIP_LEN = 4
CLIP_INTERVAL = 3
MODEL_NAME = "fas-test"


# ------------------------------------------------------------------------------------------ videos
def face_frames(face_rgb: np.ndarray, n: int, live: bool, side: int = 192, seed: int = 0) -> np.ndarray:
    """``n`` frames (n, side, side, 3) of the astronaut's face.

    live: the head drifts a few pixels and the light flickers slightly, like a person in front of a camera.
    attack: a printed photo held still: blurred, washed out and warm-tinted, with a faint halftone.
    """
    import cv2

    rng = np.random.default_rng(seed)
    src = face_rgb[20:260, 110:350]  # (240, 240, 3): the face fills ~40% of the frame side
    frames = []
    for i in range(n):
        dx, dy = (3 * np.sin(i / 3.0), 2 * np.cos(i / 4.0)) if live else (0.3 * rng.standard_normal(2))
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        f = cv2.warpAffine(src, m, (240, 240), borderMode=cv2.BORDER_REFLECT)
        f = cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
        if live:
            f = f * (1.0 + 0.03 * np.sin(i))
        else:
            f = cv2.GaussianBlur(f, (0, 0), 2.0)
            f = 0.55 * f + 0.45 * 200.0
            f[..., 2] *= 0.85
            yy, xx = np.mgrid[0:side, 0:side]
            f += 10.0 * (((xx + yy) // 2) % 2)[..., None]
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return np.stack(frames)  # (n, side, side, 3)


@pytest.fixture(scope="session")
def videos(tmp_path_factory, real_face_rgb) -> dict[str, Path]:
    """Real-face test videos (mp4 via OpenCV) plus the damaged/odd ones the error tests need."""
    from skimage import data

    from components.data.video import write_video

    root = tmp_path_factory.mktemp("videos")
    out = {}
    live = face_frames(real_face_rgb, 22, live=True)
    attack = face_frames(real_face_rgb, 22, live=False)
    for name, frames in (("live", live), ("attack", attack), ("short", live[:6]),
                         ("two_faces", np.concatenate([live, live], axis=2)),
                         ("no_face", np.repeat(data.coffee()[None, 100:292, 200:392], 12, axis=0)),
                         ("long", np.repeat(live[:1, ::3, ::3], 61, axis=0)),
                         ("huge", np.repeat(np.pad(live[:1], ((0, 0), (0, 520), (0, 520), (0, 0))), 2, axis=0))):
        out[name] = root / f"{name}.mp4"
        write_video(out[name], frames, fps=15)
    raw = out["live"].read_bytes()
    out["truncated"] = root / "truncated.mp4"
    out["truncated"].write_bytes(raw[: len(raw) // 3])
    return out


# ------------------------------------------------------------------------------------------ model
def train_tiny(live_crops: np.ndarray, attack_crops: np.ndarray, steps: int = 24, seed: int = 0):
    """A tiny EulerNet taught in-process with plain torch: high maps on live clips, low on attacks.

    Trained in eval mode so BatchNorm is a fixed affine: with four clips, batch statistics would differ
    from the running ones the service uses and the learned separation would not survive ``.eval()``.
    Variant c4 (no FCAM): the cheapest network that still runs the whole serving path. The output layer starts near zero (every map at 0.5), so the first dozen steps
    only grow the read-out: 12 steps left loss 0.250 and scores within 2e-4; 24 steps separate live (0.97)
    from attack (0.51). ~30 s on a busy 2-core machine.
    """
    import torch

    from components.inference.tensors import to_model_input
    from components.model.eulernet import create_model

    torch.manual_seed(seed)
    model = create_model("c4", width=0.125, clip_len=CLIP_LEN).eval()
    x = to_model_input(np.concatenate([live_crops, attack_crops]), (0.5,) * 3, (0.5,) * 3)  # (N, T, 3, S, S)
    y = torch.cat([torch.ones(len(live_crops)), torch.zeros(len(attack_crops))])  # (N,)
    target = y.view(-1, 1, 1, 1).expand(-1, CLIP_LEN, CROP // 8, CROP // 8)  # (N, T, M, M) binary-mask labels
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        loss = model.loss(model(x), target)
        loss.backward()
        opt.step()
    return model, float(loss.detach())


def _face_clips(face_rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Training clips cut by the production clip extractor (the crops the service will see)."""
    from components.face.clips import extract_clips
    from components.face.landmarks import make_backend

    backend = make_backend("dlib")
    out = {}
    for name, live, seed in (("live", True, 1), ("attack", False, 2)):
        frames = face_frames(face_rgb, 20, live=live, seed=seed)
        out[name] = extract_clips(frames, backend, CROP, CLIP_LEN, CLIP_INTERVAL, max_clips=2).crops
    return out  # each (2, T, S, S, 3)


def _make_checkpoints(root: Path, face_rgb: np.ndarray) -> dict[str, Path]:
    from components.inference.checkpoint import build_meta, save_checkpoint
    from components.model.eulernet import create_model

    clips = _face_clips(face_rgb)
    model, _ = train_tiny(clips["live"], clips["attack"])
    meta = build_meta(variant="c4", crop_size=CROP, clip_len=CLIP_LEN, clip_interval=CLIP_INTERVAL,
                      clips_per_video=2, threshold=0.5)
    return {"trained": save_checkpoint(root / "trained.pt", model, meta),
            "untrained": save_checkpoint(root / "untrained.pt", create_model("c4", width=0.125), meta)}


@pytest.fixture(scope="session")
def _checkpoints_future(tmp_path_factory, real_face_rgb):
    """Starts training in a thread (torch releases the GIL) so it overlaps Ray start-up and MLflow's migrations."""
    import concurrent.futures

    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tiny-train")
    future = pool.submit(_make_checkpoints, tmp_path_factory.mktemp("ckpt"), real_face_rgb)
    yield future
    pool.shutdown(wait=True)


@pytest.fixture(scope="session")
def checkpoints(_checkpoints_future) -> dict[str, Path]:
    """``trained``: separates live from attack; ``untrained``: same architecture, random weights."""
    return _checkpoints_future.result()


# ------------------------------------------------------------------------------------------ registry
@pytest.fixture(scope="package")
def registry(tmp_path_factory):
    """A real MLflow tracking + registry store: SQLite file and a local artifact folder."""
    import mlflow

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment("eulernet-register", artifact_location=str(root / "artifacts"))
    yield uri
    mlflow.set_tracking_uri(previous)


# ------------------------------------------------------------------------------------------ service
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVE_LIMITS = {"max_upload_bytes": 1_000_000, "max_frames": 60, "max_resolution": 640}


@pytest.fixture(scope="package")
def service(_checkpoints_future, ray_session, registry, checkpoints, tmp_path_factory):
    """The liveness app on 127.0.0.1, serving v1 (the trained model) as champion, polling every 0.5 s."""
    from ray import serve

    from components.registry.champion import promote
    from components.registry.register import register
    from components.serving.app import build_app
    from components.serving.config import ServeConfig
    from components.serving.inputs import wait_until_up

    v1 = register(checkpoints["trained"], MODEL_NAME, {"acer": 0.20}, threshold=0.5, test_data_hash="serve-test")
    promote(MODEL_NAME)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    # Anonymous on purpose (a local test service) and without a rate limit (tests send bursts); the keyed path
    # and the limit are the secured service's.
    cfg = ServeConfig(model_name=MODEL_NAME, port=port, reload_interval_s=0.5, max_clips=2,
                      preprocess_threads=2, torch_threads=1, allow_anonymous=True, rate_limit_per_s=0.0,
                      request_log_dir=str(tmp_path_factory.mktemp("request-log")), **SERVE_LIMITS)
    app = build_app(MODEL_NAME, registry, cfg, deployment_options={"ray_actor_options": {"num_cpus": 0.5}})
    serve.run(app, name="eulernet-test", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    wait_until_up(f"{url}/healthz", timeout_s=60)
    yield {"url": url, "port": port, "v1": v1, "tracking_uri": registry, "request_log": cfg.request_log_dir}
    serve.shutdown()


# Two keys, so a test can exhaust one key's rate limit and see the other still served.
API_KEYS = ("test-key-alpha-0123456789", "test-key-bravo-0123456789")
SECURED_BURST = 10


@pytest.fixture(scope="package")
def secured_service(service, checkpoints):
    """A second application beside `service` (same Serve instance and port, route /secured): the trained
    checkpoint served with an API key (EULERNET_API_KEY in the replica's environment), a per-key rate limit of
    SECURED_BURST requests then one per 100 s, and a wide batch window (1 s) so concurrent requests batch."""
    from ray import serve

    from components.serving.app import build_app
    from components.serving.config import ServeConfig
    from components.serving.inputs import wait_until_up

    cfg = ServeConfig(model_name="secured", port=service["port"], max_clips=2, preprocess_threads=2,
                      batch_wait_timeout_s=1.0, rate_limit_per_s=0.01, rate_limit_burst=SECURED_BURST,
                      request_log_dir="", **SERVE_LIMITS)
    env = {"EULERNET_API_KEY": ",".join(API_KEYS)}
    app = build_app("secured", None, cfg, checkpoint=str(checkpoints["trained"]),
                    deployment_options={"ray_actor_options": {"num_cpus": 0.5, "runtime_env": {"env_vars": env}}})
    serve.run(app, name="eulernet-secured", route_prefix="/secured")
    url = f"{service['url']}/secured"
    wait_until_up(f"{url}/readyz", timeout_s=60, probe_timeout_s=30)
    yield {"url": url, "keys": API_KEYS, "burst": SECURED_BURST}
    serve.delete("eulernet-secured")
