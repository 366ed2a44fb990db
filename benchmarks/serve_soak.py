"""Soak test with faults: the real liveness app on 127.0.0.1 under mixed, partly hostile traffic while a replica is
killed and the champion alias is moved.

    .venv/bin/python benchmarks/serve_soak.py [--minutes 5] [--concurrency 8] [--replicas 2] [--upload-burst 64]
        [--json out.json]

What runs: a temporary MLflow registry (SQLite + local artifacts) with two small untrained models (v1 champion, v2
registered); the Serve app from ``components.serving.app.build_app`` with ``--replicas`` fixed replicas polling the
alias every second; ``--concurrency`` client threads sending, at random, valid requests (an mp4 clip, JSON frames,
a 8 s selfie longer than max_frames, a slow chunked upload) and hostile or bad ones (the bad-input corpus of
tests/serve/test_app.py, resolution bombs, 32k x 32k PNG and JPEG bombs on the JSON path, size-changing streams,
a 1000x1 video, a chunked upload over the size cap). At 40 % of the run one replica is killed (``ray.kill``, no
restart: Serve starts a new one); at 65 % v2 is promoted and the replicas hot-reload it.

The client retries a request once on 503 (the answer a request gets when its decoder or replica is gone). Printed:
requests by kind and outcome, p50/p99 latency, valid requests lost (final answer not 200), 500s, RSS of the
surviving replica (and its decoders) after warm-up and at the end, temporary files left in the replicas' TMPDIR,
model versions served before and after the alias moved. Exit status 0 whatever the figures (PASS/MISS lines say
which targets held); ``--json`` writes them for tests/serve/test_soak.py.

``--upload-burst N`` adds, after the soak, ``benchmarks/upload_memory.py``'s burst (its own cluster and one replica
with the production limits): N uploads of 20 MB at once, the replica's RSS against its resting size plus the
configured upload budget (one more PASS/MISS line).
"""
from __future__ import annotations

import argparse
import base64
import collections
import concurrent.futures
import json
import os
import random
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODEL = "soak"
APP = "eulernet-soak"
LIMITS = {"max_upload_bytes": 2_000_000, "max_frames": 90, "max_resolution": 1280}
CROP, CLIP_LEN, CLIP_INTERVAL = 64, 4, 3


# ---------------------------------------------------------------------------------------------- inputs
def face_frames(n: int, side: int = 192, live: bool = True, seed: int = 0) -> np.ndarray:
    """``n`` frames (n, side, side, 3) of a real face (skimage's astronaut) drifting slightly."""
    import cv2
    from skimage import data

    src = data.astronaut()[20:260, 110:350]  # (240, 240, 3)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        dx, dy = (3 * np.sin(i / 3.0), 2 * np.cos(i / 4.0)) if live else 0.3 * rng.standard_normal(2)
        f = cv2.warpAffine(src, np.float32([[1, 0, dx], [0, 1, dy]]), (240, 240), borderMode=cv2.BORDER_REFLECT)
        out.append(cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA))
    return np.stack(out)


def _png_bomb(w: int, h: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 65536)) + chunk(b"IEND", b""))


def _jpeg_bomb() -> bytes:
    import cv2

    raw = bytearray(cv2.imencode(".jpg", np.zeros((32, 32, 3), np.uint8))[1].tobytes())
    sof = raw.index(b"\xff\xc0")
    raw[sof + 5:sof + 9] = struct.pack(">HH", 65000, 65000)
    return bytes(raw)


def _stream(path: Path, frames: np.ndarray, fps: float = 15.0) -> bytes:
    import cv2

    h, w = frames.shape[1:3]
    out = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for f in frames:
        out.write(cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2BGR))
    out.release()
    return path.read_bytes()


