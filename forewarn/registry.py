"""The model registry on disk: the one source of truth for which model bytes may be loaded.

Layout under ``<FOREWARN_HOME>/models/<model_name>/``::

    <version>/model.skops      the model file (skops format, never a pickle)
    <version>/manifest.json    version, sha256 of the model file, signature, metrics, gate,
                               lineage (code, data, run, parameters), environment
    <version>/...              the publisher's other files (metadata, model card)
    champion.json              the version in service and its sha256, written on promotion
    history.jsonl              every stage change, appended: candidate, champion, archived

Versions are immutable (issue 16): a version's folder is written whole in a staging folder and
renamed into place, and :meth:`Registry.publish` never touches an existing version: the same
bytes again are a no-op, different bytes are refused (:meth:`Registry.free_version` gives
the publisher the next id, ``<day>.2``, ``<day>.3``, ...). Stages live in ``history.jsonl``;
a version's stage is its last entry there (``candidate`` when published).

Only the nightly writes here; workers and the nightly's own scoring read through
:meth:`Registry.read_champion`, which returns the model file's bytes only when every check
passes: the version is a plain id (no path), its folder and files are real files inside the
registry (no symlink), the registry marks it as the champion, and the bytes hash to the
sha256 recorded at publication and to the one the caller was told. A model-updated message
therefore selects among what the registry published; it cannot name a file or roll back to
an older version (issue 13).

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> registry = Registry(Path(tempfile.mkdtemp()))
>>> manifest = registry.publish("2026-01-05", b"model bytes", {"features": ["a"]})
>>> registry.promote("2026-01-05")["sha256"] == manifest["sha256"]
True
>>> data, _ = registry.read_champion("2026-01-05", manifest["sha256"])
>>> data
b'model bytes'
>>> registry.read_champion("../../etc", manifest["sha256"])
Traceback (most recent call last):
...
forewarn.registry.RegistryError: version '../../etc' is not a plain id ...never a path
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MODEL_FILE = "model.skops"
MANIFEST = "manifest.json"
CHAMPION = "champion.json"
HISTORY = "history.jsonl"
STAGES = ("candidate", "champion", "archived")
#: A version is a folder name, never a path: no separators, and no leading '.' (so no '..').
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
#: Largest model file read. A nightly churn model is a few MB; reading an unbounded file
#: would let a bad registry entry exhaust a worker's memory before its hash is checked.
MAX_MODEL_BYTES = 512 * 1024 * 1024


class RegistryError(ValueError):
    """A registry entry that will not be loaded; the message says why and what to do."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_version(version: str) -> str:
    """Return ``version`` if it is a plain registry id; raise :class:`RegistryError` if not."""
    if not isinstance(version, str) or not re.fullmatch(VERSION_PATTERN, version):
        raise RegistryError(
            f"version {version!r} is not a plain id (letters, digits, '.', '_', '-'; 64 at "
            "most, starting with a letter or digit): a model-updated message names a registry "
            "version, never a path"
        )
    return version


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class Registry:
    """One model's versions under ``root`` and its ``champion.json`` pointer.

    Parameters
    ----------
    root : Path
        The model's registry folder, e.g. ``<FOREWARN_HOME>/models/churn``.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- writing (the nightly) ------------------------------------------------------------

    def publish(
        self,
        version: str,
        model: bytes,
        fields: dict[str, Any],
        files: dict[str, bytes] | None = None,
    ) -> dict[str, Any]:
        """Publish ``model`` (and the publisher's other ``files``) as a new, immutable version;
        return its manifest (with the file's sha256).

        The folder is assembled under a staging name and renamed into place, so a reader
        never sees a version without its manifest, nor a manifest whose hash belongs to a file
        not yet in place, and a crash leaves no half-written version. Publishing the same bytes
        under an existing version returns its manifest unchanged; different bytes raise
        :class:`RegistryError` (a published version is never rewritten).
        """
        folder = self.root / check_version(version)
        sha = sha256_hex(model)
        if folder.exists():
            manifest = self.manifest(version)
            if manifest.get("sha256") == sha:
                return manifest
            raise RegistryError(
                f"version {version} is already published (sha256 {manifest.get('sha256')}); a "
                "published version is never rewritten: publish under a new version "
                "(Registry.free_version)"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".{version}.staging"
        if staging.exists():
            for leftover in staging.iterdir():
                leftover.unlink()
        staging.mkdir(exist_ok=True)
        (staging / MODEL_FILE).write_bytes(model)
        for name, data in (files or {}).items():
            if name in (MODEL_FILE, MANIFEST) or "/" in name or name.startswith("."):
                raise RegistryError(f"cannot publish a file named {name!r} beside the model")
            (staging / name).write_bytes(data)
        manifest = {
            **fields,
            "version": version,
            "file": MODEL_FILE,
            "format": "skops",
            "sha256": sha,
            "published_at": datetime.now(UTC).isoformat(),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        os.rename(staging, folder)
        self._record(version, "candidate", "published")
        return manifest

    def free_version(self, base: str, model: bytes) -> str:
        """``base`` if it is free or already holds these bytes, else the first free
        ``base.2``, ``base.3``, ... (or the one that holds these bytes)."""
        check_version(base)
        sha = sha256_hex(model)
        for n in range(1, 1000):
            version = base if n == 1 else f"{base}.{n}"
            if not (self.root / version).exists():
                return version
            if self.manifest(version).get("sha256") == sha:
                return version
        raise RegistryError(f"999 versions of {base} are published; pick another id")

    def promote(self, version: str, reason: str = "promoted") -> dict[str, Any]:
        """Mark ``version`` as the champion, recording its manifest's sha256 (the hash every
        loader then checks); the champion it replaces is archived. Also how an operator rolls
        back: promote the older version (:meth:`rollback`)."""
        manifest = self.manifest(version)
        data = self._read_model(version)
        if sha256_hex(data) != manifest["sha256"]:
            raise RegistryError(
                f"model file of {version} does not match its manifest's sha256: it changed "
                "after publication; publish it again instead of promoting it"
            )
        previous = self.champion()
        pointer = {
            "version": version,
            "sha256": manifest["sha256"],
            "promoted_at": datetime.now(UTC).isoformat(),
        }
        _write_atomic(self.root / CHAMPION, json.dumps(pointer).encode())
        if previous is not None and previous.get("version") != version:
            self._record(previous["version"], "archived", f"replaced by {version}")
        self._record(version, "champion", reason)
        return pointer

    def rollback(self) -> dict[str, Any]:
        """Promote the champion before the current one (from the history)."""
        current = self.champion()
        if current is None:
            raise RegistryError(f"the registry {self.root} has no champion to roll back")
        earlier = [
            e["version"]
            for e in self.history()
            if e["stage"] == "champion" and e["version"] != current["version"]
        ]
        if not earlier:
            raise RegistryError(
                f"{current['version']} is the only version that was ever champion: nothing to "
                "roll back to"
            )
        return self.promote(earlier[-1], reason=f"rollback from {current['version']}")

    def _record(self, version: str, stage: str, reason: str) -> None:
        entry = {
            "at": datetime.now(UTC).isoformat(),
            "version": version,
            "stage": stage,
            "reason": reason,
        }
        # One short line per append (O_APPEND): concurrent writers do not interleave.
        with (self.root / HISTORY).open("a") as fh:
            fh.write(json.dumps(entry) + "\n")

    def history(self) -> list[dict[str, Any]]:
        """Every stage change, oldest first."""
        path = self.root / HISTORY
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def versions(self) -> list[dict[str, Any]]:
        """Every published version: its manifest and current stage, oldest first."""
        stages: dict[str, str] = {}
        for entry in self.history():
            stages[entry["version"]] = entry["stage"]
        champion = (self.champion() or {}).get("version")
        out = []
        if not self.root.is_dir():
            return out
        for folder in self.root.iterdir():
            if folder.name.startswith(".") or not (folder / MANIFEST).is_file():
                continue
            manifest = self.manifest(folder.name)
            stage = stages.get(folder.name, "candidate")
            if folder.name == champion:
                stage = "champion"
            elif stage == "champion":  # the pointer moved on without a history entry
                stage = "archived"
            out.append({**manifest, "stage": stage})
        return sorted(out, key=lambda m: str(m.get("published_at", "")))

    # -- reading (workers and the nightly) ------------------------------------------------

    def champion(self) -> dict[str, Any] | None:
        """The champion pointer (``version``, ``sha256``), or None before any promotion."""
        path = self.root / CHAMPION
        if not path.exists():
            return None
        return self._read_json(path)

    def manifest(self, version: str) -> dict[str, Any]:
        return self._read_json(self._folder(version) / MANIFEST)

    def read_champion(self, version: str, sha256: str) -> tuple[bytes, dict[str, Any]]:
        """The bytes and manifest of ``version`` if it is the champion and hashes to ``sha256``.

        Raises
        ------
        RegistryError
            When the version is not a plain id, is outside the registry or reached through a
            symlink, is not the registry's champion, or when the file's sha256 differs from
            ``sha256``, from its manifest or from the champion pointer.
        """
        check_version(version)
        champion = self.champion()
        if champion is None:
            raise RegistryError(
                f"the registry {self.root} has no champion: {version} was never promoted there"
            )
        if champion.get("version") != version:
            # The guard against rollbacks: a replayed or forged message naming an older
            # version selects nothing the registry does not have in service.
            raise RegistryError(
                f"version {version} is not the registry's champion ({champion.get('version')}): "
                "an old or forged model-updated message; roll back by promoting in the "
                "registry, not by message"
            )
        manifest = self.manifest(version)
        data = self._read_model(version)
        actual = sha256_hex(data)
        # The publication record first: a file changed after publication is the likelier
        # story than a message with a wrong hash, and the more urgent one.
        expected = {
            "the manifest": manifest.get("sha256"),
            "the champion pointer": champion.get("sha256"),
            "the model-updated message": sha256,
        }
        for source, value in expected.items():
            if value != actual:
                raise RegistryError(
                    f"model file of {version} has sha256 {actual}, {source} says {value}: the "
                    "file changed after publication or the message is forged; publish and "
                    "promote the model again"
                )
        return data, manifest

    def _folder(self, version: str) -> Path:
        folder = self.root / check_version(version)
        # Belt and braces after the id check: the folder must be a real directory directly
        # under the registry, not a symlink to a model somewhere else.
        if folder.is_symlink() or folder.resolve().parent != self.root.resolve():
            raise RegistryError(f"version {version} is not a folder inside {self.root}")
        if not folder.is_dir():
            raise RegistryError(f"version {version} is not in the registry {self.root}")
        return folder

    def _read_model(self, version: str) -> bytes:
        path = self._folder(version) / MODEL_FILE
        if path.is_symlink() or not path.is_file():
            raise RegistryError(f"{path} is missing or not a regular file")
        size = path.stat().st_size
        if size > MAX_MODEL_BYTES:
            raise RegistryError(f"{path} has {size} bytes, over {MAX_MODEL_BYTES}")
        return path.read_bytes()

    def _read_json(self, path: Path) -> dict[str, Any]:
        if path.is_symlink() or not path.is_file():
            raise RegistryError(f"{path} is missing or not a regular file")
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise RegistryError(f"{path} is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise RegistryError(f"{path} is not a JSON object")
        return data
