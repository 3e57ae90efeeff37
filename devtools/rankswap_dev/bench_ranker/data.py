"""Synthetic data for the benchmarks: a large feature table, a product DB, published bundles."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from rankswap import featurespec as fs
from rankswap.artifacts import artifact_uri, publish_artifact
from rankswap.productdb import ProductDB
from rankswap_dev.bench_ranker.model import tree_model

AS_OF = date(2026, 11, 20)
TENANT_SIZES = {"t100": 100, "t1000": 1000, "t5000": 5000}
EMPLOYEES = 1000
VENDORS = 500
CATEGORIES_PER_TENANT = 20


def feature_tables(n_items: int, seed: int = 0, as_of: date = AS_OF) -> fs.FeatureTables:
    """``n_items`` item rows, as many employee x item pairs, smaller tables for the rest."""
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n_items + 1, dtype=np.int64)
    day = float(fs.to_day(as_of))

    def f32(n: int, scale: float = 1.0) -> Any:
        return (rng.random(n, dtype=np.float32) * scale).astype(np.float32)

    def pairs(n: int, a_max: int, b_max: int) -> Any:
        keys = fs.pair_key(rng.integers(1, a_max + 1, n), rng.integers(1, b_max + 1, n))
        return np.unique(keys)

    emp_item = pairs(n_items, EMPLOYEES, n_items)
    vendor_item = pairs(n_items // 2, VENDORS, n_items)
    n_cat = len(TENANT_SIZES) * CATEGORIES_PER_TENANT
    emp_cat = pairs(EMPLOYEES * 10, EMPLOYEES, n_cat)
    vendor_cat = pairs(VENDORS * 10, VENDORS, n_cat)
    terms = sorted({f"w{i}" for i in range(2000)})
    term_cat = pairs(20_000, len(terms) - 1, n_cat)
    term_item = pairs(n_items // 2, len(terms) - 1, n_items)
    emp_term = pairs(EMPLOYEES * 20, EMPLOYEES, len(terms) - 1)
    tables: dict[str, dict[str, Any]] = {
        "item": {
            "key": ids,
            "cnt_30d": f32(n_items, 5),
            "cnt_90d": f32(n_items, 15),
            "cnt_365d": f32(n_items, 60),
            "share_90d": f32(n_items),
            "n_users_90d": f32(n_items, 10),
            "last_day": day - f32(n_items, 300),
            "amt_mean": f32(n_items, 10),
            "amt_std": f32(n_items, 2),
        },
        "emp_item": {
            "key": emp_item,
            "cnt_365d": f32(len(emp_item), 20),
            "share_365d": f32(len(emp_item)),
            "last_day": day - f32(len(emp_item), 300),
            "recency_rank": f32(len(emp_item), 50),
        },
        "vendor_item": {
            "key": vendor_item,
            "cnt_365d": f32(len(vendor_item), 20),
            "share_365d": f32(len(vendor_item)),
            "last_day": day - f32(len(vendor_item), 300),
        },
        "employee": {"key": np.arange(1, EMPLOYEES + 1), "cnt_365d": f32(EMPLOYEES, 300)},
        "vendor": {"key": np.arange(1, VENDORS + 1), "cnt_365d": f32(VENDORS, 300)},
        "emp_cat": {"key": emp_cat, "share_365d": f32(len(emp_cat))},
        "vendor_cat": {"key": vendor_cat, "share_365d": f32(len(vendor_cat))},
        "category": {
            "key": np.arange(1, n_cat + 1),
            "share_90d": f32(n_cat),
            "amt_mean": f32(n_cat, 10),
            "amt_std": f32(n_cat, 2),
        },
        "term_cat": {"key": term_cat, "share": f32(len(term_cat))},
        "term_item": {"key": term_item, "share": f32(len(term_item))},
        "emp_term": {"key": emp_term, "share": f32(len(emp_term))},
    }
    return fs.FeatureTables.from_arrays(as_of, tables, terms)


@dataclass(frozen=True)
class BenchBundle:
    model_uri: str
    features_uri: str


def publish(
    root: Path,
    work: Path,
    tables: fs.FeatureTables,
    *,
    as_of: date,
    trees: int,
    leaves: int,
    seed: int,
    features_dir: Path | None = None,
) -> BenchBundle:
    """Publish a model (and the tables, unless ``features_dir`` already holds them)."""
    root.mkdir(parents=True, exist_ok=True)
    src = work / f"src-{as_of}"
    shutil.rmtree(src, ignore_errors=True)
    (src / "model").mkdir(parents=True)
    (src / "model" / "model.onnx").write_bytes(tree_model(trees, leaves, seed))
    features_src = features_dir
    if features_src is None:
        features_src = src / "features"
        tables.write(features_src)
    uri = root.as_uri()
    publish_artifact(uri, "features", fs.FEATURE_SCHEMA_VERSION, as_of, features_src, force=True)
    publish_artifact(
        uri,
        "model",
        "bench",
        as_of,
        src / "model",
        requires_feature_schema=fs.FEATURE_SCHEMA_VERSION,
        force=True,
    )
    return BenchBundle(
        model_uri=artifact_uri(uri, "model", "bench", as_of),
        features_uri=artifact_uri(uri, "features", fs.FEATURE_SCHEMA_VERSION, as_of),
    )


def product_db(path: Path) -> str:
    """SQLite product DB with tenants of 100, 1,000 and 5,000 active items."""
    path.unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    db = ProductDB(url, create=True)
    db.create_schema(drop_existing=True)
    now = datetime(2026, 1, 1)
    db.bulk_insert("tenants", [{"id": t, "name": t, "created_at": now} for t in TENANT_SIZES])
    cats, items, emps = [], [], []
    next_item, next_cat = 1, 1
    for t, n in TENANT_SIZES.items():
        first_cat = next_cat
        for _ in range(CATEGORIES_PER_TENANT):
            cats.append(
                {
                    "id": next_cat,
                    "tenant_id": t,
                    "name": f"cat{next_cat}",
                    "account_code": f"{next_cat % 50}",
                }
            )
            next_cat += 1
        for _ in range(n):
            items.append(
                {
                    "id": next_item,
                    "tenant_id": t,
                    "code": f"C{next_item}",
                    "name": f"品目 {next_item}",
                    "category_id": first_cat + next_item % CATEGORIES_PER_TENANT,
                    "created_at": now,
                    "active": True,
                }
            )
            next_item += 1
    for e in range(1, EMPLOYEES + 1):
        emps.append({"id": e, "tenant_id": "t1000", "name": f"e{e}", "department": f"d{e % 10}"})
    db.bulk_insert("categories", cats)
    db.bulk_insert("items", items)
    db.bulk_insert("employees", emps)
    db.bulk_insert(
        "vendors",
        [
            {"id": v, "tenant_id": "t1000", "name": f"v{v}", "industry": f"i{v % 7}"}
            for v in range(1, VENDORS + 1)
        ],
    )
    db.close()
    return url


def rank_body(tenant: str, i: int = 0) -> dict[str, Any]:
    return {
        "tenant_id": tenant,
        "context": {
            "employee_id": 1 + i % EMPLOYEES,
            "vendor_id": 1 + i % VENDORS,
            "description": "タクシー 渋谷 w12 w400 client visit",
            "amount": 1000 + i % 5000,
            "date": "2026-11-27",
        },
        "top_k": 5,
    }
