"""``root_keyword_only``: parameters that became keyword-only, still accepted by position for
one release with a DeprecationWarning (``history(run, root=...)``, ``best(metric, mode, root=...)``).

Example:
    >>> @root_keyword_only(1, ("root",))
    ... def where(run, *, root="logs"):
    ...     return run, root
    >>> where("a", root="b")
    ('a', 'b')
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])


def root_keyword_only(positional: int, moved: tuple[str, ...]) -> Callable[[_F], _F]:
    """Make the parameters ``moved`` keyword-only, accepting them by position (after the first
    ``positional`` arguments) for one more release with a DeprecationWarning.

    Example:
        >>> @root_keyword_only(1, ("root",))
        ... def where(run, *, root="logs"):
        ...     return run, root
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     where("a", "elsewhere"), caught[0].category.__name__
        (('a', 'elsewhere'), 'DeprecationWarning')
    """

    def wrap(func: _F) -> _F:
        @functools.wraps(func)
        def call(*args: Any, **kwargs: Any) -> Any:
            if len(args) > positional:
                extra = args[positional:]
                if len(extra) > len(moved):
                    raise TypeError(
                        f"{func.__name__}() takes {positional} positional arguments but {len(args)} were given"
                    )
                names = moved[: len(extra)]
                warnings.warn(
                    f"steplog.{func.__name__}(): passing {', '.join(names)} by position is deprecated and "
                    f"stops working in the next release; pass {', '.join(f'{n}=...' for n in names)}",
                    DeprecationWarning,
                    stacklevel=2,
                )
                kwargs.update(zip(names, extra))
                args = args[:positional]
            return func(*args, **kwargs)

        return call  # type: ignore[return-value]

    return wrap
