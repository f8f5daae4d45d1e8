"""Every file a package needs at run time ships in its wheel, not only in an editable install."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).parents[2]
#: Files beside the code that build something else and are not read at run time.
NOT_SHIPPED = {"streams/Dockerfile"}


def test_every_data_file_of_our_packages_is_declared_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = config["package-data"]
    missing = []
    for top in ("forewarn", "console", "simulator", "streams", "models", "outreach"):
        for path in (ROOT / top).rglob("*"):
            if not path.is_file() or path.suffix in {".py", ".pyc"} or "__pycache__" in path.parts:
                continue
            relative = path.relative_to(ROOT)
            if str(relative) in NOT_SHIPPED:
                continue
            # The package a file belongs to is its deepest declared ancestor folder.
            declared = any(
                fnmatch(str(relative.relative_to(Path(*package.split(".")))), pattern)
                for package, patterns in globs.items()
                if relative.is_relative_to(Path(*package.split(".")))
                for pattern in patterns
            )
            if not declared:
                missing.append(str(relative))
    assert not missing, f"add these to [tool.setuptools.package-data] in pyproject.toml: {missing}"
