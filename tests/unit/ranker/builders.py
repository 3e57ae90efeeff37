"""Small real parts for ranker tests: feature tables, an ONNX model, published bundles, a DB.

Everything goes through the public functions of rankswap (FeatureTables.write, publish_artifact,
ProductDB), so the ranker sees exactly what the training pipeline would publish; only the data
and the model are tiny.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper

from rankswap import featurespec as fs
from rankswap.artifacts import Manifest, artifact_uri, publish_artifact
from rankswap.productdb import ProductDB

F = len(fs.NUMERIC_FEATURES)
C = len(fs.CATEGORICAL_FEATURES)
AS_OF = date(2026, 11, 20)
CATEGORIES = ("travel", "meals", "supplies")


def feature_tables(
    item_ids: npt.ArrayLike, *, as_of: date = AS_OF, scale: float = 1.0
) -> fs.FeatureTables:
    """Tables where item ``i`` was used ``i * scale`` times (so higher ids rank first)."""
    ids = np.asarray(item_ids, dtype=np.int64)
    n = ids.shape[0]
    cnt = (ids.astype(np.float32) * np.float32(scale)) % 1000
    tables: dict[str, dict[str, Any]] = {
        "item": {
            "key": ids,
            "cnt_30d": cnt / 12,
            "cnt_90d": cnt / 4,
            "cnt_365d": cnt,
            "share_90d": np.full(n, 0.01, dtype=np.float32),
            "n_users_90d": np.ones(n, dtype=np.float32),
            "last_day": np.full(n, fs.to_day(as_of), dtype=np.float32),
            "amt_mean": np.full(n, 7.0, dtype=np.float32),
            "amt_std": np.ones(n, dtype=np.float32),
        },
        "emp_item": {
            "key": fs.pair_key(np.ones(n, dtype=np.int64), ids),
            "cnt_365d": np.ones(n, dtype=np.float32),
            "share_365d": np.full(n, 0.1, dtype=np.float32),
            "last_day": np.full(n, fs.to_day(as_of), dtype=np.float32),
            "recency_rank": np.arange(n, dtype=np.float32),
        },
        "vendor_item": {"key": [], "cnt_365d": [], "share_365d": [], "last_day": []},
        "employee": {"key": [1], "cnt_365d": [10.0]},
        "vendor": {"key": [], "cnt_365d": []},
        "emp_cat": {"key": [], "share_365d": []},
        "vendor_cat": {"key": [], "share_365d": []},
        "category": {
            "key": [1, 2, 3],
            "share_90d": [0.5, 0.3, 0.2],
            "amt_mean": [7.0] * 3,
            "amt_std": [1.0] * 3,
        },
        "term_cat": {"key": [], "share": []},
        "term_item": {"key": [], "share": []},
        "emp_term": {"key": [], "share": []},
    }
    return fs.FeatureTables.from_arrays(as_of, tables, ["taxi", "交通"])


def onnx_model(
    *,
    weight: float = 1.0,
    num_width: int = F,
    cat_width: int = C,
    output: str = "score",
    category_bonus: dict[str, float] | None = None,
) -> bytes:
    """score = weight * item_cnt_365d + bonus[category] (unknown category: 0)."""
    w = np.zeros((num_width, 1), dtype=np.float32)
    w[min(fs.NUMERIC_FEATURES.index("item_cnt_365d"), num_width - 1), 0] = weight
    bonus = category_bonus or {"travel": 0.5, "meals": 0.25}
    nodes = [
        helper.make_node("MatMul", ["num", "W"], ["m"]),
        helper.make_node("Reshape", ["m", "flat"], ["m1"]),
        helper.make_node("Gather", ["cat", "col0"], ["c0"], axis=1),
        helper.make_node(
            "LabelEncoder",
            ["c0"],
            ["e"],
            domain="ai.onnx.ml",
            keys_strings=list(bonus),
            values_floats=list(bonus.values()),
            default_float=0.0,
        ),
        helper.make_node("Add", ["m1", "e"], [output]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-ranker",
        [
            helper.make_tensor_value_info("num", TensorProto.FLOAT, [None, num_width]),
            helper.make_tensor_value_info("cat", TensorProto.STRING, [None, cat_width]),
        ],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, [None])],
        initializer=[
            helper.make_tensor("W", TensorProto.FLOAT, [num_width, 1], w.reshape(-1).tolist()),
            helper.make_tensor("flat", TensorProto.INT64, [1], [-1]),
            helper.make_tensor("col0", TensorProto.INT64, [], [0]),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 2)]
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


@dataclass(frozen=True)
class Published:
    model_uri: str
    features_uri: str
    model: Manifest
    features: Manifest

    @property
    def bundle_id(self) -> str:
        return f"{self.model.version}+{self.features.version}"

    @property
    def latest_model_uri(self) -> str:
        return self.model_uri.rsplit("/", 1)[0] + "/latest"

    @property
    def latest_features_uri(self) -> str:
        return self.features_uri.rsplit("/", 1)[0] + "/latest"


def publish_features(
    root: str, work: Path, tables: fs.FeatureTables, *, as_of: date = AS_OF
) -> Manifest:
    src = work / f"features-{as_of}-{id(tables)}"
    tables.write(src)
    return publish_artifact(
        root, "features", fs.FEATURE_SCHEMA_VERSION, as_of, src, force=True
    ).manifest


def publish_model(
    root: str,
    work: Path,
    model_bytes: bytes,
    *,
    as_of: date = AS_OF,
    name: str = "ranker",
    requires: str = fs.FEATURE_SCHEMA_VERSION,
) -> Manifest:
    src = work / f"model-{name}-{as_of}-{abs(hash(model_bytes))}"
    src.mkdir(parents=True, exist_ok=True)
    (src / "model.onnx").write_bytes(model_bytes)
    vocab = {
        "category": list(CATEGORIES),
        "account_code": [],
        "vendor_industry": [],
        "employee_department": ["sales"],
    }
    return publish_artifact(
        root,
        "model",
        name,
        as_of,
        src,
        requires_feature_schema=requires,
        extra={"encoder_categories": vocab},
        force=True,
    ).manifest


def publish_bundle(
    root: str,
    work: Path,
    *,
    item_ids: npt.ArrayLike,
    as_of: date = AS_OF,
    weight: float = 1.0,
    model_bytes: bytes | None = None,
    requires: str = fs.FEATURE_SCHEMA_VERSION,
    name: str = "ranker",
) -> Published:
    features = publish_features(root, work, feature_tables(item_ids, as_of=as_of), as_of=as_of)
    model = publish_model(
        root,
        work,
        model_bytes or onnx_model(weight=weight),
        as_of=as_of,
        name=name,
        requires=requires,
    )
    return Published(
        model_uri=artifact_uri(root, "model", name, as_of),
        features_uri=artifact_uri(root, "features", fs.FEATURE_SCHEMA_VERSION, as_of),
        model=model,
        features=features,
    )


def product_db(url: str, tenants: dict[str, int], *, first_id: int = 1) -> ProductDB:
    """A product DB with ``tenants[t]`` active items each (ids consecutive from ``first_id``);
    tenant ``"empty"`` style entries with 0 items are allowed."""
    db = ProductDB(url, create=True)
    db.create_schema(drop_existing=True)
    now = datetime(2026, 1, 1)
    db.bulk_insert("tenants", [{"id": t, "name": t, "created_at": now} for t in tenants])
    cats = []
    items = []
    next_cat = 1
    next_item = first_id
    for t, n in tenants.items():
        ids = {}
        for c in CATEGORIES:
            cats.append(
                {"id": next_cat, "tenant_id": t, "name": c, "account_code": f"6{next_cat:03d}"}
            )
            ids[c] = next_cat
            next_cat += 1
        for _ in range(n):
            c = CATEGORIES[next_item % len(CATEGORIES)]
            items.append(
                {
                    "id": next_item,
                    "tenant_id": t,
                    "code": f"I{next_item}",
                    "name": f"item {next_item}",
                    "category_id": ids[c],
                    "created_at": now,
                    "active": True,
                }
            )
            next_item += 1
    db.bulk_insert("categories", cats)
    db.bulk_insert("items", items)
    db.bulk_insert(
        "employees",
        [{"id": 1, "tenant_id": next(iter(tenants)), "name": "e", "department": "sales"}],
    )
    db.sync_sequences()
    return db


def utcnow() -> datetime:
    return datetime.now(UTC)


MODES_2 = ("BRANCH_LEQ", "LEAF", "LEAF")


def tree_model(*, num_width: int = F, cat_width: int = C, swap_codes: bool = False) -> bytes:
    """The training pipeline's graph shape (skl2onnx): every categorical column through a
    ``LabelEncoder`` (Gather, Reshape, Concat, Cast), concatenated after ``num``, scored by a
    ``TreeEnsembleRegressor``. Two trees: one on ``item_cnt_365d``, one on the encoded
    ``category``. ``swap_codes`` writes codes the trees do not expect (same graph shape)."""
    cnt = fs.NUMERIC_FEATURES.index("item_cnt_365d")
    categories = ["travel", "meals", "supplies"]
    codes = [1, 0, 2] if swap_codes else [0, 1, 2]
    nodes = [helper.make_node("Identity", ["num"], ["numeric"])]
    encoded = []
    inits = [helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 1])]
    for j in range(cat_width):
        inits.append(helper.make_tensor(f"idx{j}", TensorProto.INT64, [1], [j]))
        nodes += [
            helper.make_node("Gather", ["cat", f"idx{j}"], [f"col{j}"], axis=1),
            helper.make_node(
                "LabelEncoder",
                [f"col{j}"],
                [f"enc{j}"],
                domain="ai.onnx.ml",
                keys_strings=categories if j == 0 else ["x", "y"],
                values_int64s=codes if j == 0 else [0, 1],
                default_int64=-1,
            ),
            helper.make_node("Reshape", [f"enc{j}", "shape"], [f"ord{j}"]),
        ]
        encoded.append(f"ord{j}")
    nodes += [
        helper.make_node("Concat", encoded, ["codes"], axis=1),
        helper.make_node("Cast", ["codes"], ["codes_f"], to=TensorProto.FLOAT),
        helper.make_node("Concat", ["numeric", "codes_f"], ["rows"], axis=1),
        helper.make_node(
            "TreeEnsembleRegressor",
            ["rows"],
            ["out"],
            domain="ai.onnx.ml",
            n_targets=1,
            nodes_treeids=[0, 0, 0, 1, 1, 1, 1, 1],
            nodes_nodeids=[0, 1, 2, 0, 1, 2, 3, 4],
            nodes_featureids=[cnt, 0, 0, num_width, 0, num_width, 0, 0],
            nodes_modes=[*("BRANCH_LEQ", "LEAF", "LEAF"), *("BRANCH_LEQ", "LEAF"), *MODES_2],
            nodes_values=[2.5, 0, 0, -0.5, 0, 0.5, 0, 0],
            nodes_truenodeids=[1, 0, 0, 1, 0, 3, 0, 0],
            nodes_falsenodeids=[2, 0, 0, 2, 0, 4, 0, 0],
            nodes_missing_value_tracks_true=[0] * 8,
            nodes_hitrates=[1.0] * 8,
            target_ids=[0] * 5,
            target_nodeids=[1, 2, 1, 3, 4],
            target_treeids=[0, 0, 1, 1, 1],
            target_weights=[0.1, 0.7, -0.3, 0.9, 0.2],
            post_transform="NONE",
        ),
        helper.make_node("Identity", ["out"], ["variable"]),
        helper.make_node("Reshape", ["variable", "flat"], ["score"]),
    ]
    inits.append(helper.make_tensor("flat", TensorProto.INT64, [1], [-1]))
    graph = helper.make_graph(
        nodes,
        "tree-ranker",
        [
            helper.make_tensor_value_info("num", TensorProto.FLOAT, [None, num_width]),
            helper.make_tensor_value_info("cat", TensorProto.STRING, [None, cat_width]),
        ],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None])],
        initializer=inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())
