"""What many large uploads at once cost one replica: its RSS (and its decoders') while N clients each send a
20-MB body at the same time, against the replica's upload budget.

    .venv/bin/python benchmarks/upload_memory.py [--uploads 64] [--mb 20] [--multipart] [--json out.json]

What runs: one replica of the real app (``components.serving.app.build_app``, a local untrained checkpoint, the
production limits of ``ServeConfig``: 40-MB cap, 200-MB in-flight budget, two 512-MB decoders) on 127.0.0.1; N
threads post ``--mb`` MB each at once (a valid clip padded with bytes the decoder rejects after its header, so the
replica holds the whole body and a decoder works on it). A sampler reads the replica's and its decoders' RSS every
50 ms. Printed: answers by status (200/422 are the uploads that got in, 503 ``busy`` the ones the budget turned
away, with Retry-After), the replica's RSS before and at its peak, the decoders' peak, and the bound the budget
sets (RSS before + budget: each upload reserves the copies of its body the replica holds at its peak,
``components/serving/budget.py COPIES_HELD``). Exit 0 whatever the figures.
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.serve_soak import children, face_frames, replica_pids, rss_mb  # noqa: E402

APP = "eulernet-uploads"


def _body(mb: int, root: Path) -> bytes:
    from components.data.video import write_video

    path = root / "clip.mp4"
    write_video(path, face_frames(30), fps=15)
    clip = path.read_bytes()
    return clip + bytes(mb * 1_000_000 - len(clip))  # a real header, then trailing bytes to the size asked


def run(uploads: int, mb: int, form: bool = False, log=print) -> dict:
    import httpx
    import ray
    import torch
    from ray import serve

    from components.inference.checkpoint import build_meta, save_checkpoint
    from components.model.eulernet import create_model
    from components.serving.app import build_app
    from components.serving.config import ServeConfig

    root = Path(tempfile.mkdtemp(prefix="upload-memory-"))
    torch.manual_seed(0)
    ckpt = save_checkpoint(root / "m.pt", create_model("c4", width=0.125),
                           build_meta(variant="c4", crop_size=64, clip_len=4, clip_interval=3, threshold=0.5))
    body = _body(mb, root)
    ray.init(num_cpus=max(4, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": 120})
    cfg = ServeConfig(model_name="uploads", port=port, allow_anonymous=True, rate_limit_per_s=0.0)
    serve.run(build_app("uploads", None, cfg, checkpoint=str(ckpt), deployment_options={
        "num_replicas": 1, "max_ongoing_requests": max(32, uploads),
        "ray_actor_options": {"num_cpus": 0.5}}), name=APP, route_prefix="/")
    url = f"http://127.0.0.1:{port}/v1/liveness"
    (pid,) = replica_pids(APP).values()
    with httpx.Client(timeout=120) as hc:  # warm: one ordinary upload
        hc.post(url, content=body[:2_000_000], headers={"content-type": "video/mp4"})
    before, peak, dec_peak, stop = rss_mb(pid), [0.0], [0.0], threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], rss_mb(pid))
            dec_peak[0] = max(dec_peak[0], sum(rss_mb(c) for c in children(pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    barrier = threading.Barrier(uploads)

    def post(_: int) -> int:
        with httpx.Client(timeout=120) as hc:
            barrier.wait()
            if form:  # multipart/form-data, as the demo page and most HTTP clients send a file
                return hc.post(url, files={"video": ("clip.mp4", body, "video/mp4")}).status_code
            return hc.post(url, content=body, headers={"content-type": "video/mp4"}).status_code

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(uploads) as pool:
        statuses = collections.Counter(pool.map(post, range(uploads)))
    wall = time.perf_counter() - t0
    time.sleep(0.5)
    stop.set()
    sampler.join()
    serve.shutdown()
    ray.shutdown()
    budget_mb = cfg.max_inflight_upload_bytes / 1e6
    bound = round(before + budget_mb)
    res = {"uploads": uploads, "mb": mb, "multipart": form, "statuses": dict(sorted(statuses.items())),
           "wall_s": round(wall, 1), "replica_rss_before_mb": round(before), "replica_rss_peak_mb": round(peak[0]),
           "decoders_rss_peak_mb": round(dec_peak[0]), "budget_mb": budget_mb, "bound_mb": bound,
           "within_bound": round(peak[0]) <= bound, "cpus": os.cpu_count()}
    kind = "multipart" if form else "video/mp4"
    log(f"{uploads} {kind} uploads of {mb} MB at once, {wall:.1f} s: answers {res['statuses']}")
    log(f"replica RSS {res['replica_rss_before_mb']} MB before -> {res['replica_rss_peak_mb']} MB peak "
        f"(bound from the {budget_mb:.0f}-MB budget: {res['bound_mb']} MB); decoders' peak "
        f"{res['decoders_rss_peak_mb']} MB")
    log(("PASS" if res["within_bound"] else "MISS") + " replica peak RSS within the budget's bound")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uploads", type=int, default=64)
    ap.add_argument("--mb", type=int, default=20)
    ap.add_argument("--multipart", action="store_true", help="send each body as a multipart/form-data file part")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    res = run(args.uploads, args.mb, form=args.multipart)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
