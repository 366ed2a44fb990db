"""The model stage on a CPU: torch fp32 vs ONNX Runtime fp32 vs ONNX Runtime int8, for one request (4 clips).

    .venv/bin/python benchmarks/model_engines.py                       # artifacts/model + artifacts/shards
    .venv/bin/python benchmarks/model_engines.py --temporal /tmp/bench_default   # + ACER on the temporal benchmark

Per engine: latency of the network on one request's clips (normalised input -> maps; decoding, face finding and
normalisation are the same for every engine and not timed), median and p90 of wall time over ``--runs`` calls
after warm-up (engines take turns call by call), plus median process CPU time, at ``--threads`` intra-op threads (torch.set_num_threads / ORT intra_op_num_threads). Then the
request's FLOPs (torch.utils.flop_counter: convolutions and matmuls; elementwise work such as the DIIRF recurrence,
BN and activations is not counted), the CPU's measured peak (a 2048^3 fp32 matmul in torch at the same thread
count) and the share of it each engine reaches; and each engine's largest |score - torch fp32 score| over the
sample clips (test split of --shards), plus, with ``--temporal DIR`` (an ``eulernet benchmark temporal --out DIR``
folder), test ACER at the dev-chosen threshold of that run's eulernet seed-0 checkpoint under every engine.

int8 comes two ways, both measured: ``quantize_dynamic`` (Conv -> ConvInteger with activations quantised at run
time) and static QDQ (``quantize_static``, per-channel int8 weights, uint8 activations calibrated on train-split
clips). The Predictor default stays fp32 unless int8 is faster and loses no ACER (see the printed verdict).
"""
from __future__ import annotations

import argparse
import glob
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.inference.onnx_engine import INPUT_NAME, OnnxEngine, export_onnx  # noqa: E402
from components.inference.predictor import Predictor
from components.inference.tensors import to_model_input

ROOT = Path(__file__).resolve().parents[1]


def _clips(shards: Path | None, split: str, n: int, predictor: Predictor, seed: int) -> np.ndarray:
    """Up to ``n`` clips of a shards split; random uint8 clips when there are no shards."""
    if shards is not None and (shards / "index.csv").exists():
        from components.labeling.shards import ShardsError, load_clips

        try:
            frames = load_clips(shards, split=split, columns=["frames"])["frames"]
            if len(frames):
                return np.ascontiguousarray(frames[:n])
        except ShardsError:
            pass
    s, t = predictor.crop_size, predictor.clip_len
    return np.random.default_rng(seed).integers(0, 256, size=(n, t, s, s, 3), dtype=np.uint8)


def _quantize(fp32: Path, out_dir: Path, calib: np.ndarray) -> dict[str, Path]:
    """int8 graphs of ``fp32``: dynamic (ConvInteger) and static QDQ calibrated on ``calib`` (normalised clips)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{INPUT_NAME: calib[i:i + 2]} for i in range(0, len(calib), 2)])

        def get_next(self):
            return next(self.batches, None)

    dyn, qdq = out_dir / "int8_dynamic.onnx", out_dir / "int8_qdq.onnx"
    quantize_dynamic(str(fp32), str(dyn), op_types_to_quantize=["Conv", "MatMul"], weight_type=QuantType.QUInt8)
    quantize_static(str(fp32), str(qdq), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"])
    return {"ORT int8 dynamic": dyn, "ORT int8 static QDQ": qdq}


def _latencies(nets: dict, x, runs: int, warmup: int = 3) -> dict[str, tuple[float, float, float]]:
    """name -> (median wall s, p90 wall s, median process CPU s) of one call. The engines take turns call by call,
    so load from other processes on a shared machine falls on all of them alike."""
    wall: dict[str, list[float]] = {k: [] for k in nets}
    cpu: dict[str, list[float]] = {k: [] for k in nets}
    with torch.no_grad():
        for r in range(warmup + runs):
            for name, net in nets.items():
                w0, c0 = time.perf_counter(), time.process_time()
                net(x)
                if r >= warmup:
                    wall[name].append(time.perf_counter() - w0)
                    cpu[name].append(time.process_time() - c0)
    out = {}
    for name in nets:
        t = sorted(wall[name])
        out[name] = (statistics.median(t), t[int(round(0.9 * (len(t) - 1)))], statistics.median(cpu[name]))
    return out


def _flops(model, x) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    return fc.get_total_flops()


def _peak_gflops(n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(best) / 1e9


def _temporal_acer(out: Path, predictors: dict[str, Predictor]) -> dict[str, float]:
    """Test ACER (dev-chosen EER threshold) of the temporal run's eulernet seed-0 checkpoint per engine."""
    import pandas as pd

    from components.labeling.shards import load_clips
    from components.metrics.evaluate import CLIP_COLUMNS
    from components.metrics.rates import choose_threshold, video_scores
    from components.metrics.report import evaluate_splits

    data = {s: load_clips(out / "shards", split=s, columns=CLIP_COLUMNS + ["frames"]) for s in ("dev", "test")}
    result = {}
    for name, pred in predictors.items():
        videos = {}
        for split, clips in data.items():
            table = pd.DataFrame({c: clips[c] for c in CLIP_COLUMNS})
            table["label"] = table["label"].astype(int)
            table["score"] = pred.score_clips(clips["frames"])
            videos[split] = video_scores(table)
        attacks = sorted(set(videos["dev"].loc[videos["dev"]["label"] == 0, "attack_type"].astype(str)))
        dev = videos["dev"]
        t = choose_threshold(dev["score"], dev["label"], "eer")  # each engine at its own dev EER point
        result[name] = float(evaluate_splits(dev, videos["test"], t, "eer", attacks)["acer"])
    return result


