"""EulerNet cost per Table I variant: parameters, FLOPs per clip, CPU forward / forward+backward time per clip,
and the share of a training step spent in FCAM and in its DIIRF recurrence.

    .venv/bin/python benchmarks/model_cost.py            # full size (S=256, width 1.0) and test size
    .venv/bin/python benchmarks/model_cost.py --quick    # test size only (seconds)

One clip = T=4 frames. FLOPs come from torch.utils.flop_counter (convolutions and matmuls; elementwise work
such as the DIIRF recurrence, BN and activations is not counted by it, so DIIRF FLOPs are given analytically:
~9 per pixel per frame). baseline, c1 and c5 are the same network (they differ only in the label they train
on), so the network is timed once per distinct architecture and the figures repeated for its label variants.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.model.eulernet import FCAM, TEST_WIDTH, VARIANTS, create_model  # noqa: E402


def _time(fn, reps: int, warmup: int) -> float:
    """Median process CPU time of ``fn``. CPU time rather than wall time: this machine is shared, and with
    one intra-op thread the process's CPU seconds are what the model costs, whatever else is running."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, reps)):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times)


def _flops(model, x) -> tuple[int, int]:
    from torch.utils.flop_counter import FlopCounterMode

    fcam_names = {f"EulerNet.{n}" for n, m in model.named_modules() if isinstance(m, FCAM)}
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    counts = fc.get_flop_counts()
    fcam = sum(sum(counts.get(n, {}).values()) for n in fcam_names)
    return fc.get_total_flops(), fcam


def _diirf_flops(model, x) -> int:
    """Analytic: per pixel and frame, y = b0 x + h1; h1 = b1 x + h2 - a1 y; h2 = b2 x - a2 y -> 9 FLOPs."""
    sizes = []
    hooks = [m.register_forward_pre_hook(lambda m, inp: sizes.append(inp[0].numel())) for m in model.diirf_modules()]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return 9 * sum(sizes)


class _NoFilter(torch.nn.Module):
    """Stands in for a DIIRF to measure, by difference, what the recurrence costs."""

    def forward(self, x):
        return x


def _profiled_forward_share(model, x) -> tuple[float, float]:
    """Share of the profiled training step's CPU time inside the FCAM / DIIRF forward ranges."""
    from torch.profiler import ProfilerActivity, profile

    model.train()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        model(x).mean().backward()
        wall = time.perf_counter() - t0
    fcam = diirf = 0.0
    for ev in prof.key_averages():
        if ev.key == "FCAM":
            fcam = ev.cpu_time_total / 1e6
        elif ev.key == "DIIRF":
            diirf = ev.cpu_time_total / 1e6
    return fcam / wall, diirf / wall


def measure(arch_variant: str, size: int, width: float, batch: int, reps: int, warmup: int) -> dict:
    torch.manual_seed(0)
    model = create_model(arch_variant, width=width)
    x = torch.randn(batch, 4, 3, size, size)  # (B, T=4, 3, S, S)
    one = x[:1]
    n_params = sum(p.numel() for p in model.parameters())
    flops, fcam_flops = _flops(model, one)
    diirf_flops = _diirf_flops(model, one)

    def fwd():
        model.eval()
        with torch.no_grad():
            model(x)

    def step():
        model.train()
        model.zero_grad(set_to_none=True)
        model(x).mean().backward()

    row = dict(params=n_params, gflops=flops / 1e9, fcam_flops=fcam_flops, diirf_flops=diirf_flops,
               fwd_s=_time(fwd, reps, warmup) / batch, step_s=_time(step, reps, warmup) / batch)
    if model.cfg.fcam:
        row["fcam_prof"], row["diirf_prof"] = _profiled_forward_share(model, x)
        fcams = model.fcam_modules()
        saved = [f.diirf for f in fcams]
        for f in fcams:
            f.diirf = _NoFilter()
        row["step_nofilter_s"] = _time(step, reps, warmup) / batch
        for f, d in zip(fcams, saved):
            f.diirf = d
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="test size only")
    ap.add_argument("--test-size", type=int, default=64, help="crop side for the test-width rows (default 64)")
    ap.add_argument("--test-width", type=float, default=TEST_WIDTH)
    ap.add_argument("--test-batch", type=int, default=4, help="clips per batch at test size (default 4)")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions at test size (median)")
    ap.add_argument("--full-reps", type=int, default=1, help="timed repetitions at full size (median)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    configs = [("test", args.test_size, args.test_width, args.test_batch, args.reps, 1)]
    if not args.quick:
        configs.append(("full", 256, 1.0, 1, args.full_reps, 0))
    arch_of = {n: (v.fcam, v.fusion) for n, v in VARIANTS.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s), {os.cpu_count()} CPUs, "
          f"load average at start {os.getloadavg()[0]:.1f}")
    header = ("| size | variant | FCAM | fusion | params | GFLOPs/clip fwd | FCAM FLOPs | DIIRF MFLOPs | "
              "CPU s/clip fwd | CPU s/clip fwd+bwd | FCAM share of step | DIIRF share of step | "
              "FCAM / DIIRF share of profiled fwd |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for tag, size, width, batch, reps, warmup in configs:
        # One measurement per distinct architecture: label-only variants (baseline, c1, c5) share a network.
        cache: dict = {}
        for name in VARIANTS:
            key = arch_of[name]
            if key not in cache:
                t0 = time.perf_counter()
                cache[key] = measure(name, size, width, batch, reps, warmup)
                print(f"  measured {tag} {name} in {time.perf_counter() - t0:.0f} s wall", file=sys.stderr, flush=True)
        for name, v in VARIANTS.items():
            r = cache[arch_of[name]]
            fcam_share = diirf_share = prof = "-"
            if v.fcam:
                # FCAM by difference against the same network without FCAM (same fusion).
                r_no = cache.get((False, v.fusion))
                if r_no is not None:
                    fcam_share = f"{100 * (r['step_s'] - r_no['step_s']) / r['step_s']:.1f}%"
                diirf_share = f"{100 * (r['step_s'] - r['step_nofilter_s']) / r['step_s']:.1f}%"
                prof = f"{100 * r['fcam_prof']:.1f}% / {100 * r['diirf_prof']:.1f}%"
            lines.append(
                f"| {size}px w={width:g} B={batch} | {name} | {'yes' if v.fcam else 'no'} | {v.fusion} | "
                f"{r['params']:,} | {r['gflops']:.2f} | {100 * r['fcam_flops'] / (r['gflops'] * 1e9):.1f}% | "
                f"{r['diirf_flops'] / 1e6:.2f} | {r['fwd_s']:.3f} | {r['step_s']:.3f} | {fcam_share} | "
                f"{diirf_share} | {prof} |"
            )
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
