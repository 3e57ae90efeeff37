"""Every point-in-time snapshot the training pairs read, in one windowed pass over the history.

``model train`` reads features as of ~55 days (weekly training snapshots, daily hold-out ones).
Aggregating the 365-day window once per snapshot (``HistoryDB.build_tables``) reads each
expense up to 55 times; here each feature table is one SQL statement over the history for every
snapshot at once: the expenses (events) and one *probe* row per (snapshot, key) the pairs look
up, dated the snapshot's last day, sorted once by (key, day); the aggregates are window frames
``RANGE BETWEEN n - 1 PRECEDING AND CURRENT ROW`` read at the probes (``n`` = 365, 90, 30 or
``TERM_ITEM_DAYS``), so a probe for as-of ``S`` sees exactly the expenses dated in
``[S - n, S)`` - the window and the point-in-time rule of ``build_tables``, never ``S`` or later.

Only the keys the pairs look up are probed (the contexts' employees, vendors, description /
industry / department terms; their candidate items, drawn before the tables are built, and
every category of their tenants), so each snapshot's
tables hold the rows of the full snapshot for those keys (every feature lies within one key's
partition: an employee, a vendor, an item, a category, a (tenant, term)) and nothing else. The
vocabulary of a snapshot is the looked-up terms the full snapshot's vocabulary holds (a term of
any tenant's window, as ``features build`` publishes and the ranker serves): assembled features
depend on the vocabulary only through which looked-up terms it knows. ``emp_term`` (weights
decaying from the as-of day) is summed per (snapshot, employee) directly: few rows.

Floating aggregates (``amt_mean``, ``amt_std``, shares) are the same expressions over the same
expenses; DuckDB may add them in another order than a GROUP BY does (last-bit differences in
float64, the tables are float32). ``tests/unit/training/test_training_snapshots.py`` checks the
assembled features against ``build_tables`` per snapshot.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from rankswap import featurespec as fs
from rankswap_training.columnar import HistoryDB
from rankswap_training.features import WINDOW_DAYS, History
from rankswap_training.featuresql import TERM_SMOOTHING

log = logging.getLogger(__name__)

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Reads:
    """Which expenses read which snapshot: ``rows`` of ``history.expenses`` and, per row, the
    as-of date of the snapshot it reads (``dataset.build_pairs``: the latest on or before the
    expense day)."""

    rows: I64
    as_of: Sequence[date]


def reads_of(history: History, rows: I64, snaps: Sequence[date]) -> Reads:
    """``rows`` with the snapshot each reads among ``snaps`` (rows before the first: none)."""
    snap_day = np.array([fs.to_day(d) for d in sorted(snaps)], dtype=np.int64)
    ordered = sorted(snaps)
    which = np.searchsorted(snap_day, history.expenses["day"].to_numpy(np.int64)[rows], "right")
    keep = which > 0
    return Reads(rows[keep], [ordered[int(w) - 1] for w in which[keep]])


def _frame(partition: str, days: int) -> str:
    """A window over the ``days`` days up to a probe's day (the day before its as-of)."""
    return f"(PARTITION BY {partition} ORDER BY day RANGE BETWEEN {days - 1} PRECEDING AND CURRENT ROW)"


