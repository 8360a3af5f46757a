"""Concurrent cases' output (issue 13): a body's prints and log records follow its case, by
contextvars, into the case's own buffers, stay out of the phase the main thread runs meanwhile,
and reach pytest as the case's own when its call phase is replayed."""

from __future__ import annotations

import contextlib
import contextvars
import io
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_evalrows.plugin.case_output import CaseOutput, OutputRouting, current_case, replay

LOGGER = logging.getLogger("tests.case_output")
# Only a safety net against a hang when a thread fails; no assertion depends on it.
HANG_GUARD = 30.0


class LogCaptureHandler(logging.Handler):
    """Named as pytest's report and caplog handler, which is how the routing finds it."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class OtherHandler(LogCaptureHandler):
    """Any other handler: a different class name, so the routing leaves it alone."""


@dataclass
class Streams:
    stdout: io.StringIO
    stderr: io.StringIO


@contextlib.contextmanager
def isolated() -> Iterator[Streams]:
    """Fresh sys.stdout/sys.stderr and an empty root logger, all put back afterwards. Entered
    in the test's body: pytest sets its own streams and handlers again for the call phase."""
    root = logging.getLogger()
    saved = (sys.stdout, sys.stderr, root.handlers[:], root.level)
    installed = Streams(io.StringIO(), io.StringIO())
    sys.stdout, sys.stderr = installed.stdout, installed.stderr
    root.handlers[:] = []
    root.setLevel(logging.WARNING)
    try:
        yield installed
    finally:
        sys.stdout, sys.stderr = saved[0], saved[1]
        root.handlers[:] = saved[2]
        root.setLevel(saved[3])


@contextlib.contextmanager
def routed() -> Iterator[tuple[Streams, OutputRouting]]:
    """``isolated``, with routing started over its streams and stopped at the end."""
    with isolated() as streams:
        routing = OutputRouting()
        routing.start()
        try:
            yield streams, routing
        finally:
            routing.stop()


def run_in_thread(body: Callable[[], None], case: CaseOutput | None = None) -> None:
    """Runs ``body`` on a real thread in a Context of its own, with ``case`` as its case;
    re-raises what it raised."""
    errors: list[BaseException] = []

    def in_own_context() -> None:
        current_case.set(case)
        try:
            body()
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=contextvars.Context().run, args=(in_own_context,))
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


# -- bodies on threads -------------------------------------------------------------------------


def test_two_bodies_writing_in_turns_each_keep_only_their_own_lines() -> None:
    cases = {"a": CaseOutput(), "b": CaseOutput()}
    rounds = 20
    # a, b and the main thread take turns, a barrier between turns: every line of one is
    # written between lines of the others.
    barrier = threading.Barrier(3, timeout=HANG_GUARD)
    errors: list[BaseException] = []

    def body(name: str) -> None:
        current_case.set(cases[name])
        try:
            for i in range(rounds):
                for turn in ("a", "b", "main"):
                    if turn == name:
                        print(f"{name} out {i}")
                        print(f"{name} err {i}", file=sys.stderr)
                        LOGGER.warning("%s log %d", name, i)
                    barrier.wait()
        except BaseException as error:
            errors.append(error)
            barrier.abort()

    threads = [
        threading.Thread(target=contextvars.Context().run, args=(body, name)) for name in cases
    ]
    with routed() as (streams, _):
        for thread in threads:
            thread.start()
        try:
            for i in range(rounds):
                for turn in ("a", "b", "main"):
                    if turn == "main":
                        print(f"main out {i}")
                        LOGGER.warning("main log %d", i)
                    barrier.wait()
        except BaseException:
            barrier.abort()  # so the bodies stop waiting for the main thread
            raise
        finally:
            for thread in threads:
                thread.join()
    assert not errors

    for name, case in cases.items():
        assert case.stdout.getvalue() == "".join(f"{name} out {i}\n" for i in range(rounds))
        assert case.stderr.getvalue() == "".join(f"{name} err {i}\n" for i in range(rounds))
        assert [r.getMessage() for r in case.records] == [f"{name} log {i}" for i in range(rounds)]
    assert streams.stdout.getvalue() == "".join(f"main out {i}\n" for i in range(rounds))
    assert streams.stderr.getvalue() == ""


def test_a_thread_with_no_case_writes_to_the_wrapped_stream() -> None:
    def body() -> None:
        print("nobody's")
        print("nobody's error", file=sys.stderr)

    with routed() as (streams, _):
        run_in_thread(body, case=None)

    assert streams.stdout.getvalue() == "nobody's\n"
    assert streams.stderr.getvalue() == "nobody's error\n"


def test_records_reach_other_handlers_too_and_are_kept_unformatted() -> None:
    other = OtherHandler()
    case = CaseOutput()
    with routed() as (streams, _):
        logging.getLogger().addHandler(other)
        # A message that cannot be formatted: keeping it must not try (nor print logging's error).
        run_in_thread(lambda: LOGGER.warning("%d", "not a number"), case)

    assert [(r.msg, r.args) for r in case.records] == [("%d", ("not a number",))]
    assert other.records == case.records
    assert case.stderr.getvalue() == ""
    assert streams.stderr.getvalue() == ""


def test_the_router_routes_writelines_and_hands_everything_else_to_the_stream(
    tmp_path: Path,
) -> None:
    case = CaseOutput()
    with routed() as (_, routing), (tmp_path / "out.txt").open("w", encoding="utf-8") as file:
        sys.stdout = file
        routing.reinstall()
        router = sys.stdout
        assert router is not file
        assert router.fileno() == file.fileno()
        assert router.isatty() is False
        assert router.encoding == "utf-8"
        assert router.buffer is file.buffer
        run_in_thread(lambda: sys.stdout.writelines(["one\n", "two\n"]), case)
        router.writelines(["main\n"])
        router.flush()
        assert (tmp_path / "out.txt").read_text(encoding="utf-8") == "main\n"
    assert case.stdout.getvalue() == "one\ntwo\n"


