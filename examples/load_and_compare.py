"""Example 3: loading and comparing experiments (run examples 1 and 2 first).

Run: python examples/load_and_compare.py
"""

from __future__ import annotations

import sys

import polars as pl

import steplog
from steplog import ExperimentAnalyzer
from steplog.tables import text_table

analyzer = ExperimentAnalyzer("experiment_logs")
experiments = analyzer.load_all()  # cached: a second call rereads only runs whose files changed
if not experiments:
    sys.exit("no experiments in ./experiment_logs: run examples/basic_tracking.py and examples/multiple_runs.py first")
print(f"{len(experiments)} experiments\n")

# One row per run: status, iterations, duration, the config keys that differ, best and last losses.
print(analyzer.get_comparison_table())

name, best_val = analyzer.get_best_experiment("val_loss")
print(f"\nbest by val_loss: {name} ({best_val:.4f})\n")
analyzer.print_summary(name)

# Curves are Polars frames: iteration, gradient_step, wallclock_time and the values.
losses = analyzer.get_loss_trajectory(name)
print("\nvalidation loss every eval_interval iterations:")
print(losses.filter(pl.col("val_loss").is_not_null()).select("iteration", "gradient_step", "val_loss").tail(4))

# Any question is a Polars expression away; e.g. the iteration where each sweep run first got below 0.05.
first_below = [
    (log.name, log.metrics.filter(pl.col("val_loss") < 0.05)["iteration"].min())
    for log in experiments if log.name.startswith("linreg_lr_")
]
print("\nfirst iteration with val_loss < 0.05:", first_below)

# Everything steplog offers works on the same runs, e.g. steplog.compare with other figures:
compared = steplog.compare(metrics=["val_loss", "tokens_per_sec"], figures=["best", "mean"], mode={"tokens_per_sec": "max"})
print()
print(text_table(compared.select("name", "val_loss.best", "val_loss.mean", "tokens_per_sec.mean")))

path = analyzer.export_csv(name, f"experiment_logs/{name}.csv")
print(f"\nexported {name} to {path} ({pl.read_csv(path).height} rows)")
