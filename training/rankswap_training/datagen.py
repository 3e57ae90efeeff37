"""Synthetic product data with a hidden ground truth (``rankswap datagen``).

The world: tenants with their own item catalogues (Japanese and/or English names; items per
template, per department or per project, so catalogues range from a few dozen to 1,000+ items),
employees in departments, vendors in industries, and an expense history. How an expense's item
is chosen (the hidden process the ranker has to learn):

1. the employee picks an expense *template* from personal habits (a Dirichlet draw around the
   department's category affinities);
2. the vendor follows from the template (industries where it is bought) and the employee's
   favourite vendors;
3. the item is the tenant's instance of that template for the employee's department / current
   project (or the plain item), with a little noise (4 % another item of the tenant);
4. items get *successors* over time (renamed / re-organised items, e.g. "タクシー代（新）"); from
   the successor's creation on, 92 % of uses move to it; project tenants open new projects over
   time, whose items employees moving to the project adopt at once;
5. the description holds template keywords (plus places, fillers, the vendor name); the amount
   is log-normal around the item's typical amount.

Everything is generated with numpy from one seed (same seed, same world); loops run over
tenants, templates and projects only, never over expenses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import insert

from rankswap.productdb import ProductDB, schema
from rankswap_training import arrowread, enrich, vocab

log = logging.getLogger(__name__)

DEFAULT_END = date(2026, 6, 30)
DEFAULT_DAYS = 400
SUCCESSOR_ADOPTION = 0.92
NOISE = 0.04


@dataclass(frozen=True, slots=True)
class TenantProfile:
    lang: str  # "ja", "en", "mixed"
    granularity: str  # "none", "department", "project"
    employees: int
    template_fraction: float
    initial_projects: int = 0
    project_every_days: float = 0.0


PROFILES: tuple[TenantProfile, ...] = (
    TenantProfile("ja", "project", 150, 1.0, initial_projects=16, project_every_days=22.0),
    TenantProfile("ja", "department", 70, 0.9),
    TenantProfile("en", "none", 22, 0.7),
    TenantProfile("ja", "none", 12, 0.6),
    TenantProfile("en", "department", 40, 0.8),
    TenantProfile("mixed", "project", 80, 0.8, initial_projects=8, project_every_days=35.0),
)


@dataclass(frozen=True, slots=True)
class WorldConfig:
    seed: int = 7
    tenants: int = 6
    days: int = DEFAULT_DAYS
    end: date = DEFAULT_END
    scale: float = 1.0
    """Multiplies employees (and so expenses) and projects; tests use a small scale."""
    expenses_per_employee_day: float = 0.35
    enrich: bool = False
    """Add what real tenants do on top of the default world (``datagen --enrich``; off by
    default, so the default world is unchanged): items split into variants that differ only by a
    qualifier, descriptions that type words of the item's name, vendors named after items."""

    @property
    def start(self) -> date:
        return self.end - timedelta(days=self.days - 1)


@dataclass(slots=True)
class World:
    """The generated tables (as DataFrames, product DB column names) plus hidden truth."""

    tenants: pd.DataFrame
    categories: pd.DataFrame
    items: pd.DataFrame
    employees: pd.DataFrame
    vendors: pd.DataFrame
    expenses: pd.DataFrame
    truth: dict[str, Any] = field(default_factory=dict)

    def frames(self) -> dict[str, pd.DataFrame]:
        return {
            "tenants": self.tenants,
            "categories": self.categories,
            "items": self.items,
            "employees": self.employees,
            "vendors": self.vendors,
            "expenses": self.expenses,
        }


@dataclass
class _Ids:
    category: int = 1
    item: int = 1
    employee: int = 1
    vendor: int = 1


def generate_world(cfg: WorldConfig) -> World:
    """Generate the whole world for ``cfg`` (pure: no I/O; deterministic in ``cfg.seed``)."""
    parts: dict[str, list[pd.DataFrame]] = {
        k: [] for k in ("tenants", "categories", "items", "employees", "vendors", "expenses")
    }
    for part in _tenant_frames(cfg):
        for k, v in part.frames().items():
            parts[k].append(v)
    out = {k: pd.concat(v, ignore_index=True) for k, v in parts.items()}
    exp = out["expenses"].sort_values(["expense_date", "created_at"], kind="stable")
    if cfg.enrich:
        # its own stream, drawn after the default world: the default draws stay as they were
        enrich.enrich(cfg, out, exp, np.random.default_rng([cfg.seed, 12]))
        exp = exp.sort_values(["expense_date", "created_at"], kind="stable")
    exp.insert(0, "id", np.arange(1, len(exp) + 1, dtype=np.int64))
    return World(
        tenants=out["tenants"],
        categories=out["categories"],
        items=out["items"],
        employees=out["employees"],
        vendors=out["vendors"],
        expenses=exp.reset_index(drop=True),
    )


