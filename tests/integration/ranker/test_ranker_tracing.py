"""A real ``rankswap serve`` (2 spawned workers) exporting its spans over OTLP/HTTP to a tiny
collector the test runs (:class:`rankswap_dev.otlpsink.OtlpSink`), issue 13 item 4: the
standard ``OTEL_*`` variables switch tracing on, every worker sets up its own provider, the
caller's traceparent is honoured, and the spans still queued are exported when the pod stops
(the batch delay is set far beyond the test, so only the shutdown flush can deliver them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.integration.ranker.conftest import TOKEN, WORKERS, RankerPod
from tests.unit.ranker.builders import product_db, publish_bundle

from rankswap_dev.otlpsink import OtlpSink, attributes
from rankswap_dev.wait import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

BODY: dict[str, Any] = {
    "tenant_id": "acme",
    "context": {"employee_id": 1, "description": "taxi", "amount": 1200, "date": "2026-11-27"},
}
STAGES = ["rank.db", "rank.features", "rank.model", "rank.serialise"]


@pytest.fixture
def collector() -> Iterator[OtlpSink]:
    sink = OtlpSink().start()
    yield sink
    sink.stop()


def _traffic(pod: RankerPod) -> dict[str, str]:
    """12 requests with a traceparent each, and one with a malformed one; the trace ids sent
    and the answers' traceresponse headers."""
    pod.wait(
        lambda: httpx.get(f"{pod.public_url}/readyz", timeout=2).status_code == 200,
        60,
        "ready",
    )
    sent: dict[str, str] = {}
    for i in range(12):
        trace_id = f"{i + 1:032x}"
        r = httpx.post(
            f"{pod.public_url}/v1/rank",
            json=BODY,
            timeout=10,
            headers={"traceparent": f"00-{trace_id}-{i + 1:016x}-01", "Connection": "close"},
        )
        assert r.status_code == 200, r.text
        sent[trace_id] = r.headers["traceresponse"]
    r = httpx.post(
        f"{pod.public_url}/v1/rank",
        json=BODY,
        timeout=10,
        headers={"traceparent": "00-zz-not-a-trace-context", "Connection": "close"},
    )
    assert r.status_code == 200  # a hostile header: a new trace, the same answer
    return sent


def test_a_served_pod_exports_each_workers_spans_to_the_otlp_endpoint(
    collector: OtlpSink, tmp_path: Path
) -> None:
    root = tmp_path / "store"
    root.mkdir()
    bundle = publish_bundle(root.as_uri(), tmp_path / "src", item_ids=range(1, 41))
    db_url = f"sqlite:///{tmp_path / 'product.db'}"
    product_db(db_url, {"acme": 40}).close()
    pod = RankerPod(
        tmp_path / "pod",
        TOKEN,
        workers=WORKERS,
        settings={
            "RANKSWAP_DATABASE_URL": db_url,
            "RANKSWAP_ALLOWED_ROOTS": root.as_uri(),
            "RANKSWAP_MODEL_URI": bundle.model_uri,
            "RANKSWAP_FEATURES_URI": bundle.features_uri,
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_SERVICE_NAME": "ranker-under-test",
            "OTEL_BSP_SCHEDULE_DELAY": "600000",
        },
    )
    try:
        sent = _traffic(pod.start())
        assert collector.spans() == []  # batched: nothing is exported before the flush
        log = pod.log.read_text()
        assert '"exporters": ["otlp"]' in log and f"{collector.url}/v1/traces" in log
    finally:
        pod.stop()  # SIGTERM: every worker flushes its provider as it stops
    wait_until(lambda: len(collector.spans()) >= 13 * (1 + len(STAGES)), 30, what="spans")

    got = collector.spans()
    servers = {span.span_id: (res, span) for res, span in got if span.name == "POST /v1/rank"}
    assert len(servers) == 13
    pids = set()
    for trace_id, traceresponse in sent.items():
        (res, server), *_ = [
            (res, s) for res, s in servers.values() if s.trace_id.hex() == trace_id
        ]
        assert traceresponse == f"00-{trace_id}-{server.span_id.hex()}-01"
        assert server.parent_span_id.hex() == f"{int(trace_id, 16):016x}"
        attrs = attributes(server.attributes)
        assert attrs["rankswap.bundle_id"] == bundle.bundle_id
        assert (attrs["rankswap.candidates"], attrs["http.response.status_code"]) == (40, 200)
        assert res["service.name"] == "ranker-under-test"
        assert res["rankswap.worker"] == attrs["rankswap.worker"]
        assert res["rankswap.worker"] in range(WORKERS)
        pids.add((res["rankswap.worker"], res["process.pid"]))
        children = [s for _, s in got if s.parent_span_id == server.span_id]
        assert sorted(s.name for s in children) == sorted(STAGES)
    assert len({pid for _, pid in pids}) == len(pids)  # one provider per worker process
    assert len(got) == 13 * (1 + len(STAGES))
