"""The smallest steplog program: log a few hundred steps, then read them back with Polars.

Run: python examples/quickstart.py   (writes into ./experiment_logs)
"""

import math
import random

import steplog

config = {"lr": 3e-4, "batch_size": 32, "model": {"d_model": 128, "layers": 2}}

with steplog.init(name="quickstart", config=config) as run:  # root defaults to ./experiment_logs
    for step in range(300):
        train_loss = 2.5 * math.exp(-step / 100) + 0.5 + random.gauss(0, 0.02)
        run.log({"train_loss": train_loss, "lr": config["lr"]})
        if step % 50 == 0:
            run.log({"val_loss": train_loss + 0.1}, step=step)  # same step: merged into one row

history = steplog.history("quickstart")
print(history.tail(3))
print(steplog.runs().select("name", "run_id", "status", "num_steps", "duration_s").tail(5))
print(f"events are in {run.dir / 'events.jsonl'}")