def stream_world(cfg: WorldConfig) -> Iterator[dict[str, pd.DataFrame]]:
    """The tables of ``generate_world(cfg)``, one tenant at a time, for worlds too large to hold
    at once (10 M expenses): the same rows with the same ids, in tenant order.

    Expense ids number all expenses by (date, filing time) across tenants, so a first pass
    draws every tenant and keeps only those two keys (16 bytes per expense); the second pass
    draws each tenant again (same seed, same draws) and yields it with its ids. The enriched
    world edits the whole world at once and is not streamed."""
    if cfg.enrich:
        raise ValueError("the enriched world is generated whole (generate_world), not streamed")
    day_parts: list[npt.NDArray[np.int64]] = []
    sec_parts: list[npt.NDArray[np.int64]] = []
    t0 = last = time.perf_counter()
    for k, part in enumerate(_tenant_frames(cfg), 1):
        day_parts.append(part.expenses.day.astype(np.int64))
        sec_parts.append(part.expenses.created.astype(np.int64))
        if time.perf_counter() - last >= 10.0 or k == cfg.tenants:
            last = time.perf_counter()
            n = sum(len(p) for p in day_parts)
            log.info(
                "datagen pass 1 (expense ids): %d/%d tenants, %s expenses (%s expenses/s)",
                k,
                cfg.tenants,
                f"{n:,}",
                f"{n / max(last - t0, 1e-9):,.0f}",
            )
    day, sec = np.concatenate(day_parts), np.concatenate(sec_parts)
    ids = np.empty(len(day), dtype=np.int64)
    ids[np.lexsort((sec, day))] = np.arange(1, len(day) + 1, dtype=np.int64)  # stable
    del day_parts, sec_parts, day, sec
    offset = 0
    for part in _tenant_frames(cfg):
        frames = part.frames()
        exp = frames["expenses"]
        exp.insert(0, "id", ids[offset : offset + len(exp)])
        offset += len(exp)
        yield frames


