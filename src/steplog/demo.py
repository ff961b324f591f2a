"""The demo training job: a learning-rate sweep of a character-level MLP language model, in numpy.

The text comes from a fixed random Markov source (order 2 over a small alphabet, seeded), so the
best loss any model can reach, the source's entropy rate, is known exactly and printed beside the
results. The model sees the last ``context`` characters (more than the source's order, so it can
reach that bound): embedding, one tanh hidden layer, softmax cross-entropy, hand-written backprop,
AdamW with linear warmup and cosine decay, global-norm gradient clipping.

Every iteration is logged with ``ExperimentTracker`` (train loss, learning rate, tokens/s,
iteration time, gradient steps; validation loss every ``eval_interval`` iterations); the runs are
compacted, compared and the best one named. Run it with ``steplog demo`` (``--quick`` for a few
seconds) or call ``run_demo``. The data and the model are in ``steplog.demo_model``.

Example:
    >>> source = markov_source(alphabet_size=4, order=1, seed=0)
    >>> 0 < source.entropy_rate < math.log(4)
    True
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .analyzer import ExperimentAnalyzer
from .demo_model import AdamW, CharMLP, MarkovSource, learning_rate_at, markov_source, windows
from .tables import SOFT_TRUNCATED_WIDTH, text_table
from .tracker import ExperimentConfig, ExperimentTracker

# --- one training run, logged with ExperimentTracker --------------------------------------


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo; ``quick()`` for a run of a few seconds.

    The batch and hidden sizes keep every matrix product small enough (m*n*k below 2**18) that
    OpenBLAS computes it on one thread: on a busy machine, BLAS threads on matrices this small
    spend far longer waiting for each other than computing (measured: over 10x slower).
    """

    learning_rates: tuple[float, ...] = (3e-4, 3e-3, 3e-2)
    iterations: int = 20_000
    batch_size: int = 64
    warmup: int = 500
    eval_interval: int = 500
    eval_examples: int = 16384
    train_sequences: int = 512
    sequence_length: int = 512
    alphabet_size: int = 12
    order: int = 2
    context: int = 3
    embed_dim: int = 16
    hidden: int = 64
    weight_decay: float = 0.01
    seed: int = 0

    @classmethod
    def quick(cls) -> DemoSettings:
        """The ``--quick`` sizes: fewer iterations and less data.

        Example:
            >>> DemoSettings.quick().iterations < DemoSettings().iterations
            True
        """
        return cls(iterations=1500, warmup=50, eval_interval=100, eval_examples=4096, train_sequences=128)


