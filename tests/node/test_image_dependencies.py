"""The images carry only what their role runs: what the ranker and the operator import at run time
lies inside the closure of their extra (pyproject.toml), and never the training stack.

Runs in `make test` (no node needed): the modules are imported in a fresh interpreter, then every
top-level module loaded is mapped to the distribution that ships it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata

import pytest
from packaging.requirements import Requirement

TRAINING_STACK = {"lightgbm", "sklearn", "scipy", "matplotlib", "skl2onnx", "onnxmltools", "onnx"}

# What each role's processes import: the CLI, the server / operator modules (including the ones
# imported lazily on first use: ONNX Runtime for a bundle load, boto3 for s3:// URIs).
ROLE_MODULES = {
    "ranker": [
        "rankswap.cli",
        "rankswap_ranker.server",
        "rankswap_ranker.app",
        "rankswap_ranker.bundle",
        "rankswap_ranker.registry",
        "rankswap_ranker.candidates",
        "rankswap_ranker.routes",
        "rankswap_ranker.admin",
        "rankswap_ranker.metrics",
        "rankswap_ranker.coordinator",
        "rankswap_ranker.convergence",
        "rankswap_ranker.cache",
        "rankswap.artifacts.store",
        "rankswap.productdb",
        "rankswap.featurespec",
        "onnxruntime",
        "uvicorn.loops.uvloop",
        "psycopg",
    ],
    "operator": [
        "rankswap.cli",
        "rankswap_operator.handlers",
        "rankswap_operator.kube",
        "rankswap_operator.podclient",
        "rankswap_operator.resolve",
        "rankswap.artifacts.store",
        "kopf",
    ],
}

_SCRIPT = """
import importlib, json, sys
blocked, modules = json.loads(sys.argv[1]), sys.argv[2:]
for name in blocked:
    sys.modules[name] = None  # import raises ImportError, as if the distribution were absent
base = set(sys.modules)
for name in modules:
    importlib.import_module(name)
import rankswap.cli
rankswap.cli.build_parser()
tops = sorted({n.split(".")[0] for n in set(sys.modules) - base})
print(json.dumps([t for t in tops if t not in sys.stdlib_module_names and not t.startswith("_")]))
"""


def _imported(modules: list[str], blocked: Sequence[str] = ()) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(list(blocked)), *modules],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    ).stdout
    result: list[str] = json.loads(out)
    return result


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(extra: str) -> set[str]:
    """Distributions installed by ``pip install rankswap[extra]`` (names normalised)."""
    seen: set[str] = set()
    todo: list[tuple[str, frozenset[str]]] = [("rankswap", frozenset({extra}))]
    while todo:
        name, extras = todo.pop()
        key = _norm(name)
        dist = metadata.distribution(name)
        seen.add(key)
        for text in dist.requires or []:
            req = Requirement(text)
            env_ok = req.marker is None or any(
                req.marker.evaluate({"extra": e}) for e in (extras or {""})
            )
            if not env_ok:
                continue
            dep = _norm(req.name)
            if dep == "rankswap":
                todo.append(("rankswap", frozenset(req.extras)))
            elif dep not in seen or req.extras:
                todo.append((req.name, frozenset(req.extras)))
    return seen


def _distributions_of(tops: list[str]) -> dict[str, set[str]]:
    mapping = metadata.packages_distributions()
    local = {"rankswap", "rankswap_training", "rankswap_ranker", "rankswap_operator"}
    return {t: {_norm(d) for d in mapping.get(t, [])} for t in tops if t not in local}


@pytest.mark.parametrize("role", sorted(ROLE_MODULES))
def test_role_imports_lie_in_its_extra_and_skip_the_training_stack(role: str) -> None:
    tops = _imported(ROLE_MODULES[role])
    assert not TRAINING_STACK & set(tops), f"{role} imports {TRAINING_STACK & set(tops)}"
    closure = _closure(role)
    outside = {
        top: dists
        for top, dists in _distributions_of(tops).items()
        if dists and not dists & closure
    }
    # Modules outside the closure must be optional imports of a library (``try: import x``,
    # present here only because the dev environment has them): with them made unimportable,
    # the role still imports. Anything required would fail here.
    again = _imported(ROLE_MODULES[role], blocked=sorted(outside))
    assert not TRAINING_STACK & set(again)
    assert not set(outside) & set(again), f"{role} needs {outside}, outside rankswap[{role}]"


def test_extras_split_the_training_stack_out() -> None:
    training = {"lightgbm", "scikit-learn", "scipy", "matplotlib", "skl2onnx", "onnxmltools"}
    assert not training & _closure("ranker")
    assert not training & _closure("operator")
    assert training <= _closure("training")
    # the operator image needs no scoring or data stack either
    assert not {"onnxruntime", "pyarrow", "pandas", "fastapi"} & _closure("operator")
