"""The small published world the rollout and shadow benchmarks share: ``rankswap datagen``
(seed 3), then features and a model for each of the first days after its history."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

from rankswap.productdb import ProductDB


def rankswap(*args: str) -> None:
    """The ``rankswap`` CLI of this interpreter, quiet, failing loudly."""
    subprocess.run(
        [sys.executable, "-m", "rankswap.cli", "--log-level", "WARNING", *args], check=True
    )


def publish(work: Path, days: int) -> tuple[str, str, list[date]]:
    """A product DB and a store under ``work``, with features and a model as of each of the
    ``days`` days after the generated history: (DB URL, store URI, those days)."""
    db_url, store = f"sqlite:///{work / 'product.db'}", (work / "store").as_uri()
    rankswap("datagen", "--db", db_url, "--seed", "3")
    rng = ProductDB(db_url).expense_date_range()
    assert rng is not None
    when_all = [rng[1] + timedelta(days=i) for i in range(days)]
    for when in when_all:
        rankswap("features", "build", "--db", db_url, "--as-of", when.isoformat(), "--store", store)
        rankswap("model", "train", "--db", db_url, "--as-of", when.isoformat(), "--store", store,
                 "--max-train-expenses", "3000", "--max-eval-expenses", "300")  # fmt: skip
    return db_url, store, when_all