# -- the main thread's phases -----------------------------------------------------------------


def test_a_phase_keeps_a_bodys_output_and_records_out_of_pytests_capture() -> None:
    capture = LogCaptureHandler()
    # As pytest's capture does when it resumes for a phase: its own streams replace ours.
    phase_stdout, phase_stderr = io.StringIO(), io.StringIO()
    case = CaseOutput()

    def body() -> None:
        print("body out")
        print("body err", file=sys.stderr)
        LOGGER.warning("body log")

    with routed() as (_, routing):
        logging.getLogger().addHandler(capture)
        sys.stdout, sys.stderr = phase_stdout, phase_stderr
        with routing.phase():
            assert sys.stdout is not phase_stdout
            run_in_thread(body, case)
            print("phase out")
            LOGGER.warning("phase log")

        assert sys.stdout is phase_stdout
        assert sys.stderr is phase_stderr
    assert capture.filters == []
    assert [r.getMessage() for r in capture.records] == ["phase log"]
    assert phase_stdout.getvalue() == "phase out\n"
    assert phase_stderr.getvalue() == ""
    assert case.stdout.getvalue() == "body out\n"
    assert case.stderr.getvalue() == "body err\n"
    assert [r.getMessage() for r in case.records] == ["body log"]


def test_a_phase_leaves_a_stream_set_by_someone_else_during_it() -> None:
    replacement = io.StringIO()
    with isolated() as streams:
        with OutputRouting().phase():
            sys.stdout = replacement
        assert sys.stdout is replacement
        assert sys.stderr is streams.stderr


def test_after_a_phase_reinstall_wraps_the_stream_pytest_put_back() -> None:
    # As pytest's capture does when it suspends: its saved stream replaces our router.
    put_back = io.StringIO()
    case = CaseOutput()
    with routed() as (_, routing):
        sys.stdout = put_back
        routing.reinstall()
        router = sys.stdout
        assert router is not put_back

        run_in_thread(lambda: print("body"), case)
        print("main")
        routing.reinstall()
        assert sys.stdout is router  # not wrapped twice

    assert put_back.getvalue() == "main\n"
    assert case.stdout.getvalue() == "body\n"


# -- replay and stop ---------------------------------------------------------------------------


def test_replay_writes_the_text_and_hands_records_to_pytests_handlers_by_level() -> None:
    capture = LogCaptureHandler(logging.INFO)
    other = OtherHandler()
    case = CaseOutput()
    case.stdout.write("said\n")
    case.stderr.write("complained\n")
    levels = (logging.DEBUG, logging.INFO, logging.ERROR)
    case.records.extend(
        logging.LogRecord("body", level, __file__, 1, f"at {level}", None, None) for level in levels
    )

    with isolated() as streams:
        logging.getLogger().addHandler(capture)
        logging.getLogger().addHandler(other)
        replay(case)

    assert streams.stdout.getvalue() == "said\n"
    assert streams.stderr.getvalue() == "complained\n"
    assert [r.levelno for r in capture.records] == [logging.INFO, logging.ERROR]
    assert other.records == []


def test_stop_puts_the_streams_back_removes_its_handler_and_can_be_called_again() -> None:
    routing = OutputRouting()
    with isolated() as streams:
        routing.start()
        assert sys.stdout is not streams.stdout
        assert len(logging.getLogger().handlers) == 1

        routing.stop()
        assert sys.stdout is streams.stdout
        assert sys.stderr is streams.stderr
        assert logging.getLogger().handlers == []

        # Stopped already: a later routing's streams and handler are not this one's to undo.
        later = OutputRouting()
        later.start()
        routed_stdout = sys.stdout
        routing.stop()
        assert sys.stdout is routed_stdout
        assert len(logging.getLogger().handlers) == 1
        later.stop()
        assert sys.stdout is streams.stdout


def test_stop_leaves_a_stream_that_is_no_longer_ours() -> None:
    routing = OutputRouting()
    replacement = io.StringIO()
    with isolated() as streams:
        routing.start()
        sys.stdout = replacement
        routing.stop()
        assert sys.stdout is replacement
        assert sys.stderr is streams.stderr


# -- under pytest's real capture ---------------------------------------------------------------

INNER = """
import contextvars
import logging
import threading

from pytest_evalrows.plugin.case_output import CaseOutput, OutputRouting, current_case, replay

routing = OutputRouting()
case = CaseOutput()


def body():
    current_case.set(case)
    print("BODY-OUT")
    logging.getLogger("body").warning("BODY-LOG")


def test_another_phase():
    routing.start()
    with routing.phase():
        thread = threading.Thread(target=contextvars.Context().run, args=(body,))
        thread.start()
        thread.join()
        print("PHASE-OUT")
        logging.getLogger("phase").warning("PHASE-LOG")
    assert False, "FIRST"


def test_the_case_replayed():
    routing.reinstall()
    with routing.phase():
        replay(case)
    routing.stop()
    assert False, "SECOND"
"""


def test_under_pytest_a_bodys_output_shows_as_its_replayed_phases_own(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    text = result.stdout.str()
    # Each failure's report: its header line, then its captured sections.
    first, second = text.split("_ test_the_case_replayed _", 1)
    assert "PHASE-OUT" in first
    assert "PHASE-LOG" in first
    assert "BODY-OUT" not in first
    assert "BODY-LOG" not in first
    assert "BODY-OUT" in second
    assert "BODY-LOG" in second
    assert "PHASE-OUT" not in second
