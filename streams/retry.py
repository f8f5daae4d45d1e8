"""The one back-off loop of the worker: a call retried while a part it needs is away.

Every caller names what it retries on. An agent must not give up on a batch: an exception
would end its ``take_events`` block, which acks the batch (docs/reliability.md), so the batch
waits here instead, unacknowledged, with an error logged per attempt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 30.0

log = logging.getLogger(__name__)


async def with_retry(
    call: Callable[[], Awaitable[T]],
    what: str,
    retry_on: tuple[type[BaseException], ...],
    logger: logging.Logger = log,
) -> T:
    """``await call()`` until it returns; on an exception in ``retry_on``, log
    ``"<what> failed (<error>); retrying in N s"`` and wait, doubling the wait up to 30 s.
    Any other exception propagates."""
    delay = FIRST_DELAY_S
    while True:
        try:
            return await call()
        except retry_on as exc:
            logger.error("%s failed (%r); retrying in %.1f s", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(MAX_DELAY_S, delay * 2)