def build(
    hdb: HistoryDB,
    history: History,
    reads: Sequence[Reads],
    items: Mapping[date, I64] | None = None,
) -> dict[date, fs.FeatureTables]:
    """The feature tables of every snapshot that ``reads`` read, restricted to the keys those
    expenses look up (module docstring). ``items``: per snapshot, the candidate item ids its
    pairs look up (``dataset.Drawn.snapshot_items``); default every item of its tenants."""
    t0 = time.perf_counter()
    con = hdb.con
    e = history.expenses
    rows = np.concatenate([r.rows for r in reads]) if reads else np.empty(0, np.int64)
    as_ofs = [d for r in reads for d in r.as_of]
    dates = sorted(set(as_ofs))
    index = {d: k for k, d in enumerate(dates)}
    if not dates:
        return {}
    ends = np.array([fs.to_day(d) for d in dates], dtype=np.int64)
    s = np.array([index[d] for d in as_ofs], dtype=np.int64)
    tenants = e["tenant_id"].to_numpy(object)[rows].astype(str)
    industries = e["industry"].to_numpy(object)[rows]
    departments = e["department"].to_numpy(object)[rows]
    t_s: list[int] = []
    t_tenant: list[str] = []
    t_term: list[str] = []
    for k, (desc, ind, dep) in enumerate(
        zip(e["description"].to_numpy(object)[rows], industries, departments, strict=True)
    ):
        terms = [*fs.tokenize(str(desc)), fs.industry_term(str(ind)), fs.department_term(str(dep))]
        t_s.extend([int(s[k])] * len(terms))
        t_tenant.extend([str(tenants[k])] * len(terms))
        t_term.extend(terms)
    inputs = {
        "snap_in": pa.table({"s": pa.array(np.arange(len(dates))), "end": pa.array(ends)}),
        "use_in": pa.table(
            {
                "s": pa.array(s),
                "tenant_id": pa.array(tenants.tolist(), pa.string()),
                "employee_id": pa.array(e["employee_id"].to_numpy(np.int64)[rows]),
                "vendor_id": pa.array(e["vendor_id"].to_numpy(np.int64)[rows]),
            }
        ),
        "use_term_in": pa.table(
            {
                "s": pa.array(t_s, pa.int64()),
                "tenant_id": pa.array(t_tenant, pa.string()),
                "term": pa.array(t_term, pa.string()),
            }
        ),
    }
    if items is not None:
        i_s = [np.full(len(ids), index[d], np.int64) for d, ids in items.items() if d in index]
        i_id = [np.asarray(ids, np.int64) for d, ids in items.items() if d in index]
        inputs["use_i_in"] = pa.table(
            {
                "s": pa.array(np.concatenate(i_s) if i_s else np.empty(0, np.int64)),
                "item_id": pa.array(np.concatenate(i_id) if i_id else np.empty(0, np.int64)),
            }
        )
    for name, table in inputs.items():
        con.register(name, table)
    try:
        return _build(hdb, dates, int(ends.min()), int(ends.max()), t0, items is not None)
    finally:
        for name in inputs:
            con.unregister(name)
        for tmp in _TEMP:
            con.execute(f"DROP TABLE IF EXISTS {tmp}")


_TEMP = (
    "snap",
    "use_t",
    "use_e",
    "use_v",
    "use_term",
    "ev",
    "titems",
    "use_i",
    "t90",
    "tc_ev",
    "lookup_terms",
    "members",
    "vocab",
)


