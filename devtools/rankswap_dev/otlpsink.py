"""A tiny OTLP/HTTP trace receiver (``POST /v1/traces``, protobuf): what the tracing tests and
the tracing benchmark export to in place of an OpenTelemetry Collector.

In a thread (:class:`OtlpSink`, the tests: every request is decoded and kept), or in a process
of its own (``python -m rankswap_dev.otlpsink [--port N]``: prints ``listening <port>``, counts
spans, keeps nothing, prints ``spans <n>`` on SIGTERM; the benchmark, whose CPU time must not include the receiver's).
"""

from __future__ import annotations

import argparse
import gzip
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

MAX_BODY = 64 * 2**20


def value(v: AnyValue) -> Any:
    """The Python value of an OTLP ``AnyValue`` (scalars; arrays as their protobuf)."""
    return getattr(v, v.WhichOneof("value") or "string_value")


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in kvs}


class OtlpSink:
    """``POST /v1/traces`` on ``host``, answered 200 with an empty export response; anything
    else is 400. ``keep``: keep the decoded requests (:meth:`spans`), else only count spans."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, keep: bool = True) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.span_count = 0
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("content-length", "0"))
                ok = (
                    self.path == "/v1/traces"
                    and self.headers.get("content-type") == "application/x-protobuf"
                    and 0 <= size <= MAX_BODY
                )
                if ok:
                    raw = self.rfile.read(size)
                    if self.headers.get("content-encoding") == "gzip":
                        raw = gzip.decompress(raw)
                    sink.received(ExportTraceServiceRequest.FromString(raw), keep)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if ok else 400)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def received(self, request: ExportTraceServiceRequest, keep: bool) -> None:
        n = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        with self.lock:
            self.span_count += n
            if keep:
                self.requests.append(request)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> OtlpSink:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """Every span kept, with its resource's attributes."""
        with self.lock:
            return [
                (attributes(rs.resource.attributes), span)
                for req in self.requests
                for rs in req.resource_spans
                for ss in rs.scope_spans
                for span in ss.spans
            ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rankswap_dev.otlpsink", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args(argv)
    sink = OtlpSink(args.host, args.port, keep=False)

    def stop(*_: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)  # SIGINT may be ignored (a background job's child)
    print(f"listening {sink.server.server_address[1]}", flush=True)
    try:
        sink.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        print(f"spans {sink.span_count}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
