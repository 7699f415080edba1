"""``streams.supervision``: an event is never left half done by a graceful stop."""

from __future__ import annotations

import asyncio

import pytest

from streams import faust_fixes, supervision


class _Handler:
    """Three outputs per event, each after an await (as entries are sent one by one)."""

    def __init__(self) -> None:
        self.outputs: list[tuple[int, int]] = []
        self.started = asyncio.Event()

    async def __call__(self, event: int) -> None:
        for line in range(3):
            self.started.set()
            await asyncio.sleep(0.01)
            self.outputs.append((event, line))


async def _events():
    for event in range(5):
        yield event


def test_a_stop_in_the_middle_of_an_event_lets_the_event_finish_whole() -> None:
    async def scenario() -> tuple[_Handler, bool]:
        faust_fixes._EVENT_LOCK = None  # a lock of this loop
        handler = _Handler()
        agent = asyncio.ensure_future(supervision.each_event(_events(), handler))
        await handler.started.wait()  # event 0 has begun its first output
        agent.cancel()  # what stopping the agents does on SIGTERM
        with pytest.raises(asyncio.CancelledError):
            await agent
        return handler, faust_fixes.event_lock().locked()

    handler, locked = asyncio.run(scenario())
    # Event 0 finished with all its outputs; no later event started.
    assert handler.outputs == [(0, 0), (0, 1), (0, 2)]
    assert not locked  # the shutdown commit can take the lock


def test_whole_passes_on_a_failure_of_the_step_itself() -> None:
    async def failing() -> None:
        await asyncio.sleep(0)
        raise ValueError("broken invariant")

    with pytest.raises(ValueError, match="broken invariant"):
        asyncio.run(supervision.whole(failing()))


def test_whole_returns_when_the_step_ends() -> None:
    done: list[int] = []

    async def step() -> None:
        await asyncio.sleep(0)
        done.append(1)

    asyncio.run(supervision.whole(step()))
    assert done == [1]
