"""The demo's data and model, in numpy alone: a Markov source with a known entropy rate, a
character-level MLP language model (embedding, one tanh hidden layer, softmax cross-entropy,
hand-written backprop), AdamW and the learning-rate schedule. ``steplog.demo`` trains it and logs
the runs; nothing here knows about steplog.

Example:
    >>> source = markov_source(alphabet_size=4, order=1, seed=0)
    >>> 0 < source.entropy_rate < math.log(4)
    True
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

ALPHABET = " etaoinshrdlcumwfgypbvkjxqz"


# --- the data: a Markov source with a known entropy rate -------------------------------------


@dataclasses.dataclass(frozen=True)
class MarkovSource:
    """A stationary Markov chain over ``alphabet`` of the given ``order``.

    ``probs[context]`` (shape ``(V,) * order + (V,)``) is the distribution of the next symbol after
    a context of ``order`` symbols; ``stationary`` (shape ``(V,) * order``) the stationary
    distribution of contexts.
    """

    alphabet: str
    order: int
    probs: np.ndarray
    stationary: np.ndarray

    @property
    def entropy_rate(self) -> float:
        """Nats per symbol: the expected cross-entropy of the true next-symbol distribution, the
        lowest loss any model can have on this source.

        Example:
            >>> round(markov_source(alphabet_size=2, order=1, concentration=1e6, seed=0).entropy_rate, 3)
            0.693
        """
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(self.probs > 0, self.probs * np.log(self.probs), 0.0)
        return float(-(self.stationary * plogp.sum(axis=-1)).sum())

    def cross_entropy(self, x: np.ndarray, y: np.ndarray) -> float:
        """The loss of the source itself (the true next-symbol distribution) on windows ``x`` ->
        ``y``: the entropy rate up to the sampling noise of a finite set.

        Example:
            >>> source = markov_source(alphabet_size=4, order=1, seed=0)
            >>> x, y = windows(source.sample(64, 200, np.random.default_rng(0)), 2)
            >>> abs(source.cross_entropy(x, y) - source.entropy_rate) < 0.05
            True
        """
        context = tuple(x[:, -self.order :].T)
        return float(-np.log(self.probs[context + (y,)]).mean())

    def sample(self, num_sequences: int, length: int, rng: np.random.Generator) -> np.ndarray:
        """``num_sequences`` independent sequences of ``length`` symbol ids (int64), each started
        from the stationary distribution (so every position is a stationary sample).

        Example:
            >>> source = markov_source(alphabet_size=3, order=2, seed=1)
            >>> source.sample(4, 10, np.random.default_rng(0)).shape
            (4, 10)
        """
        size = len(self.alphabet)
        flat_start = rng.choice(size**self.order, size=num_sequences, p=self.stationary.ravel())
        out = np.empty((num_sequences, length), dtype=np.int64)
        out[:, : self.order] = np.stack(np.unravel_index(flat_start, (size,) * self.order), axis=1)[:, :length]
        cumulative = np.cumsum(self.probs, axis=-1).reshape(-1, size)
        cumulative[:, -1] = 1.0
        weights = size ** np.arange(self.order - 1, -1, -1)
        for t in range(self.order, length):
            context = out[:, t - self.order : t] @ weights
            u = rng.random(num_sequences)[:, None]
            out[:, t] = (u > cumulative[context]).sum(axis=1)
        return out


def markov_source(alphabet_size: int = 12, order: int = 2, concentration: float = 0.3, seed: int = 0) -> MarkovSource:
    """A random Markov source: each context's next-symbol distribution is drawn from a symmetric
    Dirichlet(``concentration``) (small: peaked distributions, a low entropy rate), seeded.

    Example:
        >>> source = markov_source(alphabet_size=5, order=2, seed=3)
        >>> source.probs.shape, round(float(source.stationary.sum()), 6)
        ((5, 5, 5), 1.0)
    """
    if not 2 <= alphabet_size <= len(ALPHABET) or order < 1:
        raise ValueError(f"alphabet_size must be in 2..{len(ALPHABET)} and order >= 1, got {alphabet_size}, {order}")
    rng = np.random.default_rng(seed)
    shape = (alphabet_size,) * order
    probs = rng.dirichlet(np.full(alphabet_size, concentration), size=shape)
    probs = np.maximum(probs, 1e-12)
    probs /= probs.sum(axis=-1, keepdims=True)
    # Stationary distribution of contexts: power iteration on context -> next context.
    stationary = np.full(shape, 1.0 / alphabet_size**order)
    for _ in range(10_000):
        joint = stationary[..., None] * probs  # P(context, next symbol)
        following = joint.sum(axis=0)  # drop the oldest symbol: the next context
        if np.abs(following - stationary).max() < 1e-13:
            stationary = following
            break
        stationary = following
    return MarkovSource(ALPHABET[:alphabet_size], order, probs, stationary / stationary.sum())


def windows(sequences: np.ndarray, context: int) -> tuple[np.ndarray, np.ndarray]:
    """All (last ``context`` symbols, next symbol) pairs of a batch of sequences.

    Example:
        >>> x, y = windows(np.array([[0, 1, 2, 3]]), 2)
        >>> x.tolist(), y.tolist()
        ([[0, 1], [1, 2]], [2, 3])
    """
    view = np.lib.stride_tricks.sliding_window_view(sequences, context + 1, axis=1)
    view = view.reshape(-1, context + 1)
    return np.ascontiguousarray(view[:, :context]), np.ascontiguousarray(view[:, context])


# --- the model: embedding, one tanh hidden layer, softmax ----------------------------------


class CharMLP:
    """A character-level MLP language model with hand-written forward and backward passes.

    Example:
        >>> model = CharMLP(vocab_size=5, context=3, embed_dim=4, hidden=8, seed=0)
        >>> x = np.array([[0, 1, 2], [3, 4, 0]]); y = np.array([3, 1])
        >>> loss, grads = model.loss_and_grads(x, y)
        >>> abs(loss - math.log(5)) < 0.2, sorted(grads) == sorted(model.params)
        (True, True)
    """

    def __init__(self, vocab_size: int, context: int, embed_dim: int, hidden: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        fan_in = context * embed_dim
        self.params = {
            "embed": rng.normal(0.0, 1.0, (vocab_size, embed_dim)),
            "w1": rng.normal(0.0, 1.0 / math.sqrt(fan_in), (fan_in, hidden)),
            "b1": np.zeros(hidden),
            "w2": rng.normal(0.0, 0.1 / math.sqrt(hidden), (hidden, vocab_size)),
            "b2": np.zeros(vocab_size),
        }
        self.params = {k: v.astype(np.float32) for k, v in self.params.items()}

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = self.params
        inputs = p["embed"][x].reshape(len(x), -1)
        hidden = np.tanh(inputs @ p["w1"] + p["b1"])
        logits = hidden @ p["w2"] + p["b2"]
        return inputs, hidden, logits

    @staticmethod
    def _log_softmax(logits: np.ndarray) -> np.ndarray:
        shifted = logits - logits.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    def loss(self, x: np.ndarray, y: np.ndarray, chunk: int = 64) -> float:
        """Mean cross-entropy (nats) of predicting ``y`` from contexts ``x``, ``chunk`` rows at a
        time (small products stay single-threaded; see ``DemoSettings``)."""
        total = 0.0
        for begin in range(0, len(y), chunk):
            logp = self._log_softmax(self._forward(x[begin : begin + chunk])[2])
            total -= float(logp[np.arange(len(logp)), y[begin : begin + chunk]].sum())
        return total / len(y)

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """The loss and the gradient of every parameter (backprop by hand)."""
        p = self.params
        batch = len(y)
        inputs, hidden, logits = self._forward(x)
        logp = self._log_softmax(logits)
        loss = float(-logp[np.arange(batch), y].mean())
        dlogits = np.exp(logp)
        dlogits[np.arange(batch), y] -= 1.0
        dlogits /= batch
        dhidden = dlogits @ p["w2"].T
        dpre = dhidden * (1.0 - hidden * hidden)
        dinputs = (dpre @ p["w1"].T).reshape(batch, x.shape[1], -1)
        dembed = np.zeros_like(p["embed"])
        np.add.at(dembed, x, dinputs)
        grads = {
            "embed": dembed,
            "w1": inputs.T @ dpre,
            "b1": dpre.sum(axis=0),
            "w2": hidden.T @ dlogits,
            "b2": dlogits.sum(axis=0),
        }
        return loss, grads


class AdamW:
    """AdamW (decoupled weight decay on matrices only) with global-norm gradient clipping.

    Example:
        >>> params = {"w": np.ones((2, 2), np.float32)}
        >>> opt = AdamW(params, weight_decay=0.0)
        >>> norm = opt.step({"w": np.ones((2, 2), np.float32)}, lr=0.1)
        >>> round(float(params["w"][0, 0]), 4), norm
        (0.9, 2.0)
    """

    def __init__(
        self,
        params: dict[str, np.ndarray],
        beta1: float = 0.9,
        beta2: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        grad_clip: float = 1.0,
    ) -> None:
        self.params = params
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.weight_decay, self.grad_clip = weight_decay, grad_clip
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, grads: dict[str, np.ndarray], lr: float) -> float:
        """One update; returns the gradient norm before clipping."""
        norm = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
        scale = min(1.0, self.grad_clip / (norm + 1e-12)) if self.grad_clip > 0 else 1.0
        self.t += 1
        correction1 = 1.0 - self.beta1**self.t
        correction2 = 1.0 - self.beta2**self.t
        for name, param in self.params.items():
            g = grads[name] * scale
            m, v = self.m[name], self.v[name]
            m *= self.beta1
            m += (1.0 - self.beta1) * g
            v *= self.beta2
            v += (1.0 - self.beta2) * g * g
            if param.ndim > 1 and self.weight_decay:
                param *= 1.0 - lr * self.weight_decay
            param -= lr * (m / correction1) / (np.sqrt(v / correction2) + self.eps)
        return norm


def learning_rate_at(iteration: int, max_lr: float, min_lr: float, warmup: int, total: int) -> float:
    """Linear warmup to ``max_lr`` over ``warmup`` iterations, then cosine decay to ``min_lr`` at ``total``.

    Example:
        >>> [round(learning_rate_at(i, 1.0, 0.1, 10, 110), 3) for i in (0, 5, 10, 60, 110, 200)]
        [0.1, 0.6, 1.0, 0.55, 0.1, 0.1]
    """
    if iteration < warmup:
        return max_lr * (iteration + 1) / warmup
    if iteration >= total:
        return min_lr
    progress = (iteration - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)
