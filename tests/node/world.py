"""The node tier's data: the product DB in PostgreSQL and artifacts in the S3 API (moto), both
made by the real pipelines on this machine, for two consecutive dates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from tests.support.world import _publish_bad, rankswap

from rankswap.artifacts import artifact_uri, read_manifest

BUCKET = "rankswap-node"
ROOT = f"s3://{BUCKET}/artifacts"


@dataclass(frozen=True)
class NodeWorld:
    root: str
    model_name: str
    schema: str
    dates: tuple[date, date]
    corrupt: date
    versions: dict[date, tuple[str, str]]
    sample_requests: list[dict[str, Any]]

    def uris(self, when: date) -> dict[str, str]:
        return {
            "model": artifact_uri(self.root, "model", self.model_name, when),
            "features": artifact_uri(self.root, "features", self.schema, when),
        }


def build_node_world(db_url: str, work: Path) -> NodeWorld:
    import boto3

    boto3.client("s3").create_bucket(Bucket=BUCKET)
    rankswap(
        "datagen", "--db", db_url, "--seed", "11", "--tenants", "2", "--days", "90",
        "--scale", "0.2",
    )  # fmt: skip
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        last = conn.execute(sa.text("select max(expense_date) from expenses")).scalar_one()
        last = last if isinstance(last, date) else date.fromisoformat(str(last)[:10])
        rows = conn.execute(
            sa.text(
                "select tenant_id, employee_id, vendor_id, description, amount from expenses "
                "order by expense_date desc, id limit 40"
            )
        ).fetchall()
    engine.dispose()
    d1, d2 = last, last + timedelta(days=1)
    for when in (d1, d2):
        rankswap("features", "build", "--db", db_url, "--as-of", when.isoformat(), "--store", ROOT)
        rankswap(
            "model", "train", "--db", db_url, "--as-of", when.isoformat(), "--store", ROOT,
            "--holdout-days", "14", "--train-days", "70",
            "--max-train-expenses", "600", "--max-eval-expenses", "100",
        )  # fmt: skip
    schema = _only_child(f"{ROOT}/features")
    model_name = _only_child(f"{ROOT}/models")
    # A model whose manifest is intact but whose model.onnx was altered after publishing, and
    # one that needs a feature schema nobody has (d2 + 1 and d2 + 2).
    corrupt, mismatch = d2 + timedelta(days=1), d2 + timedelta(days=2)
    _publish_bad(work, ROOT, model_name, schema, d2, corrupt, mismatch)
    versions = {
        d: (
            read_manifest(artifact_uri(ROOT, "model", model_name, d)).version,
            read_manifest(artifact_uri(ROOT, "features", schema, d)).version,
        )
        for d in (d1, d2)
    }
    requests = [
        {
            "tenant_id": t,
            "context": {
                "employee_id": e,
                "vendor_id": v,
                "description": desc,
                "amount": float(a),
                "date": d2.isoformat(),
            },
            "top_k": 5,
        }
        for t, e, v, desc, a in rows
    ]
    return NodeWorld(ROOT, model_name, schema, (d1, d2), corrupt, versions, requests)


def _only_child(prefix_uri: str) -> str:
    import boto3

    bucket, _, key = prefix_uri.removeprefix("s3://").partition("/")
    listing = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=key + "/", Delimiter="/")
    names = [p["Prefix"][len(key) + 1 :].rstrip("/") for p in listing.get("CommonPrefixes", [])]
    if len(names) != 1:
        raise AssertionError(f"expected one name below {prefix_uri}, found {names}")
    return names[0]
