"""Example 2: several runs with different configs: a learning-rate sweep and an ablation.

Every run is its own steplog run, named by its config's experiment_name; all go into
./experiment_logs, where example 3 (load_and_compare.py) reads them.

Run: python examples/multiple_runs.py
"""

from __future__ import annotations

import dataclasses

from basic_tracking import train  # the training function of example 1 (same folder)

from steplog import ExperimentConfig

baseline = ExperimentConfig(experiment_name="linreg_baseline", d_model=16, batch_size=32, max_iters=300,
                            learning_rate=0.05, eval_interval=25, extra={"grad_accum_steps": 2})

# A learning-rate sweep: the same config with one field changed (configs are frozen: use replace()).
for lr in (0.01, 0.05, 0.2):
    train(dataclasses.replace(baseline, experiment_name=f"linreg_lr_{lr:g}", learning_rate=lr))

# An ablation: without gradient accumulation, and with a smaller batch.
train(dataclasses.replace(baseline, experiment_name="linreg_no_accum", extra={"grad_accum_steps": 1}))
train(dataclasses.replace(baseline, experiment_name="linreg_batch_8", batch_size=8))

print("logged 5 runs into ./experiment_logs; compare them with: python examples/load_and_compare.py")
