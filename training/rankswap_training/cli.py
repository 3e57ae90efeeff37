"""``rankswap`` subcommands of the training side: datagen, features build, model train, examples.

``register(subparsers)`` adds them to the main parser; each sets ``func(args) -> exit code``.
Errors of the ``TrainingError`` hierarchy are printed as one line on stderr with exit code 2.
Their settings are these flags (defaults in ``--help``) and the top-level ``--log-level`` /
``--log-format`` (flag given > ``RANKSWAP_LOG_LEVEL`` / ``RANKSWAP_LOG_FORMAT`` > default).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Literal

from rankswap.logs import configure_logging
from rankswap.settings import CliSettings, SettingsError, from_flags
from rankswap_training.errors import TrainingError

# The pipelines (pandas, scikit-learn, LightGBM, ONNX) are imported by the commands that use
# them, not here: every `rankswap` command builds this parser, the operator's among them.

log = logging.getLogger("rankswap_training")

EXIT_ERROR = 2


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from exc


def _ref(value: str) -> date | Literal["latest"]:
    return "latest" if value == "latest" else _date(value)


def _guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            if not logging.getLogger().handlers:  # standalone: RANKSWAP_LOG_* or defaults
                log_settings = from_flags(CliSettings)
                configure_logging(
                    log_settings.log_level, json_lines=log_settings.log_format == "json"
                )
            return fn(args)
        except (TrainingError, SettingsError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR

    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


@_guarded
def cmd_datagen(args: argparse.Namespace) -> int:
    from rankswap_training import datagen, pipelines

    cfg = datagen.WorldConfig(
        seed=args.seed,
        tenants=args.tenants,
        days=args.days if args.days is not None else datagen.DEFAULT_DAYS,
        end=args.end if args.end is not None else datagen.DEFAULT_END,
        scale=args.scale,
        enrich=args.enrich,
    )
    counts = pipelines.run_datagen(args.db, cfg)
    print(" ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


@_guarded
def cmd_features_build(args: argparse.Namespace) -> int:
    from rankswap_training import pipelines

    done = pipelines.run_features_build(
        args.db,
        args.as_of,
        args.store,
        force=args.force,
        move_latest_backwards=args.move_latest_backwards,
        engine=args.engine,
        spark_master=args.spark_master,
        spark_inputs=args.spark_inputs,
    )
    print(done.describe())
    return 0


@_guarded
def cmd_model_train(args: argparse.Namespace) -> int:
    from rankswap_training import pipelines

    opts = pipelines.TrainOptions(
        holdout_days=args.holdout_days,
        train_days=args.train_days,
        max_train_expenses=args.max_train_expenses,
        max_eval_expenses=args.max_eval_expenses,
        seed=args.seed,
        candidates=pipelines.SWEEP_CANDIDATES if args.sweep else pipelines.DEFAULT_CANDIDATES,
        force=args.force,
        move_latest_backwards=args.move_latest_backwards,
        ablation=not args.no_ablation,
    )
    done = pipelines.run_model_train(args.db, args.as_of, args.store, opts)
    m = done.manifest
    o, c = m.metrics["overall"], m.metrics["cold_start"]
    print(
        f"published model {m.name} {m.version}: NDCG@5 {o['ndcg@5']:.3f} "
        f"Recall@5 {o['recall@5']:.3f} cold-start Recall@1 {c['recall@1']:.3f} "
        f"Recall@5 {c['recall@5']:.3f} NDCG@5 {c['ndcg@5']:.3f} "
        f"parity {m.metrics['parity_max_abs_diff']:.1e}"
    )
    print(done.describe())
    return 0


@_guarded
def cmd_examples(args: argparse.Namespace) -> int:
    from rankswap_training import pipelines

    print(
        pipelines.run_examples(
            args.db,
            args.store,
            model_ref=args.model,
            features_ref=args.features,
            tenant=args.tenant,
            n=args.n,
            cache_dir=args.cache_dir,
        )
    )
    return 0


LATEST_BACKWARDS_HELP = (
    "point latest/ at this artifact even when it holds a newer as-of date (by default a "
    "backfill leaves latest/ where it is, so pods that follow it never roll back)"
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``datagen``, ``features build``, ``model train`` and ``examples``."""
    p = subparsers.add_parser("datagen", help="generate the synthetic product DB")
    p.add_argument("--db", required=True, help="SQLAlchemy URL, e.g. sqlite:///work/product.db")
    p.add_argument(
        "--seed", type=int, default=7, help="random seed: same seed, same world (default 7)"
    )
    p.add_argument("--tenants", type=int, default=6, help="number of tenants (default 6)")
    p.add_argument("--days", type=int, default=None, help="days of history (default 400)")
    p.add_argument("--end", type=_date, default=None, help="last history day (default 2026-06-30)")
    p.add_argument(
        "--scale", type=float, default=1.0, help="employees/expenses multiplier (default 1.0)"
    )
    p.add_argument(
        "--enrich",
        action="store_true",
        help="add split items (社内/社外), typed item names and vendors named after items "
        "(off by default: the default world stays as it is)",
    )
    p.set_defaults(func=cmd_datagen)

    f = subparsers.add_parser("features", help="daily feature pipeline")
    fsub = f.add_subparsers(dest="features_command", required=True)
    fb = fsub.add_parser("build", help="build and publish feature tables as of a date")
    fb.add_argument(
        "--db",
        default=None,
        help="SQLAlchemy URL of the product DB (required without --spark-inputs)",
    )
    fb.add_argument("--as-of", type=_date, required=True, help="use expenses before this date")
    fb.add_argument("--store", required=True, help="artifact root: file:///abs or s3://b/p")
    fb.add_argument("--force", action="store_true", help="replace an existing dated artifact")
    fb.add_argument("--move-latest-backwards", action="store_true", help=LATEST_BACKWARDS_HELP)
    fb.add_argument(
        "--engine",
        choices=("duckdb", "spark"),
        default="duckdb",
        help="where the feature SQL runs: duckdb (default: in this process, out of core) or "
        "spark (the same SQL on Spark; needs the [spark] extra and Java 17+)",
    )
    fb.add_argument(
        "--spark-master",
        default="local[2]",
        metavar="URL",
        help="Spark master for --engine spark (default local[2]: this machine, 2 cores; "
        "spark://host:7077 or yarn with --spark-inputs on storage the executors read)",
    )
    fb.add_argument(
        "--spark-inputs",
        default=None,
        metavar="URI",
        help="with --engine spark and no --db: a folder or URI Spark reads holding "
        "exp.parquet, desc_term.parquet and item_term.parquet (docs/DATA.md, "
        '"Beyond one machine")',
    )
    fb.set_defaults(func=cmd_features_build)

    m = subparsers.add_parser("model", help="weekly model pipeline")
    msub = m.add_subparsers(dest="model_command", required=True)
    mt = msub.add_parser("train", help="train, evaluate, export ONNX and publish")
    mt.add_argument("--db", required=True)
    mt.add_argument("--as-of", type=_date, required=True)
    mt.add_argument("--store", required=True)
    mt.add_argument("--holdout-days", type=int, default=28)
    mt.add_argument("--train-days", type=int, default=182)
    mt.add_argument("--max-train-expenses", type=int, default=12_000)
    mt.add_argument("--max-eval-expenses", type=int, default=1_500)
    mt.add_argument("--seed", type=int, default=7)
    mt.add_argument(
        "--sweep", action="store_true", help="also try smaller/larger tree budgets (slower)"
    )
    mt.add_argument("--force", action="store_true")
    mt.add_argument("--move-latest-backwards", action="store_true", help=LATEST_BACKWARDS_HELP)
    mt.add_argument(
        "--no-ablation",
        action="store_true",
        help="skip the report's ablation (the chosen model fitted again without the item-text "
        "features; one more fit)",
    )
    mt.set_defaults(func=cmd_model_train)

    e = subparsers.add_parser(
        "examples", help="rank a few recent expenses with published artifacts"
    )
    e.add_argument("--db", required=True)
    e.add_argument("--store", required=True)
    e.add_argument("--model", type=_ref, default="latest", help="YYYY-MM-DD or latest")
    e.add_argument("--features", type=_ref, default="latest", help="YYYY-MM-DD or latest")
    e.add_argument("--tenant", default=None)
    e.add_argument("-n", type=int, default=3)
    e.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="local artifact cache (default $XDG_CACHE_HOME/rankswap/examples or ~/.cache/...)",
    )
    e.set_defaults(func=cmd_examples)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m rankswap_training.cli``) until ``rankswap.cli`` wires it."""
    parser = argparse.ArgumentParser(prog="rankswap")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
