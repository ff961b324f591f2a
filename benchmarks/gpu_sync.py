"""What logging a GPU loss costs a training loop: a CS336-size Transformer LM (d_model 512, 4
layers, 16 heads, batch 64, context 256, bf16 autocast) trained under three ways of logging:

* ``none``: no logging at all (the reference);
* ``item``: ``loss.item()`` every step (a device sync every step, what most loops do);
* ``steplog``: ``run.log({"train_loss": loss, "lr": lr})`` with the loss left on the device
  (steplog copies the values of ``tensor_flush_steps`` steps to the host in one transfer).

Modes are run in alternating rounds (none, item, steplog, none, ...) so drift hits all alike;
reported: steps/s (median over rounds) and the cost of each relative to ``none``.

    python benchmarks/gpu_sync.py            # on CUDA (or another accelerator torch sees), full size
    python benchmarks/gpu_sync.py --tiny     # a tiny model on CPU in seconds (the smoke test)

On CPU the tensors are not accelerator tensors, so ``--tiny`` also forces steplog's deferred path
(``--defer-cpu``, on by default with --tiny) to exercise it; CPU figures say nothing about GPUs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn

import steplog
from steplog import values

SIZES = {
    "full": dict(
        vocab=10_000, d_model=512, layers=4, heads=16, d_ff=1344, batch=64, context=256, steps=200, warmup=30, rounds=3
    ),
    "tiny": dict(vocab=128, d_model=32, layers=2, heads=2, d_ff=64, batch=2, context=16, steps=4, warmup=1, rounds=1),
}
MODES = ("none", "item", "steplog")


class Block(nn.Module):
    """Pre-norm Transformer block: RMSNorm -> causal self-attention, RMSNorm -> SwiGLU."""

    def __init__(self, d_model: int, heads: int, d_ff: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.RMSNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.norm2 = nn.RMSNorm(d_model)
        self.gate_up = nn.Linear(d_model, 2 * d_ff, bias=False)
        self.down = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attention = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out(attention.transpose(1, 2).reshape(b, t, d))
        gate, up = self.gate_up(self.norm2(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


class TransformerLM(nn.Module):
    def __init__(self, vocab: int, d_model: int, layers: int, heads: int, d_ff: int, context: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, d_model)
        self.positions = nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList(Block(d_model, heads, d_ff) for _ in range(layers))
        self.norm = nn.RMSNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tokens(ids) + self.positions(torch.arange(ids.shape[1], device=ids.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def train(mode: str, size: dict, device: torch.device, root: str) -> float:
    """Steps per second of ``size['steps']`` training steps (after a warm-up) under ``mode``."""
    torch.manual_seed(0)
    model = TransformerLM(
        size["vocab"], size["d_model"], size["layers"], size["heads"], size["d_ff"], size["context"]
    ).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    run = steplog.init(name=f"gpu-sync-{mode}", root=root) if mode == "steplog" else None
    kept: list[float] = []
    total = size["warmup"] + size["steps"]
    start = 0.0
    for step in range(total):
        if step == size["warmup"]:
            sync(device)
            start = time.perf_counter()
        ids = torch.randint(0, size["vocab"], (size["batch"], size["context"] + 1), device=device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.float().view(-1, size["vocab"]), ids[:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        lr = optimizer.param_groups[0]["lr"]
        if mode == "item":
            kept.append(loss.item())
        elif mode == "steplog":
            run.log({"train_loss": loss, "lr": lr})
    sync(device)
    elapsed = time.perf_counter() - start
    if run is not None:
        run.finish()
        assert steplog.history(run.id, root=root).height == total
    return size["steps"] / elapsed


def main(argv: list[str] | None = None) -> dict[str, str]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny model on CPU, in seconds")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument(
        "--defer-cpu", action="store_true", help="treat CPU tensors as accelerator tensors (tests the path)"
    )
    args = parser.parse_args(argv)
    size = SIZES["tiny" if args.tiny else "full"]
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.tiny else "cpu"))
    if args.tiny or args.defer_cpu:
        values.is_device_value = lambda value: type(value).__module__.startswith("torch")
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="steplog-gpu-sync-") as root:
        for _ in range(size["rounds"]):
            for mode in MODES:
                rates[mode].append(train(mode, size, device, root))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    median = {mode: statistics.median(r) for mode, r in rates.items()}
    results = {"device": name}
    for mode in MODES:
        cost = (median["none"] / median[mode] - 1.0) * 100
        results[f"{mode}: steps/s (cost vs none)"] = f"{median[mode]:.2f} ({cost:+.2f} %)"
    print("| mode | steps/s | cost vs no logging |\n|---|---|---|")
    for mode in MODES:
        print(f"| {mode} | {median[mode]:.2f} | {(median['none'] / median[mode] - 1.0) * 100:+.2f} % |")
    print(f"device: {name}; {size['steps']} steps x {size['rounds']} rounds per mode")
    return results


if __name__ == "__main__":
    main()
