"""GPU smoke test: one command, about 5 minutes on one GPU, that proves the GPU paths work end to end.

    .venv/bin/python benchmarks/gpu_smoke.py [--out DIR] [--full-throughput]

Run it from the repository root on a machine with one CUDA GPU and the CUDA build of the pinned torch. In order:

1. the environment: torch, CUDA, cuDNN, NVIDIA driver, GPU, Ray;
2. every variant (``components.model.VARIANTS``) trains a few float16 AMP steps through the real training
   step (``components.training.loop.train_step``) with Ranger: every loss finite, the GradScaler's scale
   history printed, and one step with an injected inf gradient leaves the weights and the optimiser state
   (RAdam moments, Lookahead slow weights and counters) exactly unchanged while the scale backs off;
3. a checkpoint saved from the CUDA model reloads on the CPU and back on CUDA, scores agreeing to 1e-4;
4. Ray Train with ``use_gpu: auto`` on 1 worker resolves to the GPU (the worker's device is recorded by an
   ``epoch_start_hook``), then the run is resumed for one more epoch and keeps the GPU;
5. one request is served by a GPU replica (``device: cuda``, ``num_gpus: 0.5``);
6. ``benchmarks/train_throughput.py --gpu --skip-ray`` gives training clips/s without and with AMP
   (``--full-throughput`` adds its Ray Train rows, ~1 more minute).

Every check runs even when an earlier one failed; the summary lists them all. Exit code: 0 when every check
passed, 1 when one failed, 2 when there is no CUDA device (nothing else is attempted then). ``--rehearse-on-cpu``
runs the same checks on the CPU (float32 forward with the same GradScaler logic, Ray Train and Serve on CPU
devices, ~2 minutes on 2 cores) to test this script itself on a machine without a GPU; its figures mean nothing.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "flows"))  # the tiny-shard writer the training tests use

NO_CUDA = 2
FAILED = 1
CROP = 64
WIDTH = 0.25


class Checks:
    """Runs named checks, never stopping at a failure, and keeps what each reported."""

    def __init__(self):
        self.results: list[dict] = []

    def run(self, name: str, fn, *args, **kwargs):
        print(f"\n== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            detail = fn(*args, **kwargs)
            ok, error = True, None
        except Exception as exc:  # a failed check is reported, and the next one still runs
            detail, ok, error = None, False, f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        seconds = time.perf_counter() - t0
        self.results.append({"check": name, "ok": ok, "seconds": round(seconds, 1), "detail": detail,
                             "error": error})
        print(f"-- {name}: {'ok' if ok else 'FAILED: ' + str(error)} ({seconds:.1f} s)", flush=True)
        return detail

    @property
    def ok(self) -> bool:
        return all(r["ok"] for r in self.results)


def require(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(message)


# ------------------------------------------------------------------------------------------ 1. environment
def environment(device) -> dict:
    import ray
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "ray": ray.__version__, "device": str(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
                   gpu_memory_gib=round(props.total_memory / 2**30, 1), gpus=torch.cuda.device_count())
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=30)
            env["driver"] = out.stdout.strip().splitlines()[0] if out.returncode == 0 else None
        except (OSError, IndexError, subprocess.TimeoutExpired):
            env["driver"] = None
    for k, v in env.items():
        print(f"   {k:16s} {v}")
    return env


# ------------------------------------------------------------------------------------------ 2. AMP steps
def _batch(device, gen, b: int = 4):
    import torch

    x = torch.randn(b, 4, 3, CROP, CROP, generator=gen).to(device)  # (B, T, 3, S, S), normalised
    y = torch.rand(b, 4, CROP // 8, CROP // 8, generator=gen).to(device)  # (B, T, M, M) label maps
    return x, y


def _optimizer_snapshot(opt) -> dict:
    return {id(p): {k: (v.detach().clone() if hasattr(v, "detach") else copy.deepcopy(v)) for k, v in s.items()}
            for p, s in opt.state.items()}


def _same_state(a: dict, b: dict) -> bool:
    import torch

    if a.keys() != b.keys():
        return False
    for pid in a:
        if a[pid].keys() != b[pid].keys():
            return False
        for k in a[pid]:
            va, vb = a[pid][k], b[pid][k]
            same = torch.equal(va, vb) if torch.is_tensor(va) else va == vb
            if not same:
                return False
    return True


def amp_training(device, steps: int = 6, inject_at: int = 4) -> dict:
    import torch

    from components.model.eulernet import create_model
    from components.model.optim import ranger
    from components.model.variants import VARIANTS
    from components.training.loop import train_step

    out, models = {}, {}
    amp = device.type == "cuda"  # CPU rehearsal: float32 forward (CPU float16 is ~100x slower), same scaler logic
    for name in VARIANTS:
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(1)
        model = create_model(name, width=WIDTH).to(device).train()
        opt = ranger(model.parameters(), lr=1e-3)
        scaler = torch.amp.GradScaler(device.type, enabled=True)
        losses, scales = [], []
        for step in range(1, steps + 1):
            x, y = _batch(device, gen)
            if step == inject_at:  # an overflowing gradient: the step must be skipped, nothing may move
                params = [p.detach().clone() for p in model.parameters()]
                state = _optimizer_snapshot(opt)
                scale = scaler.get_scale()
                first = next(model.parameters())
                hook = first.register_hook(lambda g: torch.full_like(g, float("inf")))
                try:
                    train_step(model, x, y, opt, scaler, None, amp, device)
                finally:
                    hook.remove()
                require(all(torch.equal(a, p.detach()) for a, p in zip(params, model.parameters())),
                        f"{name}: the inf step changed weights")
                require(_same_state(state, _optimizer_snapshot(opt)),
                        f"{name}: the inf step changed the optimiser / Lookahead state")
                require(scaler.get_scale() == scale * scaler.get_backoff_factor(),
                        f"{name}: scale {scale} -> {scaler.get_scale()} after an inf step (no back-off)")
                scales.append(scaler.get_scale())
                continue
            loss = train_step(model, x, y, opt, scaler, None, amp, device)
            require(loss == loss and abs(loss) != float("inf"), f"{name}: loss {loss} at step {step}")
            losses.append(round(loss, 5))
            scales.append(scaler.get_scale())
        lookahead = [s.get("lookahead_step") for s in opt.state.values()]
        require(lookahead and all(isinstance(v, int) for v in lookahead), f"{name}: no Lookahead state")
        diirf = [g for m in model.diirf_modules() for g in (m.b.grad, m.r.grad) if g is not None]
        require(all(torch.isfinite(g).all() for g in diirf), f"{name}: non-finite DIIRF gradients")
        require(scales[-1] >= 1.0, f"{name}: the loss scale collapsed to {scales[-1]}")
        out[name] = {"losses": losses, "scales": scales, "steps": steps, "inf_step": inject_at}
        print(f"   {name:9s} loss {losses[0]:.4f} -> {losses[-1]:.4f}   scale history {scales}")
        models[name] = model
    return {"variants": out, "_models": models}


# ------------------------------------------------------------------------------------------ 3. save / reload
def save_reload(device, model, tmp: Path) -> dict:
    import numpy as np
    import torch

    from components.inference.checkpoint import save_checkpoint
    from components.inference.config import InferenceConfig
    from components.inference.predictor import Predictor

    torch.backends.cudnn.allow_tf32 = False  # plain float32 on both devices, so 1e-4 is a fair bound
    torch.backends.cuda.matmul.allow_tf32 = False
    inference = InferenceConfig(variant="eulernet", crop_size=CROP)
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (3, 4, CROP, CROP, 3), dtype=np.uint8)  # (N, T, S, S, 3)
    with torch.no_grad():  # a few steps leave every map near 0.5: spread the output so the check can see errors
        model.out.weight.copy_(torch.randn(model.out.weight.shape, generator=torch.Generator().manual_seed(0)) * 0.3)
    model.eval()
    here = Predictor(model, inference, device=device).score_clips(crops)
    here_maps = Predictor(model, inference, device=device).predict_maps(crops)
    path = save_checkpoint(tmp / "from_device.pt", model, inference)
    on_cpu = Predictor.from_checkpoint(path, device="cpu")
    cpu_scores = on_cpu.score_clips(crops)
    back_path = save_checkpoint(tmp / "from_cpu.pt", on_cpu.model, inference)
    back = Predictor.from_checkpoint(back_path, device=device)
    back_scores = back.score_clips(crops)
    for k, v in model.state_dict().items():
        require(torch.equal(v.cpu(), back.model.state_dict()[k].cpu()), f"{k} changed in the round trip")
    diff = float(max(np.abs(here - cpu_scores).max(), np.abs(here - back_scores).max()))
    map_diff = float(np.abs(here_maps - on_cpu.predict_maps(crops)).max())
    print(f"   maps: spread {float(here_maps.std()):.3f}, max |{device} - cpu| {map_diff:.2e}")
    require(map_diff <= 1e-4, f"maps differ by {map_diff:.2e} between {device} and cpu (> 1e-4)")
    print(f"   scores {device}: {np.round(here, 6).tolist()}  cpu: {np.round(cpu_scores, 6).tolist()}  "
          f"max |diff| {diff:.2e}")
    require(diff <= 1e-4, f"scores differ by {diff:.2e} between {device} and cpu (> 1e-4)")
    torch.backends.cudnn.allow_tf32 = True
    return {"max_abs_score_diff": diff, "max_abs_map_diff": map_diff, "checkpoint": str(path)}


# ------------------------------------------------------------------------------------------ 4. Ray Train
def ray_train(device, tmp: Path) -> dict:
    import dataclasses

    from test_train_shards import write_tiny_shards

    from components.training.config import TrainConfig
    from components.training.devices import read_decision
    from components.training.driver import fit
    from tests.harness.probes import read_devices, record_device_to

    shards = write_tiny_shards(tmp / "shards", {"train": 16, "dev": 8, "test": 2})
    want = device.type == "cuda"
    probe = str(tmp / "devices.jsonl")
    cfg = TrainConfig(variant="baseline", width=0.125, epochs=1, lr=3e-3, batch_size=4, num_workers=1,
                      use_gpu="auto", amp=True, seed=0, cache_data=True, max_failures=0)
    storage = str(tmp / "ray_runs")
    first = fit(cfg, shards, storage, "smoke", tracking_uri=None, epoch_start_hook=record_device_to(probe))
    print(f"   use_gpu=auto -> {first.use_gpu}: {first.device_reason}")
    require(first.use_gpu is want, f"use_gpu auto resolved to {first.use_gpu} on a {device.type} machine")
    seen = read_devices(probe)
    require(seen and all(r["device"].startswith(device.type) for r in seen), f"workers ran on {seen}")
    # Resume: the same run for one more epoch continues from epoch 1's checkpoint and keeps the device.
    second = fit(dataclasses.replace(cfg, epochs=2), shards, storage, "smoke", tracking_uri=None,
                 epoch_start_hook=record_device_to(probe))
    require(second.resumed_from == [1], f"resumed_from {second.resumed_from}, expected [1]")
    require(second.history["epoch"].tolist() == [1, 2], f"history epochs {second.history['epoch'].tolist()}")
    require(second.use_gpu is want and read_decision(second.run_path) is want, "the resume changed the device")
    seen = read_devices(probe)
    require([r["epoch"] for r in seen] == [1, 2] and seen[-1]["device"].startswith(device.type), f"{seen}")
    losses = second.history["train_loss"].tolist()
    require(all(v == v for v in losses), f"train loss {losses}")
    print(f"   workers: {seen}\n   train_loss {losses}, resumed_from {second.resumed_from}")
    return {"use_gpu": second.use_gpu, "reason": first.device_reason, "workers": seen, "train_loss": losses,
            "clips_per_s": second.history["clips_per_s"].tolist()}


# ------------------------------------------------------------------------------------------ 5. Serve
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_gpu(device, checkpoint: str) -> dict:
    import httpx
    from ray import serve
    from skimage import data

    from components.serving.app import build_app
    from components.serving.config import ServeConfig
    from components.serving.inputs import encode_frames_json, wait_until_up
    from tests.serve.conftest import face_frames

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    gpu = device.type == "cuda"
    cfg = ServeConfig(model_name="smoke", port=port, device="cuda" if gpu else "cpu", num_gpus=0.5 if gpu else None,
                      max_clips=2, preprocess_threads=1, allow_anonymous=True)  # a local probe on 127.0.0.1
    app = build_app("smoke", config=cfg, checkpoint=checkpoint,
                    deployment_options={"ray_actor_options": {"num_cpus": 0.5}})
    url = f"http://127.0.0.1:{port}"
    try:
        serve.run(app, name="smoke", route_prefix="/")
        wait_until_up(f"{url}/healthz", timeout_s=120, every_s=0.5)
        frames = face_frames(data.astronaut(), 12, live=True)
        r = httpx.post(f"{url}/v1/liveness", json=encode_frames_json(frames), timeout=120)
        require(r.status_code == 200, f"liveness answered {r.status_code}: {r.text[:500]}")
        body = r.json()
        model = httpx.get(f"{url}/v1/model", timeout=30).json()
        print(f"   score {body.get('score')} decision {body.get('decision')} latency {body.get('latency_ms')} ms, "
              f"replica device {model.get('device')}")
        require(str(model.get("device", "")).startswith(device.type), f"replica device {model.get('device')}")
        return {"score": body.get("score"), "latency_ms": body.get("latency_ms"), "timing_ms": body.get("timing_ms"),
                "replica_device": model.get("device")}
    finally:
        serve.shutdown()


# ------------------------------------------------------------------------------------------ 6. throughput
def throughput(device, full: bool) -> dict:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--epochs", "3"]
    cmd += ["--gpu"] if device.type == "cuda" else []
    cmd += [] if full else ["--skip-ray"]
    print("   $ " + " ".join(cmd[1:]), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=420)
    print(proc.stdout)
    require(proc.returncode == 0, f"train_throughput.py exited {proc.returncode}: {proc.stderr[-2000:]}")
    rows = {m.group(1).strip(): float(m.group(2))
            for m in re.finditer(r"^\| ([^|]+) \| ([\d.]+) \|", proc.stdout, re.M)}
    require(rows and all(v > 0 for v in rows.values()), f"no clips/s rows in {proc.stdout[-1000:]}")
    return {"clips_per_s": rows, "table": proc.stdout.strip()}


# ------------------------------------------------------------------------------------------ main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="write smoke.json (environment, every check, figures) here")
    ap.add_argument("--full-throughput", action="store_true", help="also time Ray Train in train_throughput.py")
    ap.add_argument("--rehearse-on-cpu", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_TRAIN_ENABLE_STATE_TRACKING", "0")
    # Ray Train workers import the device probe by name: put the repository on their path.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    os.chdir(ROOT)

    import torch

    if not torch.cuda.is_available() and not args.rehearse_on_cpu:
        print(f"gpu_smoke: no CUDA device: torch {torch.__version__} "
              f"({'built with CUDA ' + torch.version.cuda if torch.version.cuda else 'a CPU-only build'}) sees no GPU"
              f"{'' if torch.version.cuda else '; install the CUDA build of the pinned torch'}. Nothing was run.",
              file=sys.stderr)
        return NO_CUDA
    device = torch.device("cpu" if args.rehearse_on_cpu else "cuda")
    tmp = Path(tempfile.mkdtemp(prefix="gpu-smoke-"))
    checks = Checks()
    t0 = time.perf_counter()
    env = checks.run("environment", environment, device)
    trained = checks.run("AMP steps, every variant (inf step skipped cleanly)", amp_training, device) or {}
    models = trained.pop("_models", {})
    saved = None
    if "eulernet" in models:
        saved = checks.run(f"checkpoint {device.type} -> cpu -> {device.type} (scores to 1e-4)", save_reload,
                           device, models["eulernet"], tmp)
    import ray

    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        checks.run("Ray Train use_gpu auto, 1 worker, then resume", ray_train, device, tmp)
        if saved:
            checks.run(f"one request served by a {device.type} replica", serve_gpu, device, saved["checkpoint"])
    finally:
        ray.shutdown()
    checks.run("train_throughput.py clips/s (fp32 and AMP)", throughput, device, args.full_throughput)

    print(f"\n== summary ({time.perf_counter() - t0:.0f} s, {device})")
    for r in checks.results:
        print(f"   {'ok    ' if r['ok'] else 'FAILED'} {r['check']} ({r['seconds']} s){'' if r['ok'] else ': ' + r['error']}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "smoke.json").write_text(json.dumps({"environment": env, "checks": checks.results}, indent=2,
                                                   default=str))
        print(f"   wrote {out / 'smoke.json'}")
    return 0 if checks.ok else FAILED


if __name__ == "__main__":
    sys.exit(main())
