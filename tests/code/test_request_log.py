"""The request record serving logs per scored request: its numbers, the rotating JSON-lines log, reading it back."""
from __future__ import annotations

import datetime
import json

import numpy as np
import pytest

from components.data.requests import RequestLog, frame_stats, parse_since, read_records, request_record

UTC = datetime.UTC


def test_frame_stats_measure_luma_and_face_width():
    px = np.zeros((3, 40, 200, 3), np.uint8)
    px[..., 0], px[..., 1], px[..., 2] = 200, 100, 50  # luma = .299*200 + .587*100 + .114*50 = 124.2
    s = frame_stats(px, (20.0, 5.0, 70.0, 30.0))
    assert s["brightness"] == pytest.approx(124.2, abs=0.01) and s["face_fraction"] == pytest.approx(0.25)
    assert np.isnan(frame_stats(px, None)["face_fraction"])
    with pytest.raises(ValueError, match="pixels must be"):
        frame_stats(px[0], None)


def test_a_record_holds_metadata_never_pixels():
    px = np.full((2, 48, 64, 3), 90, np.uint8)
    result = {"score": 0.7312345, "decision": "live", "box": [8, 8, 40, 40], "model": {"name": "m", "version": 3},
              "clip_scores": [0.7]}
    rec = request_record(request_id="r1", source=(1280, 720), fps=29.97, frames=300, pixels=px, result=result,
                         when=0.0)
    assert rec["time"] == "1970-01-01T00:00:00.000+00:00"
    assert (rec["source_width"], rec["source_height"], rec["fps"], rec["frames"]) == (1280, 720, 29.97, 300)
    assert rec["face_fraction"] == pytest.approx(0.5) and rec["brightness"] == pytest.approx(90.0, abs=0.01)
    assert (rec["score"], rec["decision"], rec["model"], rec["version"]) == (0.73123, "live", "m", "3")
    assert len(json.dumps(rec)) < 400  # a line, not a frame


def test_the_log_rotates_and_reads_back_in_time_order(tmp_path):
    log = RequestLog(tmp_path, "replica/1", max_bytes=2000, backups=3)
    assert log.path.name == "requests-replica_1.jsonl"
    px = np.full((1, 8, 8, 3), 10, np.uint8)
    for i in range(40):
        log.write(request_record(request_id=f"r{i}", source=(640, 480), fps=30, frames=60, pixels=px,
                                 result={"score": i / 40, "decision": "spoof"}, when=1_000_000 + i))
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files[0] == "requests-replica_1.jsonl" and len(files) == 4  # rotated, 3 backups kept, the oldest dropped
    (tmp_path / "requests-replica_1.jsonl").open("a").write('{"time": "torn')  # a crash mid-line
    (tmp_path / "notes.txt").write_text("not a log\n")  # foreign files in the folder are not read
    table, bad = read_records(tmp_path)
    assert bad == 1 and list(table["request_id"]) == [f"r{i}" for i in range(40 - len(table), 40)]
    assert 10 < len(table) < 40 and table["time"].is_monotonic_increasing
    since = datetime.datetime.fromtimestamp(1_000_000 + 35, tz=UTC)
    recent, _ = read_records(tmp_path, since=since)
    assert list(recent["request_id"]) == ["r35", "r36", "r37", "r38", "r39"]
    with pytest.raises(FileNotFoundError, match="no request log"):
        read_records(tmp_path / "missing")


def test_parse_since_durations_and_times():
    now = datetime.datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    assert parse_since("30m", now) == datetime.datetime(2026, 1, 2, 11, 30, tzinfo=UTC)
    assert parse_since("2d", now) == datetime.datetime(2025, 12, 31, 12, 0, tzinfo=UTC)
    assert parse_since("2026-01-01T06:00", now) == datetime.datetime(2026, 1, 1, 6, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="--since"):
        parse_since("yesterday", now)
