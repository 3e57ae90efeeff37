"""What the chart's PromQL may name: the metrics the ranker and the operator really export
(read from their registries), and the metric names an expression selects."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry

from rankswap_operator.metrics import OperatorMetrics
from rankswap_ranker.metrics import RankerMetrics

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "inf",
    "nan",
}


def exported_series_names() -> set[str]:
    """Every series name the two components expose, from their metric classes."""
    names: set[str] = set()
    for build in (RankerMetrics, OperatorMetrics):
        registry = CollectorRegistry()
        build(registry)
        for family in registry.collect():
            names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (strings, matchers, ranges, grouping
    labels, functions and keywords removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    found = set()
    for match in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        found.add(name)
    return found
