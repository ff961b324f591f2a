"""Screenshot of the dashboard on the demo's runs, for docs/ and the README.

Runs the quick demo sweep into a temporary root (plus one run still logging, so the table shows a
live run), serves the dashboard and takes a 1400x900 screenshot with headless Chromium.

    PYTHONPATH=src python scripts/screenshot_dashboard.py [--out docs/img/dashboard.png] [--dark]
"""

from __future__ import annotations

import argparse
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
    return root, live


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
            page.goto(server.url + "?metrics=loss,lr")
            page.wait_for_function("window.steplog && window.steplog.ready")
            page.wait_for_timeout(500)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.out)
            browser.close()
    finally:
        server.stop()
        live.finish()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
