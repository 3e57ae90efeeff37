from __future__ import annotations

from datetime import date

import pytest

from rankswap.artifacts import InvalidURI, artifact_uri, parse_artifact_uri, parse_uri


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("file:///srv/store", "file:///srv/store"),
        ("file:///srv/store/", "file:///srv/store"),
        ("file://localhost/srv/x", "file:///srv/x"),
        ("s3://bucket", "s3://bucket"),
        ("s3://bucket/a//b/", "s3://bucket/a/b"),
    ],
)
def test_parse_normalises(uri: str, expected: str) -> None:
    assert str(parse_uri(uri)) == expected


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("", "empty"),
        ("http://x/y", "unsupported scheme"),
        ("file://host/x", "absolute path"),
        ("file:relative", "absolute path"),
        ("s3:///no-bucket", "need a bucket"),
        ("s3://b/a/../c", "'..'"),
        ("file:///a/b?x=1", "query"),
    ],
)
def test_parse_rejects_with_reason(uri: str, says: str) -> None:
    with pytest.raises(InvalidURI, match=says):
        parse_uri(uri)


def test_layout_round_trip() -> None:
    uri = artifact_uri("s3://b/pre", "features", "1.0.0", date(2026, 5, 1))
    assert uri == "s3://b/pre/features/1.0.0/2026-05-01"
    ref = parse_artifact_uri(uri)
    assert (ref.kind, ref.name, ref.as_of, ref.is_latest) == (
        "features",
        "1.0.0",
        date(2026, 5, 1),
        False,
    )
    assert str(ref.root) == "s3://b/pre"
    latest = parse_artifact_uri(artifact_uri("file:///st", "model", "line-items", "latest"))
    assert latest.is_latest and latest.as_of is None and str(latest.root) == "file:///st"


@pytest.mark.parametrize(
    "uri",
    ["file:///st/models/line-items", "file:///st/other/x/latest", "s3://b/models/m/2026-13-01"],
)
def test_parse_artifact_uri_rejects(uri: str) -> None:
    with pytest.raises(InvalidURI):
        parse_artifact_uri(uri)


def test_is_within_compares_segments() -> None:
    root = parse_uri("s3://b/prod")
    assert parse_uri("s3://b/prod/models/m/latest").is_within(root)
    assert not parse_uri("s3://b/production/models").is_within(root)
    assert not parse_uri("s3://other/prod/models").is_within(root)
    assert not parse_uri("file:///prod/models").is_within(root)
