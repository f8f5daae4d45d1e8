"""The registry keeps published versions immutable, with stages and their history (issue 16)."""

from __future__ import annotations

import json

import pytest

from forewarn.registry import HISTORY, MODEL_FILE, Registry, RegistryError


@pytest.fixture
def registry(tmp_path):
    return Registry(tmp_path / "churn")


def test_a_published_version_is_never_rewritten(registry):
    first = registry.publish("2026-03-01", b"model A", {"features": ["a"]})
    assert registry.publish("2026-03-01", b"model A", {})["sha256"] == first["sha256"]
    with pytest.raises(RegistryError, match=r"already published .* never rewritten"):
        registry.publish("2026-03-01", b"model B", {})
    assert (registry.root / "2026-03-01" / MODEL_FILE).read_bytes() == b"model A"
    assert registry.free_version("2026-03-01", b"model B") == "2026-03-01.2"
    assert registry.free_version("2026-03-01", b"model A") == "2026-03-01"


def test_a_failed_publication_leaves_no_version(registry):
    with pytest.raises(RegistryError, match="cannot publish a file named"):
        registry.publish("v1", b"model", {}, files={"../escape": b"x"})
    assert not (registry.root / "v1").exists()
    # The next attempt starts from a clean staging folder.
    registry.publish("v1", b"model", {}, files={"card.md": b"# card"})
    assert (registry.root / "v1" / "card.md").read_text() == "# card"


def test_stages_and_history(registry):
    for version in ("v1", "v2", "v3"):
        registry.publish(version, version.encode(), {})
    registry.promote("v1")
    registry.promote("v2")
    stages = {m["version"]: m["stage"] for m in registry.versions()}
    assert stages == {"v1": "archived", "v2": "champion", "v3": "candidate"}
    assert [(e["version"], e["stage"]) for e in registry.history()][-3:] == [
        ("v1", "champion"),
        ("v1", "archived"),
        ("v2", "champion"),
    ]


def test_rollback_promotes_the_previous_champion(registry):
    registry.publish("v1", b"one", {})
    registry.publish("v2", b"two", {})
    with pytest.raises(RegistryError, match="no champion to roll back"):
        registry.rollback()
    registry.promote("v1")
    with pytest.raises(RegistryError, match="only version that was ever champion"):
        registry.rollback()
    registry.promote("v2")
    pointer = registry.rollback()
    assert pointer["version"] == "v1" and registry.champion()["version"] == "v1"
    last = json.loads((registry.root / HISTORY).read_text().splitlines()[-1])
    assert last["stage"] == "champion" and last["reason"] == "rollback from v2"
    assert {m["version"]: m["stage"] for m in registry.versions()}["v2"] == "archived"
