"""How far apart two bundles' scores are on a demo world: the PSI of raw scores beside the PSI
the shadow comparison reports (per-request standardised scores), for a good retrain and for
the bad-but-loadable model, measured side by side on the same requests.

    python -m rankswap_dev.measure_psi WORK_DIR [-n 400]

``WORK_DIR`` is what ``make demo`` leaves (``RANKSWAP_DEMO_DIR``, default ``work/demo``): its
``product.db`` and ``store``. The model dates found in the store are taken in order as the
two good retrains (d1, d2) and the bad model (d2 + 1 day, the d2 model with its numeric
input columns reversed, with the d2 features).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import numpy.typing as npt

from rankswap.artifacts import artifact_uri, parse_uri
from rankswap.comparison import Comparison, compare_request, psi
from rankswap.featurespec import FEATURE_SCHEMA_VERSION
from rankswap_ranker import bundle as bundles
from rankswap_ranker.candidates import LazyProductDB
from rankswap_ranker.ranking import RankQuery, rank

RAW_EDGES = np.asarray([round(-8.0 + 0.5 * i, 1) for i in range(33)])
"""The raw-score bins the comparison used before it standardised (-8 to 8 by 0.5)."""


def raw_histogram(scores: npt.NDArray[np.float32]) -> list[int]:
    idx = np.searchsorted(RAW_EDGES, np.asarray(scores, dtype=np.float64), "right")
    return [int(n) for n in np.bincount(idx, minlength=len(RAW_EDGES) + 1)]


def sample_queries(db: Path, when: date, n: int) -> list[RankQuery]:
    """The ``n`` latest expenses of the product DB as rank requests on ``when``."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "select tenant_id, employee_id, vendor_id, description, amount from expenses "
            "order by expense_date desc, id desc limit ?",
            (n,),
        ).fetchall()
    return [RankQuery(str(t), e, v, str(d), float(a), when, 5) for t, e, v, d, a in rows]


def measure(
    new: bundles.Bundle, old: bundles.Bundle, queries: list[RankQuery], source: LazyProductDB
) -> tuple[Comparison, float | None]:
    """The comparison of ``new`` against ``old`` on ``queries`` and the raw-score PSI."""
    acc = Comparison(active=new.bundle_id, reference=old.bundle_id, since="")
    raw_new = [0] * (len(RAW_EDGES) + 1)
    raw_old = [0] * (len(RAW_EDGES) + 1)
    for q in queries:
        a = rank(new, source, q)
        r = rank(old, source, q)
        if a.scores is None or r.scores is None or a.cands is None:
            continue
        ref_top = old.top_k(r.scores, a.cands.item_ids, q.top_k)
        acc.add(
            compare_request(
                [int(i) for i in a.top],
                r.scores,
                [int(i) for i in ref_top],
                a.scores,
                active_seconds=0.0,
                reference_seconds=0.0,
            )
        )
        for hist, scores in ((raw_new, a.scores), (raw_old, r.scores)):
            for i, n in enumerate(raw_histogram(scores)):
                hist[i] += n
    return acc, psi(raw_old, raw_new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("-n", type=int, default=400, help="sample requests (default 400)")
    args = parser.parse_args(argv)
    work: Path = args.work_dir.resolve()
    store = (work / "store").as_uri()
    db_url = f"sqlite:///{work / 'product.db'}"
    model_dir = Path(parse_uri(store).path) / "models" / "line-items"
    dates = sorted(date.fromisoformat(p.name) for p in model_dir.iterdir() if p.name != "latest")
    d1, d2, bad = dates[:3]
    schema = FEATURE_SCHEMA_VERSION
    with tempfile.TemporaryDirectory(prefix="measure-psi-") as cache:

        def load(model_day: date, features_day: date) -> bundles.Bundle:
            return bundles.load(
                bundles.resolve(
                    artifact_uri(store, "model", "line-items", model_day),
                    artifact_uri(store, "features", schema, features_day),
                    Path(cache),
                )
            )

        b1, b2, b_bad = load(d1, d1), load(d2, d2), load(bad, d2)
        queries = sample_queries(work / "product.db", d2, args.n)
        source = LazyProductDB(db_url)
        print(f"{len(queries)} requests of {work} (models {d1}, {d2}, bad {bad})")
        print(f"{'pair':44} {'raw PSI':>8} {'PSI (std)':>9} {'top-1':>6} {'top-k':>6}")
        for label, new, old in (
            (f"good retrain {d2} vs {d1}", b2, b1),
            (f"good retrain {d1} vs {d2}", b1, b2),
            (f"bad model {bad} vs {d2}", b_bad, b2),
        ):
            acc, raw = measure(new, old, queries, source)
            print(
                f"{label:44} {raw or 0:8.3f} {acc.psi or 0:9.3f} "
                f"{acc.top1_agreement or 0:6.2f} {acc.topk_overlap or 0:6.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