def _graphs(predictor: Predictor, work: Path, calib_clips: np.ndarray) -> tuple[dict[str, Path | None], float]:
    """engine name -> ONNX graph (None: torch), and the export's seconds."""
    t0 = time.perf_counter()
    export_onnx(predictor.model, predictor.crop_size, inference=predictor.inference, path=work / "fp32.onnx")
    export_s = time.perf_counter() - t0
    calib = to_model_input(calib_clips, predictor.mean, predictor.std).numpy()
    return {"torch fp32": None, "ORT fp32": work / "fp32.onnx", **_quantize(work / "fp32.onnx", work, calib)}, export_s


def _predictor(base: Predictor, graph: Path | None, threads: int, batch_size: int = 8) -> Predictor:
    """``base``'s model and inference config with the engine running ``graph`` (torch when None)."""
    return Predictor(base.model, base.inference, batch_size=batch_size, engine="torch" if graph is None else "onnx",
                     onnx_graph=graph, threads=threads)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "artifacts/model/checkpoint.pt"))
    ap.add_argument("--shards", default=str(ROOT / "artifacts/shards"), help="sample clips: its test split")
    ap.add_argument("--clips", type=int, default=4, help="clips per request (Serve's max_clips)")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads for torch and ONNX Runtime")
    ap.add_argument("--score-clips", type=int, default=64, help="sample clips for the score deltas")
    ap.add_argument("--temporal", default=None, help="an `eulernet benchmark temporal --out` folder: int8 ACER")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    predictor = Predictor.from_checkpoint(args.checkpoint)
    shards = Path(args.shards)
    request = _clips(shards, "test", args.clips, predictor, 0)
    sample = _clips(shards, "test", args.score_clips, predictor, 1)
    x = to_model_input(request, predictor.mean, predictor.std)  # (4, T, 3, S, S): the shared preprocessing
    with tempfile.TemporaryDirectory() as tmp:
        graphs, export_s = _graphs(predictor, Path(tmp), _clips(shards, "train", 16, predictor, 2))
        flops = _flops(predictor.model, x)
        peak = _peak_gflops()
        ref = predictor.score_clips(sample)
        nets = {name: predictor.model if g is None else OnnxEngine(g, threads=args.threads) for name, g in graphs.items()}
        times = _latencies(nets, x, args.runs)
        rows = []
        for name, graph in graphs.items():
            delta = float(np.abs(_predictor(predictor, graph, args.threads).score_clips(sample) - ref).max())
            med, p90, cpu = times[name]
            rows.append((name, med, p90, cpu, flops / med / 1e9, delta))  # delta: through the whole Predictor

        cfg = predictor.architecture
        print(f"model stage, one request = {args.clips} clips x {predictor.clip_len} frames at "
              f"{predictor.crop_size}x{predictor.crop_size} ({predictor.variant}, width {cfg.width}); "
              f"{args.threads} thread(s); {args.runs} runs; {Path(args.checkpoint).name}")
        print(f"FLOPs per request: {flops / 1e9:.3f} GFLOP (conv+matmul); CPU peak (2048^3 fp32 matmul, "
              f"{args.threads} thread(s)): {peak:.1f} GFLOP/s; ONNX export {export_s:.1f} s")
        print(f"\n| engine | median ms | p90 ms | CPU ms | speed-up | GFLOP/s | % of peak | max abs dscore "
              f"({len(sample)} clips) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        base = rows[0][1]
        for name, med, p90, cpu, gf, delta in rows:
            print(f"| {name} | {med * 1e3:.1f} | {p90 * 1e3:.1f} | {cpu * 1e3:.1f} | {base / med:.2f}x | {gf:.2f} | "
                  f"{100 * gf / peak:.1f} | {delta:.1e} |")

    acer = None
    if args.temporal:
        out = Path(args.temporal)
        ckpts = sorted(glob.glob(str(out / "ray_runs/eulernet-s0-*/checkpoint_*/checkpoint.pt")))
        if not ckpts:
            print(f"\n--temporal: no eulernet-s0 checkpoint under {out}/ray_runs")
        else:
            tpred = Predictor.from_checkpoint(ckpts[-1], batch_size=16)
            with tempfile.TemporaryDirectory() as tmp:
                t_graphs, _ = _graphs(tpred, Path(tmp), _clips(out / "shards", "train", 16, tpred, 2))
                preds = {name: _predictor(tpred, g, args.threads, batch_size=16) for name, g in t_graphs.items()}
                t0 = time.perf_counter()
                acer = _temporal_acer(out, preds)
                print(f"\ntemporal benchmark ({out}, eulernet seed 0, S={tpred.crop_size}; "
                      f"{time.perf_counter() - t0:.0f} s): test ACER at the dev-chosen EER threshold")
                for name, value in acer.items():
                    print(f"  {name}: {100 * value:.2f} %")
    name, med = min(((r[0], r[1]) for r in rows if "int8" in r[0]), key=lambda r: r[1])
    fp32 = next(r[1] for r in rows if r[0] == "ORT fp32")
    if acer is None:
        why = "ACER not measured (pass --temporal DIR)"
    elif acer[name] > acer["ORT fp32"]:
        why = f"{name} loses ACER ({100 * acer[name]:.2f} % vs {100 * acer['ORT fp32']:.2f} %)"
    elif med >= fp32:
        why = f"{name} is not faster than ORT fp32"
    else:
        why = (f"{name} qualifies ({fp32 / med:.2f}x ORT fp32, no ACER loss on this run), but the registered graph "
               "stays fp32 until registration calibrates on train clips and evaluation chooses the threshold on "
               "the int8 scores")
    print(f"\nverdict: the engine default stays ONNX Runtime fp32: {why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
