"""ProductDB on SQLite: the serving hot path, writes and error mapping."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rankswap.featurespec import RankContext
from rankswap.productdb import (
    DatabaseUnavailable,
    ProductDB,
    ProductDBError,
    SchemaMissing,
    UnknownTenant,
)
from rankswap_training import datagen


@pytest.fixture
def db(small_db_url: str) -> Iterator[ProductDB]:
    with ProductDB(small_db_url) as db:
        yield db


def test_candidates_are_the_tenants_active_items_sorted(
    db: ProductDB, small_world: datagen.World
) -> None:
    items = small_world.items
    expected = items[(items["tenant_id"] == "t002") & items["active"]].sort_values("id")
    c = db.candidates("t002")
    assert c.item_ids.dtype == np.int64
    np.testing.assert_array_equal(c.item_ids, expected["id"].to_numpy())
    assert list(c.names) == list(expected["name"])
    assert list(c.codes) == list(expected["code"])
    cats = small_world.categories.set_index("id")
    assert list(c.categories) == list(cats.loc[expected["category_id"], "name"])
    assert list(c.account_codes) == list(cats.loc[expected["category_id"], "account_code"])
    np.testing.assert_array_equal(c.category_ids, expected["category_id"].to_numpy())
    np.testing.assert_array_equal(
        c.created_at, expected["created_at"].to_numpy().astype("datetime64[s]")
    )
    lite = db.candidates("t002", with_names=False)
    np.testing.assert_array_equal(lite.item_ids, c.item_ids)
    assert set(lite.names) == {""}
    labels = db.item_labels([int(c.item_ids[0]), int(c.item_ids[-1])])
    assert labels[int(c.item_ids[0])] == (c.codes[0], c.names[0])


def test_unknown_tenant_and_empty_tenant(db: ProductDB) -> None:
    with pytest.raises(UnknownTenant):
        db.candidates("no-such-tenant")
    from rankswap.productdb import schema

    db.bulk_insert("tenants", [{"id": "empty", "name": "E", "created_at": datetime(2026, 1, 1)}])
    try:
        assert len(db.candidates("empty")) == 0
    finally:
        with db.engine.begin() as conn:
            conn.execute(schema.tenants.delete().where(schema.tenants.c.id == "empty"))


def test_add_item_is_a_candidate_at_once(tmp_path: Path, small_world: datagen.World) -> None:
    db = ProductDB(f"sqlite:///{tmp_path / 'p.db'}", create=True)
    datagen.write_world(db, small_world)
    before = len(db.candidates("t001"))
    new_id = db.add_item(
        "t001", code="NEW-1", name="電動キックボード", category="旅費交通費", account_code="6110"
    )
    after = db.candidates("t001")
    assert len(after) == before + 1 and after.item_ids[-1] == new_id
    assert new_id > int(small_world.items["id"].max())
    db.add_item("t001", code="NEW-2", name="New thing", category="Brand new", account_code="9999")
    assert "Brand new" in set(db.candidates("t001").categories)
    db.set_item_active(new_id, False)
    assert new_id not in db.candidates("t001").item_ids
    with pytest.raises(UnknownTenant):
        db.add_item("nope", code="x", name="x", category="x", account_code="1")


def test_context_attributes(db: ProductDB, small_world: datagen.World) -> None:
    emp = small_world.employees.iloc[0]
    ven = small_world.vendors[small_world.vendors["tenant_id"] == emp["tenant_id"]].iloc[0]
    dept, ind = db.context_attributes(str(emp["tenant_id"]), int(emp["id"]), int(ven["id"]))
    assert (dept, ind) == (emp["department"], ven["industry"])
    # ids of another tenant are not looked up across tenants
    assert db.context_attributes("t999", int(emp["id"]), None) == ("", "")


def test_missing_sqlite_file_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnavailable, match="does not exist"):
        ProductDB(f"sqlite:///{tmp_path / 'missing.db'}")


def test_database_without_schema(tmp_path: Path) -> None:
    db = ProductDB(f"sqlite:///{tmp_path / 'empty.db'}", create=True)
    with pytest.raises(SchemaMissing):
        db.candidates("t001")


def test_unreachable_postgres_is_unavailable() -> None:
    db = ProductDB("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(DatabaseUnavailable) as err:
        db.candidates("t001")
    assert "\n" not in str(err.value)


def test_bad_url() -> None:
    with pytest.raises(ProductDBError):
        ProductDB("mysql://x/y")
    with pytest.raises(ProductDBError):
        ProductDB("not a url")


def _copy_db(url: str, tmp_path: Path) -> str:
    target = tmp_path / "copy.db"
    with sqlite3.connect(url.removeprefix("sqlite:///")) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return f"sqlite:///{target}"


def test_candidate_cache_sees_every_commit(small_db_url: str, tmp_path: Path) -> None:
    """Cached candidate lists are served only while the database is unchanged: an item added
    (by this object or any other connection) or deactivated is in the very next answer."""
    small_db_url = _copy_db(small_db_url, tmp_path)
    db, other = ProductDB(small_db_url), ProductDB(small_db_url)
    try:
        first = db.candidates("t002", with_names=False)
        assert db.candidates("t002", with_names=False) is first  # cache hit
        assert not first.item_ids.flags.writeable  # shared between requests: read-only
        new_id = other.add_item("t002", code="CACHE1", name="n", category="c", account_code="9")
        second = db.candidates("t002", with_names=False)
        assert new_id in second.item_ids and new_id not in first.item_ids
        own_id = db.add_item("t002", code="CACHE2", name="n2", category="c", account_code="9")
        assert own_id in db.candidates("t002").item_ids
        other.set_item_active(own_id, False)
        assert own_id not in db.candidates("t002", with_names=False).item_ids
        uncached = ProductDB(small_db_url, cache_candidates=False)
        for with_names in (False, True):
            a = db.candidates("t002", with_names=with_names)
            b = uncached.candidates("t002", with_names=with_names)
            np.testing.assert_array_equal(a.item_ids, b.item_ids)
            assert list(a.names) == list(b.names) and list(a.categories) == list(b.categories)
        uncached.close()
        with pytest.raises(UnknownTenant):
            db.candidates("nobody")
    finally:
        db.close()
        other.close()


def test_candidate_cache_is_bounded(small_db_url: str) -> None:
    with ProductDB(small_db_url, cache_size=2) as db:
        for tenant in ("t001", "t002", "t003", "t001"):
            db.candidates(tenant, with_names=False)
        assert len(db._cache) == 2


def _new_file_with_one_more_item(url: str, tmp_path: Path, code: str) -> tuple[Path, int]:
    """A restore from backup: a complete new file beside the served one, with one item more."""
    staged = tmp_path / f"staged-{code}"
    staged.mkdir()
    staged_url = _copy_db(url, staged)
    with ProductDB(staged_url) as writer:
        item_id = writer.add_item("t002", code=code, name="new", category="c", account_code="9")
    return Path(staged_url.removeprefix("sqlite:///")), item_id


@pytest.mark.parametrize("cache_candidates", [True, False])
def test_a_replaced_file_is_reopened(
    small_db_url: str, tmp_path: Path, cache_candidates: bool
) -> None:
    """`mv new.db product.db` under a running reader: the reader notices the new inode and
    reads the new file (it used to read the deleted file forever)."""
    url = _copy_db(small_db_url, tmp_path)
    path = Path(url.removeprefix("sqlite:///"))
    with ProductDB(url, cache_candidates=cache_candidates) as db:
        before = db.candidates("t002")
        staged, item_id = _new_file_with_one_more_item(url, tmp_path, "REPLACED")
        assert item_id not in before.item_ids
        staged.replace(path)
        after = db.candidates("t002")
        assert item_id in after.item_ids
        assert len(after.item_ids) == len(before.item_ids) + 1
        assert db.item_labels([item_id]) == {item_id: ("REPLACED", "new")}
        assert db.candidates("t002", with_names=False).item_ids.tolist() == after.item_ids.tolist()


def test_a_removed_file_is_unavailable_until_it_is_back(small_db_url: str, tmp_path: Path) -> None:
    url = _copy_db(small_db_url, tmp_path)
    path = Path(url.removeprefix("sqlite:///"))
    with ProductDB(url) as db:
        n = len(db.candidates("t002").item_ids)
        staged, item_id = _new_file_with_one_more_item(url, tmp_path, "BACK")
        path.unlink()
        for read in (
            lambda: db.candidates("t002"),
            lambda: db.item_labels([1]),
            lambda: db.context_attributes("t002", 1, 1),
        ):
            with pytest.raises(DatabaseUnavailable, match="does not exist"):
                read()
        assert not path.exists()  # reading never creates an empty database in its place
        staged.replace(path)
        back = db.candidates("t002")
        assert len(back.item_ids) == n + 1 and item_id in back.item_ids


def _count_queries(db: ProductDB, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A counter of the DBAPI cursors ``db`` opens (one per query of the serving reads)."""
    count = [0]
    raw = db._raw

    def counting() -> Any:
        count[0] += 1
        return raw()

    monkeypatch.setattr(db, "_raw", counting)
    return count


