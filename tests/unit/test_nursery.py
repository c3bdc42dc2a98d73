"""The collapsing nursery: a lone exception comes out as itself; several stay a group."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_litellm._nursery import open_collapsing_nursery, single_leaf


class Boom(Exception):
    """A failure we can recognise."""


class Interrupt(BaseException):
    """Stands in for KeyboardInterrupt / SystemExit: not an Exception."""


# --- single_leaf ------------------------------------------------------------------------------


def test_single_leaf_of_a_one_exception_group_is_that_exception() -> None:
    boom = Boom()
    assert single_leaf(ExceptionGroup("g", [boom])) is boom


def test_single_leaf_looks_through_nested_one_exception_groups() -> None:
    boom = Boom()
    group = ExceptionGroup("outer", [ExceptionGroup("middle", [ExceptionGroup("inner", [boom])])])
    assert single_leaf(group) is boom


def test_single_leaf_of_a_group_of_several_is_none() -> None:
    assert single_leaf(ExceptionGroup("g", [Boom(), Boom()])) is None


def test_single_leaf_of_a_one_group_nesting_several_is_none() -> None:
    assert single_leaf(ExceptionGroup("outer", [ExceptionGroup("inner", [Boom(), Boom()])])) is None


# --- a lone exception -------------------------------------------------------------------------


async def test_lone_exception_from_the_body_comes_out_unwrapped() -> None:
    boom = Boom("body")
    with pytest.raises(Boom) as info:
        async with open_collapsing_nursery():
            raise boom
    assert info.value is boom


async def test_lone_exception_from_the_body_keeps_its_cause_and_context() -> None:
    cause = OSError("cause")
    context = KeyError("context")
    boom = Boom("body")
    with pytest.raises(Boom) as info:
        async with open_collapsing_nursery():
            try:
                raise context
            except KeyError:
                raise boom from cause
    assert info.value is boom
    assert boom.__cause__ is cause
    assert boom.__context__ is context


async def test_lone_exception_without_context_does_not_gain_the_group_as_context() -> None:
    with pytest.raises(Boom) as info:
        async with open_collapsing_nursery():
            raise Boom("body")
    assert info.value.__context__ is None
    assert info.value.__cause__ is None


async def test_lone_exception_from_the_body_cancels_the_children() -> None:
    cancelled = []

    async def wait_forever() -> None:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.append(True)
            raise

    with pytest.raises(Boom):
        async with open_collapsing_nursery() as nursery:
            nursery.start_soon(wait_forever)
            await trio.testing.wait_all_tasks_blocked()
            raise Boom("body")
    assert cancelled == [True]


async def test_lone_exception_from_a_child_comes_out_unwrapped() -> None:
    boom = Boom("child")
    cause = OSError("cause")

    async def fail() -> None:
        raise boom from cause

    with pytest.raises(Boom) as info:
        async with open_collapsing_nursery() as nursery:
            nursery.start_soon(fail)
            await trio.sleep_forever()
    assert info.value is boom
    assert boom.__cause__ is cause
    assert boom.__context__ is None


async def test_lone_exception_from_a_child_after_the_body_ends_comes_out_unwrapped() -> None:
    boom = Boom("child")
    go = trio.Event()

    async def fail_when_told() -> None:
        await go.wait()
        raise boom

    with pytest.raises(Boom) as info:
        async with open_collapsing_nursery() as nursery:
            nursery.start_soon(fail_when_told)
            await trio.testing.wait_all_tasks_blocked()
            go.set()
    assert info.value is boom


async def test_nested_group_with_one_leaf_from_a_child_collapses() -> None:
    boom = Boom("leaf")

    async def fail() -> None:
        raise ExceptionGroup("inner", [boom])

    with pytest.raises(Boom) as info:
        async with open_collapsing_nursery() as nursery:
            nursery.start_soon(fail)
    assert info.value is boom


async def test_lone_base_exception_collapses() -> None:
    interrupt = Interrupt()

    async def interrupted() -> None:
        raise interrupt

    with pytest.raises(Interrupt) as info:
        async with open_collapsing_nursery() as nursery:
            nursery.start_soon(interrupted)
    assert info.value is interrupt


async def test_lone_base_exception_from_the_body_collapses() -> None:
    interrupt = Interrupt()
    with pytest.raises(Interrupt) as info:
        async with open_collapsing_nursery():
            raise interrupt
    assert info.value is interrupt


# --- several exceptions -----------------------------------------------------------------------


async def test_two_failing_children_raise_a_group_holding_both() -> None:
    first, second = Boom("first"), Boom("second")
    go = trio.Event()

    async def fail_when_told(error: Boom) -> None:
        await go.wait()
        raise error

    with pytest.raises(ExceptionGroup) as info:
        async with open_collapsing_nursery() as nursery:
            nursery.start_soon(fail_when_told, first)
            nursery.start_soon(fail_when_told, second)
            await trio.testing.wait_all_tasks_blocked()
            go.set()
    assert set(info.value.exceptions) == {first, second}


async def test_failing_body_and_failing_child_raise_a_group_holding_both() -> None:
    child_error, body_error = Boom("child"), Boom("body")

    async def fail() -> None:
        raise child_error

    with pytest.raises(ExceptionGroup) as info:
        async with open_collapsing_nursery() as nursery:
            nursery.start_soon(fail)  # first runs when the body has raised
            raise body_error
    assert set(info.value.exceptions) == {child_error, body_error}


# --- cancellation -----------------------------------------------------------------------------


async def test_outer_cancellation_of_the_body_passes_through() -> None:
    with trio.CancelScope() as outer:
        async with open_collapsing_nursery():
            outer.cancel()
            await trio.sleep_forever()
    assert outer.cancelled_caught


async def test_outer_cancellation_with_children_running_passes_through() -> None:
    with trio.CancelScope() as outer:
        async with open_collapsing_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            nursery.start_soon(trio.sleep_forever)
            await trio.testing.wait_all_tasks_blocked()
            outer.cancel()
            await trio.sleep_forever()
    assert outer.cancelled_caught


async def test_cancelling_the_nursery_itself_ends_it_quietly() -> None:
    async with open_collapsing_nursery() as nursery:
        nursery.start_soon(trio.sleep_forever)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert nursery.cancel_scope.cancelled_caught


async def test_a_clean_exit_raises_nothing_and_waits_for_the_children() -> None:
    finished = []

    async def work(name: str) -> None:
        await trio.lowlevel.checkpoint()
        finished.append(name)

    async with open_collapsing_nursery() as nursery:
        nursery.start_soon(work, "a")
        nursery.start_soon(work, "b")
    assert sorted(finished) == ["a", "b"]
