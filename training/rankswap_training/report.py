"""The evaluation report published next to the model: ``report.md`` + ``report.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rankswap_training.evaluate import METRICS

SUBSETS = {
    "overall": "",
    "cold_start": "The chosen item was created after the training cut-off.",
    "new_sibling": "Cold start, and the item's category holds another active candidate.",
    "new_sibling_named": "New sibling items whose description holds a term of the item's "
    "name or code that no sibling's holds (the description names the variant).",
}
"""The report's sections: evaluation subsets, each with what it holds."""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if v != v else f"{v:.3f}"
    return str(v)


def write_report(
    directory: Path,
    *,
    title: str,
    results: dict[str, dict[str, dict[str, float]]],
    sweep: list[dict[str, Any]],
    chosen: str,
    reason: str,
    facts: dict[str, Any],
) -> list[Path]:
    """Write report.md and report.png into ``directory``; returns their paths."""
    md = [f"# {title}", ""]
    md += [f"- **{k}**: {_fmt(v)}" for k, v in facts.items()]
    md += ["", f"Chosen model: **{chosen}**. {reason}", ""]
    for subset, about in SUBSETS.items():
        md += [f"## {subset.replace('_', ' ')}", ""]
        if about:
            md += [about, ""]
        md += ["| model | " + " | ".join(METRICS) + " | queries |"]
        md += ["|---|" + "---|" * (len(METRICS) + 1)]
        for model, by_subset in results.items():
            m = by_subset.get(subset)
            if m is None:
                continue
            md += [
                f"| {model} | "
                + " | ".join(_fmt(m[k]) for k in METRICS)
                + f" | {int(m.get('queries', 0))} |"
            ]
        md += [""]
    if sweep:
        md += ["## Tree budget: quality vs ONNX latency", ""]
        md += [
            "| candidate | leaves | NDCG@5 | cold Recall@1 | cold Recall@5 | cold NDCG@5 "
            "| ONNX ms / 1,000 rows (1 thread) | size KB |"
        ]
        md += ["|---|---|---|---|---|---|---|---|"]
        for s in sweep:
            md += [
                f"| {s['label']} | {s['leaves']} | {_fmt(s['ndcg@5'])} | "
                f"{_fmt(s['cold_recall@1'])} | {_fmt(s['cold_recall@5'])} | "
                f"{_fmt(s['cold_ndcg@5'])} | {s['latency_ms']:.3f} | {s['size_kb']:.0f} |"
            ]
        md += [""]
    md += ["![metrics](report.png)", ""]
    md_path = directory / "report.md"
    md_path.write_text("\n".join(md), encoding="utf-8")
    png_path = directory / "report.png"
    _chart(png_path, results, sweep)
    return [md_path, png_path]


def _chart(
    path: Path, results: dict[str, dict[str, dict[str, float]]], sweep: list[dict[str, Any]]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3 if sweep else 2, figsize=(15 if sweep else 10, 4))
    models = list(results)
    for ax, subset in zip(axes[:2], ("overall", "cold_start"), strict=True):
        width = 0.8 / max(1, len(models))
        for k, model in enumerate(models):
            m = results[model].get(subset, {})
            vals = [m.get(x, 0.0) for x in METRICS]
            ax.bar([i + k * width for i in range(len(METRICS))], vals, width, label=model)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(METRICS))])
        ax.set_xticklabels(METRICS)
        ax.set_ylim(0, 1)
        ax.set_title(subset.replace("_", " "))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
    if sweep:
        ax = axes[2]
        ax.scatter([s["latency_ms"] for s in sweep], [s["ndcg@5"] for s in sweep])
        for s in sweep:
            ax.annotate(s["label"], (s["latency_ms"], s["ndcg@5"]), fontsize=7)
        ax.set_xlabel("ONNX ms per 1,000 rows (1 thread)")
        ax.set_ylabel("NDCG@5")
        ax.set_title("tree budget")
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)
