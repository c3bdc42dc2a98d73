"""A nursery that gives back a single exception as itself, not wrapped in an ExceptionGroup.

trio wraps anything that leaves a nursery in an ExceptionGroup (strict groups). At our API
boundary a caller who wrote ``except RateLimitError`` must catch a RateLimitError, whether it
came from our own task or from the caller's own code in the ``async with`` body; so when a group
holds exactly one exception, that exception is re-raised as it was: same object, same traceback,
same ``__cause__`` and ``__context__``. A group of several stays a group: nothing is hidden.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import trio

__all__ = ["collapsing_groups", "open_collapsing_nursery", "single_leaf"]


def single_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The only exception in a (possibly nested) group, or None if there are several."""
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        if len(leaf.exceptions) != 1:
            return None
        leaf = leaf.exceptions[0]
    return leaf


@contextmanager
def collapsing_groups() -> Iterator[None]:
    """Re-raise a lone exception leaving the block unwrapped from its (nested) groups."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaf = single_leaf(group)
        if leaf is None:
            raise
        context = leaf.__context__
        try:
            raise leaf
        finally:
            leaf.__context__ = context


@asynccontextmanager
async def open_collapsing_nursery() -> AsyncIterator[trio.Nursery]:
    """``trio.open_nursery()``, re-raising a lone exception unwrapped."""
    with collapsing_groups():
        async with trio.open_nursery() as nursery:
            yield nursery