def _build(
    hdb: HistoryDB, dates: list[date], first_end: int, last_end: int, t0: float, drawn: bool
) -> dict[date, fs.FeatureTables]:
    con = hdb.con
    run = con.execute
    run('CREATE OR REPLACE TEMP TABLE snap AS SELECT s, "end" FROM snap_in')
    run(
        'CREATE OR REPLACE TEMP TABLE use_t AS SELECT DISTINCT s, "end", tenant_id '
        "FROM use_in JOIN snap USING (s)"
    )
    run(
        'CREATE OR REPLACE TEMP TABLE use_e AS SELECT DISTINCT s, "end", employee_id '
        "FROM use_in JOIN snap USING (s)"
    )
    run(
        'CREATE OR REPLACE TEMP TABLE use_v AS SELECT DISTINCT s, "end", vendor_id '
        "FROM use_in JOIN snap USING (s) WHERE vendor_id >= 0"
    )
    run(
        'CREATE OR REPLACE TEMP TABLE use_term AS SELECT DISTINCT s, "end", tenant_id, term '
        "FROM use_term_in JOIN snap USING (s)"
    )
    # the events: the read tenants' expenses in the union of the snapshots' windows; ``eday``
    # is the day of an event and NULL on probes, ``id`` NULL on probes (count(id) counts events)
    run(
        f"""
        CREATE OR REPLACE TEMP TABLE ev AS
        SELECT id, tenant_id, employee_id, vendor_id, item_id, category_id, did, industry,
               department, day, ln(1 + greatest(amount, 0.0)) AS la
        FROM exp WHERE day < {last_end} AND day >= {first_end - WINDOW_DAYS}
          AND tenant_id IN (SELECT tenant_id FROM use_t)
        """
    )
    items = hdb.items
    con.register(
        "items_in",
        pa.table(
            {
                "item_id": pa.array(items["id"].to_numpy(np.int64)),
                "tenant_id": pa.array(items["tenant_id"].astype(str).tolist(), pa.string()),
                "category_id": pa.array(items["category_id"].to_numpy(np.int64)),
            }
        ),
    )
    run(
        "CREATE OR REPLACE TEMP TABLE titems AS SELECT * FROM items_in "
        "WHERE tenant_id IN (SELECT tenant_id FROM use_t)"
    )
    con.unregister("items_in")
    # the items looked up per snapshot: the drawn candidates, or every item of its tenants
    if drawn:
        run(
            'CREATE OR REPLACE TEMP TABLE use_i AS SELECT DISTINCT u.s, snap."end", i.tenant_id, '
            "i.item_id FROM use_i_in u JOIN snap USING (s) JOIN titems i USING (item_id)"
        )
    else:
        run(
            'CREATE OR REPLACE TEMP TABLE use_i AS SELECT u.s, u."end", u.tenant_id, i.item_id '
            "FROM use_t u JOIN titems i USING (tenant_id)"
        )
    y, n90, n30, nt = (
        _frame("{p}", WINDOW_DAYS),
        _frame("{p}", 90),
        _frame("{p}", 30),
        _frame("{p}", fs.TERM_ITEM_DAYS),
    )

    def frames(p: str) -> str:
        return (
            f"WINDOW y AS {y.format(p=p)}, d90 AS {n90.format(p=p)}, d30 AS {n30.format(p=p)}, "
            f"dt AS {nt.format(p=p)}"
        )

    def q(name: str, sql: str) -> dict[str, np.ndarray]:
        t = time.perf_counter()
        table = hdb._query(name, sql)
        log.info(
            "snapshots: %s, %s rows in %.1fs",
            name,
            f"{len(table['key']):,}",
            time.perf_counter() - t,
        )
        return table

    out: dict[str, dict[str, np.ndarray]] = {}
    # each read tenant's expenses of the last 90 days per snapshot, from its daily counts
    run(
        f"""
        CREATE OR REPLACE TEMP TABLE t90 AS
        SELECT s, tenant_id, n FROM (
          SELECT s, tenant_id, sum(n) OVER d90 AS n FROM (
            SELECT NULL::BIGINT AS s, tenant_id, day, count(*) AS n FROM ev
            GROUP BY tenant_id, day
            UNION ALL SELECT s, tenant_id, "end" - 1, 0 FROM use_t)
          {frames("tenant_id")})
        WHERE s IS NOT NULL
        """
    )
    out["item"] = q(
        "item",
        f"""
        WITH w AS (SELECT s, tenant_id, item_id, count(id) OVER d30 AS cnt_30d,
                     count(id) OVER d90 AS cnt_90d, count(id) OVER y AS cnt_365d,
                     max(eday) OVER y AS last_day, avg(la) OVER y AS amt_mean,
                     coalesce(stddev_samp(la) OVER y, 0) AS amt_std,
                     count(DISTINCT employee_id) OVER d90 AS n_users_90d
              FROM (SELECT NULL::BIGINT AS s, tenant_id, item_id, day, day AS eday, id, la,
                           employee_id FROM ev
                    UNION ALL
                    SELECT s, tenant_id, item_id, "end" - 1, NULL, NULL, NULL, NULL
                    FROM use_i)
              {frames("item_id")})
        SELECT w.s, w.item_id AS a, w.cnt_30d, w.cnt_90d, w.cnt_365d,
               w.cnt_90d / greatest(coalesce(t90.n, 1), 1) AS share_90d,
               w.n_users_90d, w.last_day, w.amt_mean, w.amt_std
        FROM w LEFT JOIN t90 USING (s, tenant_id)
        WHERE w.s IS NOT NULL AND w.cnt_365d > 0
        """,
    )
    out["category"] = q(
        "category",
        f"""
        WITH w AS (SELECT s, tenant_id, category_id, count(id) OVER y AS n,
                     count(id) OVER d90 AS cnt_90d, avg(la) OVER y AS amt_mean,
                     coalesce(stddev_samp(la) OVER y, 0) AS amt_std
              FROM (SELECT NULL::BIGINT AS s, tenant_id, category_id, day, id, la FROM ev
                    UNION ALL
                    SELECT DISTINCT u.s, u.tenant_id, i.category_id, u."end" - 1, NULL, NULL
                    FROM use_t u JOIN titems i USING (tenant_id))
              {frames("category_id")})
        SELECT w.s, w.category_id AS a,
               w.cnt_90d / greatest(coalesce(t90.n, 1), 1) AS share_90d, w.amt_mean, w.amt_std
        FROM w LEFT JOIN t90 USING (s, tenant_id)
        WHERE w.s IS NOT NULL AND w.n > 0
        """,
    )
    for who, use, cond, short, whole in (
        ("employee_id", "use_e", "TRUE", "emp", "employee"),
        ("vendor_id", "use_v", "vendor_id >= 0", "vendor", "vendor"),
    ):
        events = f"(SELECT * FROM ev WHERE {cond} AND {who} IN (SELECT {who} FROM {use}))"
        out[f"{short}_item"] = q(
            f"{short}_item",
            f"""
            WITH x AS (SELECT NULL::BIGINT AS s, {who}, item_id, day, day AS eday, id
                       FROM {events}
                       UNION ALL
                       SELECT u.s, u.{who}, p.item_id, u."end" - 1, NULL, NULL
                       FROM {use} u JOIN (SELECT DISTINCT {who}, item_id FROM {events}) p
                       USING ({who})),
                 g AS (SELECT * FROM (
                         SELECT s, {who}, item_id, count(id) OVER y AS cnt_365d,
                                max(eday) OVER y AS last_day, max(id) OVER y AS last_id
                         FROM x {frames(f"{who}, item_id")})
                       WHERE s IS NOT NULL AND cnt_365d > 0)
            SELECT s, {who} AS a, item_id AS b, cnt_365d,
                   cnt_365d / sum(cnt_365d) OVER (PARTITION BY s, {who}) AS share_365d,
                   last_day,
                   row_number() OVER (PARTITION BY s, {who} ORDER BY last_id DESC)
                       AS recency_rank
            FROM g
            """,
        )
        out[whole] = q(
            whole,
            f"""
            SELECT s, a, cnt_365d FROM (
              SELECT s, {who} AS a, count(id) OVER y AS cnt_365d
              FROM (SELECT NULL::BIGINT AS s, {who}, day, id FROM {events}
                    UNION ALL SELECT s, {who}, "end" - 1, NULL FROM {use})
              {frames(who)})
            WHERE s IS NOT NULL AND cnt_365d > 0
            """,
        )
        out[f"{short}_cat"] = q(
            f"{short}_cat",
            f"""
            WITH x AS (SELECT NULL::BIGINT AS s, {who}, category_id, day, id FROM {events}
                       UNION ALL
                       SELECT u.s, u.{who}, p.category_id, u."end" - 1, NULL
                       FROM {use} u JOIN (SELECT DISTINCT {who}, category_id FROM {events}) p
                       USING ({who})),
                 g AS (SELECT * FROM (
                         SELECT s, {who}, category_id, count(id) OVER y AS n
                         FROM x {frames(f"{who}, category_id")})
                       WHERE s IS NOT NULL AND n > 0)
            SELECT s, {who} AS a, category_id AS b,
                   n / sum(n) OVER (PARTITION BY s, {who}) AS share_365d
            FROM g
            """,
        )
    t = time.perf_counter()
    vocab = _vocabulary(hdb, dates, first_end, last_end)
    log.info("snapshots: vocabulary in %.1fs", time.perf_counter() - t)
    # (tenant, term) x category counts of the window, and (tenant, term) x item of the last
    # TERM_ITEM_DAYS, for the looked-up terms
    run(
        """
        CREATE OR REPLACE TEMP TABLE tc_ev AS
        WITH want AS (SELECT DISTINCT tenant_id, term FROM use_term),
             dt AS (SELECT * FROM desc_term SEMI JOIN (SELECT DISTINCT term FROM want) USING (term))
        SELECT * FROM (
          SELECT e.tenant_id, t.term, e.category_id, e.item_id, e.day, e.id, TRUE AS desc_term
          FROM ev e JOIN dt t USING (did)
          UNION ALL
          SELECT tenant_id, chr(1) || 'i:' || industry, category_id, item_id, day, id, FALSE
          FROM ev WHERE industry <> ''
          UNION ALL
          SELECT tenant_id, chr(1) || 'd:' || department, category_id, item_id, day, id, FALSE
          FROM ev WHERE department <> '')
        SEMI JOIN want USING (tenant_id, term)
        """
    )
    for name, col, frame, cond in (
        ("term_cat", "category_id", "y", "TRUE"),
        ("term_item", "item_id", "dt", "desc_term"),
    ):
        out[name] = q(
            name,
            f"""
            WITH x AS (SELECT NULL::BIGINT AS s, tenant_id, term, {col}, day, id
                       FROM tc_ev WHERE {cond}
                       UNION ALL
                       SELECT u.s, u.tenant_id, u.term, p.{col}, u."end" - 1, NULL
                       FROM use_term u
                       JOIN (SELECT DISTINCT tenant_id, term, {col} FROM tc_ev WHERE {cond}) p
                       USING (tenant_id, term)),
                 g AS (SELECT * FROM (
                         SELECT s, tenant_id, term, {col}, count(id) OVER {frame} AS n
                         FROM x {frames(f"tenant_id, term, {col}")})
                       WHERE s IS NOT NULL AND n > 0)
            SELECT g.s, v.tid AS a, g.{col} AS b,
                   g.n / (sum(g.n) OVER (PARTITION BY g.s, g.tenant_id, g.term)
                          + {TERM_SMOOTHING}) AS share
            FROM g JOIN vocab v USING (s, term)
            """,
        )
    half_life = float(fs.EMP_TERM_HALF_LIFE_DAYS)
    out["emp_term"] = q(
        "emp_term",
        f"""
        WITH r AS (SELECT u.s, e.employee_id, e.item_id,
                          pow(0.5, (u."end" - e.day) / {half_life}) AS w
                   FROM use_e u JOIN ev e ON e.employee_id = u.employee_id
                    AND e.day < u."end" AND e.day >= u."end" - {fs.TERM_ITEM_DAYS}),
             tot AS (SELECT s, employee_id, sum(w) AS total FROM r GROUP BY s, employee_id),
             et AS (SELECT r.s, r.employee_id, it.term, sum(r.w) / any_value(tot.total) AS share
                    FROM r JOIN item_term it USING (item_id) JOIN tot USING (s, employee_id)
                    GROUP BY r.s, r.employee_id, it.term)
        SELECT et.s, et.employee_id AS a, v.tid AS b, et.share
        FROM et JOIN vocab v USING (s, term)
        """,
    )
    result = _split(dates, out, vocab)
    log.info(
        "%d snapshots in one windowed pass over %s expenses in %.1fs",
        len(dates),
        f"{hdb.con.sql('SELECT count(*) FROM ev').fetchall()[0][0]:,}",
        time.perf_counter() - t0,
    )
    return result


