"""The dev tools live outside the runtime packages: no wheel and no image carries them."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from setuptools import find_namespace_packages  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parents[3]
HARNESSES = ("localkube", "demo", "bench")

pytestmark = pytest.mark.timeout(30)


def _installed_packages() -> list[str]:
    """What `pip install .` installs: setuptools' discovery over pyproject's `where` roots."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    where = config["tool"]["setuptools"]["packages"]["find"]["where"]
    found: list[str] = []
    for root in where:
        found += find_namespace_packages(str(REPO / root), exclude=["*.__pycache__"])
    return found


def test_the_runtime_packages_hold_no_harness() -> None:
    packages = _installed_packages()
    assert {p.split(".")[0] for p in packages} == {
        "rankswap",
        "rankswap_training",
        "rankswap_ranker",
        "rankswap_operator",
    }
    harnesses = [p for p in packages if any(part in HARNESSES for part in p.split("."))]
    assert harnesses == []
    modules = [
        f.relative_to(REPO).as_posix()
        for root in ("core", "training", "ranker", "operator")
        for f in (REPO / root).rglob("*.py")
        if any(word in f.stem for word in HARNESSES)
    ]
    assert modules == []


def test_the_image_build_context_leaves_the_dev_tools_out() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in lines  # everything is excluded unless named
    assert not any(line.startswith("!devtools") for line in lines)
    assert "devtools/" in lines
    assert "COPY devtools" not in (REPO / "docker" / "Dockerfile").read_text()


def test_no_dev_tool_names_a_feature_schema_of_its_own() -> None:
    """The demo and the benches read published features under the schema the code builds
    (``FEATURE_SCHEMA_VERSION``): a literal version went stale when 1.1.0 came and broke
    ``make demo``."""
    import re

    literal = re.compile(r"""(["'])features\1\s*,\s*["']\d+\.\d+\.\d+["']|schema\s*=\s*["']\d""")
    stale = [
        f"{path.relative_to(REPO)}:{n}"
        for path in sorted((REPO / "devtools").rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert stale == []
