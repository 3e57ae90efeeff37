"""The ``rankswap`` command line: one entry point, subcommands registered by each role package.

Each role package (``rankswap_training``, ``rankswap_ranker``, ``rankswap_operator``) exposes
``cli.register(subparsers)``; its subcommands set ``func(args) -> int``. Errors of the known
hierarchies become one line on stderr and exit code 2; bugs keep their traceback. Every
setting follows one rule (``rankswap.settings``): a flag given > ``RANKSWAP_*`` > default.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import cast

from rankswap.artifacts import ArtifactError
from rankswap.logs import configure_logging
from rankswap.settings import LOG_LEVELS, CliSettings, SettingsError, from_flags

ROLE_CLIS = ("rankswap_training.cli", "rankswap_ranker.cli", "rankswap_operator.cli")
EXIT_ERROR = 2
PLUGIN_COMMANDS = ("promote", "rollback", "status")
"""What ``kubectl rankswap`` offers: the kubectl-like helpers of the operator's CLI."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rankswap",
        description=(
            "Rank each tenant's own expense line items with an ONNX model, and swap model and "
            "features in running ranker pods without a restart."
        ),
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=None,
        help="DEBUG, INFO, WARNING or ERROR (RANKSWAP_LOG_LEVEL, default INFO)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=None,
        help="log line format (RANKSWAP_LOG_FORMAT, default text; serve: json)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in ROLE_CLIS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # a role that is not built yet
        cast(
            "Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]", module.register
        )(subparsers)
    return parser


def _known_errors() -> tuple[type[BaseException], ...]:
    """The error hierarchies whose messages are shown as one line (exit code 2).

    Evaluated when an exception propagates, so only modules already loaded are consulted: an
    error of a module never imported cannot have been raised, and the CLI stays light.
    """
    errors: list[type[BaseException]] = [ArtifactError, SettingsError]
    for module_name, attr in (
        ("rankswap.productdb.errors", "ProductDBError"),
        ("rankswap_training.errors", "TrainingError"),
        ("rankswap_ranker.errors", "RankerError"),
        ("rankswap_operator.errors", "OperatorError"),
    ):
        error = getattr(sys.modules.get(module_name), attr, None)
        if isinstance(error, type) and issubclass(error, BaseException):
            errors.append(error)
    return tuple(errors)


def cli_settings(args: argparse.Namespace) -> CliSettings:
    """The top-level options: flag given > RANKSWAP_LOG_* > default."""
    return from_flags(CliSettings, log_level=args.log_level, log_format=args.log_format)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = cast(Callable[[argparse.Namespace], int], args.func)
    try:
        settings = cli_settings(args)
        configure_logging(settings.log_level, json_lines=settings.log_format == "json")
        return int(func(args) or 0)
    except _known_errors() as exc:
        print(f"rankswap {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        logging.getLogger("rankswap").warning("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())


def kubectl_plugin(argv: Sequence[str] | None = None) -> int:
    """``kubectl rankswap promote|rollback|status ...``: kubectl runs the executable
    ``kubectl-rankswap`` found on PATH with the arguments after ``rankswap``; this hands them to
    :func:`main`. Only the kubectl-like helpers are offered (``rankswap serve`` and the rest are
    not kubectl commands)."""
    args = list(sys.argv[1:] if argv is None else argv)
    usage = f"usage: kubectl rankswap {{{','.join(PLUGIN_COMMANDS)}}} ... (-h for each)"
    if args[:1] in (["-h"], ["--help"]):
        print(usage)
        return 0
    if not args or args[0] not in PLUGIN_COMMANDS:
        print(f"kubectl rankswap: error: {usage.removeprefix('usage: ')}", file=sys.stderr)
        return EXIT_ERROR
    return main(args)
