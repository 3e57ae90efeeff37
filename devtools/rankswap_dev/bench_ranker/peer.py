"""The peer the ranker is measured against: ``python -m rankswap_dev.bench_ranker.peer``.

A minimal FastAPI app on the same uvicorn (uvloop, httptools, one process): one ``async`` route
that parses the body with the ranker's own :class:`RankRequest` and calls the ranker's own
``ranking.rank()`` inline, nothing else (no limits, metrics, headers, logs or swaps). It binds
``--port`` on ``--host`` and serves until SIGTERM; the bundle is loaded before it listens.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request, Response

from rankswap_ranker import bundle as bundles
from rankswap_ranker.candidates import LazyProductDB
from rankswap_ranker.ranking import rank
from rankswap_ranker.routes import rank_query
from rankswap_ranker.schemas import RankRequest


def peer_app(bundle: bundles.Bundle, source: LazyProductDB) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/v1/rank")
    async def rank_route(request: Request) -> Response:
        body = RankRequest.model_validate_json(await request.body())
        query = rank_query(body, body.top_k or 5)
        return Response(rank(bundle, source, query).body, media_type="application/json")

    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model-uri", required=True)
    p.add_argument("--features-uri", required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    ref = bundles.resolve(args.model_uri, args.features_uri, args.cache)
    source = LazyProductDB(args.db)
    app = peer_app(bundles.load(ref, prefault=True), source)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )
    source.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
