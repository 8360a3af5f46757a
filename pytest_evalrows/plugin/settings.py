"""Every setting in one place: a CLI flag, an ini key and an env var, resolved in that order."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ..core import ids
from ..core.redaction import scrub_url_credentials
from ..core.values import storable_text
from ..store.urls import DEFAULT_STORE, VALID_FORMS, StoreURL, api_key_from_env, parse_store_url
from . import setting_values as values_

TRACING_MODES = ("auto", "attach", "off")
REPORT_MODES = ("full", "none")
RESUME_MODES = ("passed", "finished", "off")


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
    # A flag that may be given more than once; its values are joined with new lines.
    repeatable: bool = False

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
        "report",
        "the report at the session's end: full (-q shortens it) or none",
        default="full",
        metavar="WHICH",
    ),
    Option(
        "baseline",
        "compare this session's rows, row by row and score by score, with the latest rows of "
        "experiment NAME (in the same store and project)",
        metavar="NAME",
    ),
    Option(
        "fail_under",
        "fail the session (exit 1) when the mean of score NAME over the latest versions of the "
        "rows this session collected is below VALUE; pass=0.9 is the pass rate. Repeat the "
        "flag for more scores (ini: one per line; env: separated by commas)",
        metavar="NAME=VALUE",
        repeatable=True,
    ),
    Option(
        "max_regressions",
        "fail the session (exit 1) when more than N rows regressed against --eval-baseline (a "
        "row regresses when its pass score or any score both sides have went down)",
        metavar="N",
    ),
    Option(
        "trials",
        "run every eval case N times in the session, each trial a row of its own "
        "(<row id>#<k>); @pytest.mark.eval(trials=N) sets it for one test",
        default="1",
        metavar="N",
    ),
    Option(
        "judge_wait",
        "seconds the session waits at its end for the judgments still running; those not "
        "finished by then are failures",
        default="300",
        metavar="SECONDS",
    ),
    Option(
        "concurrency",
        "eval cases run at once in each pytest process: async def eval tests as tasks on one "
        "event loop, sync ones marked @pytest.mark.eval(concurrent=True) on threads; 1 runs "
        "them one at a time",
        default="1",
        metavar="N",
    ),
    Option(
        "concurrency_limit",
        "at most N cases of concurrency group NAME (@pytest.mark.eval(concurrency_group=NAME)) "
        "run at once; repeat the flag for more groups (ini: one per line; env: separated by "
        "commas)",
        metavar="NAME=N",
        repeatable=True,
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
    report: str = "full"
    baseline: str | None = None
    # (score name, the mean it must reach), sorted by name; "pass" is the pass rate.
    fail_under: tuple[tuple[str, float], ...] = ()
    max_regressions: int | None = None
    trials: int = 1
    # Running, not recording: these hold in inert sessions too.
    concurrency: int = 1
    # (concurrency group, the most of its cases run at once), sorted by group name.
    concurrency_limits: tuple[tuple[str, int], ...] = ()

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
                option.flag,
                dest=option.dest,
                default=None,
                metavar=option.metavar,
                help=help,
                action="append" if option.repeatable else "store",
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
        if isinstance(flag_value, list):  # a repeatable flag: every value it was given
            found[option.name] = ("\n".join(flag_value), option.flag)
        elif flag_value is not None:
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

    experiment = get("experiment", values_.name("an experiment name"))
    # The rootdir's name may hold bytes that are not UTF-8: escaped as every stored text is.
    project = (
        get("project", values_.name("a project name")) or storable_text(anchor.name) or "default"
    )
    store = get("store", lambda value: parse_store_url(value, anchor))
    attempt_id = get("attempt_id", values_.attempt_id)
    settings = Settings(
        experiment=experiment,
        store=store,
        project=project,
        attempt_id=attempt_id,
        anchor=anchor,
        api_key=get("api_key", str)
        or api_key_from_env(dict(os.environ if environ is None else environ)),
        http_timeout=get("http_timeout", values_.seconds),
        http_retries=get("http_retries", values_.count),
        tracing=get("tracing", values_.choice(TRACING_MODES)),
        keep_stale_spans=bool(get("keep_stale_spans", values_.boolean)),
        resume=get("resume", values_.choice(RESUME_MODES)),
        spool=get("spool", lambda value: values_.directory(value, anchor)),
        fail_on_undelivered=bool(get("fail_on_undelivered", values_.boolean)),
        judge_timeout=get("judge_timeout", values_.seconds),
        judge_concurrency=get("judge_concurrency", lambda value: values_.count(value, 1)),
        judge_wait=get("judge_wait", lambda value: values_.seconds(value, zero=True)),
        report=get("report", values_.choice(REPORT_MODES)),
        baseline=get("baseline", values_.name("an experiment name")),
        fail_under=get("fail_under", values_.score_bounds) or (),
        max_regressions=get("max_regressions", values_.count),
        trials=get("trials", lambda value: values_.count(value, 1)),
        concurrency=get("concurrency", lambda value: values_.count(value, 1)),
        concurrency_limits=get("concurrency_limit", values_.group_limits) or (),
    )
    if settings.max_regressions is not None and settings.baseline is None:
        where = values["max_regressions"][1]
        raise pytest.UsageError(
            f"evalrows: {where} counts regressions against a baseline: name one with "
            "--eval-baseline EXPERIMENT"
        )
    return settings
