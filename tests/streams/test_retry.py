"""The worker's one back-off loop: retries what its caller names, and only that."""

from __future__ import annotations

import asyncio

import pytest

from streams import retry


def test_retries_the_named_errors_until_the_call_succeeds(monkeypatch, caplog):
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(retry.asyncio, "sleep", no_wait)
    attempts = iter([OSError("disk"), ConnectionError("broker"), OSError("disk"), "stored"])

    async def call() -> str:
        outcome = next(attempts)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert asyncio.run(retry.with_retry(call, "lake write", (OSError,))) == "stored"
    assert waits == [0.5, 1.0, 2.0]
    assert caplog.text.count("lake write failed") == 3


def test_other_errors_propagate_at_once():
    async def call() -> None:
        raise ValueError("the alert's own problem")

    with pytest.raises(ValueError, match="own problem"):
        asyncio.run(retry.with_retry(call, "store", (OSError,)))