def _vocabulary(
    hdb: HistoryDB, dates: list[date], first_end: int, last_end: int
) -> list[list[str]]:
    """Per snapshot, the looked-up terms (its contexts' terms, its tenants' item terms) that
    the full snapshot's vocabulary holds: a description / industry / department term of any
    tenant's window, or an item term of an item expensed in the last ``TERM_ITEM_DAYS``. Also
    leaves ``vocab(s, term, tid)`` (tid = position in the snapshot's sorted terms)."""
    con = hdb.con
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE lookup_terms AS
        SELECT DISTINCT s, "end", term FROM (
          SELECT s, "end", term FROM use_term
          UNION ALL
          SELECT u.s, u."end", it.term FROM use_i u JOIN item_term it USING (item_id))
        """
    )
    # every tenant's expenses: the published vocabulary is that of the whole snapshot
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE members AS
        WITH want AS (SELECT DISTINCT term FROM lookup_terms),
             src AS (SELECT did, industry, department, item_id, day FROM exp
                     WHERE day < {last_end} AND day >= {first_end - WINDOW_DAYS}),
             dt AS (SELECT * FROM desc_term SEMI JOIN want USING (term)),
             itw AS (SELECT * FROM item_term SEMI JOIN want USING (term)),
             ev_terms AS (
               SELECT DISTINCT term, day, ctx FROM (
                 SELECT dt.term, src.day, TRUE AS ctx FROM src JOIN dt USING (did)
                 UNION ALL
                 SELECT chr(1) || 'i:' || industry, day, TRUE FROM src WHERE industry <> ''
                 UNION ALL
                 SELECT chr(1) || 'd:' || department, day, TRUE FROM src WHERE department <> ''
                 UNION ALL
                 SELECT itw.term, src.day, FALSE FROM src JOIN itw USING (item_id)
                 WHERE src.day >= {first_end - fs.TERM_ITEM_DAYS})
               SEMI JOIN want USING (term))
        SELECT s, term FROM (
          SELECT s, term, count(c) OVER y + count(i) OVER dt AS n FROM (
            SELECT NULL::BIGINT AS s, term, day, CASE WHEN ctx THEN 1 END AS c,
                   CASE WHEN NOT ctx THEN 1 END AS i FROM ev_terms
            UNION ALL SELECT s, term, "end" - 1, NULL, NULL FROM lookup_terms)
          WINDOW y AS {_frame("term", WINDOW_DAYS)}, dt AS {_frame("term", fs.TERM_ITEM_DAYS)})
        WHERE s IS NOT NULL AND n > 0
        """
    )
    got = con.sql("SELECT s, term FROM members").to_arrow_table()
    per: list[list[str]] = [[] for _ in dates]
    for k, term in zip(got.column("s").to_pylist(), got.column("term").to_pylist(), strict=True):
        per[int(k)].append(str(term))
    s_col: list[int] = []
    t_col: list[str] = []
    id_col: list[int] = []
    for k, terms in enumerate(per):
        terms.sort()
        s_col.extend([k] * len(terms))
        t_col.extend(terms)
        id_col.extend(range(len(terms)))
    con.register(
        "vocab_in",
        pa.table(
            {
                "s": pa.array(s_col, pa.int64()),
                "term": pa.array(t_col, pa.string()),
                "tid": pa.array(id_col, pa.int64()),
            }
        ),
    )
    con.execute("CREATE OR REPLACE TEMP TABLE vocab AS SELECT * FROM vocab_in")
    con.unregister("vocab_in")
    return per


def _split(
    dates: list[date], out: dict[str, dict[str, np.ndarray]], vocab: list[list[str]]
) -> dict[date, fs.FeatureTables]:
    """Per-snapshot ``FeatureTables`` from the tables of every snapshot (their ``s`` column)."""
    per: list[dict[str, dict[str, np.ndarray]]] = [{} for _ in dates]
    for name, cols in out.items():
        s = cols.pop("s").astype(np.int64)
        order = np.argsort(s, kind="stable")
        bounds = np.searchsorted(s[order], np.arange(len(dates) + 1))
        for k in range(len(dates)):
            take = order[bounds[k] : bounds[k + 1]]
            per[k][name] = {c: v[take] for c, v in cols.items()}
    return {d: fs.FeatureTables.from_arrays(d, per[k], vocab[k]) for k, d in enumerate(dates)}
