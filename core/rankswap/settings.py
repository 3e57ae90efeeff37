"""Settings precedence, one rule for every setting of every component.

    a flag given on the command line  >  its RANKSWAP_* environment variable  >  the default

Each component has one typed settings class (this module's :class:`CliSettings` for the
top-level ``rankswap`` options, ``rankswap_ranker.settings.RankerSettings``,
``rankswap_operator.settings.OperatorSettings``); its command builds it with
:func:`from_flags`, passing every flag whose parser default is ``None`` ("not given"). A flag
that is not given never hides the environment. Invalid values, from a flag or from the
environment, raise :class:`SettingsError` with one line naming the variable.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
LOG_LEVELS: tuple[LogLevel, ...] = ("DEBUG", "INFO", "WARNING", "ERROR")

S = TypeVar("S", bound=BaseSettings)


class SettingsError(ValueError):
    """A setting (flag or environment variable) has an invalid value; the message is one line."""


class CliSettings(BaseSettings):
    """Options of every ``rankswap`` command; each field is the variable ``RANKSWAP_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="RANKSWAP_", extra="ignore", frozen=True)

    log_level: LogLevel = "INFO"
    """Level of the logs on stderr (``--log-level``). ``rankswap serve`` reads the same
    variable (``RankerSettings.log_level``)."""
    log_format: Literal["text", "json"] = "text"
    """``text`` for people, ``json`` (one JSON object a line) for machines (``--log-format``).
    ``rankswap serve`` defaults to ``json`` (``RankerSettings.log_format``)."""

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return upper_level(value)


def upper_level(value: Any) -> Any:
    """Log levels are case-insensitive (``info`` = ``INFO``), as ``--log-level`` is."""
    return value.upper() if isinstance(value, str) else value


def given(**flags: Any) -> dict[str, Any]:
    """The flags that were given: parsers use ``None`` as the default of every such flag."""
    return {name: value for name, value in flags.items() if value is not None}


def from_flags(cls: type[S], **flags: Any) -> S:
    """``cls`` from the flags given, then ``RANKSWAP_*`` variables, then its defaults."""
    try:
        return cls(**given(**flags))
    except ValidationError as exc:
        raise SettingsError(describe(cls, exc)) from exc


def describe(cls: type[BaseSettings], exc: ValidationError) -> str:
    """One line naming each invalid setting as its environment variable."""
    prefix = str(cls.model_config.get("env_prefix") or "")
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        if not field:  # a rule over several fields
            problems.append(f"{cls.__name__}: {error['msg']}")
            continue
        value = error.get("input")
        shown = (
            f" (got {value!r})"
            if isinstance(value, str | int | float)
            and len(str(value)) <= 80
            and not any(word in field for word in _SECRET_WORDS)
            else ""
        )
        problems.append(f"{prefix}{field}".upper() + f": {error['msg']}{shown}")
    return "invalid settings: " + "; ".join(problems)


_SECRET_WORDS = ("token", "password", "secret", "url")  # values never echoed (credentials)
