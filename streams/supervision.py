"""Per-event supervision: bad input is handled by the handler, anything else stops the process.

Why ``os._exit`` and not an exception: on faust-streaming 0.15 an agent that raises lets
the worker shut down gracefully, and the graceful shutdown commits the current offsets,
including the offset of the message that failed. Exiting at once leaves the open Kafka
transaction to be aborted (fenced by the next owner's InitProducerId), so the failing
message is read again after the restart and nothing it half-did is visible.

Must not import: ledger internals beyond errors (the handler owns the domain call).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import traceback
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

# EX_SOFTWARE from sysexits.h: an internal error, the supervisor (systemd, k8s) restarts us.
CRASH_EXIT_CODE = 70


def crash(what: str, exc: BaseException, *, where: str = "") -> None:
    """Log ``exc`` with where it happened and exit the process at once, without commit."""
    detail = "".join(traceback.format_exception(exc))
    log.critical("stopping the worker: %s at %s: %s\n%s", what, where or "?", exc, detail)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.write(f"revledger: {what} at {where}: {exc!r}\n")
    sys.stderr.flush()
    os._exit(CRASH_EXIT_CODE)


def describe(event: Any) -> str:
    """``topic[partition]@offset`` of a Faust event, for logs and crash messages."""
    message = getattr(event, "message", None)
    if message is None:
        return "?"
    return f"{message.topic}[{message.partition}]@{message.offset}"


async def each_event(events: AsyncIterable[Any], handle: Callable[[Any], Awaitable[None]]) -> None:
    """Run ``handle`` on every event of ``events``; any exception escaping it is a crash.

    ``handle`` turns bad input into DLQ records itself; what escapes is a broken
    invariant, an exhausted transient error or a bug, and none of them may be committed.
    """
    from streams.faust_fixes import event_lock

    lock = event_lock()
    async for event in events:
        try:
            # The commit takes the same lock (streams/faust_fixes.py, fix 2): no transaction
            # ends between an event's outputs and its table writes. The stream acks the
            # event when the loop asks for the next one, with no await after the release,
            # so the waiting commit sees it acked. Without the lock a commit could land in
            # the middle of an event; a kill between the two transactions posted the event
            # again (the fault-injection suite found 73 entries twice in one run).
            async with lock:
                await whole(handle(event))
        except Exception as exc:
            crash(type(exc).__name__, exc, where=describe(event))


async def whole(step: Awaitable[None]) -> None:
    """Run ``step`` to its end even when the caller is cancelled, then pass the cancel on.

    A graceful stop (SIGTERM: a deploy, a rebalance of the process manager) cancels the
    agents, then Faust's consumer commits the open transaction. Cancelled in the middle of
    an event, the handler would leave that event half done in the committed transaction:
    its state saved (so it is a duplicate when read again) but only some of its entries
    sent, the others lost. Finished whole, the event is committed with all its outputs and
    without its offset; read again after the restart, it is a duplicate and posts nothing.
    """
    task = asyncio.ensure_future(step)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done() and task.cancelled():
                raise
            cancelled = True
    if cancelled:
        task.result()  # a failure of the step itself wins: it is a crash
        raise asyncio.CancelledError
    task.result()
