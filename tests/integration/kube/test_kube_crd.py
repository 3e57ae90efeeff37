"""A CRD's structural schema is enforced by the real API server (a minimal CRD of its own)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from rankswap_dev.localkube import Cluster, KubectlError

pytestmark = pytest.mark.integration

CRD = Path(__file__).parent / "data" / "artifactversion-crd.yaml"
# A group of its own: this smoke-test CRD shares the session's API server with the real
# ArtifactVersion CRD (manifests/crd) and must not replace it.
GROUP, VERSION, PLURAL = "smoke.localkube.rankswap.io", "v1alpha1", "artifactversions"


@pytest.fixture(scope="module")
def artifactversion_crd(control_plane: Cluster) -> Iterator[str]:
    control_plane.kubectl("apply", "-f", str(CRD))
    control_plane.kubectl(
        "wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}", "--timeout=60s"
    )
    yield f"{PLURAL}.{GROUP}"


def _av(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ArtifactVersion",
        "metadata": {"name": name},
        "spec": spec,
    }


@pytest.mark.timeout(90)
def test_valid_object_is_accepted_and_listed_by_short_name(
    control_plane: Cluster, artifactversion_crd: str, namespace: str
) -> None:
    manifest = json.dumps(_av("v1", {"modelUri": "s3://models/2026-11-27/"}))
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    out = control_plane.kubectl("get", "smokeav", "-n", namespace, "-o", "json").stdout
    items = json.loads(out)["items"]
    assert [i["spec"]["modelUri"] for i in items] == ["s3://models/2026-11-27/"]


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"modelUri": "http://example.invalid/model"}, "spec.modelUri"),
        ({"encoderUri": "s3://enc/"}, "spec.modelUri: Required value"),
        ({"modelUri": 42}, "spec.modelUri"),
    ],
)
def test_schema_rejects_invalid_object(
    control_plane: Cluster,
    artifactversion_crd: str,
    namespace: str,
    spec: dict[str, Any],
    expected: str,
) -> None:
    manifest = json.dumps(_av("bad", spec))
    with pytest.raises(KubectlError) as err:
        control_plane.kubectl("create", "-n", namespace, "-f", "-", input=manifest)
    assert "Invalid value" in err.value.stderr or "Required value" in err.value.stderr
    assert expected in err.value.stderr
    # and nothing was stored
    got = control_plane.kubectl("get", "smokeav", "-n", namespace, "-o", "name").stdout
    assert got.strip() == ""


@pytest.mark.timeout(90)
def test_schema_rejection_through_python_client(
    kube_api: Any, artifactversion_crd: str, namespace: str
) -> None:
    api: Any = client.CustomObjectsApi(kube_api)
    with pytest.raises(ApiException) as err:
        api.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, _av("bad", {"modelUri": "ftp://x"})
        )
    assert err.value.status == 422
    assert "spec.modelUri" in str(err.value.body)


@pytest.mark.timeout(90)
def test_status_subresource(
    control_plane: Cluster, kube_api: Any, artifactversion_crd: str, namespace: str
) -> None:
    api: Any = client.CustomObjectsApi(kube_api)
    api.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _av("v2", {"modelUri": "file:///tmp/m"})
    )
    # status written through the main resource is ignored (status subresource enabled) ...
    api.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "v2", {"status": {"phase": "Ready"}}
    )
    obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "v2")
    assert "status" not in obj or obj["status"].get("phase") is None
    # ... and accepted (and validated) through /status
    api.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "v2", {"status": {"phase": "Ready"}}
    )
    obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "v2")
    assert obj["status"]["phase"] == "Ready"
    with pytest.raises(ApiException) as err:
        api.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, "v2", {"status": {"phase": "Bogus"}}
        )
    assert err.value.status == 422
    # kubectl shows the printer columns
    table = control_plane.kubectl("get", "smokeav", "v2", "-n", namespace).stdout
    assert "file:///tmp/m" in table and "Ready" in table
