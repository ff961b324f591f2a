"""Example 1: basic tracking. Train a small model and log it with ExperimentTracker.

A linear regression fitted by minibatch SGD in numpy, with gradient accumulation (two micro-batches
per optimizer step), so iterations and gradient steps differ. Writes into ./experiment_logs.

Run: python examples/basic_tracking.py
"""

from __future__ import annotations

import time

import numpy as np

from steplog import ExperimentConfig, ExperimentTracker


def train(config: ExperimentConfig, log_dir: str = "experiment_logs") -> ExperimentTracker:
    """Fit y = X @ w_true + noise; log every iteration, evaluate every ``eval_interval``."""
    rng = np.random.default_rng(config.seed)
    dim, accumulation = config.d_model, config.extra.get("grad_accum_steps", 1)
    w_true = rng.normal(size=dim)
    x_val = rng.normal(size=(1024, dim))
    y_val = x_val @ w_true + 0.1 * rng.normal(size=1024)
    w = np.zeros(dim)
    grad = np.zeros(dim)

    tracker = ExperimentTracker(config, log_dir=log_dir)
    tracker.start()                                                            # 1. start
    for it in range(config.max_iters):
        t0 = time.perf_counter()
        x = rng.normal(size=(config.batch_size, dim))
        y = x @ w_true + 0.1 * rng.normal(size=config.batch_size)
        error = x @ w - y
        loss = float(np.mean(error**2))
        grad += 2 * x.T @ error / config.batch_size / accumulation
        if (it + 1) % accumulation == 0:  # an optimizer step every `accumulation` iterations
            w -= config.learning_rate * grad
            grad[:] = 0.0
            stepped = True
        else:
            stepped = False
        seconds = time.perf_counter() - t0
        tracker.log_metrics(iteration=it, train_loss=loss, learning_rate=config.learning_rate,  # 2. log
                            tokens_per_sec=config.batch_size / seconds, iter_time_ms=seconds * 1000)
        if stepped:
            tracker.increment_gradient_step()                                  # 3. count optimizer steps
        if it % config.eval_interval == 0 or it == config.max_iters - 1:
            val_loss = float(np.mean((x_val @ w - y_val) ** 2))
            tracker.log_eval(iteration=it, val_loss=val_loss)                  # 4. evaluation results
    tracker.finish(val_loss=float(np.mean((x_val @ w - y_val) ** 2)), notes="linear regression, SGD")  # 5. finish
    tracker.save()                                                             # compact into Parquet + run.json
    return tracker


if __name__ == "__main__":
    config = ExperimentConfig(experiment_name="linreg_baseline", d_model=16, batch_size=32, max_iters=300,
                              learning_rate=0.05, eval_interval=25, extra={"grad_accum_steps": 2})
    tracker = train(config)
    tracker.print_summary()
    print(f"\nfiles: {tracker.run_dir}")
