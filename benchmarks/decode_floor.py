"""How fast can a real upload's scored window be decoded at all? The floor under the served decode stage.

For every video of ``DIR/manifest.csv`` (as the real-world benchmark reads it), in this process, one decode at a
time, the model's clip plan (``--checkpoint``: its clip layout and scored window, ``window_seconds``):

- ``served``: the serving decoder's own call (``decode_video_sparse``: walk the window, convert and downscale
  the clips' frames), what a decoder process does per request, without the HTTP hop;
- ``walk``: the codec alone, OpenCV ``grab()`` over the window (no frame converted): the floor of ``served``;
- ``pyav``: the same walk through PyAV (FFmpeg's decoder without OpenCV around it);
- ``nonref``: PyAV asked to skip non-reference frames (``skip_frame=NONREF``) that no clip uses: the lever a
  decoder has left when a window holds one keyframe (every frame between two clips still has to be decoded if
  another frame refers to it). ``got`` says whether every clip frame still came out.

Also the keyframes inside each window (a seek can only land on one) and the frames walked. Prints a table per
video and the medians; figures are quoted in docs/serving.md ("The decode floor").

    .venv/bin/python benchmarks/decode_floor.py --real-dir DIR [--checkpoint models/reference/checkpoint.pt]
        [--window S] [--threads 2] [--repeats 3]
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def opencv_walk(data: bytes, frames: int, threads: int) -> int:
    from components.serving.inputs import _Capture  # the serving decoder's own capture, from memory

    n = 0
    with _Capture(data, threads) as cap:
        while n < frames and cap.grab():
            n += 1
    return n


def pyav_walk(data: bytes, frames: int, threads: int, keep: set[int] | None) -> tuple[int, int, int]:
    """Decode the first ``frames`` frames (presentation order); with ``keep``, ask FFmpeg to skip non-reference
    frames outside it. Returns (frames out, frames of ``keep`` out, keyframes among the window's packets)."""
    import av

    with av.open(io.BytesIO(data)) as box:
        s = box.streams.video[0]
        s.thread_type, s.thread_count = "AUTO", threads
        rate = float(s.average_rate or s.guessed_rate or 25)
        tb = float(s.time_base)
        start = s.start_time or 0
        out = keys = 0
        got: set[int] = set()
        for packet in box.demux(s):
            if packet.pts is not None:
                idx = round((packet.pts - start) * tb * rate)
                if idx >= frames + 8:  # past the window (and the decoder's reordering delay)
                    break
                if packet.is_keyframe and idx < frames:
                    keys += 1
                if keep is not None:
                    s.codec_context.skip_frame = "DEFAULT" if idx in keep else "NONREF"
            for frame in s.decode(packet):
                i = round(((frame.pts or 0) - start) * tb * rate)
                if i < frames:
                    out += 1
                    if keep is not None and i in keep:
                        got.add(i)
        return out, len(got), keys


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real-dir", required=True, help="folder with manifest.csv (`path` relative to it)")
    ap.add_argument("--checkpoint", default="models/reference/checkpoint.pt",
                    help="the model whose clip plan and scored window are decoded (default: the shipped reference)")
    ap.add_argument("--window", type=float, default=None,
                    help="scored window in seconds instead of the checkpoint's (what a shorter window would cost)")
    ap.add_argument("--threads", type=int, default=2, help="FFmpeg decoding threads (serve.decode_threads, default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="decodes per video and method; the fastest counts")
    ap.add_argument("--quiet", action="store_true", help="medians only, no per-video rows")
    args = ap.parse_args()
    if args.repeats < 1 or not 1 <= args.threads <= 4 or (args.window is not None and not args.window > 0.5):
        ap.error("--repeats must be >= 1, --threads within 1..4, --window > 0.5 s")

    import cv2

    from benchmarks.serve_load import real_clips
    from components.data.video import frames_in
    from components.inference.predictor import Predictor
    from components.serving.inputs import ClipPlan, Limits, decode_video_sparse

    pred = Predictor.from_checkpoint(args.checkpoint)
    window_s = args.window or pred.inference.window_seconds or Limits().max_seconds
    plan = ClipPlan(pred.clip_len, pred.clip_interval, 4, window_s)
    side = pred.inference.decode_side
    cv2.setNumThreads(2)  # as in a decoder process (decode_worker.py)
    videos = real_clips(Path(args.real_dir))
    if not videos:
        raise SystemExit(f"{args.real_dir}/manifest.csv lists no video")

    def best(fn, *fn_args, **fn_kwargs):
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            value = fn(*fn_args, **fn_kwargs)
            times.append((time.perf_counter() - t) * 1e3)
        return min(times), value

    rows = []
    print(f"{len(videos)} videos, window {window_s:g} s, clip plan {plan.to_list()}, decode side {side}, "
          f"{args.threads} FFmpeg threads, best of {args.repeats}\n")
    if not args.quiet:
        print("| video | size | frames walked | keyframes | served ms | walk ms | pyav ms | nonref ms | nonref got |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for path in videos:
        data = path.read_bytes()
        t_served, dec = best(decode_video_sparse, data, Limits(), side, plan, threads=args.threads)
        n = dec.n
        keep = set(plan.frames_needed(n))
        t_walk, _ = best(opencv_walk, data, n, args.threads)
        t_av, (_, _, keys) = best(pyav_walk, data, n, args.threads, None)
        t_nr, (_, got, _) = best(pyav_walk, data, n, args.threads, keep)
        rows.append((t_served, t_walk, t_av, t_nr, got == len(keep), keys, n))
        if not args.quiet:
            print(f"| {path.name} | {dec.source[0]}x{dec.source[1]} | {n} | {keys} | {t_served:.0f} | {t_walk:.0f} | "
                  f"{t_av:.0f} | {t_nr:.0f} | {'all' if got == len(keep) else f'{got}/{len(keep)}'} |")

    def med(j):
        return statistics.median(r[j] for r in rows)

    def p90(j):
        v = sorted(r[j] for r in rows)
        return v[min(len(v) - 1, int(0.9 * len(v)))]

    print(f"\nmedian (p90) ms over {len(rows)} videos: served {med(0):.0f} ({p90(0):.0f}), codec walk "
          f"{med(1):.0f} ({p90(1):.0f}), pyav {med(2):.0f} ({p90(2):.0f}), nonref {med(3):.0f} ({p90(3):.0f}); "
          f"nonref kept every clip frame in {sum(r[4] for r in rows)} of {len(rows)}; keyframes per window median "
          f"{med(5):.0f}; frames walked median {med(6):.0f} "
          f"({frames_in(window_s, 30.0)} at 30 fps)")


if __name__ == "__main__":
    main()
