"""The examples in docstrings run, so they stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "console.home",
    "forewarn.events",
    "forewarn.registry",
    "forewarn.settings",
    "forewarn.value",
    "simulator",
    "streams.device_faults.detector",
    "streams.device_faults.step",
    "streams.evaluate",
    "streams.customer_risk.detector",
    "streams.customer_risk.step",
    "models.customer_state",
    "models.clv",
    "models.clv_io",
    "models.learner",
    "models.evaluation",
    "models.tables",
    "models.churn",
    "models.churn_table",
    "outreach.api.ratelimit",
    "outreach.db",
    "outreach.rules",
    "outreach.uplift",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
