"""Every setting in one place: a CLI flag, an ini key and an env var, resolved in that order."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ..core import ids
from ..core.redaction import scrub_url_credentials
from ..core.values import storable_text
from ..store.urls import DEFAULT_STORE, VALID_FORMS, StoreURL, api_key_from_env, parse_store_url

TRACING_MODES = ("auto", "attach", "off")
RESUME_MODES = ("passed", "finished", "off")

# No control characters, and no surrogates: a name given in bytes that are not UTF-8 (on a
# command line, say) reaches Python as surrogates, which no store can keep.
_NAME = re.compile(r"^[^\x00-\x1f\x7f\ud800-\udfff]{1,200}$")


@dataclass(frozen=True)
class Option:
    """One setting. The flag, ini key and env var are derived from ``name``."""

    name: str
    help: str
    default: str | None = None
    metavar: str | None = None
    # Flags that take no value (store_true) or an optional one (the const, and the values
    # the flag may be followed by).
    const: str | None = None
    modes: tuple[str, ...] = ()
    takes_value: bool = True

    @property
    def flag(self) -> str:
        return "--eval-" + self.name.replace("_", "-")

    @property
    def ini(self) -> str:
        return "eval_" + self.name

    @property
    def env(self) -> str:
        return "EVALROWS_" + self.name.upper()

    @property
    def dest(self) -> str:
        return "evalrows_" + self.name


OPTIONS: tuple[Option, ...] = (
    Option(
        "experiment",
        "record eval rows into experiment NAME (without it the plugin does nothing)",
        metavar="NAME",
    ),
    Option(
        "store",
        f"where rows live: {VALID_FORMS}; relative to the rootdir (default {DEFAULT_STORE})",
        default=DEFAULT_STORE,
        metavar="URL",
    ),
    Option(
        "project", "project the experiment belongs to (default: the rootdir's name)", metavar="NAME"
    ),
    Option(
        "attempt_id",
        "id of this session's attempt, stamped on every row and span (default: a new UUID)",
        metavar="ID",
    ),
    Option(
        "api_key",
        "API key of an http(s) store (also read from BRAINTRUST_API_KEY); never printed",
        metavar="KEY",
    ),
    Option(
        "http_timeout",
        "seconds an http(s) store request may take before it is retried",
        default="30",
        metavar="SECONDS",
    ),
    Option(
        "http_retries",
        "times an http(s) store request is retried, with exponential backoff, after a "
        "connection error, a timeout, 408, 429 or 5xx",
        default="5",
        metavar="N",
    ),
    Option(
        "tracing",
        "OpenTelemetry span capture: auto (use your tracer provider, or set one up when none "
        "is configured by session start), attach (only ever use yours, also one configured "
        "later, in a fixture), off",
        default="auto",
        metavar="MODE",
    ),
    Option(
        "resume",
        "before running, deselect the cases whose row already passed (or xfailed, xpassed) "
        "in this experiment. WHICH: passed (the bare flag); finished, which also skips the "
        "rows that failed or were skipped, so only errors and cases never run are run again; "
        "off. A path may follow the bare flag: --eval-resume tests/",
        default="off",
        metavar="WHICH",
        const="passed",
        modes=RESUME_MODES,
    ),
    Option(
        "spool",
        "directory that keeps batches until the store has them (default: .evalrows/spool "
        "under the rootdir)",
        metavar="DIR",
    ),
    Option(
        "fail_on_undelivered",
        "exit non-zero when rows could not be delivered to the store (they stay in the spool)",
        takes_value=False,
    ),
    Option(
        "keep_stale_spans",
        "keep the spans earlier attempts left under rerun rows instead of deleting them at "
        "session end",
        takes_value=False,
    ),
    Option(
        "judge_timeout",
        "seconds one judge may take on one row (@pytest.mark.eval(judges=...), "
        "eval_row.judge) before its evaluation is a failure",
        default="60",
        metavar="SECONDS",
    ),
    Option(
        "judge_concurrency",
        "judges run at once while the tests go on",
        default="8",
        metavar="N",
    ),
    Option(
        "judge_wait",
        "seconds the session waits at its end for the judgments still running; those not "
        "finished by then are failures",
        default="300",
        metavar="SECONDS",
    ),
)


#: The session's resolved settings, kept once at configure time (inert sessions too).
settings_key: pytest.StashKey[Settings] = pytest.StashKey()


@dataclass(frozen=True)
class Settings:
    """The resolved settings of one session."""

    experiment: str | None
    store: StoreURL
    project: str
    attempt_id: str | None
    anchor: Path
    api_key: str | None = field(default=None, repr=False)
    http_timeout: float = 30.0
    http_retries: int = 5
    tracing: str = "auto"
    keep_stale_spans: bool = False
    resume: str = "off"
    spool: Path | None = None
    fail_on_undelivered: bool = False
    judge_timeout: float = 60.0
    judge_concurrency: int = 8
    judge_wait: float = 300.0

    @property
    def recording(self) -> bool:
        return self.experiment is not None


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("evalrows", "record eval rows (pytest-evalrows)")
    for option in OPTIONS:
        help = f"{option.help}. ini: {option.ini}, env: {option.env}"
        if not option.takes_value:
            group.addoption(
                option.flag,
                action="store_const",
                const="true",
                dest=option.dest,
                default=None,
                help=help,
            )
        elif option.const is not None:
            group.addoption(
                option.flag,
                action=ModeOrPath,
                modes=option.modes,
                nargs="?",
                const=option.const,
                dest=option.dest,
                default=None,
                metavar=option.metavar,
                help=help,
            )
        else:
            group.addoption(
                option.flag, dest=option.dest, default=None, metavar=option.metavar, help=help
            )
        parser.addini(option.ini, option.help, default=None)


class ModeOrPath(argparse.Action):
    """An optional value that is taken only when it can be one: ``--eval-resume tests/``
    runs ``tests/`` with resume on, as ``--eval-resume=finished tests/`` does with its mode.

    argparse gives a flag with an optional value the next word, whatever it is; a word that
    names no mode and looks like a path or node id goes back to pytest, which takes it as a
    path. Any other word stays the value, so that a mistyped mode (``--eval-resume=pased``)
    is a usage error naming the valid ones, not a missing file.
    """

    def __init__(self, *args: Any, modes: tuple[str, ...], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.modes = modes

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        value = self.const if values is None else str(values)
        if values is not None and self._is_path(value):
            # Arguments an action leaves to the caller: argparse appends them to the unknown
            # arguments, which pytest takes as paths (as subparsers do with theirs).
            leftover = getattr(namespace, "_unrecognized_args", [])
            namespace._unrecognized_args = [*leftover, value]
            value = self.const
        setattr(namespace, self.dest, value)

    def _is_path(self, word: str) -> bool:
        if word.strip().lower() in self.modes:
            return False
        if any(mark in word for mark in ("/", os.sep, "::", ".", "[")):
            return True
        return Path(word).exists()


def raw_values(config: pytest.Config, environ: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Setting name -> (value, where it came from), for the settings that are set."""
    found: dict[str, tuple[str, str]] = {}
    for option in OPTIONS:
        flag_value = config.getoption(option.dest, default=None)
        ini_value: Any = config.getini(option.ini)
        env_value = environ.get(option.env)
        if flag_value is not None:
            found[option.name] = (str(flag_value), option.flag)
        elif ini_value not in (None, "", []):
            found[option.name] = (str(ini_value).strip(), f"ini key {option.ini}")
        elif env_value:
            found[option.name] = (env_value, f"env var {option.env}")
        elif option.default is not None:
            found[option.name] = (option.default, "default")
    return found


