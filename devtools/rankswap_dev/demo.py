"""``make demo``: the whole story on embedded defaults, in a few minutes.

1. a synthetic product DB (SQLite) and the daily/weekly pipelines for two consecutive dates,
   published to a local artifact store, with the offline evaluation;
2. a real Kubernetes API server (etcd + kube-apiserver as local processes), the CRD, the
   operator's RBAC, the operator itself (running as its ServiceAccount);
3. three ranker "pods": Pod objects whose containers are local ``rankswap serve`` processes on
   127.0.0.N (no kubelet here: a stand-in writes their status, probing /readyz);
4. ``kubectl apply`` of an ArtifactVersion; a ranking; a new item ranked at once; a promotion to
   the next date, its canary judged by how it ranks live traffic against the previous bundle;
   a bad but loadable model caught by that analysis and rolled back; an instant rollback; the
   Events. A small load generator sends requests throughout (none may fail).

Everything lives under ``work/demo/`` (``RANKSWAP_DEMO_DIR``) and is stopped at the end.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import unicodedata
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx

from rankswap.artifacts import artifact_uri, fetch_artifact, read_manifest
from rankswap.featurespec import FEATURE_SCHEMA_VERSION
from rankswap.productdb import ProductDB
from rankswap_dev.badmodel import publish_permuted
from rankswap_dev.launch import RankerProcess
from rankswap_dev.localkube.stack import NAMESPACE as NS
from rankswap_dev.localkube.stack import OPERATOR_NAMESPACE as OPERATOR_NS
from rankswap_dev.localkube.stack import LocalStack
from rankswap_dev.wait import WaitTimeout, wait_until

REPO = Path(__file__).resolve().parents[2]
AV = "lineitems"
# The PSI is of per-request standardised scores (lambdarank scores have no fixed scale between
# retrains). On the demo world (feature schema 1.1.0), `python -m rankswap_dev.measure_psi
# work/demo -n 400`: two good retrains differ by 0.019, the bad model by 2.69 (raw scores: 0.08
# and 13.0). The demo compares only ~30 requests, whose PSI is noisier (0.14 for the good
# retrain in one run, 2.4 for the bad model), so its bound is 0.5; with the hundreds of
# requests a production analysis waits for, the usual 0.25 holds (docs/OPERATOR.md). The
# ranking measures (top-1 agreement, top-k overlap) catch the bad model too.
ANALYSIS = {
    "minCompared": 30,
    "waitSeconds": 60,
    "minTop1Agreement": 0.5,
    "minTopKOverlap": 0.5,
    "maxPSI": 0.5,
    "maxErrorRate": 0.0,
}


def say(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m", flush=True)


def run(*args: str, env: dict[str, str] | None = None, quiet: bool = False) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "rankswap.cli", "--log-level", "WARNING", *args],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        print(result.stderr, file=sys.stderr)
        raise SystemExit(f"rankswap {' '.join(args)} failed with exit code {result.returncode}")
    if not quiet and result.stdout.strip():
        print(result.stdout.rstrip())
    return result.stdout


def wait(what: str, check: Callable[[], bool], timeout: float = 90) -> float:
    """Seconds until ``check()`` holds; the demo stops with a message if it does not."""
    start = time.monotonic()
    try:
        wait_until(check, timeout, 0.2, what=what)
    except WaitTimeout as exc:
        raise SystemExit(f"demo: {exc}") from None
    return time.monotonic() - start


def main() -> int:
    work = Path(os.environ.get("RANKSWAP_DEMO_DIR", REPO / "work" / "demo")).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    db_url = f"sqlite:///{work / 'product.db'}"
    store = (work / "store").as_uri()

    say("1. Synthetic product DB: tenants, their own items (Japanese and English), expense history")
    run("datagen", "--db", db_url, "--seed", "7")
    db = ProductDB(db_url)
    first, last = db.expense_date_range() or (date.today(), date.today())
    d1, d2 = last, last + timedelta(days=1)
    print(f"history {first} .. {last}; publishing versions as of {d1} and {d2}")

    for when in (d1, d2):
        say(
            f"2. Daily features + weekly model as of {when} (ONNX graph with its encoders) -> {store}"
        )
        run("features", "build", "--db", db_url, "--as-of", when.isoformat(), "--store", store)
        run("model", "train", "--db", db_url, "--as-of", when.isoformat(), "--store", store)
    bad = d2 + timedelta(days=1)
    say(
        f"2b. A bad but loadable model as of {bad}: the {d2} model reading its numeric feature "
        "columns in reverse order (a broken feature join; it loads, smoke-scores and answers 200)"
    )
    schema = read_manifest(artifact_uri(store, "features", FEATURE_SCHEMA_VERSION, d2)).name
    publish_permuted(store, "line-items", schema, d2, bad, work / "bad-model")
    say(f"3. Offline evaluation on the time-split hold-out (from the published report of {d2})")
    print_evaluation(store, d2, work / "cache")

    say("4. Example rankings scored by onnxruntime from the *published* artifacts")
    run(
        "examples",
        "--db",
        db_url,
        "--store",
        store,
        "--model",
        d2.isoformat(),
        "--features",
        d2.isoformat(),
        "-n",
        "2",
    )

    say(
        "5. A real Kubernetes API server (etcd + kube-apiserver, local processes), CRD, RBAC, operator"
    )
    stack = LocalStack(work, database_url=db_url, store=store)
    try:
        stack.start()
        plane, kubectl = stack.plane, stack.kubectl
        print(
            f"kube-apiserver {plane.server} ready in {plane.startup_seconds:.1f}s; KUBECONFIG={plane.kubeconfig}"
        )
        print(
            f"operator running as ServiceAccount {OPERATOR_NS}/rankswap-operator (RBAC: manifests/operator/rbac.yaml); log {work / 'operator.log'}"
        )

        say(
            "6. Three ranker pods. NOTE: no kubelet here - each pod's container is a local `rankswap serve`"
        )
        print(
            "   process on its own address 127.0.0.N; a stand-in writes the Pod status (IP, Ready from /readyz)."
        )
        print("   On a real cluster the same operator drives real pods: see docs/INSTALL.md.")
        # Every live request is also scored with the warm bundle (default 10 %), so the demo's
        # small traffic is enough for the canary analysis.
        shadow = {"RANKSWAP_SHADOW_SAMPLE_RATE": "1"}
        rankers = [stack.add_ranker(f"ranker-{i}", settings=shadow) for i in range(3)]
        print(kubectl("get", "pods", "-n", NS, "-o", "wide").stdout)
        canary = {
            "strategy": "Canary",
            "canaryPods": 1,
            "canaryVerifySeconds": 2,
            "analysis": ANALYSIS,
        }

        def av(when: date) -> str:
            return json.dumps(stack.artifact_version(AV, when, rollout=canary))

        def ready_on(when: date) -> Callable[[], bool]:
            version = read_manifest(artifact_uri(store, "model", "line-items", when)).version
            return lambda: stack.serving(AV, version, pods=len(rankers))

        say(f"7. kubectl apply -f artifactversion.yaml  (model + features as of {d1})")
        kubectl("apply", "-f", "-", input=av(d1))
        seconds = wait("first rollout", ready_on(d1))
        print(
            f"all pods confirmed {seconds:.1f}s after the apply (most of it the operator's own start-up)"
        )
        print(kubectl("get", "av", "-n", NS).stdout)

        say("8. POST /v1/rank on a pod")
        request = sample_request(db, d2)
        print(f"request: {json.dumps(request, ensure_ascii=False)}")
        top = show_ranking(rankers[0], request)["items"][0]

        tenant = request["tenant_id"]
        say(f"9. A new item for tenant {tenant}, created now: rankable in the very next request")
        # Same category as the best-ranked item: a brand-new item gets signal through its category.
        item_id = db.add_item(
            tenant, code="NEW-001", name=f"{top['category']} (new item, created now)",
            category=top["category"], account_code="6100",
        )  # fmt: skip
        response = show_ranking(rankers[1], {**request, "top_k": 100}, limit=0)
        position = next(
            (i for i, it in enumerate(response["items"], 1) if it["id"] == item_id), None
        )
        print(
            f"item {item_id} scored among {response['candidates']} candidates (no feature row, unseen name): rank {position}"
        )

        traffic = Traffic(rankers, sample_requests(db, d2, 40)).start()
        say(
            f"10. Promote: kubectl apply with the {d2} URIs (canary: one pod first; its live traffic is"
            " compared with the previous bundle and judged by spec.rollout.analysis; then the rest)"
        )
        print(f"   spec.rollout.analysis: {json.dumps(ANALYSIS)}")
        kubectl("apply", "-f", "-", input=av(d2))
        watch_rollout(kubectl, ready_on(d2))
        print(f"   analysis: {analysis_line(kubectl)}")
        print(kubectl("get", "av", "-n", NS).stdout)
        show_ranking(rankers[2], request)

        say(f"11. Promote the bad model ({bad}): the canary analysis catches it and rolls back")
        kubectl("apply", "-f", "-", input=av(bad))
        v2 = read_manifest(artifact_uri(store, "model", "line-items", d2)).version

        def caught() -> bool:
            st = status(kubectl)
            degraded: dict[str, Any] = next(
                (c for c in st.get("conditions") or [] if c["type"] == "Degraded"), {}
            )
            return degraded.get("reason") == "AnalysisFailed" and all(
                p.get("modelVersion") == v2 for p in st.get("pods") or []
            )

        watch_rollout(kubectl, caught)
        failed = next(c for c in status(kubectl)["conditions"] if c["type"] == "Degraded")
        print(f"   Degraded={failed['status']} {failed['reason']}: {failed['message']}")
        print(kubectl("get", "av", "-n", NS).stdout)

        say(
            f"12. Roll back: rankswap rollback {AV} --to {d1}  (good before, so every pod at once:"
            " no canary; the pods hold it warm)"
        )
        run(
            "rollback",
            AV,
            "-n",
            NS,
            "--to",
            d1.isoformat(),
            env={**os.environ, "KUBECONFIG": str(plane.kubeconfig)},
        )
        seconds = wait("rollback", ready_on(d1))
        print(
            f"all pods back on {d1} and confirmed in {seconds:.1f}s (a rollback skips the canary)"
        )
        run("status", AV, "-n", NS, env={**os.environ, "KUBECONFIG": str(plane.kubeconfig)})

        traffic.stop()
        print(
            f"load generator: {traffic.sent} requests during steps 10-12, {len(traffic.failures)} failed"
            + (f": {traffic.failures[:3]}" if traffic.failures else "")
        )

        say("13. kubectl get events (what kubectl describe av shows)")
        print(kubectl("get", "events", "-n", NS, "--field-selector", f"involvedObject.name={AV}",
                      "--sort-by=.metadata.resourceVersion", "-o",
                      "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message").stdout)  # fmt: skip
    finally:
        say("Stopping the pods, the operator and the control plane")
        stack.stop()
    print(f"done. Artifacts, DB and logs are under {work}")
    return 0


def sample_request(db: ProductDB, when: date) -> dict[str, Any]:
    return sample_requests(db, when, 1)[0]


def sample_requests(db: ProductDB, when: date, n: int) -> list[dict[str, Any]]:
    import pandas as pd
    import sqlalchemy as sa

    frame: pd.DataFrame = db.frame(
        sa.text(
            "select tenant_id, employee_id, vendor_id, description, amount from expenses "
            f"order by id desc limit {int(n)}"
        )
    )
    return [
        {
            "tenant_id": str(row["tenant_id"]),
            "context": {
                "employee_id": int(row["employee_id"]),
                "vendor_id": int(row["vendor_id"]),
                "description": str(row["description"]),
                "amount": float(row["amount"]),
                "date": when.isoformat(),
            },
            "top_k": 5,
        }
        for _, row in frame.iterrows()
    ]


class Traffic:
    """A small load generator: rank requests to random pods (~30/s) until stopped."""

    def __init__(self, rankers: list[RankerProcess], requests: list[dict[str, Any]]) -> None:
        self.rankers, self.requests = rankers, requests
        self.sent = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        rng = random.Random(5)
        with httpx.Client(timeout=5) as http:
            while not self._stop.is_set():
                pod = rng.choice(self.rankers)
                try:
                    r = http.post(f"{pod.public_url}/v1/rank", json=rng.choice(self.requests))
                    if r.status_code != 200:
                        self.failures.append(f"{pod.name}: HTTP {r.status_code}")
                except httpx.HTTPError as exc:
                    self.failures.append(f"{pod.name}: {type(exc).__name__}")
                self.sent += 1
                time.sleep(0.03)


def status(kubectl: Callable[..., subprocess.CompletedProcess[str]]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(kubectl("get", "av", AV, "-n", NS, "-o", "json").stdout)
    return doc.get("status") or {}


def analysis_line(kubectl: Callable[..., subprocess.CompletedProcess[str]]) -> str:
    result = (status(kubectl).get("rollout") or {}).get("analysis") or {}
    return f"{result.get('verdict')}: {result.get('message')}"


def show_ranking(
    ranker: RankerProcess, request: dict[str, Any], *, limit: int = 5
) -> dict[str, Any]:
    response = httpx.post(f"{ranker.public_url}/v1/rank", json=request, timeout=10)
    response.raise_for_status()
    doc: dict[str, Any] = response.json()
    print(
        f"{ranker.name}: model {doc['model_version']} + features {doc['features_version']}, {doc['candidates']} candidates"
    )
    for i, item in enumerate(doc["items"][:limit], 1):
        print(
            f"  {i}. {pad(item['name'], 34)} {pad(item['category'], 14)} score {item['score']:.3f}"
        )
    return doc


def pad(text: str, width: int) -> str:
    """Left-align ``text`` in ``width`` terminal columns (CJK characters take two)."""
    cols = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return text + " " * max(0, width - cols)


def print_evaluation(store: str, when: date, cache: Path) -> None:
    """The overall and cold-start tables of the model's published report (report.md)."""
    _, local = fetch_artifact(artifact_uri(store, "model", "line-items", when), cache)
    report = (local / "report.md").read_text(encoding="utf-8")
    for section in ("## overall", "## cold start"):
        if section in report:
            block = report.split(section, 1)[1].split("\n## ", 1)[0]
            print(section.removeprefix("## ").capitalize() + ":" + block.rstrip())
    print(f"(full report with chart: {local / 'report.md'})")


def watch_rollout(
    kubectl: Callable[..., subprocess.CompletedProcess[str]], done: Callable[[], bool]
) -> None:
    last = ""
    start = time.monotonic()

    def progress() -> bool:
        nonlocal last
        out = kubectl("get", "av", AV, "-n", NS, "-o", "json").stdout
        st = json.loads(out).get("status") or {}
        progressing: dict[str, Any] = next(
            (c for c in st.get("conditions") or [] if c["type"] == "Progressing"), {}
        )
        pods = ", ".join(
            f"{p['name']}={p.get('state')}@{(p.get('modelVersion') or '-')[:10]}"
            for p in st.get("pods") or []
        )
        line = f"  {time.monotonic() - start:5.1f}s {progressing.get('reason', ''):<16} {st.get('updated', '')}  {pods}"
        if line.split(maxsplit=1)[1] != last:
            print(line)
            last = line.split(maxsplit=1)[1]
        return done()

    try:
        wait_until(progress, 120, 0.3, what="the promotion")
    except WaitTimeout as exc:
        raise SystemExit(f"demo: {exc}") from None


if __name__ == "__main__":
    sys.exit(main())
