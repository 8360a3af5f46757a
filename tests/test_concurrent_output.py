"""What each of the eval cases running at once has of its own (issue 13): sync cases marked
concurrent=True overlap on threads while unmarked ones never do; function fixtures are set up
and torn down per case in the main thread around its body; a case's prints and log records
show in its own report and junitxml testcase."""

from __future__ import annotations

import re
import textwrap
import xml.etree.ElementTree as ET

import pytest
from support.concurrent import flight, install
from support.sessions import INI

THREADS = textwrap.dedent(
    """
    import threading
    import time

    import flight
    import pytest

    barrier = threading.Barrier(4, timeout=10)
    lock = threading.Lock()
    busy = False


    @pytest.mark.eval(concurrent=True)
    @pytest.mark.parametrize("n", range(8))
    def test_marked(n):
        flight.enter(f"marked{n}", "marked")
        barrier.wait()
        flight.leave(f"marked{n}", "marked")


    @pytest.mark.eval
    @pytest.mark.parametrize("n", range(8))
    def test_unmarked(n):
        global busy
        flight.enter(f"unmarked{n}", "unmarked")
        with lock:
            assert not busy, "another unmarked case is running"
            busy = True
        time.sleep(0.02)
        with lock:
            busy = False
        flight.leave(f"unmarked{n}", "unmarked")
    """
)


