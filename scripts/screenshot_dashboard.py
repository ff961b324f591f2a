"""Screenshot of the dashboard on the demo's runs, for docs/ and the README.

Runs the quick demo sweep into a temporary root (plus one run still logging, so the table shows a
live run, and a run of two processes whose rank 1 died), serves the dashboard and takes 1400x900
screenshots with headless Chromium: the demo's charts, and that run's ranks overlaid.

    PYTHONPATH=src python scripts/screenshot_dashboard.py [--out docs/img/dashboard.png] [--dark]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import steplog
import steplog.ui
from steplog.demo import run_demo
from steplog.ui.browser import CHROMIUM_ARGS, chromium_path


def make_root() -> tuple[Path, steplog.Run]:
    """A root with the quick demo sweep and one run still training (returned, to finish later)."""
    root = Path(tempfile.mkdtemp(prefix="steplog-shot-"))
    run_demo(root, quick=True)
    live = steplog.init(name="lr3e-3-long", config={"learning_rate": 3e-3, "context": 4}, root=root)
    for step in range(3000):
        live.log(
            {
                "train_loss": 2.6 * 0.9993**step + 1.55 + 0.05 * ((step * 7919) % 13) / 13,
                "lr": 3e-3 * min(1.0, step / 300),
            }
        )
    live.flush()
    for rank in (0, 1):  # two real processes of one job; rank 1 dies at step 600
        subprocess.run([sys.executable, "-c", _RANK, str(root), str(rank)], check=False)
    return root, live


_RANK = """
import math, os, sys, steplog
rank = int(sys.argv[2])
run = steplog.init(name="ddp-2gpu", root=sys.argv[1], rank=rank, world_size=2, run_id="job-4711",
                   config={"learning_rate": 1e-3, "context": 4})
for step in range(1000 if rank == 0 else 600):
    run.log({"train_loss": 2.4 * math.exp(-step / 400) + 1.6 + 0.04 * math.sin(step * (0.3 + rank)) + 0.03 * rank,
             "step_time_ms": 110 + 25 * rank * (step % 7 == 0) + 5 * math.sin(step / 9)})
run.flush()
if rank == 1:
    os._exit(1)
run.finish()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/img/dashboard.png")
    parser.add_argument("--dark", action="store_true", help="dark colour scheme")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    root, live = make_root()
    server = steplog.ui.serve(root, port=0)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            page = browser.new_page(
                viewport={"width": 1400, "height": 900}, color_scheme="dark" if args.dark else "light", bypass_csp=True
            )
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            for query, out in (
                ("?metrics=loss,lr&runs=" + ",".join(demo_ids(root)), args.out),
                ("?runs=job-4711&ranks=train_loss:all,step_time_ms:all", _ranks_path(args.out)),
            ):
                page.goto(server.url + query)
                page.wait_for_function("window.steplog && window.steplog.ready")
                page.wait_for_timeout(800)
                page.screenshot(path=out)
                print(f"wrote {out}")
            browser.close()
    finally:
        server.stop()
        live.finish()


def demo_ids(root: Path) -> list[str]:
    """The runs of the first screenshot: the demo's sweep and the live run (not the two-rank job)."""
    return [run_id for run_id, name in steplog.runs(root).select("run_id", "name").rows() if not name.startswith("ddp")]


def _ranks_path(out: str) -> str:
    path = Path(out)
    return str(path.with_name(path.stem + "-ranks" + path.suffix))


if __name__ == "__main__":
    main()
