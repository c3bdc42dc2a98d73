"""The throttle's decisions without the actor: :class:`Admission` is fed tickets and times and
says whom it admits and when to look again. No trio: a ticket's event is a plain recorder."""

from __future__ import annotations

import math

from trio_litellm._admission import Admission, Ticket
from trio_litellm._config import ModelLimits


class Woken:
    def __init__(self) -> None:
        self.count = 0

    def set(self) -> None:
        self.count += 1


def ticket(tokens: int = 0, model: str | None = None) -> Ticket:
    return Ticket(tokens, model, Woken())


def test_admits_in_order_while_the_pace_allows_and_says_when_to_look_again() -> None:
    admission = Admission(rpm=6, tpm=None, model_limits={})  # one every 10 s
    first, second = ticket(), ticket()
    admission.queue.extend([first, second])
    assert admission.admit(0.0) == 10.0
    assert first.permit is not None
    assert second.permit is None
    assert admission.admit(10.0) == math.inf
    assert second.permit is not None
    assert admission.admitted == 2


def test_a_ticket_held_by_its_models_pace_is_parked_and_others_pass() -> None:
    admission = Admission(rpm=None, tpm=None, model_limits={"a": ModelLimits(rpm=2)})
    a0, a1, b0 = ticket(model="a"), ticket(model="a"), ticket(model="b")
    admission.queue.extend([a0, a1, b0])
    assert admission.admit(0.0) == 30.0
    assert (a0.permit is not None, a1.permit is None, b0.permit is not None) == (True, True, True)
    assert list(admission.parked) == ["a"]
    admission.admit(30.0)
    assert a1.permit is not None
    assert not admission.parked


def test_release_all_wakes_the_queued_and_the_parked_without_a_permit() -> None:
    admission = Admission(rpm=1, tpm=None, model_limits={})
    admission.rate_limited(50.0, "a")
    queued, parked = ticket(), ticket(model="a")
    admission.queue.extend([parked, queued])
    admission.admit(0.0)
    assert queued.permit is not None
    later = ticket()
    admission.queue.append(later)
    admission.admit(1.0)
    admission.release_all()
    assert (parked.permit, later.permit) == (None, None)
    assert isinstance(parked.event, Woken)
    assert isinstance(later.event, Woken)
    assert (parked.event.count, later.event.count) == (1, 1)
    assert admission.restricted_until == math.inf  # no fast path once stopped
