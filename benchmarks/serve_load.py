"""Load test of the liveness endpoint on 127.0.0.1: p50/p95 latency and throughput at several concurrencies,
with and without @serve.batch, next to a direct Predictor call on the same one-clip video.

    .venv/bin/python benchmarks/serve_load.py [--width 1.0] [--crop 64] [--levels 1,8,32] [--requests 16]

The service runs from a local checkpoint (no MLflow needed): one replica, the same code path as production.
Batching on/off is switched with a live user_config change (reconfigure, same replica). The c=1 comparison
alternates a direct call and an HTTP request so that load drift on a shared machine hits both alike.
Prints the table quoted in docs/serving.md and PASS/MISS for the targets (p50 at c=1 <= direct + 15 ms,
batching >= 1.5x throughput at c=8, zero errors).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def one_clip_video(path: Path, side: int = 192) -> np.ndarray:
    """10 frames (one clip of 4 at interval 3) of a real face (skimage's astronaut) drifting slightly."""
    import cv2
    from skimage import data

    from components.data.video import read_frames, write_video

    src = data.astronaut()[20:260, 110:350]  # (240, 240, 3)
    frames = []
    for i in range(10):
        m = np.float32([[1, 0, 3 * np.sin(i / 3.0)], [0, 1, 2 * np.cos(i / 4.0)]])
        f = cv2.warpAffine(src, m, (240, 240), borderMode=cv2.BORDER_REFLECT)
        frames.append(cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA))
    write_video(path, np.stack(frames), fps=15)
    return read_frames(path, max_side=480)  # (10, side, side, 3): what the service decodes


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


class Direct:
    """The same work as one request, in this process: decode the same mp4 bytes with the service's decoder,
    then Predictor.predict_video. What is left between this and the HTTP figure is the cost of serving: upload,
    proxy, routing, the thread hops and the batch queue."""

    def __init__(self, checkpoint: Path, body: bytes, torch_threads: int):
        import cv2
        import torch

        from components.inference import Predictor
        from components.labeling.landmarks import make_backend
        from components.serving.inputs import Limits, decode_video

        torch.set_num_threads(torch_threads)  # same settings as the replica, or the comparison is of thread pools
        cv2.setNumThreads(1)
        self.body, self.limits, self.decode = body, Limits(), decode_video
        self.predictor = Predictor.from_checkpoint(checkpoint)
        self.backend = make_backend(self.predictor.landmark_backend)
        self()  # warm-up

    def __call__(self) -> float:
        t = time.perf_counter()
        frames = self.decode(self.body, self.limits, self.predictor.inference.decode_side)  # (T, H, W, 3)
        self.predictor.predict_video(frames, backend=self.backend, max_clips=1)
        return (time.perf_counter() - t) * 1000


def interleaved(direct: Direct, url: str, body: bytes, n: int) -> tuple[list[float], list[float], dict]:
    """Direct call and HTTP request alternately, so load drift on a shared machine hits both alike."""
    import httpx

    d, h, parts = [], [], []
    with httpx.Client(timeout=300) as client:
        for _ in range(n):
            d.append(direct())
            t = time.perf_counter()
            r = client.post(f"{url}/v1/liveness", files={"video": ("clip.mp4", body, "video/mp4")})
            h.append((time.perf_counter() - t) * 1000)
            r.raise_for_status()
            parts.append(r.json()["timing_ms"])
    breakdown = {k: float(np.median([p[k] for p in parts])) for k in parts[0]}
    return d, h, breakdown


