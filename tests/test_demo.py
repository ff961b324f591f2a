"""The demo training job: the source's entropy rate, the model's gradients, and `steplog demo --quick` end to end."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import steplog
from steplog.demo_model import AdamW, CharMLP, learning_rate_at, markov_source, windows

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_the_entropy_rate_is_the_loss_of_the_true_source() -> None:
    source = markov_source(alphabet_size=6, order=2, concentration=0.5, seed=3)
    joint = source.stationary[..., None] * source.probs  # P(a, b, c)
    assert np.allclose(joint.sum(axis=0), source.stationary)  # stationary: P(b, c) again
    x, y = windows(source.sample(400, 500, np.random.default_rng(1)), 2)
    empirical = source.cross_entropy(x, y)
    assert abs(empirical - source.entropy_rate) < 0.02
    assert 0.3 < source.entropy_rate < math.log(6)
    counts = np.bincount(x[:, 0] * 6 + x[:, 1], minlength=36) / len(x)  # contexts occur at stationary rates
    assert np.abs(counts - source.stationary.ravel()).max() < 0.01


def test_backprop_matches_finite_differences() -> None:
    model = CharMLP(vocab_size=5, context=3, embed_dim=4, hidden=6, seed=2)
    model.params = {k: v.astype(np.float64) for k, v in model.params.items()}
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, (8, 3)), rng.integers(0, 5, 8)
    x[1] = x[0]  # a repeated embedding row: gradients must accumulate
    _, grads = model.loss_and_grads(x, y)
    for name, param in model.params.items():
        for index in [tuple(rng.integers(0, s) for s in param.shape) for _ in range(4)]:
            saved = param[index]
            param[index] = saved + 1e-6
            up = model.loss(x, y)
            param[index] = saved - 1e-6
            down = model.loss(x, y)
            param[index] = saved
            assert grads[name][index] == pytest.approx((up - down) / 2e-6, rel=1e-4, abs=1e-8), name


def test_adamw_and_the_schedule() -> None:
    params = {"w": np.array([[3.0]]), "b": np.array([1.0])}
    optimizer = AdamW(params, weight_decay=0.0, grad_clip=0.0)
    for _ in range(500):
        optimizer.step({"w": 2 * params["w"], "b": 2 * params["b"]}, lr=0.05)  # minimise w^2 + b^2
    assert abs(params["w"][0, 0]) < 0.05 and abs(params["b"][0]) < 0.05
    schedule = [learning_rate_at(i, 1e-2, 1e-3, 10, 100) for i in range(120)]
    assert schedule[9] == 1e-2 and max(schedule) == pytest.approx(1e-2)
    assert all(a <= b for a, b in zip(schedule[:10], schedule[1:11]))  # warmup rises
    assert all(a >= b for a, b in zip(schedule[10:], schedule[11:]))  # then decays
    assert schedule[-1] == pytest.approx(1e-3)


def test_steplog_demo_quick_trains_and_reports(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(
        [sys.executable, "-m", "steplog", "demo", "--quick", "--root", str(root)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "entropy rate" in out and "best run: demo_lr_" in out and str(root.resolve()) in out
    runs = steplog.runs(root)
    assert runs.height == 3 and runs["status"].to_list() == ["finished"] * 3
    assert all((root / run_id / "run.json").exists() for run_id in runs["run_id"])  # compacted
    entropy_rate = markov_source().entropy_rate
    for name in runs["name"]:
        history = steplog.history(name, root=root)
        assert history.height == 1500
        val = history["val_loss"].drop_nulls()
        assert val[-1] < val[0] - 0.15, f"{name}: validation loss did not decrease: {val.to_list()}"
        train = history["train_loss"]
        assert train.tail(200).mean() < train.head(50).mean() - 0.15
        assert val.min() > entropy_rate - 0.05  # nothing beats the source (up to sampling noise)
        assert history.select(pl.col("gradient_step").max()).item() == 1499
        assert history["learning_rate"].is_not_null().all() and (history["tokens_per_sec"] > 0).all()
    best = steplog.best("val_loss", root=root)
    assert f"best run: {best['name']}" in out
    assert best["value"] < math.log(12) - 0.5  # far better than a uniform guess


@pytest.mark.parametrize("width", [60, 100])
def test_the_demo_table_fits_the_width_and_the_demo_ends_with_what_next(tmp_path: Path, width: int) -> None:
    from steplog.demo import DemoSettings, run_demo

    tiny = DemoSettings(
        learning_rates=(1e-2, 3e-2, 1e-1),
        iterations=20,
        eval_interval=10,
        eval_examples=128,
        train_sequences=8,
        sequence_length=64,
        warmup=2,
    )
    printed: list[str] = []
    result = run_demo(
        tmp_path / "a_rather_long_folder_name_for_the_demo_runs", settings=tiny, out=printed.append, width=width
    )
    table = next(block for block in printed if "val_loss" in block and "\n" in block)
    assert all(len(line) <= width for line in table.splitlines()), table
    assert all(name in table or "\u2026" in table for name in result.names)  # every run is there, cut or not
    closing = printed[-1]
    assert closing.startswith("what next:") and "steplog ls --root" in closing and "steplog.history(" in closing
    assert "steplog ui --root" in closing