def test_sync_cases_marked_concurrent_overlap_on_threads_and_unmarked_ones_never(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    install(pytester)
    pytester.makepyfile(test_threads=THREADS)
    result = pytester.runpytest_subprocess("--eval-concurrency=4", "-k", "marked and not un")
    # Eight cases through a barrier of four: only four at once get past it.
    result.assert_outcomes(passed=8)
    seen = flight(pytester)
    assert seen.most == {"marked": 4}
    threads = seen.threads
    assert len(threads) == 8
    assert all(thread.startswith("evalrows-case") for thread in threads.values()), threads
    result = pytester.runpytest_subprocess("--eval-concurrency=8", "-k", "unmarked")
    result.assert_outcomes(passed=8)
    seen = flight(pytester)
    assert seen.most == {"unmarked": 1}
    assert set(seen.threads.values()) == {"MainThread"}


FIXTURES = textwrap.dedent(
    """
    import asyncio
    import threading

    import flight
    import pytest


    @pytest.fixture(scope="module")
    def shared():
        flight.event("module-setup")
        yield object()
        flight.event("module-teardown")


    @pytest.fixture
    def own(request, shared):
        name = request.node.name
        flight.event(f"setup {name} {threading.current_thread().name}")
        value = {"name": name, "shared": shared}
        yield value
        flight.event(f"teardown {name} {threading.current_thread().name}")
        assert value["seen"] == name


    @pytest.mark.eval(concurrent=True)
    @pytest.mark.parametrize("n", range(6))
    async def test_case(n, own, shared):
        name = f"test_case[{n}]"
        flight.enter(name)
        assert own["name"] == name
        assert own["shared"] is shared
        await flight.gathered(2, timeout=2)
        await asyncio.sleep(0.01 * (6 - n))
        own["seen"] = name
        flight.leave(name)
    """
)


def test_function_fixtures_wrap_each_body_in_the_main_thread_and_module_ones_are_shared(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    install(pytester)
    pytester.makepyfile(test_fixtures=FIXTURES)
    result = pytester.runpytest_subprocess("--eval-concurrency=3")
    result.assert_outcomes(passed=6)
    seen = flight(pytester)
    assert seen.most["all"] >= 2
    events = seen.events
    assert events.count("module-setup") == 1
    assert events.count("module-teardown") == 1
    assert events[0] == "module-setup"
    assert events[-1] == "module-teardown"
    for n in range(6):
        name = f"test_case[{n}]"
        order = [
            events.index(f"setup {name} MainThread"),
            events.index(f"body-start {name}"),
            events.index(f"body-end {name}"),
            events.index(f"teardown {name} MainThread"),
        ]
        assert order == sorted(order), (name, events)


# -- output and log records --------------------------------------------------------------------

# Every body writes while the others write too (the sleeps interleave them), all of it before
# any of them ends: the main thread meanwhile waits.
OUTPUT = textwrap.dedent(
    """
    import asyncio
    import logging

    import flight
    import pytest

    log = logging.getLogger("suite")


    @pytest.mark.eval(concurrent=True)
    @pytest.mark.parametrize("n", range(6))
    async def test_case(n):
        flight.enter(n, "started")
        assert await flight.gathered(6, "started")
        await asyncio.sleep(0.01 * (n % 3))
        print(f"early-{n}")
        await asyncio.sleep(0.01 * (3 - n % 3))
        log.warning(f"record-{n}")
        await asyncio.sleep(0.01)
        print(f"late-{n}")
        flight.enter(n, "written")
        assert await flight.gathered(6, "written")
        assert n % 2, f"case {n} fails"
    """
)


def sections(text: str) -> dict[str, str]:
    """The failure sections of a session's output, by the test's name in their header."""
    parts = re.split(r"^_{3,} (test_\S+) _{3,}$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_each_failure_shows_only_its_own_prints_and_records(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    install(pytester)
    pytester.makepyfile(test_output=OUTPUT)
    result = pytester.runpytest_subprocess(
        "--eval-concurrency=6", "--junitxml=junit.xml", "-o", "junit_logging=all"
    )
    result.assert_outcomes(passed=3, failed=3)
    found = sections(result.stdout.str())
    assert sorted(found) == ["test_case[0]", "test_case[2]", "test_case[4]"]
    for name, text in found.items():
        n = name[len("test_case[") : -1]
        stdout = text.split("Captured stdout call")[1].split("Captured log call")[0]
        assert re.findall(r"(?:early|late)-\d", stdout) == [f"early-{n}", f"late-{n}"], text
        records = text.split("Captured log call")[1]
        assert re.findall(r"record-\d", records) == [f"record-{n}"], text
    cases = ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")
    by_name = {case.get("name"): case for case in cases}
    assert sorted(by_name) == [f"test_case[{n}]" for n in range(6)]
    for n in range(6):
        case = by_name[f"test_case[{n}]"]
        assert (case.find("failure") is not None) == (n % 2 == 0)
        out = "".join(element.text or "" for element in case.iter("system-out"))
        assert sorted(re.findall(r"(?:early|late|record)-\d", out)) == [
            f"early-{n}",
            f"late-{n}",
            f"record-{n}",
        ], out


# Cases on threads print without pause while the main thread sets up, reports and tears down
# the others: every phase boundary meets a body writing.
CHATTY = textwrap.dedent(
    """
    import logging
    import time

    import pytest


    @pytest.mark.eval(concurrent=True)
    @pytest.mark.parametrize("n", range(24))
    def test_case(n):
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            print(f"line-{n}")
            logging.getLogger("chatty").warning("record-%s", n)
            time.sleep(0.0002)
        assert False
    """
)


def test_a_body_writing_without_pause_never_writes_into_another_cases_phase(
    pytester: pytest.Pytester,
) -> None:
    # pytest's default capture (fd); --capture=sys leaves a moment as the README says.
    pytester.makeini(INI)
    pytester.makepyfile(test_chatty=CHATTY)
    result = pytester.runpytest_subprocess(
        "--eval-concurrency=8", "--capture=fd", "-p", "no:randomly"
    )
    result.assert_outcomes(failed=24)
    sections = re.split(r"\n_+ test_case\[(\d+)\] _+\n", result.stdout.str())
    found = dict(zip(sections[1::2], sections[2::2], strict=True))
    assert sorted(found, key=int) == [str(n) for n in range(24)]
    for n, text in found.items():
        # Each section holds its own case's lines and records only, and some of them.
        lines = set(re.findall(r"^line-(\d+)$", text, re.M))
        records = set(re.findall(r"record-(\d+)$", text, re.M))
        assert lines == {n}, (n, lines)
        assert records == {n}, (n, records)
