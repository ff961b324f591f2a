"""Smoke test: benchmarks/bench_cloud.py runs at a tiny size against its own local S3 server (the figures
are not checked: tests never assert timings)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_cloud.py"


def test_bench_cloud_runs_at_a_tiny_size():
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--repeat", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for measure in (
        "push 10 runs",
        "plain concurrent obstore puts",
        "push again",
        "catalog.read, 50 runs, local, catalog current",
        "local S3 server",
        "steplog.runs(url), 50 runs",
        "steplog.scan(url), two metrics, 10 runs",
    ):
        assert measure in out.stdout


def test_bench_cloud_profiles_moto_listings_at_a_tiny_size():
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--profile-listing", "30", "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for measure in ("full listing, 60 objects", "folder listing (delimiter /), 30 folders", "one HEAD", "one GET"):
        assert measure in out.stdout
    assert "server side, serialize the page's keys" in out.stdout or "pip install yappi" in out.stdout
