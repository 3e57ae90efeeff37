"""The ``real`` section: the ranker on artifacts of the real pipelines and a real product DB.

Unless ``--db``/``--store`` are given, a world is built with the project's own commands (as
``make demo`` does): ``rankswap datagen --seed 7``, ``rankswap features build`` and
``rankswap model train --max-train-expenses 4000`` as of the day after the last expense. The
trained model (LightGBM, 60 trees x 15 leaves as chosen by the pipeline) and its feature
artifact are then measured in process and over HTTP for three tenants: the one whose active
item count is closest to 100, the one closest to 1,000 (in ratio) and the largest. Requests
are that tenant's latest expenses (employee, vendor, description, amount), dated as of D.
"""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from rankswap import featurespec as fs
from rankswap.artifacts import artifact_uri, read_manifest
from rankswap.productdb import ProductDB

if TYPE_CHECKING:
    from rankswap_ranker.ranking import RankQuery

REQUESTS_PER_TENANT = 200
TARGETS = {"~100": 100, "~1000": 1000}


@dataclass(frozen=True)
class World:
    db_url: str
    store: str  # artifact root URI
    model_uri: str
    features_uri: str
    as_of: date
    build_s: dict[str, float]


def _cli(*args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rankswap.cli", "--log-level", "WARNING", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"rankswap {' '.join(args)} failed:\n{result.stderr[-2000:]}")


def build_world(work: Path, db_url: str | None, store: str | None) -> World:
    """Use ``db_url``/``store`` when given; otherwise generate them under ``work``."""
    timings: dict[str, float] = {}
    work.mkdir(parents=True, exist_ok=True)
    if db_url is None:
        path = work / "product.db"
        path.unlink(missing_ok=True)
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        db_url = f"sqlite:///{path}"
        t0 = time.perf_counter()
        _cli("datagen", "--db", db_url, "--seed", "7")
        timings["datagen"] = time.perf_counter() - t0
    db = ProductDB(db_url)
    span = db.expense_date_range()
    db.close()
    if span is None:
        raise RuntimeError(f"{db_url}: no expenses")
    as_of = span[1] + timedelta(days=1)
    if store is None:
        store = (work / "store").resolve().as_uri()
        t0 = time.perf_counter()
        _cli("features", "build", "--db", db_url, "--as-of", as_of.isoformat(), "--store", store)
        timings["features_build"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        _cli(
            "model", "train", "--db", db_url, "--as-of", as_of.isoformat(), "--store", store,
            "--max-train-expenses", "4000", "--force",
        )  # fmt: skip
        timings["model_train"] = time.perf_counter() - t0
    return World(
        db_url=db_url,
        store=store,
        model_uri=artifact_uri(store, "model", "line-items", "latest"),
        features_uri=artifact_uri(store, "features", fs.FEATURE_SCHEMA_VERSION, "latest"),
        as_of=as_of,
        build_s=timings,
    )


def pick_tenants(sizes: dict[str, int]) -> dict[str, str]:
    """{label: tenant}: closest (in ratio) to 100 and to 1,000 active items, and the largest."""
    live = {t: n for t, n in sizes.items() if n > 0}
    if not live:
        raise RuntimeError("no tenant has active items")
    out = {
        label: min(live, key=lambda t: (abs(math.log(live[t] / target)), t))
        for label, target in TARGETS.items()
    }
    out["largest"] = max(live, key=lambda t: (live[t], t))
    return out


def tenant_sizes(db_url: str) -> dict[str, int]:
    db = ProductDB(db_url)
    try:
        return {t: len(db.candidates(t, with_names=False)) for t in db.tenant_ids()}
    finally:
        db.close()


def body_query(tenant: str, body: dict[str, Any], *, top_k: int | None = None) -> RankQuery:
    """The ``ranking.rank`` query of one of :func:`rank_bodies`' bodies (``top_k``: the body's
    unless given)."""
    from rankswap_ranker.ranking import RankQuery

    c = body["context"]
    return RankQuery(
        tenant_id=tenant,
        employee_id=c["employee_id"],
        vendor_id=c["vendor_id"],
        description=c["description"],
        amount=c["amount"],
        expense_date=date.fromisoformat(c["date"]),
        top_k=body["top_k"] if top_k is None else top_k,
    )


def rank_bodies(db_url: str, tenant: str, as_of: date, n: int) -> list[dict[str, Any]]:
    """The tenant's ``n`` latest expenses as /v1/rank bodies dated ``as_of``."""
    from sqlalchemy import select

    from rankswap.productdb import schema

    e = schema.expenses
    db = ProductDB(db_url)
    try:
        frame = db.frame(
            select(e.c.employee_id, e.c.vendor_id, e.c.description, e.c.amount)
            .where(e.c.tenant_id == tenant)
            .order_by(e.c.id.desc())
            .limit(n)
        )
    finally:
        db.close()
    bodies: list[dict[str, Any]] = []
    for emp, ven, desc, amount in frame.itertuples(index=False):
        bodies.append(
            {
                "tenant_id": tenant,
                "context": {
                    "employee_id": int(emp),
                    "vendor_id": None if pd.isna(ven) else int(ven),
                    "description": str(desc),
                    "amount": float(amount),
                    "date": as_of.isoformat(),
                },
                "top_k": 5,
            }
        )
    return bodies


def db_miss_ms(db_url: str, tenant: str, iterations: int) -> float:
    """Median of ``ProductDB.candidates`` with the candidate cache off (every call a query)."""
    db = ProductDB(db_url, cache_candidates=False)
    try:
        times = []
        for i in range(iterations + 5):
            t0 = time.perf_counter()
            db.candidates(tenant, with_names=True)
            if i >= 5:
                times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1000
    finally:
        db.close()


def model_info(world: World, cache: Path) -> dict[str, Any]:
    from rankswap_ranker import bundle as bundles

    ref = bundles.resolve(world.model_uri, world.features_uri, cache)
    params = read_manifest(world.model_uri).params
    return {
        "model_version": ref.model.version,
        "features_version": ref.features.version,
        "kind": params.get("kind"),
        "trees": params.get("n_estimators"),
        "leaves": params.get("num_leaves"),
        "onnx_bytes": (Path(ref.model.local_dir) / "model.onnx").stat().st_size,
    }


def p99(values: list[float]) -> float:
    return float(np.percentile(values, 99) * 1000)