def load(url: str, body: bytes, concurrency: int, total: int) -> dict:
    """Exactly ``total`` requests from ``concurrency`` workers, each keeping one request in flight."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    batch_sizes: list[int] = []
    counter = iter(range(total))

    def worker() -> None:
        with httpx.Client(timeout=300) as client:
            for _ in counter:  # shared iterator: the loop is bounded by `total`, not by time
                t = time.perf_counter()
                try:
                    r = client.post(f"{url}/v1/liveness", files={"video": ("clip.mp4", body, "video/mp4")})
                except httpx.HTTPError as exc:
                    errors.append(type(exc).__name__)
                    continue
                dt = (time.perf_counter() - t) * 1000
                if r.status_code != 200:
                    errors.append(str(r.status_code))
                else:
                    latencies.append(dt)
                    batch_sizes.append(r.json()["batch_requests"])

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for f in [pool.submit(worker) for _ in range(concurrency)]:
            f.result()
    wall = time.perf_counter() - t0
    return {"lat": latencies, "wall": wall, "errors": len(errors), "batches": batch_sizes}


def summarize(parts: list[dict]) -> dict:
    lat = [x for p in parts for x in p["lat"]]
    batches = [x for p in parts for x in p["batches"]]
    return {"p50": percentile(lat, 50), "p95": percentile(lat, 95), "rps": len(lat) / sum(p["wall"] for p in parts),
            "ok": len(lat), "errors": sum(p["errors"] for p in parts), "mean_batch": statistics.fmean(batches or [0])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="Predictor checkpoint (default: fresh model, see --width)")
    ap.add_argument("--variant", default="baseline")
    ap.add_argument("--width", type=float, default=1.0, help="model width multiplier (1.0 = paper size)")
    ap.add_argument("--crop", type=int, default=64, help="face crop side (paper 256, sample profile 128)")
    ap.add_argument("--levels", default="1,8,32", help="concurrency levels")
    ap.add_argument("--requests", type=int, default=16, help="requests per level (at least the concurrency)")
    ap.add_argument("--direct-runs", type=int, default=12, help="interleaved direct/HTTP pairs at c=1")
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--max-batch-size", type=int, default=8)
    args = ap.parse_args(argv)
    levels = [int(v) for v in args.levels.split(",")]

    import httpx
    import ray
    from ray import serve

    from components.inference import build_meta, save_checkpoint
    from components.model.eulernet import create_model
    from components.serving.app import build_app
    from components.serving.config import ServeConfig

    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    checkpoint = Path(args.checkpoint) if args.checkpoint else save_checkpoint(
        tmp / "model.pt", create_model(args.variant, width=args.width),
        build_meta(variant=args.variant, crop_size=args.crop, clips_per_video=1, threshold=0.5))
    frames = one_clip_video(tmp / "clip.mp4")
    body = (tmp / "clip.mp4").read_bytes()
    print(f"model: {args.variant} width {args.width} crop {args.crop}; clip video {len(body)} bytes, "
          f"{frames.shape[0]} frames {frames.shape[2]}x{frames.shape[1]}; cpus {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)

    direct = Direct(checkpoint, body, args.torch_threads)

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, configure_logging=False)
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    url = f"http://127.0.0.1:{port}"
    rows = []
    modes = (("no batching", 1, "/nb"), ("batching", args.max_batch_size, "/b"))
    try:
        # Both variants run side by side (an idle replica costs no CPU) and every level alternates them
        # A-B-B-A in half-runs, so a load swing on a shared machine cannot favour one of them.
        for mode, batch, prefix in modes:
            cfg = ServeConfig(port=port, max_clips=1, max_batch_size=batch, batch_wait_timeout_s=0.005,
                              torch_threads=args.torch_threads, preprocess_threads=2, route_prefix=prefix)
            serve.run(build_app("bench", config=cfg, checkpoint=str(checkpoint),
                                deployment_options={"max_ongoing_requests": max(levels) + 8,
                                                    "ray_actor_options": {"num_cpus": 1}}),
                      name=f"bench{prefix.replace('/', '-')}", route_prefix=prefix)
            load(url + prefix, body, 1, 3)  # warm-up: connection pools, first-call allocations
            live = httpx.get(f"{url}{prefix}/v1/model", timeout=30).json()["batching"]
            print(f"{mode}: service at {prefix} reports max_batch_size={live['max_batch_size']}", flush=True)
        d, h, breakdown = interleaved(direct, url + "/b", body, args.direct_runs)
        pairs = {"direct": {"p50": percentile(d, 50), "p95": percentile(d, 95)},
                 "http": {"p50": percentile(h, 50), "p95": percentile(h, 95)}, "breakdown": breakdown}
        print(f"c=1 interleaved: direct p50 {pairs['direct']['p50']:.1f} ms, HTTP p50 "
              f"{pairs['http']['p50']:.1f} ms; server-side median ms {breakdown}", flush=True)
        for c in levels:
            total = max(args.requests, c)
            half = max(c, total // 2)
            parts: dict[str, list] = {m: [] for m, _, _ in modes}
            for mode, _, prefix in (modes[0], modes[1], modes[1], modes[0]):
                parts[mode].append(load(url + prefix, body, c, half))
            for mode, _, _ in modes:
                r = summarize(parts[mode])
                rows.append((mode, c, r))
                print(f"{mode:12s} c={c:<3d} p50 {r['p50']:8.1f} ms  p95 {r['p95']:8.1f} ms  {r['rps']:6.2f} req/s  "
                      f"ok {r['ok']} errors {r['errors']}  mean batch {r['mean_batch']:.1f}", flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()

    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (other work on the machine skews every figure)")
    direct_p50 = pairs["direct"]["p50"]
    print("\n| mode | concurrency | requests | errors | p50 ms | p95 ms | req/s | mean batch |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| direct Predictor.predict_video (interleaved) | 1 | {args.direct_runs} | 0 | {direct_p50:.1f} | "
          f"{pairs['direct']['p95']:.1f} | {1000 / direct_p50:.2f} | - |")
    print(f"| HTTP, batching on (interleaved) | 1 | {args.direct_runs} | 0 | {pairs['http']['p50']:.1f} | "
          f"{pairs['http']['p95']:.1f} | {1000 / pairs['http']['p50']:.2f} | 1.0 |")
    for mode, c, r in rows:
        print(f"| {mode} | {c} | {r['ok'] + r['errors']} | {r['errors']} | {r['p50']:.1f} | {r['p95']:.1f} | "
              f"{r['rps']:.2f} | {r['mean_batch']:.1f} |")
    print(f"\nserver-side split of one c=1 request (median ms): {pairs['breakdown']}")
    by = {(m, c): r for m, c, r in rows}
    overhead = pairs["http"]["p50"] - direct_p50
    checks = [(f"p50 at c=1 <= direct + 15 ms (overhead {overhead:+.1f} ms)", overhead <= 15.0)]
    if (("batching", 8) in by) and (("no batching", 8) in by):
        ratio = by[("batching", 8)]["rps"] / by[("no batching", 8)]["rps"]
        checks.append((f"batching >= 1.5x throughput at c=8 ({ratio:.2f}x)", ratio >= 1.5))
    n_err = sum(r["errors"] for _, _, r in rows)
    checks.append((f"zero errors ({n_err})", n_err == 0))
    print()
    for text, ok in checks:
        print(f"{'PASS' if ok else 'MISS'}  {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
