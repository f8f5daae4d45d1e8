"""One Ctrl-C stops the demo wherever it waits (issue 18: "never a hang")."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import pytest

from console.demo import _interrupt


async def _stubborn() -> None:
    """Like a Kafka client whose stop() still completes after its task was cancelled."""
    try:
        await asyncio.sleep(5)
    except asyncio.CancelledError:
        await asyncio.sleep(0)


def _interrupt_soon() -> None:
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()


def test_asyncio_alone_swallows_the_interrupt():
    """Why the demo has a handler of its own: asyncio.run only cancels its task."""
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    _interrupt_soon()
    asyncio.run(_stubborn())  # returns: the Ctrl-C is lost


def test_the_demos_handler_raises_through_asyncio():
    previous = signal.signal(signal.SIGINT, _interrupt)
    try:
        _interrupt_soon()
        with pytest.raises(KeyboardInterrupt):
            asyncio.run(_stubborn())
    finally:
        signal.signal(signal.SIGINT, previous)
