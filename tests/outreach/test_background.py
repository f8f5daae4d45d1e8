"""Background loops (escalation, webhook delivery) run only where the settings put them."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from outreach import background
from outreach.api.main import create_app
from outreach.config import OutreachSettings

LOOPS = {"outreach-escalation", "outreach-webhook"}


def running() -> set[str]:
    return {t.name for t in threading.enumerate()} & LOOPS


def settings_for(any_store, tmp_path, **kwargs) -> OutreachSettings:
    return OutreachSettings(
        database_url=any_store.url,
        lake_dir=tmp_path / "lake",
        webhook_url="http://127.0.0.1:9/hook",
        webhook_secret="s" * 16,
        **kwargs,
    )


def test_a_replica_told_not_to_runs_no_loops(any_store, tmp_path):
    app = create_app(settings_for(any_store, tmp_path, background=False), any_store)
    with TestClient(app):
        assert running() == set()


def test_the_default_replica_runs_both_loops_and_stops_them(any_store, tmp_path):
    app = create_app(settings_for(any_store, tmp_path), any_store)
    with TestClient(app):
        assert running() == LOOPS
    for thread in threading.enumerate():
        if thread.name in LOOPS:
            thread.join(5)
    assert running() == set()


def test_no_webhook_no_delivery_loop(any_store, tmp_path):
    settings = OutreachSettings(database_url=any_store.url, lake_dir=tmp_path / "lake")
    assert set(background.loops(any_store, settings)) == {"outreach-escalation"}


def test_the_background_command_runs_them_in_one_process(any_store, tmp_path):
    stop = threading.Event()
    worker = threading.Thread(target=background.run, args=(settings_for(any_store, tmp_path), stop))
    worker.start()
    try:
        for _ in range(100):
            if running() == LOOPS:
                break
            stop.wait(0.05)
        assert running() == LOOPS
    finally:
        stop.set()
        worker.join(15)
    assert not worker.is_alive() and running() == set()


@pytest.mark.parametrize(("value", "expected"), [("", True), ("1", True), ("0", False)])
def test_the_setting_comes_from_the_environment(monkeypatch, tmp_path, value, expected):
    monkeypatch.setenv("FOREWARN_OUTREACH_BACKGROUND", value)
    monkeypatch.setenv("FOREWARN_HOME", str(tmp_path))
    assert OutreachSettings.from_env().background is expected


def test_a_wrong_setting_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("FOREWARN_OUTREACH_BACKGROUND", "yes")
    monkeypatch.setenv("FOREWARN_HOME", str(tmp_path))
    with pytest.raises(ValueError, match="FOREWARN_OUTREACH_BACKGROUND must be 1 or 0, got 'yes'"):
        OutreachSettings.from_env()