def build_corpus(root: Path) -> dict[str, dict]:
    """kind -> {"valid": bool, "expect": accepted statuses, "send": kwargs for httpx (or a callable)}."""
    from skimage import data

    from components.data.video import write_video
    from components.serving.inputs import encode_frames_json

    def video(name: str, frames: np.ndarray, fps: float = 15.0, suffix: str = ".mp4") -> bytes:
        path = root / f"{name}{suffix}"
        write_video(path, frames, fps=fps)
        return path.read_bytes()

    live = face_frames(22)
    clip = video("live", live)
    selfie = video("selfie", face_frames(120, side=160), fps=15)  # 8 s, over max_frames (90): first 90 scored
    no_face = video("no_face", np.repeat(data.coffee()[None, 100:292, 200:392], 12, axis=0))
    two = video("two", np.concatenate([live, live], axis=2))
    short = video("short", live[:6])
    bomb = video("res_bomb", np.zeros((2, 1440, 1440, 3), np.uint8))
    thin = video("thin", np.full((12, 1, 1000, 3), 128, np.uint8), suffix=".avi")
    change = _stream(root / "a.ts", face_frames(12, 160)) + _stream(root / "b.ts", face_frames(12, 640))
    change_down = _stream(root / "c.ts", face_frames(12, 640)) + _stream(root / "d.ts", face_frames(12, 160))
    frames_json = encode_frames_json(live[:10])
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731

    def mp4(body: bytes, name: str = "v.mp4", ctype: str = "video/mp4") -> dict:
        return {"files": {"video": (name, body, ctype)}}

    def chunked(body: bytes, piece: int, pause: float):
        def gen():
            for i in range(0, len(body), piece):
                if pause:
                    time.sleep(pause)
                yield body[i:i + piece]
        return lambda: {"content": gen(), "headers": {"content-type": "video/mp4"}}

    bad_json = {400}
    c: dict[str, dict] = {
        # valid: each must end in 200
        "clip": {"valid": True, "send": mp4(clip), "weight": 30},
        "frames_json": {"valid": True, "send": {"json": frames_json}, "weight": 10},
        "selfie_8s": {"valid": True, "send": mp4(selfie), "weight": 5},
        "slow_upload": {"valid": True, "send": chunked(clip, 8192, 0.03), "weight": 5},
        # the bad-input corpus (tests/serve/test_app.py)
        "empty_body": {"expect": {400}, "send": {"content": b"", "headers": {"content-type": "video/mp4"}}},
        "empty_part": {"expect": {400}, "send": mp4(b"")},
        "not_video": {"expect": {422}, "send": mp4(b"this is a text file, not a video" * 20)},
        "truncated": {"expect": {422}, "send": mp4(clip[: len(clip) // 3])},
        "too_short": {"expect": {422}, "send": mp4(short)},
        "no_face": {"expect": {422}, "send": mp4(no_face)},
        "two_faces": {"expect": {422}, "send": mp4(two)},
        "too_large": {"expect": {413}, "send": {"content": b"\0" * (LIMITS["max_upload_bytes"] + 100_000),
                                                "headers": {"content-type": "video/mp4"}}},
        "wrong_ctype": {"expect": {415}, "send": {"content": b"hello", "headers": {"content-type": "text/plain"}}},
        "image_as_video": {"expect": {415}, "send": {"files": {"video": ("a.png", b"\x89PNG\r\n\x1a\n", "image/png")}}},
        "bad_frames": {"expect": bad_json, "send": {"json": {"frames": ["not base64!"]}}},
        "frames_not_images": {"expect": bad_json, "send": {"json": {"frames": [b64(b"plain bytes")]}}},
        "bad_json": {"expect": bad_json, "send": {"content": b"{frames", "headers": {"content-type": "application/json"}}},
        # hostile
        "res_bomb": {"expect": {413}, "send": mp4(bomb)},
        "png_bomb": {"expect": {413}, "send": {"json": {"frames": [b64(_png_bomb(32768, 32768))] * 4}}},
        "jpeg_bomb": {"expect": {413}, "send": {"json": {"frames": [b64(_jpeg_bomb())] * 4}}},
        "size_change_up": {"expect": {200, 422}, "send": {"content": change, "headers": {"content-type": "video/mp2t"}}},
        "size_change_down": {"expect": {200, 422},
                             "send": {"content": change_down, "headers": {"content-type": "video/mp2t"}}},
        "thin_1000x1": {"expect": {422}, "send": {"files": {"video": ("t.avi", thin, "video/x-msvideo")}}},
        "chunked_over_cap": {"expect": {413}, "send": chunked(b"\0" * (LIMITS["max_upload_bytes"] * 2), 65536, 0)},
    }
    for v in c.values():
        v.setdefault("valid", False)
        v.setdefault("expect", {200})
        v.setdefault("weight", 2)
    return c


# ---------------------------------------------------------------------------------------------- processes
def replica_pids(app: str = APP) -> dict[str, int]:
    """Actor name -> pid of ``app``'s live replicas (from the GCS actor table: no dashboard needed)."""
    import ray._private.state

    return {a["Name"]: a["Pid"] for a in ray._private.state.actors().values()
            if a["State"] == "ALIVE" and a["ActorClassName"] == f"ServeReplica:{app}:LivenessService"}


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return float("nan")


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass
    return out


# ONNX Runtime's native library keeps one 51-byte id file, `$TMPDIR/.ses`, per TMPDIR: written at the first
# session, reused by later ones, never one per request. It is not a leak, so it is not counted as one.
RUNTIME_FILES = {".ses"}


def files_under(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name not in RUNTIME_FILES]


# ---------------------------------------------------------------------------------------------- traffic
RETRY_BACKOFF_S = (0.5, 1.0, 2.0)  # at most three retries, about 3.5 s of waiting in all


class Client:
    def __init__(self, url: str, corpus: dict[str, dict], seed: int):
        self.url, self.corpus = url, corpus
        self.kinds = list(corpus)
        self.weights = [corpus[k]["weight"] for k in self.kinds]
        self.rng = random.Random(seed)
        self.records: list[dict] = []
        self.lock = threading.Lock()

    def once(self, client, kind: str) -> tuple[int, str | None, float]:
        import httpx

        send = self.corpus[kind]["send"]
        kwargs = send() if callable(send) else send
        t = time.perf_counter()
        try:
            r = client.post(f"{self.url}/v1/liveness", **kwargs)
        except httpx.HTTPError as exc:
            return -1, type(exc).__name__, time.perf_counter() - t
        dt = time.perf_counter() - t
        try:
            body = r.json()
            err = body.get("error") if isinstance(body, dict) else None
            version = body.get("model", {}).get("version") if r.status_code == 200 else None
        except ValueError:  # only Ray's proxy answers without JSON (e.g. its 500 for a replica that died)
            err, version = f"proxy:{r.text[:40]}", None
        return r.status_code, err if r.status_code != 200 else version, dt

    @staticmethod
    def retryable(status: int, info) -> bool:
        """503 (a decoder or replica went away under the request), and what a request in flight on a killed
        replica gets from Ray 2.60's proxy: a plain-text 500 (RayActorError), or a dropped connection."""
        return status == 503 or status == -1 or (status == 500 and str(info).startswith("proxy:"))

    def request(self, client, kind: str, t0: float) -> dict:
        start = time.time() - t0
        status, info, dt = self.once(client, kind)
        rec = {"kind": kind, "t": start, "first": status, "first_info": info, "first_s": dt, "retried": False}
        # A client retries what the service marks as transient, with backoff: the replica that replaces a killed
        # one needs a moment to come up, so an immediate single retry can land on the same gap.
        for backoff in RETRY_BACKOFF_S:
            if not self.retryable(status, info):
                break
            rec["retried"] = True
            time.sleep(backoff)
            status, info, dt2 = self.once(client, kind)
            dt += dt2
        rec.update(status=status, info=info, latency=dt)
        with self.lock:
            self.records.append(rec)
        return rec

    def run(self, end: float, t0: float, concurrency: int, record: bool = True) -> None:
        import httpx

        def worker(i: int) -> None:
            rng = random.Random(self.rng.random() + i)
            with httpx.Client(timeout=120) as client:
                while time.time() < end:
                    kind = rng.choices(self.kinds, self.weights)[0]
                    if record:
                        self.request(client, kind, t0)
                    else:
                        self.once(client, kind)

        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            for f in [pool.submit(worker, i) for i in range(concurrency)]:
                f.result()


# ---------------------------------------------------------------------------------------------- main
def setup_registry(root: Path) -> tuple[str, Path, Path]:
    import mlflow
    import torch

    from components.inference.checkpoint import build_meta, save_checkpoint
    from components.model.eulernet import create_model

    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment("eulernet-register", artifact_location=str(root / "artifacts"))
    meta = build_meta(variant="c4", crop_size=CROP, clip_len=CLIP_LEN, clip_interval=CLIP_INTERVAL,
                      clips_per_video=2, threshold=0.5)
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths.append(save_checkpoint(root / f"m{seed}.pt", create_model("c4", width=0.125, clip_len=CLIP_LEN), meta))
    return uri, paths[0], paths[1]


def run_soak(minutes: float, concurrency: int = 8, replicas: int = 2, seed: int = 0, kill: bool = True,
             move_alias: bool = True, log=print) -> dict:
    import httpx
    import ray
    from ray import serve

    from components.registry.champion import promote
    from components.registry.register import register
    from components.serving.app import build_app
    from components.serving.config import ServeConfig

    root = Path(tempfile.mkdtemp(prefix="serve-soak-"))
    replica_tmp = root / "replica-tmp"  # the replicas' (and their decoders') TMPDIR: what is left here is a leak
    replica_tmp.mkdir()
    uri, ckpt1, ckpt2 = setup_registry(root)
    v1 = register(ckpt1, MODEL, {"acer": 0.20}, threshold=0.5, test_data_hash="soak")
    promote(MODEL)
    v2 = register(ckpt2, MODEL, {"acer": 0.10}, threshold=0.5, test_data_hash="soak")  # promoted mid-run
    corpus = build_corpus(root)
    ray.init(num_cpus=max(4, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": 60})
    url = f"http://127.0.0.1:{port}"
    cfg = ServeConfig(model_name=MODEL, port=port, reload_interval_s=1.0, max_clips=2, preprocess_threads=2,
                      torch_threads=1, allow_anonymous=True, rate_limit_per_s=0.0, **LIMITS)  # load, not access
    env = {"TMPDIR": str(replica_tmp), "MLFLOW_TRACKING_URI": uri}
    app = build_app(MODEL, uri, cfg, deployment_options={
        "num_replicas": replicas, "max_ongoing_requests": 32,
        "ray_actor_options": {"num_cpus": 0.5, "runtime_env": {"env_vars": env}}})
    t_setup = time.time()
    serve.run(app, name=APP, route_prefix="/")
    log(f"serve up with {replicas} replicas in {time.time() - t_setup:.0f} s; {len(corpus)} request kinds; "
        f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    client = Client(url, corpus, seed)
    events: dict[str, float] = {}
    try:
        # Warm-up: every kind on every replica, then the timed run's own mix at full concurrency, so first-call
        # allocations and the allocator's high-water mark under concurrency are not counted as growth.
        with httpx.Client(timeout=120) as hc:
            for _ in range(2 * replicas):
                for kind in corpus:
                    client.once(hc, kind)
        warm_s = min(60.0, max(10.0, 0.2 * minutes * 60))
        client.run(time.time() + warm_s, time.time(), concurrency, record=False)
        pids = replica_pids()
        start_rss = {name: rss_mb(pid) for name, pid in pids.items()}
        start_dec = {name: sum(rss_mb(c) for c in children(pid)) for name, pid in pids.items()}
        log(f"replicas {sorted(pids.values())}: RSS after warm-up {', '.join(f'{v:.0f}' for v in start_rss.values())} MB")

        t0 = time.time()
        duration = minutes * 60
        end = t0 + duration
        victim = sorted(pids)[0]

        def faults() -> None:
            if kill:
                time.sleep(max(0.0, t0 + 0.4 * duration - time.time()))
                handle = ray.get_actor(victim, namespace="serve")
                events["kill"] = time.time() - t0
                ray.kill(handle, no_restart=True)
                log(f"t={events['kill']:.0f}s killed replica {victim} (pid {pids[victim]})")
            if move_alias:
                time.sleep(max(0.0, t0 + 0.65 * duration - time.time()))
                decision = promote(MODEL)
                events["alias"] = time.time() - t0
                log(f"t={events['alias']:.0f}s champion -> v{decision.candidate_version} (promoted: {decision.promoted})")

        fault_thread = threading.Thread(target=faults, daemon=True)
        fault_thread.start()
        client.run(end, t0, concurrency)
        fault_thread.join()
        # A decoder killed by the last hostile upload, or the replacement replica, may still be starting when the
        # clients stop: give the pools a bounded moment to settle so "end" means a steady state, not a respawn.
        settle = time.time() + 60
        while True:
            pids_end = replica_pids()
            if (len(pids_end) == replicas and all(len(children(p)) == cfg.decode_workers for p in pids_end.values())) \
                    or time.time() > settle:
                break
            time.sleep(0.5)
        survivors = [n for n in start_rss if n in pids_end]
        end_rss = {n: rss_mb(pids_end[n]) for n in survivors}
        end_dec = {n: sum(rss_mb(c) for c in children(pids_end[n])) for n in survivors}
        decoders = {n: len(children(pids_end[n])) for n in pids_end}
        temp_left = files_under(replica_tmp)
    finally:
        serve.shutdown()
        ray.shutdown()
    temp_after_shutdown = files_under(replica_tmp)
    shutil.rmtree(root, ignore_errors=True)  # the registry, models and inputs of this run
    return summarize(client.records, corpus, events, start_rss, end_rss, start_dec, end_dec, decoders,
                     temp_left, temp_after_shutdown, v1, v2, minutes, concurrency, replicas)


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) * 1000 if xs else float("nan")


def summarize(records, corpus, events, start_rss, end_rss, start_dec, end_dec, decoders, temp_left,
              temp_after, v1, v2, minutes, concurrency, replicas) -> dict:
    by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in records:
        by_kind[r["kind"]][r["status"]] += 1
    valid = [r for r in records if corpus[r["kind"]]["valid"]]
    lost = [r for r in valid if r["status"] != 200]
    unexpected = [r for r in records if not corpus[r["kind"]]["valid"] and r["status"] not in corpus[r["kind"]]["expect"]]
    retried = [r for r in records if r["retried"]]

    def as_expected(r: dict) -> bool:
        kind = corpus[r["kind"]]
        return r["status"] == 200 if kind["valid"] else r["status"] in kind["expect"]

    kill_t = events.get("kill")
    alias_t = events.get("alias")
    versions_before = collections.Counter(r["info"] for r in valid if r["status"] == 200
                                          and (alias_t is None or r["t"] < alias_t))
    versions_after = collections.Counter(r["info"] for r in valid if r["status"] == 200
                                         and alias_t is not None and r["t"] > alias_t + 5)
    growth = {n: (end_rss[n] - start_rss[n]) / start_rss[n] for n in end_rss}
    ok_lat = [r["latency"] for r in valid if r["status"] == 200]
    all_lat = [r["latency"] for r in records]
    return {
        "minutes": minutes, "concurrency": concurrency, "replicas": replicas, "requests": len(records),
        "by_kind": {k: dict(sorted(v.items())) for k, v in sorted(by_kind.items())},
        "valid": len(valid), "valid_ok": len(valid) - len(lost), "valid_lost": len(lost),
        "lost_detail": [{k: r[k] for k in ("kind", "t", "first", "first_info", "status", "info")} for r in lost],
        "unexpected": len(unexpected),
        "unexpected_detail": [{k: r[k] for k in ("kind", "t", "status", "info")} for r in unexpected][:20],
        "status_5xx_final": sum(1 for r in records if r["status"] >= 500),
        "app_500": sum(1 for r in records for s, i in ((r["first"], r["first_info"]), (r["status"], r["info"]))
                       if s == 500 and not str(i).startswith("proxy:")),
        # A retried request ends "ok" with the answer its kind should get: 200 for a valid video, its 4xx for a bad
        # or hostile one (which can be in flight on the killed replica too).
        "retried": len(retried), "retried_ok": sum(1 for r in retried if as_expected(r)),
        "retried_first": dict(collections.Counter(f"{r['first']} {r['first_info']}" for r in retried)),
        # in flight when the replica was killed: sent before, first answer after
        "retried_near_kill": sum(1 for r in retried
                                 if kill_t is not None and r["t"] <= kill_t + 0.5 <= r["t"] + r["first_s"] + 1.0),
        "retried_detail": [{k: r[k] for k in ("kind", "t", "first_info", "status")} for r in retried][:20],
        "p50_ms_valid": pct(ok_lat, 50), "p99_ms_valid": pct(ok_lat, 99),
        "p50_ms_all": pct(all_lat, 50), "p99_ms_all": pct(all_lat, 99),
        "rps": len(records) / (minutes * 60),
        "kill_at_s": kill_t, "alias_moved_at_s": alias_t, "v1": v1, "v2": v2,
        "versions_before_move": dict(versions_before), "versions_after_move": dict(versions_after),
        "rss_start_mb": start_rss, "rss_end_mb": end_rss, "rss_growth": growth,
        "decoder_rss_start_mb": start_dec, "decoder_rss_end_mb": end_dec, "decoders_per_replica_end": decoders,
        "temp_files_left": len(temp_left), "temp_files_after_shutdown": len(temp_after),
        "temp_file_names": sorted(set(temp_left) | set(temp_after))[:20],
    }


def report(res: dict) -> list[tuple[str, bool]]:
    print(f"\n{res['requests']} requests in {res['minutes']:g} min at concurrency {res['concurrency']} "
          f"({res['rps']:.2f} req/s), {res['replicas']} replicas")
    print("\n| kind | requests | outcomes (status: count) |\n|---|---:|---|")
    for kind, counts in res["by_kind"].items():
        print(f"| {kind} | {sum(counts.values())} | {', '.join(f'{s}: {n}' for s, n in counts.items())} |")
    print(f"\nvalid requests: {res['valid']}, answered 200: {res['valid_ok']}, lost: {res['valid_lost']}")
    print(f"retried (backoff {RETRY_BACKOFF_S} s): {res['retried']} ({res['retried_ok']} then answered as expected; "
          f"{res['retried_near_kill']} in flight "
          f"when the replica was killed; first answers {res['retried_first']})")
    print(f"final 5xx answers: {res['status_5xx_final']}; app 500s: {res['app_500']}; hostile/bad answered outside "
          f"their expected status: {res['unexpected']}")
    print(f"latency of valid requests p50 {res['p50_ms_valid']:.0f} ms, p99 {res['p99_ms_valid']:.0f} ms "
          f"(all requests p50 {res['p50_ms_all']:.0f} ms, p99 {res['p99_ms_all']:.0f} ms)")
    print(f"replica killed at t={res['kill_at_s']}, alias moved at t={res['alias_moved_at_s']}: versions served "
          f"before {res['versions_before_move']}, after {res['versions_after_move']}")
    for n in res["rss_start_mb"]:
        if n in res["rss_end_mb"]:
            print(f"surviving replica RSS {res['rss_start_mb'][n]:.0f} -> {res['rss_end_mb'][n]:.0f} MB "
                  f"({100 * res['rss_growth'][n]:+.1f} %); its decoders {res['decoder_rss_start_mb'][n]:.0f} -> "
                  f"{res['decoder_rss_end_mb'][n]:.0f} MB")
    print(f"decoders per replica at the end: {res['decoders_per_replica_end']}")
    print(f"temporary files left: {res['temp_files_left']} (after shutdown: {res['temp_files_after_shutdown']}) "
          f"{res['temp_file_names'][:5]}")
    for d in res["lost_detail"][:10]:
        print("  lost:", d)
    for d in res["unexpected_detail"][:10]:
        print("  unexpected:", d)
    growth = max(res["rss_growth"].values(), default=float("nan"))
    checks = [
        (f"valid requests lost: {res['valid_lost']}", res["valid_lost"] == 0),
        (f"no app 500 ({res['app_500']}), no final 5xx ({res['status_5xx_final']}), no unexpected status "
         f"({res['unexpected']})", res["app_500"] == 0 and res["status_5xx_final"] == 0 and res["unexpected"] == 0),
        (f"retries only around the kill ({res['retried'] - res['retried_near_kill']} elsewhere)",
         res["retried"] == res["retried_near_kill"]),
        (f"replica RSS growth <= 10 % ({100 * growth:+.1f} %)", growth <= 0.10),
        (f"temporary files left: {res['temp_files_left']}", res["temp_files_left"] == 0),
    ]
    if res["alias_moved_at_s"] is not None:
        after = res["versions_after_move"]
        checks.append((f"only v{res['v2']} served after the alias moved ({after})",
                       bool(after) and set(after) == {res["v2"]}))
    print()
    for text, ok in checks:
        print(f"{'PASS' if ok else 'MISS'}  {text}")
    return checks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0, help="length of the timed run (after set-up and warm-up)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-kill", action="store_true", help="do not kill a replica")
    ap.add_argument("--no-alias-move", action="store_true", help="do not move the champion alias")
    ap.add_argument("--upload-burst", type=int, default=0, metavar="N",
                    help="after the soak, N uploads of 20 MB at once to one replica with the production limits "
                         "(benchmarks/upload_memory.py): its RSS against the configured upload budget; 0: skip")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args(argv)
    if args.upload_burst < 0:
        ap.error(f"--upload-burst must be >= 0 (0: skip), got {args.upload_burst}")
    if args.replicas < 2 and not args.no_kill:
        ap.error("killing a replica needs --replicas >= 2 (or --no-kill)")
    res = run_soak(args.minutes, args.concurrency, args.replicas, args.seed, kill=not args.no_kill,
                   move_alias=not args.no_alias_move)
    checks = report(res)
    if args.upload_burst:
        from benchmarks.upload_memory import run as upload_burst  # imports this module: loaded only when asked

        res["upload_burst"] = burst = upload_burst(args.upload_burst, 20)  # prints its own PASS/MISS line
        checks.append((f"upload burst RSS {burst['replica_rss_peak_mb']} MB <= {burst['bound_mb']} MB",
                       burst["within_bound"]))
    res["checks"] = {text: ok for text, ok in checks}
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
