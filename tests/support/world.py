"""A small published world for end-to-end tests: product DB + two dated bundles + bad ones.

Built once per test session with the real pipelines (``rankswap datagen``, ``features build``,
``model train``), so the rankers under test serve real artifacts. Also published:

* ``corrupt``: a dated model whose manifest is intact but whose ``model.onnx`` was altered
  afterwards (the ranker's checksum verification must refuse it);
* ``mismatch``: a dated model that requires a feature schema no features artifact has;
* ``permuted``: a "bad but loadable" model: the good model with its numeric input columns in
  reverse order (a broken feature join). It verifies, loads, smoke-scores and answers 200, but
  ranks differently; only an analysis of how it ranks live requests catches it.
"""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from rankswap.artifacts import (
    artifact_uri,
    fetch_artifact,
    parse_uri,
    publish_artifact,
    read_manifest,
)
from rankswap.artifacts.store import store_for
from rankswap_dev.badmodel import publish_permuted


@dataclass
class World:
    db_path: Path
    file_root: str
    model_name: str
    schema: str
    dates: tuple[date, date]
    corrupt: date
    mismatch: date
    permuted: date
    versions: dict[date, tuple[str, str]]
    sample_requests: list[dict[str, Any]]
    s3_root: str | None = None
    roots: list[str] = field(default_factory=list)

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.db_path}"


def rankswap(*args: str, timeout: float = 600) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "rankswap.cli", "--log-level", "WARNING", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"rankswap {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}"
        )
    return result.stdout


def build_world(work: Path, *, seed: int = 11) -> World:
    db = work / "product.db"
    store = work / "store"
    store.mkdir(parents=True)
    root = store.as_uri()
    url = f"sqlite:///{db}"
    rankswap(
        "datagen",
        "--db",
        url,
        "--seed",
        str(seed),
        "--tenants",
        "3",
        "--days",
        "150",
        "--scale",
        "0.3",
    )
    last = _last_expense_date(db)
    # As-of dates use the expenses *before* them: the day after the history, and the day before that.
    d1, d2 = last, last + timedelta(days=1)
    for when in (d1, d2):
        rankswap("features", "build", "--db", url, "--as-of", when.isoformat(), "--store", root)
        rankswap(
            "model", "train", "--db", url, "--as-of", when.isoformat(), "--store", root,
            "--holdout-days", "21", "--train-days", "120",
            "--max-train-expenses", "1500", "--max-eval-expenses", "300",
            "--no-ablation",  # the ablation is the evaluation's, tested in tests/.../training
        )  # fmt: skip
    features_uri = _only_features_uri(root, d2)
    schema = read_manifest(features_uri).name
    model_uri = _only_model_uri(root, d2)
    model_manifest = read_manifest(model_uri)
    name = model_manifest.name
    versions = {
        d: (
            read_manifest(artifact_uri(root, "model", name, d)).version,
            read_manifest(artifact_uri(root, "features", schema, d)).version,
        )
        for d in (d1, d2)
    }
    corrupt, mismatch = d2 + timedelta(days=1), d2 + timedelta(days=2)
    permuted = d2 + timedelta(days=3)
    _publish_bad(work, root, name, schema, d2, corrupt, mismatch)
    publish_permuted(root, name, schema, d2, permuted, work / "permuted")
    return World(
        db_path=db,
        file_root=root,
        model_name=name,
        schema=schema,
        dates=(d1, d2),
        corrupt=corrupt,
        mismatch=mismatch,
        permuted=permuted,
        versions=versions,
        sample_requests=_sample_requests(db, d2),
        roots=[root],
    )


def _last_expense_date(db: Path) -> date:
    with sqlite3.connect(db) as conn:
        (value,) = conn.execute("select max(expense_date) from expenses").fetchone()
    return date.fromisoformat(str(value)[:10])


def _only_model_uri(root: str, when: date) -> str:
    models = parse_uri(root).join("models")
    names = sorted(
        {
            u.path[len(models.path) :].strip("/").split("/")[0]
            for u in store_for(models).list(models)
        }
    )
    return artifact_uri(root, "model", names[0], when)


def _only_features_uri(root: str, when: date) -> str:
    feats = parse_uri(root).join("features")
    names = sorted(
        {u.path[len(feats.path) :].strip("/").split("/")[0] for u in store_for(feats).list(feats)}
    )
    return artifact_uri(root, "features", names[0], when)


def _publish_bad(
    work: Path, root: str, name: str, schema: str, good: date, corrupt: date, mismatch: date
) -> None:
    manifest, local = fetch_artifact(artifact_uri(root, "model", name, good), work / "bad-cache")
    src = work / "bad-src"
    shutil.copytree(local, src, ignore=shutil.ignore_patterns("manifest.json", ".complete"))
    # Features for those dates are the good ones, republished under the new dates.
    fman, flocal = fetch_artifact(artifact_uri(root, "features", schema, good), work / "bad-cache")
    fsrc = work / "bad-fsrc"
    shutil.copytree(flocal, fsrc, ignore=shutil.ignore_patterns("manifest.json", ".complete"))
    for when in (corrupt, mismatch):
        publish_artifact(
            root, "features", schema, when, fsrc, data_window=fman.data_window, extra=fman.extra
        )
    publish_artifact(
        root,
        "model",
        name,
        corrupt,
        src,
        requires_feature_schema=schema,
        metrics=manifest.metrics,
        params=manifest.params,
        extra=manifest.extra,
    )
    loc = parse_uri(artifact_uri(root, "model", name, corrupt))
    onnx = next(k for k in manifest.files if k.endswith(".onnx"))
    data = bytearray(store_for(loc).read(loc.join(onnx)))
    data[len(data) // 2] ^= 0xFF
    store_for(loc).write(loc.join(onnx), bytes(data))
    publish_artifact(
        root,
        "model",
        name,
        mismatch,
        src,
        requires_feature_schema="0.0.0-nonexistent",
        metrics=manifest.metrics,
        params=manifest.params,
        extra=manifest.extra,
    )


def _sample_requests(db: Path, when: date, n: int = 40) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "select tenant_id, employee_id, vendor_id, description, amount from expenses "
            "order by expense_date desc, id limit ?",
            (n,),
        ).fetchall()
    return [
        {
            "tenant_id": t,
            "context": {
                "employee_id": e,
                "vendor_id": v,
                "description": d,
                "amount": float(a),
                "date": when.isoformat(),
            },
            "top_k": 5,
        }
        for t, e, v, d, a in rows
    ]


def mirror_to_s3(world: World, s3_root: str) -> World:
    """The same published artifacts, byte for byte, below an s3:// root."""
    src = Path(parse_uri(world.file_root).path)
    dest = parse_uri(s3_root)
    store = store_for(dest)
    for path in sorted(src.rglob("*")):
        if path.is_file():
            store.upload(dest.join(path.relative_to(src).as_posix()), path)
    return dataclasses.replace(world, s3_root=s3_root, roots=[*world.roots, s3_root])
