"""The seed design, as published: features in ``multiprocessing.Manager().dict()`` filled row by
row with ``DataFrame.iterrows()``, looked up with one proxy ``get`` (an IPC round trip) per
candidate — measured against rankswap's memory-mapped columnar tables in the same run.
"""

from __future__ import annotations

import statistics
import time
from datetime import date
from multiprocessing import Manager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

from rankswap import featurespec as fs
from rankswap_ranker.bundle import prefault_tables, smoke_candidates

CANDIDATES = 1000


def compare(directory: Path, rows: int) -> dict[str, Any]:
    """Both designs on the item table of the features artifact in ``directory``."""
    tables = fs.FeatureTables.open(directory)
    item = tables.tables["item"]
    n = min(rows, len(item))
    cols = list(fs.TABLES["item"])
    frame = pd.DataFrame({"key": item.keys[:n], **{c: item.columns[c][:n] for c in cols}})
    rng = np.random.default_rng(1)
    me = psutil.Process()

    # Seed: reload (set_realtime_feature) and lookups (one proxy get per candidate).
    before = {p.pid for p in me.children()}
    manager = Manager()
    server = next(p for p in me.children() if p.pid not in before)
    rss0 = server.memory_info().rss
    shared = manager.dict()
    t0 = time.perf_counter()
    for _, row in frame.iterrows():
        shared[row.key] = {c: row[c] for c in cols}
    seed_reload = time.perf_counter() - t0
    seed_memory = (server.memory_info().rss - rss0) / 2**20
    seed_lookups = []
    for _ in range(20):
        ids = rng.integers(1, n + 1, CANDIDATES)
        t0 = time.perf_counter()
        found = [shared.get(int(k)) for k in ids]
        seed_lookups.append(time.perf_counter() - t0)
        assert all(f is not None for f in found)
    manager.shutdown()

    # rankswap: reopen the published folder (memory-mapped) and read every page once.
    rs_reload = []
    for _ in range(3):
        t0 = time.perf_counter()
        reopened = fs.FeatureTables.open(directory)
        prefault_tables(reopened)
        rs_reload.append(time.perf_counter() - t0)
    reopened_item = reopened.tables["item"]
    rs_lookup, rs_assemble = [], []
    ctx = fs.RankContext("t", 1, 1, "taxi w12", 1200.0, date(2026, 11, 27))
    base = smoke_candidates(reopened, CANDIDATES)
    for _ in range(200):
        ids = np.sort(rng.integers(1, n + 1, CANDIDATES))
        t0 = time.perf_counter()
        pos, hit = reopened_item.lookup(ids)
        for c in cols:
            reopened_item.get(c, pos, hit, 0.0)
        rs_lookup.append(time.perf_counter() - t0)
        cands = fs.Candidates(
            ids,
            base.codes,
            base.names,
            base.category_ids,
            base.categories,
            base.account_codes,
            base.created_at,
        )
        t0 = time.perf_counter()
        fs.assemble(ctx, cands, reopened)
        rs_assemble.append(time.perf_counter() - t0)
    # Same rows as the seed measured; the whole table is reported beside it.
    rs_memory = n * (8 + 4 * len(cols)) / 2**20
    seed_lookup_ms = statistics.median(seed_lookups) * 1000
    rs_lookup_ms = statistics.median(rs_lookup) * 1000
    rs_assemble_ms = statistics.median(rs_assemble) * 1000
    reload_s = min(rs_reload)
    # The rankswap reload covers every table of the artifact (more rows than the seed's).
    return {
        "rows": n,
        "rows_all_tables": sum(len(t) for t in reopened.tables.values()),
        "seed_reload_s": seed_reload,
        "seed_lookup_ms": seed_lookup_ms,
        "seed_memory_mib": seed_memory,
        "rs_reload_s": reload_s,
        "rs_lookup_ms": rs_lookup_ms,
        "rs_assemble_ms": rs_assemble_ms,
        "rs_memory_mib": rs_memory,
        "rs_all_tables_mib": reopened.nbytes / 2**20,
        "lookup_ratio": seed_lookup_ms / rs_lookup_ms,
        "assemble_ratio": seed_lookup_ms / rs_assemble_ms,
        "reload_ratio": seed_reload / reload_s,
        "memory_ratio": seed_memory / rs_memory,
    }