def train_run(
    learning_rate: float,
    settings: DemoSettings,
    source: MarkovSource,
    data: dict[str, np.ndarray],
    root: str | os.PathLike,
    name: str,
) -> ExperimentTracker:
    """Train one model at ``learning_rate``, logging every iteration; returns the finished tracker.

    Example:
        >>> import tempfile
        >>> settings = DemoSettings(iterations=5, warmup=1, eval_interval=2, eval_examples=64, train_sequences=8,
        ...                         sequence_length=32)
        >>> source = markov_source(settings.alphabet_size, settings.order, seed=0)
        >>> tracker = train_run(1e-2, settings, source, make_data(source, settings), tempfile.mkdtemp(), "tiny")
        >>> tracker.gradient_step
        5
    """
    s = settings
    config = ExperimentConfig(
        experiment_name=name,
        vocab_size=len(source.alphabet),
        context_length=s.context,
        d_model=s.embed_dim,
        num_layers=1,
        num_heads=1,
        d_ff=s.hidden,
        batch_size=s.batch_size,
        max_iters=s.iterations,
        learning_rate=learning_rate,
        min_learning_rate=learning_rate / 10,
        warmup_iters=s.warmup,
        cosine_cycle_iters=s.iterations,
        weight_decay=s.weight_decay,
        beta1=0.9,
        beta2=0.99,
        eps=1e-8,
        grad_clip=1.0,
        eval_interval=s.eval_interval,
        eval_iters=max(1, s.eval_examples // s.batch_size),
        log_interval=1,
        seed=s.seed,
        device="cpu",
        dtype="float32",
        train_data=f"markov(order={s.order}, alphabet={len(source.alphabet)}, seed={s.seed})",
        val_data=f"markov(order={s.order}, alphabet={len(source.alphabet)}, seed={s.seed}), held-out sequences",
        extra={
            "model": "char-mlp (embedding, tanh hidden layer, softmax)",
            "source_entropy_rate": round(source.entropy_rate, 6),
        },
    )
    model = CharMLP(len(source.alphabet), s.context, s.embed_dim, s.hidden, seed=s.seed)
    optimizer = AdamW(
        model.params,
        beta1=config.beta1,
        beta2=config.beta2,
        eps=config.eps,
        weight_decay=config.weight_decay,
        grad_clip=config.grad_clip,
    )
    x_train, y_train, x_val, y_val = data["x_train"], data["y_train"], data["x_val"], data["y_val"]
    batches = np.random.default_rng(s.seed + 1)
    tracker = ExperimentTracker(config, log_dir=root)
    tracker.start()
    for it in range(s.iterations):
        t0 = time.perf_counter()
        lr = learning_rate_at(it, learning_rate, config.min_learning_rate, s.warmup, s.iterations)
        index = batches.integers(0, len(y_train), s.batch_size)
        loss, grads = model.loss_and_grads(x_train[index], y_train[index])
        grad_norm = optimizer.step(grads, lr)
        seconds = time.perf_counter() - t0
        tracker.log_metrics(
            it,
            train_loss=loss,
            learning_rate=lr,
            tokens_per_sec=s.batch_size / seconds,
            iter_time_ms=seconds * 1000,
            grad_norm=grad_norm,
        )
        tracker.increment_gradient_step()
        if it % s.eval_interval == 0:
            tracker.log_eval(it, val_loss=model.loss(x_val, y_val))
    tracker.finish(
        val_loss=model.loss(x_val, y_val), notes=f"lr sweep; source entropy rate {source.entropy_rate:.4f} nats/char"
    )
    return tracker


def make_data(source: MarkovSource, settings: DemoSettings) -> dict[str, np.ndarray]:
    """Training windows and a fixed validation set (``eval_examples`` windows from held-out sequences).

    Example:
        >>> settings = DemoSettings.quick()
        >>> data = make_data(markov_source(seed=0), settings)
        >>> data["x_val"].shape == (settings.eval_examples, settings.context)
        True
    """
    rng = np.random.default_rng(settings.seed)
    train = source.sample(settings.train_sequences, settings.sequence_length, rng)
    val_sequences = -(-settings.eval_examples // (settings.sequence_length - settings.context)) + 1
    val = source.sample(val_sequences, settings.sequence_length, rng)
    x_train, y_train = windows(train, settings.context)
    x_val, y_val = windows(val, settings.context)
    return {
        "x_train": x_train,
        "y_train": y_train,
        "x_val": x_val[: settings.eval_examples],
        "y_val": y_val[: settings.eval_examples],
    }


@dataclasses.dataclass
class DemoResult:
    """What ``run_demo`` did: the source's entropy rate, the run ids and names, the best run."""

    root: Path
    entropy_rate: float
    run_ids: list[str]
    names: list[str]
    best_name: str
    best_val_loss: float


def run_demo(
    root: str | os.PathLike = "experiment_logs",
    quick: bool = False,
    settings: DemoSettings | None = None,
    out: Callable[[str], Any] = print,
    width: int | None = None,
) -> DemoResult:
    """Run the learning-rate sweep into ``root``, compact the runs, print the comparison table
    (fitted to ``width`` columns; default: the terminal's, else 80), the best run, where the files
    are and what to try next (through ``out``).

    Example:
        >>> import tempfile
        >>> tiny = DemoSettings(learning_rates=(1e-2, 3e-2), iterations=20, eval_interval=10, eval_examples=128,
        ...                     train_sequences=8, sequence_length=64, warmup=2)
        >>> result = run_demo(tempfile.mkdtemp(), settings=tiny, out=lambda line: None)
        >>> result.names
        ['demo_lr_0.01', 'demo_lr_0.03']
    """
    s = settings or (DemoSettings.quick() if quick else DemoSettings())
    root = Path(root)
    source = markov_source(s.alphabet_size, s.order, seed=s.seed)
    data = make_data(source, s)
    bound = source.entropy_rate
    out(f"steplog demo: a character-level MLP language model trained in numpy, {len(s.learning_rates)} learning rates")
    out(
        f"data: an order-{s.order} Markov source over {len(source.alphabet)} characters (seed {s.seed}); "
        f"{len(data['y_train']):,} training windows, {len(data['y_val']):,} validation windows"
    )
    out(
        f"best possible loss: the source's entropy rate, {bound:.4f} nats/char (the source itself scores "
        f"{source.cross_entropy(data['x_val'], data['y_val']):.4f} on this validation set; "
        f"a uniform guess {math.log(len(source.alphabet)):.4f})"
    )
    out("")
    trackers = []
    for lr, name in zip(s.learning_rates, sweep_names(s.learning_rates)):
        started = time.perf_counter()
        tracker = train_run(lr, s, source, data, root, name)
        tracker.save()  # compact the finished run: metrics.parquet + run.json
        trackers.append(tracker)
        final = ExperimentAnalyzer(root).get_experiment(str(tracker.run_id)).summary["final_val_loss"]
        out(
            f"  {name:<16} {s.iterations} iterations in {time.perf_counter() - started:5.1f} s   "
            f"val loss {final:.4f} (entropy rate + {final - bound:.4f})"
        )
    run_ids = [str(t.run_id) for t in trackers]
    analyzer = ExperimentAnalyzer(root)
    analyzer.load_all()
    out("")
    out(comparison_text(analyzer, run_ids, width or terminal_width()))
    finals = {
        t.config.experiment_name: analyzer.get_experiment(str(t.run_id)).summary["final_val_loss"] for t in trackers
    }
    best_name = min(finals, key=finals.__getitem__)
    out("")
    out(
        f"best run: {best_name}, final val loss {finals[best_name]:.4f} "
        f"(entropy rate {bound:.4f}, gap {finals[best_name] - bound:.4f})"
    )
    out(f"files: one folder per run under {root.resolve()} (events compacted into metrics.parquet + run.json):")
    for tracker in trackers:
        out(f"  {tracker.run_dir}")
    out(f"loss curves: {_plot(run_ids, root, bound)}")
    out("")
    out(what_next(root, best_name))
    return DemoResult(root, bound, run_ids, [t.config.experiment_name for t in trackers], best_name, finals[best_name])


def comparison_text(analyzer: ExperimentAnalyzer, run_ids: list[str], width: int) -> str:
    """The sweep's comparison table, fitted to ``width`` columns (as ``steplog ls`` fits its own):
    the learning rate is the only config shown (the rest follows from it), run names are cut in the
    middle, then the run id, duration, status and throughput columns are left out.

    Example:
        >>> import tempfile
        >>> print(comparison_text(ExperimentAnalyzer(tempfile.mkdtemp()), [], 40))
        (no runs)
    """
    if not run_ids:
        return "(no runs)"
    frame = analyzer.comparison_frame(["train_loss", "val_loss", "tokens_per_sec"], runs=run_ids)
    frame = frame.drop([c for c in frame.columns if c.startswith("config.") and c != "config.learning_rate"])
    return text_table(
        frame.rename({"config.learning_rate": "lr"}, strict=False),
        width=width,
        significant=4,
        split_headers=True,
        truncatable=["name"],
        min_truncated=SOFT_TRUNCATED_WIDTH,
        droppable=[
            "run_id",
            "duration_s",
            "tokens_per_sec.last",
            "status",
            "iterations",
            "train_loss.last",
            "tokens_per_sec.best",
        ],
    )


def terminal_width() -> int:
    """The terminal's width when stdout is one, else 80 (a log file, a pipe).

    Example:
        >>> terminal_width() > 0
        True
    """
    if sys.stdout.isatty():
        return shutil.get_terminal_size((80, 24)).columns
    return 80


def what_next(root: Path, best_name: str) -> str:
    """The demo's closing lines: the commands to look further, each with what it shows.

    Example:
        >>> print(what_next(Path("logs"), "demo_lr_0.003"))
        what next:
          steplog ls --root logs                   the runs, newest first
          steplog show demo_lr_0.003 --root logs   one run: config, segments, every metric
          steplog compare --root logs              the runs side by side
          steplog ui --root logs                   the dashboard: every point, live, in a browser
          steplog plot demo_lr_0.003 --metric val_loss --root logs -o curves.png
                                                   its curve as a PNG
          steplog.history("demo_lr_0.003", root="logs")
                                                   in Python: its history, a Polars frame
    """
    steps = [
        (f"steplog ls --root {root}", "the runs, newest first"),
        (f"steplog show {best_name} --root {root}", "one run: config, segments, every metric"),
        (f"steplog compare --root {root}", "the runs side by side"),
        (f"steplog ui --root {root}", "the dashboard: every point, live, in a browser"),
        (f"steplog plot {best_name} --metric val_loss --root {root} -o curves.png", "its curve as a PNG"),
        (f'steplog.history("{best_name}", root="{root}")', "in Python: its history, a Polars frame"),
    ]
    pad = max(len(command) for command, _ in steps[:4]) + 2
    return "\n".join(
        [
            "what next:",
            *(
                f"  {command:<{pad}} {why}" if len(command) < pad else f"  {command}\n  {'':<{pad}} {why}"
                for command, why in steps
            ),
        ]
    )


def _plot(run_ids: list[str], root: Path, bound: float) -> str:
    """Save the sweep's loss curves as ``<root>/demo_curves.png`` (``steplog plot`` draws the same
    with ``steplog.plot.plot_curves``); what to print about it: the path, or how to get matplotlib."""
    from .plot import PlotUnavailableError, plot_curves

    try:
        path = plot_curves(
            run_ids,
            ["train_loss", "val_loss"],
            root=root,
            smooth=50,
            output=root / "demo_curves.png",
            title=f"learning-rate sweep (best possible loss {bound:.4f} nats/char)",
        )
    except PlotUnavailableError:
        return "not drawn: install matplotlib (pip install 'steplog[plot]') to get them as a PNG"
    return str(path)


def sweep_names(learning_rates: Sequence[float]) -> list[str]:
    """The run names the demo gives a sweep.

    Example:
        >>> sweep_names([3e-4, 3e-3])
        ['demo_lr_0.0003', 'demo_lr_0.003']
    """
    return [f"demo_lr_{lr:g}" for lr in learning_rates]
