"""A CS336 assignment-1 style PyTorch training loop with steplog's ExperimentTracker (needs torch).

The loop is the usual one: config from the command line, random batches from a token array
(np.memmap of uint16 token ids, as in the assignment, or synthetic text when no data is given), a
small causal Transformer LM, AdamW, cosine learning-rate schedule with warmup, gradient clipping,
gradient accumulation, and an estimate of train/val loss every ``--eval-interval`` iterations. The
lines marked ``# steplog`` are all the integration there is.

Run:  python examples/cs336_training_loop.py --max-iters 200
      python examples/cs336_training_loop.py --train-data data/train.bin --val-data data/valid.bin --vocab-size 10000
Without torch it prints how to install it and exits cleanly.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print("this example needs PyTorch: pip install torch  (steplog itself does not)")
    sys.exit(0)

from steplog import ExperimentConfig, ExperimentTracker  # steplog


class TransformerLM(nn.Module):
    """A small pre-norm causal Transformer language model."""

    def __init__(self, vocab_size: int, context_length: int, d_model: int, num_layers: int, num_heads: int, d_ff: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.position = nn.Embedding(context_length, d_model)
        layer = nn.TransformerEncoderLayer(d_model, num_heads, d_ff, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=tokens.device)
        h = self.embed(tokens) + self.position(torch.arange(length, device=tokens.device))
        return self.head(self.norm(self.blocks(h, mask=mask, is_causal=True)))


def get_batch(data: np.ndarray, batch_size: int, context_length: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    starts = np.random.randint(0, len(data) - context_length, batch_size)
    x = np.stack([data[i : i + context_length] for i in starts]).astype(np.int64)
    y = np.stack([data[i + 1 : i + 1 + context_length] for i in starts]).astype(np.int64)
    return torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)


def get_lr_cosine_schedule(it: int, max_lr: float, min_lr: float, warmup_iters: int, cosine_cycle_iters: int) -> float:
    if it < warmup_iters:
        return max_lr * it / warmup_iters
    if it > cosine_cycle_iters:
        return min_lr
    return min_lr + 0.5 * (1 + math.cos(math.pi * (it - warmup_iters) / (cosine_cycle_iters - warmup_iters))) * (max_lr - min_lr)


@torch.no_grad()
def estimate_loss(model: nn.Module, splits: dict[str, np.ndarray], args: argparse.Namespace) -> dict[str, float]:
    model.eval()
    out = {}
    for split, data in splits.items():
        losses = [F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()
                  for x, y in (get_batch(data, args.batch_size, args.context_length, args.device)
                               for _ in range(args.eval_iters))]
        out[split] = float(np.mean(losses))
    model.train()
    return out


def load_tokens(path: str | None, args: argparse.Namespace, seed: int) -> np.ndarray:
    if path is not None:
        return np.memmap(path, dtype=np.uint16, mode="r")
    from steplog.demo import markov_source  # synthetic text with a known best loss

    source = markov_source(alphabet_size=args.vocab_size, order=2, seed=0)
    return source.sample(1, 200_000, np.random.default_rng(seed))[0].astype(np.uint16)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiment-name", default="cs336_tiny")
    p.add_argument("--train-data"), p.add_argument("--val-data")
    p.add_argument("--log-dir", default="experiment_logs")
    for name, default in (("vocab-size", 12), ("context-length", 32), ("d-model", 64), ("num-layers", 2),
                          ("num-heads", 4), ("d-ff", 128), ("batch-size", 32), ("max-iters", 300),
                          ("warmup-iters", 20), ("grad-accum-steps", 2), ("eval-interval", 50), ("eval-iters", 5),
                          ("seed", 0)):
        p.add_argument(f"--{name}", type=int, default=default)
    for name, default in (("learning-rate", 3e-3), ("min-learning-rate", 3e-4), ("weight-decay", 0.1),
                          ("grad-clip", 1.0)):
        p.add_argument(f"--{name}", type=float, default=default)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    config = ExperimentConfig(  # steplog: the run's hyperparameters, stored with it
        experiment_name=args.experiment_name, vocab_size=args.vocab_size, context_length=args.context_length,
        d_model=args.d_model, num_layers=args.num_layers, num_heads=args.num_heads, d_ff=args.d_ff,
        batch_size=args.batch_size, max_iters=args.max_iters, learning_rate=args.learning_rate,
        min_learning_rate=args.min_learning_rate, warmup_iters=args.warmup_iters, cosine_cycle_iters=args.max_iters,
        weight_decay=args.weight_decay, grad_clip=args.grad_clip, eval_interval=args.eval_interval,
        eval_iters=args.eval_iters, seed=args.seed, device=args.device, train_data=args.train_data,
        val_data=args.val_data, extra={"grad_accum_steps": args.grad_accum_steps},
    )
    splits = {"train": load_tokens(args.train_data, args, 1), "val": load_tokens(args.val_data, args, 2)}
    model = TransformerLM(args.vocab_size, args.context_length, args.d_model, args.num_layers, args.num_heads,
                          args.d_ff).to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay,
                                  betas=(config.beta1, config.beta2), eps=config.eps)

    tracker = ExperimentTracker(config, log_dir=args.log_dir)  # steplog
    tracker.start()  # steplog
    tokens_per_iter = args.batch_size * args.context_length
    for iter_num in range(args.max_iters):
        t0 = time.perf_counter()
        lr = get_lr_cosine_schedule(iter_num, args.learning_rate, args.min_learning_rate, args.warmup_iters,
                                    args.max_iters)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = get_batch(splits["train"], args.batch_size, args.context_length, args.device)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        (loss / args.grad_accum_steps).backward()
        stepped = (iter_num + 1) % args.grad_accum_steps == 0
        if stepped:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        iter_time = time.perf_counter() - t0
        tracker.log_metrics(iteration=iter_num, train_loss=loss.item(), learning_rate=lr,  # steplog
                            tokens_per_sec=tokens_per_iter / iter_time, iter_time_ms=iter_time * 1000)
        if stepped:
            tracker.increment_gradient_step()  # steplog
        if iter_num % args.eval_interval == 0:
            losses = estimate_loss(model, splits, args)
            tracker.log_eval(iteration=iter_num, train_loss=losses["train"], val_loss=losses["val"])  # steplog
            print(f"iter {iter_num}: train {losses['train']:.4f}, val {losses['val']:.4f}, lr {lr:.2e}")
    final = estimate_loss(model, splits, args)
    tracker.finish(train_loss=final["train"], val_loss=final["val"], notes="cs336-style loop")  # steplog
    tracker.save()  # steplog
    tracker.print_summary()  # steplog


if __name__ == "__main__":
    main()
