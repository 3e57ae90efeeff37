"""The rank request's parse: pydantic-core's one-pass JSON reading against FastAPI's reading
(``json.loads``, then the model), on generated hostile bodies: the same documents accepted,
with the same values, and the same errors."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from rankswap_ranker import routes
from rankswap_ranker.errors import RankerError
from rankswap_ranker.routes import parse_as_fastapi, parse_rank_request

pytestmark = pytest.mark.timeout(60)

NUMBERS = [
    "0", "1", "-1", "12", "12.0", "12.5", "1e3", "1E3", "0.1e1", "1.0000000000000002",
    "2147483647", "2147483647.0", "2147483648", "12345678901234567890", "1e12", "1e12.5",
    "1000000000001", "1e400", "-1e400", "-0.0", "-0", "1000", "1001", "5", "5.000", "0.0",
    "NaN", "Infinity", "-Infinity", "01", "1.", ".5", "+1", "0x10", "1_000",
]  # fmt: skip
STRINGS = [
    '""', '"t001"', '"x"', '"タクシー 渋谷→品川"', '"\\u30bf\\u30af"', '"\\ud83d\\ude00"',
    '"\\ud800"', '"\\udc00x"', '"\\u0000"', '"a\\"b"', '"a\\\\b"', '"\\/"', '"\\x41"',
    '"2026-11-27"', '"2026-02-30"', '"2026-1-01"', '"2026-01-01T00:00"', '"２０２６-01-01"',
    '"0"', '"12"', '"1e3"', '"true"', '"null"', '"\t"', '"' + "a" * 2000 + '"',
    '"' + "a" * 2001 + '"', '"' + "t" * 128 + '"', '"' + "t" * 129 + '"', "'x'",
]  # fmt: skip
OTHERS = ["true", "false", "null", "[]", "{}", "[1]", '{"a": 1}', "[[[[]]]]", ""]
VALUES = NUMBERS + STRINGS + OTHERS

GOOD: dict[str, list[str]] = {
    "tenant_id": ['"t001"', '"x"', '"' + "t" * 128 + '"'],
    "employee_id": ["12", "0", "2147483647", "12.0", "null"],
    "vendor_id": ["40", "0", "7.0", "null"],
    "description": ['""', '"タクシー 渋谷→品川"', '"\\u30bf\\u30af"', '"\\ud83d\\ude00"'],
    "amount": ["2480", "0", "-0.0", "12.5", "1e12", "0.1e1", "1.0000000000000002"],
    "date": ['"2026-11-27"', '"2024-02-29"', '"1900-01-01"'],
    "top_k": ["5", "1", "1000", "5.0", "null"],
}
CONTEXT = ("employee_id", "vendor_id", "description", "amount", "date")


def _value(rng: random.Random, field: str) -> str:
    return rng.choice(GOOD[field]) if rng.random() < 0.88 else rng.choice(VALUES)


def _object(rng: random.Random, members: list[tuple[str, str]]) -> str:
    """A JSON object of ``members`` in a shuffled order, sometimes with a member repeated
    (with another value), an unknown one, or one left out; odd spacing."""
    members = list(members)
    roll = rng.random()
    if roll < 0.05 and members:
        members.pop(rng.randrange(len(members)))
    elif roll < 0.12 and members:
        name, _ = rng.choice(members)
        members.insert(rng.randrange(len(members) + 1), (name, rng.choice(VALUES)))
    elif roll < 0.15:
        members.append((rng.choice(["extra", "Tenant_id", "top-k", ""]), "1"))
    rng.shuffle(members)
    sep = rng.choice([", ", ",", " ,\n\t"])
    return "{" + sep.join(f'"{k}"{rng.choice([": ", ":"])}{v}' for k, v in members) + "}"


def hostile_body(rng: random.Random) -> bytes:
    context = _object(
        rng, [(f, _value(rng, f)) for f in CONTEXT if f in ("amount", "date") or rng.random() < 0.8]
    )
    if rng.random() < 0.05:
        context = rng.choice(VALUES)
    members = [("tenant_id", _value(rng, "tenant_id")), ("context", context)]
    if rng.random() < 0.7:
        members.append(("top_k", _value(rng, "top_k")))
    text = _object(rng, members)
    roll = rng.random()
    if roll < 0.03:
        text += rng.choice([" ", "\n", " x", "}", "{}", "\x00"])
    elif roll < 0.05:
        text = rng.choice(["\ufeff", " ", "\n\t "]) + text
    elif roll < 0.07:
        text = text[: rng.randrange(len(text))]
    encoding = "utf-16" if rng.random() < 0.01 else "utf-8"
    return text.encode(encoding, errors="surrogatepass")


def outcome(parse: Any, raw: bytes) -> tuple[str, Any]:
    """What a parse makes of ``raw``: the request with its values' types, or the error."""
    try:
        req = parse(raw)
    except RankerError as err:
        return "error", (type(err).__name__, err.status, err.message, err.detail)
    typed = {k: (type(v).__name__, v) for k, v in req.context.model_dump().items()}
    return "request", (repr(req), typed, type(req.top_k).__name__)


def test_both_readings_agree_on_generated_hostile_bodies() -> None:
    rng = random.Random(20261202)
    kinds = {"request": 0, "error": 0}
    for _ in range(4000):
        raw = hostile_body(rng)
        got = outcome(parse_rank_request, raw)
        assert got == outcome(parse_as_fastapi, raw), raw
        kinds[got[0]] += 1
    # the generator reaches both answers often enough to mean something
    assert kinds["request"] > 1000 and kinds["error"] > 1000, kinds


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps(
            {
                "tenant_id": "t001",
                "context": {"employee_id": 12, "vendor_id": 40, "description": "タクシー",
                            "amount": 2480, "date": "2026-11-27"},
                "top_k": 5,
            },
            ensure_ascii=False,
        ).encode(),
        b'{"tenant_id": "t", "context": {"amount": 1, "date": "2026-01-01"}, "top_k": 5.0}',
    ],
)  # fmt: skip
def test_a_valid_body_is_read_in_one_pass(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    def second_reading(raw: bytes) -> Any:
        raise AssertionError("read twice")

    monkeypatch.setattr(routes, "parse_as_fastapi", second_reading)
    req = parse_rank_request(raw)
    assert req.tenant_id in ("t001", "t") and req.top_k == 5


def test_a_body_only_json_loads_reads_is_still_taken() -> None:
    """UTF-16 JSON is a JSON document to ``json.loads`` (RFC 8259 allowed it once), not to
    pydantic-core: the second reading takes it, as FastAPI did."""
    raw = '{"tenant_id": "t", "context": {"amount": 1, "date": "2026-01-01"}}'.encode("utf-16")
    req = parse_rank_request(raw)
    assert req.tenant_id == "t" and req.context.amount == 1.0