def test_labels_and_context_attributes_are_read_once_per_data_version(
    small_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item labels and context attributes are memoised while the database is unchanged; any
    commit by another connection (here a plain sqlite3 one, as the product app's) is seen by
    the very next read."""
    url = _copy_db(small_db_url, tmp_path)
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as con:
        emp, tenant = con.execute("SELECT id, tenant_id FROM employees LIMIT 1").fetchone()
        item = con.execute("SELECT id FROM items WHERE tenant_id = ?", (tenant,)).fetchone()[0]
    with ProductDB(url) as db, ProductDB(url, cache_candidates=False) as uncached:
        queries = _count_queries(db, monkeypatch)
        labels = db.item_labels([item, 10**9])
        attrs = db.context_attributes(tenant, emp, None)
        assert labels == uncached.item_labels([item, 10**9]) and 10**9 not in labels
        assert attrs == uncached.context_attributes(tenant, emp, None)
        assert queries[0] == 2
        assert db.item_labels([item]) == {item: labels[item]}
        assert db.context_attributes(tenant, emp, None) == attrs
        assert queries[0] == 2  # both from the memo
        with sqlite3.connect(path) as con:
            con.execute("UPDATE items SET name = 'renamed' WHERE id = ?", (item,))
            con.execute("UPDATE employees SET department = 'moved' WHERE id = ?", (emp,))
        assert db.item_labels([item]) == {item: (labels[item][0], "renamed")}
        assert db.context_attributes(tenant, emp, None) == ("moved", "")
        assert queries[0] == 4


def test_rank_inputs_take_one_freshness_check_and_see_every_commit(
    small_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One request's context and candidates come from one freshness check (one ``stat`` of the
    file, one ``PRAGMA data_version``), equal to what ``make_context`` and ``candidates`` read
    (two checks); a commit by another connection is seen by the next request in both."""
    url = _copy_db(small_db_url, tmp_path)
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as con:
        emp, tenant = con.execute("SELECT id, tenant_id FROM employees LIMIT 1").fetchone()
        ven = con.execute("SELECT id FROM vendors WHERE tenant_id = ?", (tenant,)).fetchone()[0]
    request: dict[str, Any] = {
        "employee_id": emp,
        "vendor_id": ven,
        "description": "taxi",
        "amount": 12.5,
        "expense_date": date(2026, 11, 27),
    }
    with ProductDB(url) as db:
        ctx, cands = db.rank_inputs(RankContext(tenant, **request))
        assert ctx == db.make_context(RankContext(tenant, **request))
        assert cands is db.candidates(tenant)
        stats, pragmas = [0], list[str]()
        stat_file = db._stat_file

        def counting_stat() -> Any:
            stats[0] += 1
            return stat_file()

        monkeypatch.setattr(db, "_stat_file", counting_stat)
        assert db._probe is not None
        db._probe.set_trace_callback(pragmas.append)
        again, same = db.rank_inputs(RankContext(tenant, **request))
        assert (again, same) == (ctx, cands) and same is cands  # both from the caches
        assert stats[0] == 1 and pragmas == ["PRAGMA data_version"]
        with sqlite3.connect(path) as con:
            con.execute("UPDATE employees SET department = 'moved' WHERE id = ?", (emp,))
            con.execute("UPDATE items SET active = 0 WHERE id = ?", (int(cands.item_ids[0]),))
        moved, fewer = db.rank_inputs(RankContext(tenant, **request))
        assert moved.employee_department == "moved"
        assert list(fewer.item_ids) == list(cands.item_ids[1:])


def test_the_memo_is_bounded_and_off_without_the_cache(
    small_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rankswap.productdb.db as dbmod

    monkeypatch.setattr(dbmod, "MEMO_ENTRIES", 3)
    with ProductDB(small_db_url) as db:
        for employee in range(10):
            db.context_attributes("t001", employee, None)
            assert len(db._memo) <= 3
    with ProductDB(small_db_url, cache_candidates=False) as db:
        queries = _count_queries(db, monkeypatch)
        db.context_attributes("t001", 1, None)
        db.context_attributes("t001", 1, None)
        assert queries[0] == 2 and not db._memo
