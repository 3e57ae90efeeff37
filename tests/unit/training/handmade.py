"""A tiny hand-made history whose aggregates can be checked by hand (see test_training_features)."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd

from rankswap_training.features import History, make_history

AS_OF = date(2026, 1, 31)


def raw_expenses(extra: list[dict[str, object]] | None = None) -> pd.DataFrame:
    def row(
        i: int,
        d: str,
        emp: int,
        ven: int | None,
        item: int,
        cat: int,
        amt: float,
        desc: str,
        dept: str,
        ind: str | None,
    ) -> dict[str, object]:
        return {
            "id": i,
            "tenant_id": "a",
            "employee_id": emp,
            "vendor_id": ven,
            "item_id": item,
            "category_id": cat,
            "description": desc,
            "amount": amt,
            "expense_date": date.fromisoformat(d),
            "created_at": datetime.fromisoformat(d + "T12:00:00"),
            "department": dept,
            "industry": ind,
        }

    rows = [
        row(1, "2026-01-01", 100, 200, 10, 1, 1000.0, "タクシー 移動", "営業部", "taxi"),
        row(2, "2026-01-20", 100, 200, 10, 1, 3000.0, "タクシー", "営業部", "taxi"),
        row(3, "2026-01-25", 101, None, 12, 2, 500.0, "book", "開発部", None),
        row(4, "2026-01-30", 100, 200, 11, 1, 2000.0, "taxi", "営業部", "taxi"),
        row(5, "2025-01-01", 100, 200, 12, 2, 9999.0, "old", "営業部", "taxi"),  # > 365 d
    ]
    return pd.DataFrame(rows + (extra or []))


def raw_items() -> pd.DataFrame:
    def item(i: int, cat: int, name: str, created: str) -> dict[str, object]:
        return {
            "id": i,
            "tenant_id": "a",
            "code": f"C{i}",
            "name": name,
            "category_id": cat,
            "category": "旅費交通費" if cat == 1 else "新聞図書費",
            "account_code": "6110" if cat == 1 else "6160",
            "created_at": datetime.fromisoformat(created),
            "active": True,
        }

    return pd.DataFrame(
        [
            item(10, 1, "タクシー代", "2024-01-01T00:00:00"),
            item(11, 1, "タクシー代（新）", "2025-12-01T00:00:00"),
            item(12, 2, "書籍", "2024-01-01T00:00:00"),
            item(13, 1, "電動キックボード", "2026-01-30T09:00:00"),
        ]
    )


def history(extra: list[dict[str, object]] | None = None) -> History:
    return make_history(raw_expenses(extra), raw_items())


def future_rows() -> list[dict[str, object]]:
    """Expenses on and after AS_OF: must never change features as of AS_OF."""
    base = {str(k): v for k, v in raw_expenses().iloc[0].to_dict().items()}
    out: list[dict[str, object]] = []
    for i, d in ((6, "2026-01-31"), (7, "2026-02-15")):
        r = dict(base)
        r.update(
            id=i,
            expense_date=date.fromisoformat(d),
            created_at=datetime.fromisoformat(d + "T10:00:00"),
            item_id=12,
            category_id=2,
            description="future leak",
            employee_id=100,
            amount=50000.0,
        )
        out.append(r)
    return out
