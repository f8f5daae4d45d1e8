"""The streams environment is what the lock file promises (faust-streaming >= 0.15)."""

from __future__ import annotations

from importlib.metadata import version

from console.envcheck import _major_minor, check


def test_streams_environment_is_as_locked():
    assert check("streams") == []
    assert _major_minor(version("faust-streaming")) >= (0, 15)


def test_a_fallback_to_old_faust_would_be_reported(monkeypatch):
    monkeypatch.setattr("console.envcheck.version", lambda dist: "0.10.4")
    (problem, *_) = check("streams")
    assert "faust-streaming 0.10.4" in problem and "expected >= 0.15" in problem