def resolve(config: pytest.Config, environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve every setting; a bad value raises ``pytest.UsageError`` naming the valid ones."""
    env = os.environ if environ is None else environ
    values = raw_values(config, env)
    anchor = ids.project_anchor(config.rootpath, config.inipath is not None)

    def get(name: str, parse: Callable[[str], Any]) -> Any:
        if name not in values:
            return None
        value, source = values[name]
        try:
            return parse(value)
        except ValueError as exc:
            # The value is shown, but never a key or the credentials of a URL.
            shown = "***" if name == "api_key" else scrub_url_credentials(value)
            raise pytest.UsageError(f"evalrows: {source}={shown!r}: {exc}") from None

    experiment = get("experiment", _name("an experiment name"))
    # The rootdir's name may hold bytes that are not UTF-8: escaped as every stored text is.
    project = get("project", _name("a project name")) or storable_text(anchor.name) or "default"
    store = get("store", lambda value: parse_store_url(value, anchor))
    attempt_id = get("attempt_id", _attempt_id)
    return Settings(
        experiment=experiment,
        store=store,
        project=project,
        attempt_id=attempt_id,
        anchor=anchor,
        api_key=get("api_key", str)
        or api_key_from_env(dict(os.environ if environ is None else environ)),
        http_timeout=get("http_timeout", _seconds),
        http_retries=get("http_retries", _count),
        tracing=get("tracing", choice(TRACING_MODES)),
        keep_stale_spans=bool(get("keep_stale_spans", boolean)),
        resume=get("resume", choice(RESUME_MODES)),
        spool=get("spool", lambda value: _directory(value, anchor)),
        fail_on_undelivered=bool(get("fail_on_undelivered", boolean)),
        judge_timeout=get("judge_timeout", _seconds),
        judge_concurrency=get("judge_concurrency", lambda value: _count(value, 1)),
        judge_wait=get("judge_wait", lambda value: _seconds(value, zero=True)),
    )


def _name(what: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if _NAME.fullmatch(value) is None or not value.strip():
            raise ValueError(
                f"{what} must be 1 to 200 characters of UTF-8 text with no control characters "
                "and not only spaces"
            )
        return value

    return parse


def _attempt_id(value: str) -> str:
    if not ids.is_valid_attempt_id(value):
        raise ValueError(
            "an attempt id must be 1 to 128 characters: letters, digits and . _ : - "
            "(starting with a letter or digit)"
        )
    return value


def _count(value: str, minimum: int = 0) -> int:
    try:
        number = int(value)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise ValueError(f"valid values: a whole number, {minimum} or more")
    return number


def _seconds(value: str, *, zero: bool = False) -> float:
    """A number of seconds above 0 (or 0 and above, with ``zero``)."""
    valid = "0 or more" if zero else "above 0"
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"not a number of seconds; valid values: a number {valid}") from None
    if not (seconds >= 0 if zero else seconds > 0) or seconds == float("inf"):
        raise ValueError(f"valid values: a number of seconds {valid}")
    return seconds


def _directory(value: str, anchor: Path) -> Path:
    if not value.strip():
        raise ValueError("a directory path cannot be empty")
    path = Path(value).expanduser()
    path = path if path.is_absolute() else anchor / path
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} exists and is not a directory")
    return path


def choice(valid: tuple[str, ...]) -> Callable[[str], str]:
    """A parser for a setting with a fixed set of values."""

    def parse(value: str) -> str:
        normalized = value.strip().lower()
        if normalized not in valid:
            raise ValueError(f"not a valid value; valid values: {', '.join(valid)}")
        return normalized

    return parse


def boolean(value: str) -> bool:
    normalized = value.strip().lower()
    if normalized in ("1", "true", "yes", "on"):
        return True
    if normalized in ("0", "false", "no", "off"):
        return False
    raise ValueError("not a valid value; valid values: true, false (or 1, 0, yes, no, on, off)")
