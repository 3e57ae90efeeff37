"""The fixed-rate open loop and the spaced in-process calls of the ranker benchmark: vegeta's
report parsed, the rate / gap options validated, the schedule alternating, the tables built
(the numbers themselves are in docs/BENCHMARKS.md, not asserted)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest

from rankswap_dev.bench_ranker import ab, cost, options

VEGETA_OK = (
    '{"latencies":{"total":313809771,"mean":15690488,"50th":2500000,"90th":16485358,'
    '"95th":16684376,"99th":7500000,"max":16802899,"min":13987914},'
    '"bytes_in":{"total":842744,"mean":42137.2},"bytes_out":{"total":0,"mean":0},'
    '"earliest":"2026-12-02T05:51:07.31382684Z","latest":"2026-12-02T05:51:08.263678727Z",'
    '"end":"2026-12-02T05:51:08.279198948Z","duration":1950000000,"wait":50000000,'
    '"requests":40,"rate":20.5,"throughput":19.0,"success":0.95,'
    '"status_codes":{"200":38,"503":1,"0":1},"errors":["503 Service Unavailable"]}'
)
"""Shape of ``vegeta report -type json`` (v12.13.0), durations in nanoseconds."""


def test_vegeta_report_gives_latencies_in_ms_and_counts_non_200_as_errors() -> None:
    doc = cost.parse_vegeta(VEGETA_OK)
    assert doc["requests"] == 40
    assert doc["errors"] == 2  # the 503 and the failed connection (status 0)
    assert doc["rps"] == pytest.approx(20.0)  # 40 requests over duration + wait = 2 s
    assert doc["p50_ms"] == pytest.approx(2.5)
    assert doc["p99_ms"] == pytest.approx(7.5)
    assert doc["max_ms"] == pytest.approx(16.802899)


def test_vegeta_report_of_a_refused_target_is_all_errors() -> None:
    text = json.dumps(
        {
            **json.loads(VEGETA_OK),
            "requests": 5,
            "status_codes": {"0": 5},
            "errors": ["connect: connection refused"],
        }
    )
    doc = cost.parse_vegeta(text)
    assert doc["requests"] == 5 and doc["errors"] == 5


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        '{"requests": 3}',
        VEGETA_OK.replace('"requests":40', '"requests":"many"'),
        VEGETA_OK.replace('"requests":40', '"requests":10'),  # fewer than the 200s counted
    ],
)
def test_a_malformed_vegeta_report_is_a_clear_error(text: str) -> None:
    with pytest.raises(ValueError, match="vegeta report"):
        cost.parse_vegeta(text)


def test_vegeta_runs_open_loop_only() -> None:
    run = cost.vegeta_runner("/nonexistent/vegeta")
    with pytest.raises(ValueError, match="open loop only"):
        run("http://127.0.0.1:1/v1/rank", {}, 1.0, 0.0)


def test_ensure_vegeta_is_none_without_go(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert cost.ensure_vegeta() is None


def test_rates_and_gaps_parse_comma_separated_values() -> None:
    assert options.rates("150,300, 450") == [150.0, 300.0, 450.0]
    assert options.rates("12.5") == [12.5]
    assert options.gaps_ms("0,5") == [0.0, 5.0]
    assert options.duration_s("15") == 15.0


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (options.rates, "", "comma-separated"),
        (options.rates, "150,,300", "comma-separated"),
        (options.rates, "fast", "not a number"),
        (options.rates, "nan", "not a finite number"),
        (options.rates, "inf", "not a finite number"),
        (options.rates, "0", "outside"),
        (options.rates, "-5", "outside"),
        (options.rates, "100000", "outside"),
        (options.rates, "150,150", "repeats"),
        (options.rates, ",".join(str(r) for r in range(1, 13)), "at most 10"),
        (options.gaps_ms, "-1", "outside"),
        (options.gaps_ms, "5000", "outside"),
        (options.gaps_ms, "5ms", "not a number"),
        (options.duration_s, "0", "outside"),
        (options.duration_s, "3600", "outside"),
    ],
)
def test_bad_rates_gaps_and_durations_are_clear_errors(parse: Any, text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse(text)


def test_the_bench_rejects_a_bad_rate_before_it_starts(capsys: pytest.CaptureFixture[str]) -> None:
    from rankswap_dev.bench_ranker.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main(["--cost", "--open-rates", "150,zero"])
    assert exit_.value.code == 2
    assert "--open-rates: offered rates (req/s): 'zero' is not a number" in capsys.readouterr().err


def test_ab_rejects_a_bad_gap_before_it_starts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        ab.main(["--db", "sqlite:///nowhere.db", "--side", "a=.:file:///x", "--gap-ms", "0,-5"])
    assert exit_.value.code == 2
    assert "--gap-ms: gaps (ms): -5 is outside [0, 1000]" in capsys.readouterr().err


def test_open_schedule_runs_everything_once_and_reverses_the_order_per_rate() -> None:
    runs = cost.open_schedule([150, 300, 450], ["rankswap", "peer"], ["vegeta", "loadgen"])
    assert sorted(runs) == sorted(
        (r, t, g)
        for r in (150, 300, 450)
        for t in ("rankswap", "peer")
        for g in ("vegeta", "loadgen")
    )
    assert runs[:4] == [
        (150, "rankswap", "vegeta"),
        (150, "rankswap", "loadgen"),
        (150, "peer", "vegeta"),
        (150, "peer", "loadgen"),
    ]
    assert runs[4:8] == [(300, t, g) for _, t, g in runs[:4][::-1]]
    assert runs[8:] == [(450, t, g) for _, t, g in runs[:4]]


def _run(rate: float, target: str, gen: str, p50: float, p99: float, **extra: float) -> Any:
    return {
        "rate": rate,
        "target": target,
        "generator": gen,
        "requests": rate * 10,
        "errors": 0.0,
        "rps": rate,
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": 3 * p99,
        "cpu_ms_per_request": 2.5,
        **extra,
    }


def test_fixed_rate_table_has_a_row_per_run_with_the_tail_ratio_and_cpu() -> None:
    x = {
        "vegeta": "/cache/vegeta",
        "open_rates": [150.0, 300.0],
        "open_duration_s": 15.0,
        "fixed": {
            "t006": [
                _run(300, "peer", "loadgen", 2.0, 5.0),
                _run(
                    150,
                    "rankswap",
                    "vegeta",
                    3.0,
                    6.0,
                    rank_cpu_ms_per_request=1.84,
                    steal_pct=21.5,
                ),
                _run(150, "peer", "vegeta", 2.0, 4.0),
                _run(300, "rankswap", "loadgen", 4.0, 40.0, rank_cpu_ms_per_request=1.5),
            ]
        },
    }
    lines = cost.fixed_report(x, {"t006": "~1000"})
    rows = [line for line in lines if line.startswith("| t006")]
    assert rows == [
        "| t006 (~1000) | 150 | rankswap | vegeta | 150 | 3.00 | 6.00 | 2.00 | 18.0 | 0 | 2.500 "
        "| 1.840 | 21.5 |",
        "| t006 (~1000) | 150 | peer | vegeta | 150 | 2.00 | 4.00 | 2.00 | 12.0 | 0 | 2.500 | - "
        "| 0.0 |",
        "| t006 (~1000) | 300 | rankswap | loadgen | 300 | 4.00 | 40.00 | 10.00 | 120.0 | 0 "
        "| 2.500 | 1.500 | 0.0 |",
        "| t006 (~1000) | 300 | peer | loadgen | 300 | 2.00 | 5.00 | 2.50 | 15.0 | 0 | 2.500 | - "
        "| 0.0 |",
    ]
    assert any("15 s per run, offered 150, 300 req/s" in line for line in lines)


def test_steal_is_the_share_of_the_cpus_time_proc_stat_counts_as_stolen() -> None:
    stolen = cost.steal_s()
    assert stolen >= 0.0
    with open("/proc/stat") as f:
        assert f.readline().split()[0] == "cpu"  # the aggregate line steal_s reads
    assert cost.steal_s() >= stolen  # a counter since boot


def test_fixed_rate_table_is_left_out_when_no_rates_ran() -> None:
    assert cost.fixed_report({"open_rates": []}, {}) == []


def _round(cpu: float) -> dict[str, float]:
    return {
        "total": cpu * 1.1,
        "cpu": cpu,
        "features": cpu / 2,
        "model": cpu / 4,
        "candidates": 770,
    }


def test_ab_table_reports_each_gap_against_the_first_side_and_against_no_gap() -> None:
    rounds: ab.Rounds = {
        "0": {"t006": {"main": [_round(1.0), _round(1.0)], "head": [_round(0.8), _round(0.9)]}},
        "5": {"t006": {"main": [_round(3.0), _round(2.0)], "head": [_round(2.4), _round(1.8)]}},
    }
    lines = ab.report_table(["main", "head"], ["t006"], {"t006": 770}, rounds)
    rows = {tuple(c.strip() for c in line.split("|")[1:4]): line for line in lines[2:]}
    assert set(rows) == {
        ("0", "t006 (770)", "main"),
        ("0", "t006 (770)", "head"),
        ("5", "t006 (770)", "main"),
        ("5", "t006 (770)", "head"),
    }
    cells = [c.strip() for c in rows[("5", "t006 (770)", "head")].split("|")[1:-1]]
    # CPU median of 2.4 and 1.8; head / main per round 0.8 and 0.9; against gap 0: 3.0 and 2.0
    assert cells[3] == "2.100" and cells[7] == "0.85x" and cells[10] == "2.50x"
    assert rows[("0", "t006 (770)", "main")].endswith("| 1.00x |")


def test_ab_table_without_gap_zero_has_no_ratio_against_it() -> None:
    rounds: ab.Rounds = {"5": {"t006": {"main": [_round(2.0)]}}}
    (row,) = ab.report_table(["main"], ["t006"], {"t006": 770}, rounds)[2:]
    assert row.endswith("| - |")
