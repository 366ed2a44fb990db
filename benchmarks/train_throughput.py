"""Training throughput (clips/s): a plain PyTorch loop vs Ray Train with 1 and 2 workers, same model and data.

    .venv/bin/python benchmarks/train_throughput.py [--clips 96] [--crop 64] [--width 0.25] [--epochs 3]
                                                    [--batch 8] [--gpu] [--skip-ray]

Every configuration trains the same EulerNet variant on the same synthetic clips (written once as shards in
the label stage's layout) for the same number of epochs with the same step: the real one,
``components.training.loop.train_step``, which the plain loop calls directly. The figure is the median over
epochs 2.. of (training clips / epoch time), so process start-up and the first epoch's warm-up are excluded.
Ray Train epochs stream the shards through Ray Data (materialised in the object store, as `cache_data: true`).
With --gpu (a CUDA machine), the plain loop is also timed with and without AMP.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "flows"))  # the tiny-shard writer the training tests use


def plain_loop(frames, maps, args, device: str, amp: bool, threads: int | None) -> float:
    """The real training step (``components.training.loop.train_step``, as every Ray Train worker runs it)
    driven by a bare Python loop over in-memory clips: no Ray, no DDP, no data streaming."""
    import torch

    from components.inference.tensors import to_model_input
    from components.model.eulernet import create_model
    from components.model.optim import ranger
    from components.training.loop import train_step

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model("baseline", width=args.width).to(device)
    opt = ranger(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    y_all = torch.from_numpy(np.array(maps))
    rates = []
    for _ in range(args.epochs):
        order = np.random.default_rng(0).permutation(len(frames))
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(0, len(frames), args.batch):
            idx = order[i:i + args.batch]
            x = to_model_input(frames[idx], (0.5,) * 3, (0.5,) * 3, device)  # (B, T, 3, S, S)
            y = y_all[idx].to(device)  # (B, T, M, M)
            train_step(model, x, y, opt, scaler, None, amp, device)  # no LR schedule: constant lr
        if device == "cuda":
            torch.cuda.synchronize()
        rates.append(len(frames) / (time.perf_counter() - t0))
    return statistics.median(rates[1:] or rates)


def ray_train(shards: Path, args, workers: int, use_gpu: bool, amp: bool, tmp: Path) -> tuple[float, float]:
    from components.training.config import TrainConfig
    from components.training.driver import fit

    cfg = TrainConfig(variant="baseline", width=args.width, epochs=args.epochs, lr=1e-3,
                      batch_size=args.batch, num_workers=workers, use_gpu=use_gpu, amp=amp, seed=0,
                      eval_every=10_000, cache_data=True, max_failures=0, shuffle_buffer=0)
    t0 = time.perf_counter()
    res = fit(cfg, shards, str(tmp / "ray"), f"bench-{workers}w-{int(time.time())}", tracking_uri=None)
    wall = time.perf_counter() - t0
    rates = res.history["clips_per_s"].tolist()
    return statistics.median(rates[1:] or rates), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=96, help="training clips (dev gets a quarter as many)")
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8, help="global clips per step")
    ap.add_argument("--gpu", action="store_true", help="time on CUDA (plain fp32/AMP and Ray Train 1 worker)")
    ap.add_argument("--skip-ray", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_TRAIN_ENABLE_STATE_TRACKING", "0")

    import ray
    import torch
    from test_train_shards import write_tiny_shards

    from components.labeling.shards import load_clips

    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    n_videos = args.clips // 2
    shards = write_tiny_shards(tmp / "shards", {"train": n_videos, "dev": max(4, n_videos // 4)}, crop=args.crop)
    data = load_clips(shards, split="train", columns=["frames", "location_map"])
    frames, maps = data["frames"], data["location_map"]
    print(f"# EulerNet baseline width {args.width}, {len(frames)} clips of {frames.shape[1]}x{args.crop}x{args.crop}, "
          f"batch {args.batch}, {args.epochs} epochs, torch {torch.__version__}, {os.cpu_count()} CPUs"
          + (f", {torch.cuda.get_device_name(0)}" if args.gpu else ""))
    rows = []
    device = "cuda" if args.gpu else "cpu"
    base = plain_loop(frames, maps, args, device, amp=False, threads=1 if not args.gpu else None)
    rows.append(("plain PyTorch loop" + (" (1 thread)" if not args.gpu else " fp32"), base, None))
    if args.gpu:
        rows.append(("plain PyTorch loop AMP", plain_loop(frames, maps, args, "cuda", True, None), None))
    else:
        rows.append(("plain PyTorch loop (all threads)", plain_loop(frames, maps, args, "cpu", False, None), None))
    if not args.skip_ray:
        for w in ((1,) if args.gpu else (1, 2)):
            for amp in ((False, True) if args.gpu else (False,)):
                rate, wall = ray_train(shards, args, w, args.gpu, amp, tmp)
                rows.append((f"Ray Train {w} worker{'s' if w > 1 else ''}" + (" AMP" if amp else ""), rate, wall))
    print("| setup | clips/s | x plain | wall s (incl. start-up) |\n|---|---:|---:|---:|")
    for name, rate, wall in rows:
        print(f"| {name} | {rate:.1f} | {rate / base:.2f} | {'' if wall is None else f'{wall:.0f}'} |")


if __name__ == "__main__":
    main()
