"""Progress of a job over many runs (compaction), on stderr.

On a terminal with tqdm installed (``pip install steplog[progress]``) it is a tqdm bar, with the
lines worth keeping (skipped runs) printed above it. Without tqdm, or when stderr is not a
terminal (a log file, CI), it is one plain line per item, so logs stay greppable. ``quiet=True``
prints nothing. Either way ``close`` prints the totals on one line.

Example:
    >>> import io
    >>> out = io.StringIO()
    >>> progress = Progress("steplog compact", 1, stream=out)
    >>> progress.update("run-1", "compacted", "3 steps, finished")
    >>> progress.close()
    >>> print(out.getvalue(), end="")
    steplog compact [1/1] run-1: compacted: 3 steps, finished
    steplog compact: 1 compacted
"""

from __future__ import annotations

import sys
from typing import Any, TextIO


class Progress:
    """Progress over ``total`` items: ``update`` once per item with its outcome, then ``close``.
    ``quiet_outcomes`` are counted but get no line of their own off a terminal (e.g. "current");
    ``loud_outcomes`` keep a line above the bar on a terminal (e.g. "skipped").

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> p = Progress("job", 2, stream=out, quiet_outcomes=("current",))
        >>> p.update("a", "current", "nothing to do"); p.update("b", "done", "ok"); p.close()
        >>> out.getvalue().splitlines()
        ['job [2/2] b: done: ok', 'job: 1 current, 1 done']
    """

    def __init__(
        self,
        label: str,
        total: int,
        *,
        quiet: bool = False,
        stream: TextIO | None = None,
        quiet_outcomes: tuple[str, ...] = (),
        loud_outcomes: tuple[str, ...] = (),
    ) -> None:
        self.label, self.total, self.quiet, self.done = label, total, quiet, 0
        self.stream = sys.stderr if stream is None else stream
        self.quiet_outcomes, self.loud_outcomes = quiet_outcomes, loud_outcomes
        self.counts: dict[str, int] = {}
        self.bar = None if quiet else _tqdm_bar(label, total, self.stream)

    def update(self, item: str, outcome: str, detail: str) -> None:
        """Count one item done, and show it."""
        self.done += 1
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        if self.quiet:
            return
        line = f"{self.label} [{self.done}/{self.total}] {item}: {outcome}: {detail}"
        if self.bar is None:
            if outcome not in self.quiet_outcomes:
                print(line, file=self.stream, flush=True)
            return
        if outcome in self.loud_outcomes:
            self.bar.write(line, file=self.stream)
        self.bar.set_postfix_str(self._counts(), refresh=False)
        self.bar.update(1)

    def close(self, order: tuple[str, ...] = (), names: dict[str, str] | None = None) -> None:
        """Close the bar and print the totals: ``order``'s outcomes first, each shown even at 0,
        each outcome under its entry in ``names`` if it has one."""
        if self.bar is not None:
            self.bar.close()
        if not self.quiet:
            print(f"{self.label}: {self._counts(order, names or {})}", file=self.stream, flush=True)

    def _counts(self, order: tuple[str, ...] = (), names: dict[str, str] | None = None) -> str:
        counts = {**dict.fromkeys(order, 0), **self.counts}
        return ", ".join(f"{n} {(names or {}).get(outcome, outcome)}" for outcome, n in counts.items())


def _tqdm_bar(label: str, total: int, stream: TextIO) -> Any:
    """A tqdm bar on ``stream`` when it is a terminal and tqdm is installed; else None."""
    isatty = getattr(stream, "isatty", None)
    if not (callable(isatty) and isatty()):
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=label, unit="run", file=stream, leave=True, dynamic_ncols=True)
