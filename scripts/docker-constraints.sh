#!/usr/bin/env bash
# Regenerate docker/constraints.txt: the dependency closure of pyproject.toml's runtime extras
# (ranker, operator, training: what the three images install; not dev), pinned to the versions
# installed in the project's virtual environment (.venv), i.e. what the test suite runs with.
# One file pins all three images, so they agree on every shared package.
# Needs PyPI (package metadata only; nothing is installed).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$VENV/bin/python" - "$work/requirements.txt" <<'PY'
import sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
deps = list(project["dependencies"])
for extra in ("ranker", "operator", "training"):
    # self-references such as "rankswap[ranker]" are covered by the loop itself
    deps += [d for d in project["optional-dependencies"][extra] if not d.startswith("rankswap[")]
open(sys.argv[1], "w").write("\n".join(deps) + "\n")
PY
"$VENV/bin/pip" freeze --exclude-editable | grep -v '^-e ' | grep -vi '^rankswap[= ]' > "$work/freeze.txt"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --dry-run --ignore-installed --report "$work/report.json" \
  -r "$work/requirements.txt" -c "$work/freeze.txt"
"$VENV/bin/python" - "$work/report.json" docker/constraints.txt <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
pins = sorted((i["metadata"]["name"].lower(), i["metadata"]["version"]) for i in report["install"])
head = """# Versions the images install: the closure of pyproject.toml's runtime extras (ranker, operator,
# training; no dev extras), pinned to what the test suite ran with. Without it pip backtracks through
# dozens of botocore releases and every build may get different versions.
# Regenerate after changing dependencies: bash scripts/docker-constraints.sh
"""
open(sys.argv[2], "w").write(head + "".join(f"{n}=={v}\n" for n, v in pins))
print(f"{sys.argv[2]}: {len(pins)} pins")
PY