def _tenant_frames(cfg: WorldConfig) -> Iterator[_TenantPart]:
    """Each tenant's tables in tenant order (ids continue across tenants); its expenses as
    draws, made into a table only when asked (``stream_world``'s first pass needs only their
    dates and filing times)."""
    if cfg.tenants < 1 or cfg.days < 7:
        raise ValueError("need at least 1 tenant and 7 days")
    rng = np.random.default_rng(cfg.seed)
    ids = _Ids()
    for t in range(cfg.tenants):
        profile = PROFILES[t % len(PROFILES)]
        if t >= len(PROFILES):  # later cycles: smaller copies
            profile = TenantProfile(
                profile.lang,
                profile.granularity,
                max(4, profile.employees // 3),
                profile.template_fraction * 0.8,
                max(2, profile.initial_projects // 2),
                profile.project_every_days * 2,
            )
        tenant_rng = np.random.default_rng(rng.integers(2**63))
        yield _tenant(cfg, t, profile, tenant_rng, ids)


@dataclass(frozen=True, slots=True)
class _TenantPart:
    tables: dict[str, pd.DataFrame]
    """Every table but the expenses."""
    expenses: _ExpenseDraws

    def frames(self) -> dict[str, pd.DataFrame]:
        return {**self.tables, "expenses": self.expenses.frame()}


def _tenant(
    cfg: WorldConfig, t: int, prof: TenantProfile, rng: np.random.Generator, ids: _Ids
) -> _TenantPart:
    """One tenant's tables. The steps draw from ``rng`` in this order (same seed, same world)."""
    tenant_id = f"t{t + 1:03d}"
    lang_of = _lang_picker(prof.lang, rng)
    cat = _templates(tenant_id, prof, rng, ids)
    var = _variants(cfg, prof, rng)
    items = _items(cfg, tenant_id, prof, cat, var, rng, lang_of, ids)
    staff = _employees(cfg, tenant_id, prof, cat, var, rng, lang_of, ids)
    vendors = _vendors(tenant_id, cat, staff, rng, ids)
    expenses = _expenses(cfg, tenant_id, prof, cat, var, items, staff, vendors, rng)
    tenants = pd.DataFrame(
        {
            "id": [tenant_id],
            "name": [f"テナント{t + 1}" if prof.lang != "en" else f"Tenant {t + 1}"],
            "created_at": [_start(cfg) - timedelta(days=900)],
        }
    )
    tables = {
        "tenants": tenants,
        "categories": cat.frame,
        "items": items.frame,
        "employees": staff.frame,
        "vendors": vendors.frame,
    }
    return _TenantPart(tables, expenses)


def _start(cfg: WorldConfig) -> datetime:
    return datetime.combine(cfg.start, datetime.min.time())


@dataclass(frozen=True, slots=True)
class _Templates:
    """The expense templates a tenant uses (indexes into ``vocab.TEMPLATES``), their
    categories, and the tenant's category table."""

    tmpl: npt.NDArray[np.int64]
    tmpl_cat: npt.NDArray[np.str_]
    cat_lang: str
    cat_id_of: dict[str, int]
    frame: pd.DataFrame


def _templates(
    tenant_id: str, prof: TenantProfile, rng: np.random.Generator, ids: _Ids
) -> _Templates:
    n_tmpl = max(5, round(len(vocab.TEMPLATES) * prof.template_fraction))
    tmpl = np.sort(rng.choice(len(vocab.TEMPLATES), size=n_tmpl, replace=False))
    tmpl_cat = np.array([vocab.TEMPLATES[i].category for i in tmpl])
    cat_used = np.unique(tmpl_cat)
    cat_lang = "en" if prof.lang == "en" else "ja"
    cat_ids = np.arange(ids.category, ids.category + len(cat_used))
    ids.category += len(cat_used)
    frame = pd.DataFrame(
        {
            "id": cat_ids,
            "tenant_id": tenant_id,
            "name": [getattr(vocab.CATEGORIES[c], cat_lang) for c in cat_used],
            "account_code": [vocab.CATEGORIES[c].account_code for c in cat_used],
        }
    )
    cat_id_of = dict(zip(cat_used.tolist(), cat_ids.tolist(), strict=True))
    return _Templates(tmpl, tmpl_cat, cat_lang, cat_id_of, frame)


@dataclass(frozen=True, slots=True)
class _Variants:
    """Departments, and the variants of each template's item: one per department, one per
    project (created over time), or a single plain item."""

    depts: npt.NDArray[np.int64]
    n_var: int
    var_created: npt.NDArray[np.int64]
    """Day each variant appears (-1: before the history)."""
    proj_start: npt.NDArray[np.int64]


def _variants(cfg: WorldConfig, prof: TenantProfile, rng: np.random.Generator) -> _Variants:
    n_dept = int(rng.integers(4, len(vocab.DEPARTMENTS) + 1))
    depts = np.sort(rng.choice(len(vocab.DEPARTMENTS), size=n_dept, replace=False))
    scale = cfg.scale
    proj_start = np.empty(0, dtype=np.int64)
    if prof.granularity == "project":
        n0 = max(2, round(prof.initial_projects * max(scale, 0.25)))
        gaps = rng.exponential(prof.project_every_days / max(scale, 0.25), size=200)
        new_days = np.cumsum(gaps)
        new_days = new_days[new_days < cfg.days].astype(np.int64)
        proj_start = np.concatenate([np.full(n0, -1, dtype=np.int64), new_days])
        n_var = len(proj_start)
        var_created = proj_start
    elif prof.granularity == "department":
        n_var = n_dept
        var_created = np.full(n_var, -1, dtype=np.int64)
    else:
        n_var = 1
        var_created = np.full(1, -1, dtype=np.int64)
    return _Variants(depts, n_var, var_created, proj_start)


@dataclass(frozen=True, slots=True)
class _Items:
    """The catalogue: base items (template x variant) then successors, in one row order."""

    frame: pd.DataFrame
    successor: npt.NDArray[np.int64]
    """Base row -> its successor's row (-1: none)."""
    tmpl_row: npt.NDArray[np.int64]
    """Row -> index into the tenant's templates."""
    created: npt.NDArray[np.float64]
    """Row -> creation day (offset from the start; negative: before the history)."""
    ids: npt.NDArray[np.int64]
    factor: npt.NDArray[np.float64]
    """Row -> the item's amount factor."""


def _items(
    cfg: WorldConfig,
    tenant_id: str,
    prof: TenantProfile,
    cat: _Templates,
    var: _Variants,
    rng: np.random.Generator,
    lang_of: Any,
    ids: _Ids,
) -> _Items:
    n_tmpl = len(cat.tmpl)
    tv_t = np.repeat(np.arange(n_tmpl), var.n_var)
    tv_v = np.tile(np.arange(var.n_var), n_tmpl)
    n_base = len(tv_t)
    base_ids = np.arange(ids.item, ids.item + n_base)
    ids.item += n_base
    created_day = var.var_created[tv_v].astype(np.float64)
    old = created_day < 0
    created_day[old] = -rng.uniform(20, 800, size=int(old.sum()))
    created_day[~old] -= rng.uniform(0, 1, size=int((~old).sum()))  # the day before
    item_lang = lang_of(n_base)
    names = [
        _item_name(cat.tmpl[tv_t[k]], str(item_lang[k]), int(tv_v[k]), prof, var)
        for k in range(n_base)
    ]
    item_factor = np.exp(rng.normal(0.0, 0.25, size=n_base))

    # successors: a share of the items gets one, created during the history
    n_succ = max(1, round(0.07 * n_base)) if prof.granularity != "project" else max(1, n_base // 25)
    succ_of = rng.choice(n_base, size=n_succ, replace=False)
    succ_day = rng.uniform(20, cfg.days, size=n_succ)
    succ_day = np.maximum(succ_day, created_day[succ_of] + 15)
    keep = succ_day < cfg.days
    succ_of, succ_day = succ_of[keep], succ_day[keep]
    n_succ = len(succ_of)
    succ_ids = np.arange(ids.item, ids.item + n_succ)
    ids.item += n_succ
    suffix_ja = rng.choice(vocab.SUCCESSOR_SUFFIX_JA, size=n_succ)
    suffix_en = rng.choice(vocab.SUCCESSOR_SUFFIX_EN, size=n_succ)
    succ_names = [
        names[j] + (suffix_ja[i] if item_lang[j] == "ja" else suffix_en[i])
        for i, j in enumerate(succ_of)
    ]
    successor = np.full(n_base, -1, dtype=np.int64)
    successor[succ_of] = n_base + np.arange(n_succ)

    all_tmpl = np.concatenate([tv_t, tv_t[succ_of]])
    all_created = np.concatenate([created_day, succ_day])
    all_ids = np.concatenate([base_ids, succ_ids])
    active = np.ones(len(all_ids), dtype=bool)
    active[succ_of[rng.random(n_succ) < 0.5]] = False  # half the replaced items get retired
    acct = np.array([vocab.CATEGORIES[c].account_code for c in cat.tmpl_cat[all_tmpl]])
    frame = pd.DataFrame(
        {
            "id": all_ids,
            "tenant_id": tenant_id,
            "code": [f"{a}-{i:05d}" for i, a in enumerate(acct)],
            "name": names + succ_names,
            "category_id": [cat.cat_id_of[c] for c in cat.tmpl_cat[all_tmpl].tolist()],
            "created_at": _to_datetimes(_start(cfg), all_created),
            "active": active,
        }
    )
    return _Items(
        frame=frame,
        successor=successor,
        tmpl_row=all_tmpl,
        created=all_created,
        ids=all_ids,
        factor=np.concatenate([item_factor, item_factor[succ_of]]),
    )


def _item_name(template: int, lang: str, variant: int, prof: TenantProfile, var: _Variants) -> str:
    tp = vocab.TEMPLATES[template]
    base = tp.ja if lang == "ja" else tp.en
    if prof.granularity == "department":
        dept = vocab.DEPARTMENTS[var.depts[variant]]
        return f"{base}（{dept[0]}）" if lang == "ja" else f"{base} - {dept[1]}"
    if prof.granularity == "project":
        return f"PJ-{101 + variant:04d} {base}"
    return base


@dataclass(frozen=True, slots=True)
class _Staff:
    """Employees, their departments, start days, filing rates, languages and habits."""

    frame: pd.DataFrame
    ids: npt.NDArray[np.int64]
    dept: npt.NDArray[np.int64]
    """Employee -> index into the tenant's departments."""
    start: npt.NDArray[np.float64]
    rate: npt.NDArray[np.float64]
    lang: npt.NDArray[np.str_]
    habits: npt.NDArray[np.float64]
    """[E, T]: each employee's distribution over the tenant's templates."""


def _employees(
    cfg: WorldConfig,
    tenant_id: str,
    prof: TenantProfile,
    cat: _Templates,
    var: _Variants,
    rng: np.random.Generator,
    lang_of: Any,
    ids: _Ids,
) -> _Staff:
    n_emp = max(3, round(prof.employees * cfg.scale))
    emp_ids = np.arange(ids.employee, ids.employee + n_emp)
    ids.employee += n_emp
    emp_dept = rng.choice(len(var.depts), size=n_emp)
    emp_start = np.where(rng.random(n_emp) < 0.12, rng.uniform(30, cfg.days, n_emp), -1.0)
    emp_rate = rng.gamma(2.0, 0.5, size=n_emp)
    emp_lang = lang_of(n_emp)
    frame = pd.DataFrame(
        {
            "id": emp_ids,
            "tenant_id": tenant_id,
            "name": [
                f"社員{i:05d}" if lg == "ja" else f"Employee {i:05d}"
                for i, lg in zip(emp_ids, emp_lang, strict=True)
            ],
            "department": [
                vocab.DEPARTMENTS[var.depts[d]][0 if cat.cat_lang == "ja" else 1] for d in emp_dept
            ],
        }
    )
    # habits: employee x template distribution around the department's affinities
    aff = np.array(vocab.DEPT_CATEGORY_AFFINITY)[var.depts[emp_dept]][:, cat.tmpl_cat]  # [E, T]
    popularity = np.exp(rng.normal(0, 0.7, size=len(cat.tmpl)))
    habits = rng.gamma(0.6 * aff * popularity + 0.02)
    habits /= habits.sum(axis=1, keepdims=True)
    return _Staff(frame, emp_ids, emp_dept, emp_start, emp_rate, emp_lang, habits)


@dataclass(frozen=True, slots=True)
class _Vendors:
    """Vendors, and the weights that pick one for an expense."""

    frame: pd.DataFrame
    ids: npt.NDArray[np.int64]
    names: npt.NDArray[np.object_]
    tmpl_ven: npt.NDArray[np.float64]
    """[T, V]: how much each template is bought from each vendor."""
    emp_ven: npt.NDArray[np.float64]
    """[E, V]: personal favourites."""


def _vendors(
    tenant_id: str, cat: _Templates, staff: _Staff, rng: np.random.Generator, ids: _Ids
) -> _Vendors:
    """For each industry the tenant's templates use, one to four vendors."""
    industries = sorted({ind for i in cat.tmpl for ind, _ in vocab.TEMPLATES[i].industries})
    v_names: list[str] = []
    v_ind: list[str] = []
    for ind in industries:
        pool = vocab.VENDORS[ind]
        k = int(rng.integers(1, min(4, len(pool)) + 1))
        for j in rng.choice(len(pool), size=k, replace=False):
            v_names.append(pool[j])
            v_ind.append(ind)
    n_ven = len(v_names)
    ven_ids = np.arange(ids.vendor, ids.vendor + n_ven)
    ids.vendor += n_ven
    frame = pd.DataFrame(
        {"id": ven_ids, "tenant_id": tenant_id, "name": v_names, "industry": v_ind}
    )
    ind_index = {ind: j for j, ind in enumerate(industries)}
    tmpl_ind = np.zeros((len(cat.tmpl), len(industries)))
    for a, i in enumerate(cat.tmpl):
        for ind, w in vocab.TEMPLATES[i].industries:
            tmpl_ind[a, ind_index[ind]] = w
    ven_ind = np.array([ind_index[x] for x in v_ind])
    tmpl_ven = tmpl_ind[:, ven_ind] * np.exp(rng.normal(0, 0.5, size=n_ven))
    emp_ven = rng.gamma(0.7, size=(len(staff.ids), n_ven))
    return _Vendors(frame, ven_ids, np.asarray(v_names, dtype=object), tmpl_ven, emp_ven)


def _expenses(
    cfg: WorldConfig,
    tenant_id: str,
    prof: TenantProfile,
    cat: _Templates,
    var: _Variants,
    items: _Items,
    staff: _Staff,
    vendors: _Vendors,
    rng: np.random.Generator,
) -> _ExpenseDraws:
    """The history: who files when, the template, the vendor, the item (with successors and
    noise), the amount and the description (the module docstring's hidden process)."""
    days = cfg.days
    n_emp = len(staff.ids)
    n_exp = int(rng.poisson(cfg.expenses_per_employee_day * n_emp * days))
    day_w = np.where((np.arange(days) + cfg.start.weekday()) % 7 >= 5, 0.2, 1.0)
    day_w = day_w * np.linspace(0.85, 1.15, days)
    e_all = rng.choice(n_emp, size=n_exp, p=staff.rate / staff.rate.sum())
    d_all = rng.choice(days, size=n_exp, p=day_w / day_w.sum())
    ok = d_all >= staff.start[e_all]
    e: npt.NDArray[np.int64] = e_all[ok].astype(np.int64)
    d: npt.NDArray[np.int64] = d_all[ok].astype(np.int64)
    n_exp = len(e)
    tt = _sample_rows(staff.habits, e, rng)  # template per expense
    vw = vendors.tmpl_ven[tt] * vendors.emp_ven[e]
    vv = _sample_rows(vw / vw.sum(axis=1, keepdims=True), np.arange(n_exp), rng)

    if prof.granularity == "department":
        variant = staff.dept[e]
    elif prof.granularity == "project":
        variant = _current_project(rng, n_emp, var.proj_start, e, d)
    else:
        variant = np.zeros(n_exp, dtype=np.int64)
    row = tt * var.n_var + variant  # base item row
    nxt = items.successor[row]
    switch = (nxt >= 0) & (rng.random(n_exp) < SUCCESSOR_ADOPTION)
    switch &= items.created[np.maximum(nxt, 0)] <= d
    row = np.where(switch, nxt, row)
    noise = rng.random(n_exp) < NOISE
    other = rng.integers(0, len(items.ids), size=n_exp)
    noise &= items.created[other] <= d
    row = np.where(noise, other, row)
    tt_final = items.tmpl_row[row]

    tp_amount = np.array([vocab.TEMPLATES[i].amount for i in cat.tmpl])
    price = float(np.exp(rng.normal(0, 0.15)))
    mean = tp_amount[tt_final] * items.factor[row] * price
    amount = np.round(mean * np.exp(rng.normal(0, 0.35, size=n_exp)))
    amount = np.maximum(amount, 10.0)

    desc = _description_draws(rng, cat.tmpl[tt_final], staff.lang[e], vendors.names[vv])
    no_vendor = rng.random(n_exp) < 0.03  # sometimes no vendor is entered
    exp_dates = np.datetime64(cfg.start) + d.astype("timedelta64[D]")
    created = exp_dates.astype("datetime64[s]") + rng.integers(8 * 3600, 22 * 3600, n_exp).astype(
        "timedelta64[s]"
    )
    return _ExpenseDraws(
        tenant_id=tenant_id,
        employee_id=staff.ids[e],
        vendor_id=vendors.ids[vv],
        no_vendor=no_vendor,
        description=desc,
        amount=amount,
        day=exp_dates.astype("datetime64[D]"),
        item_id=items.ids[row],
        created=created,
    )


@dataclass(frozen=True, slots=True)
class _ExpenseDraws:
    """One tenant's expenses as drawn (numpy columns); ``frame()`` makes the table."""

    tenant_id: str
    employee_id: npt.NDArray[np.int64]
    vendor_id: npt.NDArray[np.int64]
    no_vendor: npt.NDArray[np.bool_]
    description: _DescriptionDraws
    amount: npt.NDArray[np.float64]
    day: npt.NDArray[np.datetime64]
    item_id: npt.NDArray[np.int64]
    created: npt.NDArray[np.datetime64]
    """Filing time, to the second."""

    def frame(self) -> pd.DataFrame:
        vendor_id = np.empty(len(self.vendor_id), dtype=object)
        vendor_id[:] = self.vendor_id.tolist()
        vendor_id[self.no_vendor] = None
        return pd.DataFrame(
            {
                "tenant_id": self.tenant_id,
                "employee_id": self.employee_id,
                "vendor_id": pd.Series(vendor_id, dtype=object),
                "description": self.description.text(),
                "amount": self.amount,
                "expense_date": self.day.astype(object),
                "item_id": self.item_id,
                "created_at": self.created.astype("datetime64[us]"),
            }
        )


def _lang_picker(lang: str, rng: np.random.Generator) -> Any:
    def pick(n: int) -> npt.NDArray[np.str_]:
        if lang == "mixed":
            return np.where(rng.random(n) < 0.5, "ja", "en")
        return np.full(n, lang)

    return pick


def _sample_rows(
    probs: npt.NDArray[np.float64], rows: npt.NDArray[np.int64], rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """One categorical draw per entry of ``rows`` from the distribution ``probs[row]``."""
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(len(rows)) * cdf[rows, -1]
    idx: npt.NDArray[np.int64] = (cdf[rows] < u[:, None]).sum(axis=1).astype(np.int64)
    out: npt.NDArray[np.int64] = np.minimum(idx, probs.shape[1] - 1)
    return out


def _current_project(
    rng: np.random.Generator,
    n_emp: int,
    proj_start: npt.NDArray[np.int64],
    e: npt.NDArray[np.int64],
    d: npt.NDArray[np.int64],
) -> npt.NDArray[np.int64]:
    """Each employee's project on each expense day: everyone starts on an initial project; each
    new project takes a share of the employees from its start day on."""
    initial = np.flatnonzero(proj_start < 0)
    a_emp = [np.arange(n_emp)]
    a_day = [np.full(n_emp, -1)]
    a_proj = [rng.choice(initial, size=n_emp)]
    for p in np.flatnonzero(proj_start >= 0):
        k = max(1, round(n_emp * rng.uniform(0.06, 0.14)))
        members = rng.choice(n_emp, size=k, replace=False)
        a_emp.append(members)
        a_day.append(np.full(k, proj_start[p]))
        a_proj.append(np.full(k, p))
    emp = np.concatenate(a_emp)
    day = np.concatenate(a_day).astype(np.int64)
    proj = np.concatenate(a_proj)
    key = emp.astype(np.int64) * 1_000_000 + (day + 1)
    order = np.argsort(key)
    key, proj = key[order], proj[order]
    q = e.astype(np.int64) * 1_000_000 + (d + 1)
    pos = np.searchsorted(key, q, side="right") - 1
    return proj[pos].astype(np.int64)


@dataclass(frozen=True, slots=True)
class _DescriptionDraws:
    """The random choices of a description (``text()`` joins the words): keywords of the
    template, a place, a filler, the vendor's name."""

    lang_ja: npt.NDArray[np.bool_]
    vendor_names: npt.NDArray[np.object_]
    r: tuple[npt.NDArray[np.float64], ...]
    """Four uniforms per expense: two keywords, a place, a filler, the vendor's name."""
    keywords: list[
        tuple[
            npt.NDArray[np.intp],
            npt.NDArray[np.object_],
            npt.NDArray[np.int64],
            npt.NDArray[np.int64],
        ]
    ]
    """Per (template, language): the expenses, the keywords, the first and second picks."""
    place: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]
    filler: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]

    def text(self) -> npt.NDArray[np.object_]:
        n = len(self.lang_ja)
        r1, r2, r3, r4 = self.r
        out = np.empty(n, dtype=object)
        out[:] = ""
        for where, kws, first_k, second_k in self.keywords:
            first = kws[first_k]
            out[where] = np.where(r1[where] < 0.55, first + " " + kws[second_k], first)
        is_ja = self.lang_ja
        places = np.where(is_ja, _PLACES_JA[self.place[0]], _PLACES_EN[self.place[1]])
        filler = np.where(is_ja, _FILLER_JA[self.filler[0]], _FILLER_EN[self.filler[1]])
        out = np.where(r2 < 0.3, out + " " + places, out)
        out = np.where(r3 < 0.35, filler + " " + out, out)
        out = np.where(r4 < 0.15, out + " " + self.vendor_names, out)
        return out


_PLACES_JA = np.asarray(vocab.PLACES_JA, dtype=object)
_PLACES_EN = np.asarray(vocab.PLACES_EN, dtype=object)
_FILLER_JA = np.asarray(vocab.FILLER_JA, dtype=object)
_FILLER_EN = np.asarray(vocab.FILLER_EN, dtype=object)


def _description_draws(
    rng: np.random.Generator,
    tmpl: npt.NDArray[np.int64],
    lang: npt.NDArray[np.str_],
    vendor_names: npt.NDArray[np.object_],
) -> _DescriptionDraws:
    """The draws of the descriptions, in the order the world's seed fixes (``choice`` of an
    index draws as ``choice`` of the list it indexes)."""
    n = len(tmpl)
    is_ja = lang == "ja"
    r = tuple(rng.random(n) for _ in range(4))
    keywords = []
    for i in np.unique(tmpl):
        tp = vocab.TEMPLATES[i]
        for ja in (True, False):
            where = np.flatnonzero((tmpl == i) & (is_ja == ja))
            if not len(where):
                continue
            kws = np.asarray(tp.kw_ja if ja else tp.kw_en, dtype=object)
            k = len(where)
            first = rng.integers(0, len(kws), size=k)
            second = rng.integers(0, len(kws), size=k)
            keywords.append((where, kws, first, second))
    place = (rng.choice(len(_PLACES_JA), n), rng.choice(len(_PLACES_EN), n))
    filler = (rng.choice(len(_FILLER_JA), n), rng.choice(len(_FILLER_EN), n))
    return _DescriptionDraws(is_ja, vendor_names, r, keywords, place, filler)


def _to_datetimes(start: datetime, day_offsets: npt.NDArray[np.float64]) -> list[datetime]:
    secs = np.round(day_offsets * 86400).astype(np.int64)
    base = np.datetime64(start, "s")
    return list(pd.to_datetime(base + secs.astype("timedelta64[s]")).to_pydatetime())


def write_world(db: ProductDB, world: World) -> dict[str, int]:
    """Replace the product DB's rankswap tables with ``world``; returns row counts."""
    db.create_schema(drop_existing=True)
    counts: dict[str, int] = {}
    for name, frame in world.frames().items():
        t0 = time.perf_counter()
        rows = _records(frame)
        db.bulk_insert(name, rows)
        counts[name] = len(rows)
        log.info("inserted %d %s in %.1fs", len(rows), name, time.perf_counter() - t0)
    db.sync_sequences()
    return counts


def write_world_streaming(
    db: ProductDB, cfg: WorldConfig, *, progress_every_s: float = 10.0
) -> dict[str, int]:
    """Replace the product DB's tables with the world of ``cfg``, one tenant at a time
    (``stream_world``): memory holds one tenant, not the world. The rows are those
    ``write_world(db, generate_world(cfg))`` writes. Each tenant's tables go in as Arrow
    tables through ADBC (``arrowread.appender``: no Python object per value), with SQLite's
    columns in SQLAlchemy's own text formats for dates and times, and SQLite's expenses
    through a temporary table (``_STAGED``); databases without an ADBC driver get
    SQLAlchemy's executemany per tenant. The expense indexes are built once at the
    end (maintaining them row by row cost ~2.7x the inserts). Logs a progress line (expenses
    written, rate) at most every ``progress_every_s``."""
    db.create_schema(drop_existing=True)
    names = ("tenants", "categories", "items", "employees", "vendors", "expenses")
    counts = dict.fromkeys(names, 0)
    t0 = last = time.perf_counter()
    with db.engine.begin() as conn:
        for index in schema.expenses.indexes:
            index.drop(conn)

    def written(frames: dict[str, pd.DataFrame]) -> None:
        nonlocal last
        for name, frame in frames.items():
            counts[name] += len(frame)
        now = time.perf_counter()
        if now - last >= progress_every_s:
            last = now
            log.info(
                "datagen: %s tenants, %s expenses written (%s expenses/s since the start)",
                f"{counts['tenants']:,}",
                f"{counts['expenses']:,}",
                f"{counts['expenses'] / (now - t0):,.0f}",
            )

    if db.dialect in ("sqlite", "postgresql"):
        with arrowread.appender(db) as out:
            _append_world(out, db.dialect, cfg, written)
    else:
        for frames in stream_world(cfg):
            with db.engine.begin() as conn:
                for name, frame in frames.items():
                    if len(frame):
                        conn.execute(insert(schema.metadata.tables[name]), _records(frame))
            written(frames)
    t1 = time.perf_counter()
    with db.engine.begin() as conn:
        for index in schema.expenses.indexes:
            index.create(conn)
    log.info("datagen: expense indexes built in %.1fs", time.perf_counter() - t1)
    db.sync_sequences()
    took = time.perf_counter() - t0
    log.info(
        "datagen: %s expenses written in %.1fs (%s expenses/s)",
        f"{counts['expenses']:,}",
        took,
        f"{counts['expenses'] / max(took, 1e-9):,.0f}",
    )
    return counts


def _append_world(
    out: arrowread.Appender,
    dialect: str,
    cfg: WorldConfig,
    written: Callable[[dict[str, pd.DataFrame]], None],
) -> None:
    """Each tenant's tables as Arrow tables; SQLite's expenses through ``_STAGED``."""
    staged = dialect == "sqlite"
    if staged:
        out.execute(f"CREATE TEMP TABLE {_STAGED} AS SELECT * FROM main.expenses WHERE 0")
    for frames in stream_world(cfg):
        for name, frame in frames.items():
            if not len(frame):
                continue
            table = _arrow_table(name, frame, dialect)
            if staged and name == "expenses":
                out.append(_STAGED, table, temporary=True)
            else:
                out.append(name, table)
        written(frames)
    if staged:
        t0 = time.perf_counter()
        out.execute(f"INSERT INTO main.expenses SELECT * FROM temp.{_STAGED} ORDER BY id")
        out.execute(f"DROP TABLE temp.{_STAGED}")
        log.info("datagen: expenses stored in id order in %.1fs", time.perf_counter() - t0)


_STAGED = "staged_expenses"
"""SQLite: the expenses are appended to a temporary table in tenant order, then copied into
``expenses`` in id order. Ids interleave across tenants, so appending tenant by tenant to the
rowid table writes all over its B-tree (1 M expenses: 63 s; the rate fell from ~30 k/s to
~8 k/s as the file outgrew the page cache); the copy in id order appends."""


def _arrow_table(name: str, frame: pd.DataFrame, dialect: str) -> pa.Table:
    """A table's frame as Arrow columns holding what SQLAlchemy stores: for SQLite DATETIME as
    text ``YYYY-MM-DD HH:MM:SS.ffffff``, DATE as ``YYYY-MM-DD``, booleans as 0/1; for
    PostgreSQL the columns' own types (its binary COPY takes no other); None (or NaN in an
    object column) as NULL."""
    columns = schema.metadata.tables[name].columns
    out = {}
    for c in frame.columns:
        array = _arrow_column(frame[c], dialect)
        if dialect != "sqlite":
            array = array.cast(_PG_ARROW[type(columns[c].type).__name__])
        out[str(c)] = array
    return pa.table(out)


_PG_ARROW = {
    "Integer": pa.int32(),
    "Float": pa.float64(),
    "Text": pa.string(),
    "Boolean": pa.bool_(),
    "Date": pa.date32(),
    "DateTime": pa.timestamp("us"),
}
"""The Arrow type of each SQLAlchemy column type of the schema, as PostgreSQL stores it."""


def _arrow_column(s: pd.Series, dialect: str) -> pa.Array:
    kind = s.dtype.kind
    if kind == "M":
        values = s.to_numpy().astype("datetime64[us]")
        if dialect != "sqlite":
            return pa.array(values)
        text = pa.array(np.datetime_as_string(values, unit="us"))
        return pc.replace_substring(text, "T", " ", max_replacements=1)
    if kind == "b":
        return pa.array(s.to_numpy().astype(np.int64) if dialect == "sqlite" else s.to_numpy())
    if kind in "iuf":
        return pa.array(s.to_numpy())
    values = s.to_numpy(dtype=object)
    if len(values) and isinstance(values[0], date) and not isinstance(values[0], datetime):
        days = np.array(values.tolist(), dtype="datetime64[D]")
        return pa.array(np.datetime_as_string(days) if dialect == "sqlite" else days)
    return pa.array(values, from_pandas=True)  # strings, or integers with None: NaN -> NULL


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    cols = list(frame.columns)
    arrays: list[list[Any]] = []
    for c in cols:
        s = frame[c]
        if s.dtype.kind in "iu":
            arrays.append([int(v) for v in s.to_numpy()])
        elif s.dtype.kind == "f":
            arrays.append([float(v) for v in s.to_numpy()])
        elif s.dtype.kind == "b":
            arrays.append([bool(v) for v in s.to_numpy()])
        elif s.dtype.kind == "M":
            arrays.append(list(s.dt.to_pydatetime()))
        else:
            arrays.append(list(s))
    return [dict(zip(cols, vals, strict=True)) for vals in zip(*arrays, strict=True)]
