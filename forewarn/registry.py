"""The model registry on disk: the one source of truth for which model bytes may be loaded.

Layout under ``<FOREWARN_HOME>/models/<model_name>/``::

    <version>/model.skops      the model file (skops format, never a pickle)
    <version>/manifest.json    version, sha256 of the model file, features, metrics
    champion.json              the version in service and its sha256, written on promotion

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

    def publish(self, version: str, model: bytes, fields: dict[str, Any]) -> dict[str, Any]:
        """Write the model file and its manifest (with the file's sha256); return the manifest.

        The file is written before the manifest, both atomically, so a reader never sees a
        manifest whose hash belongs to a file not yet in place.
        """
        folder = self.root / check_version(version)
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(folder / MODEL_FILE, model)
        manifest = {
            **fields,
            "version": version,
            "file": MODEL_FILE,
            "format": "skops",
            "sha256": sha256_hex(model),
            "published_at": datetime.now(UTC).isoformat(),
        }
        _write_atomic(folder / MANIFEST, json.dumps(manifest, indent=2, default=str).encode())
        return manifest

    def promote(self, version: str) -> dict[str, Any]:
        """Mark ``version`` as the champion, recording its manifest's sha256 (the hash every
        loader then checks). Also how an operator rolls back: promote the older version."""
        manifest = self.manifest(version)
        data = self._read_model(version)
        if sha256_hex(data) != manifest["sha256"]:
            raise RegistryError(
                f"model file of {version} does not match its manifest's sha256: it changed "
                "after publication; publish it again instead of promoting it"
            )
        pointer = {
            "version": version,
            "sha256": manifest["sha256"],
            "promoted_at": datetime.now(UTC).isoformat(),
        }
        _write_atomic(self.root / CHAMPION, json.dumps(pointer).encode())
        return pointer

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
