"""Each item's eval marker and marker names, read once per parent, are what pytest finds."""

from __future__ import annotations

import pytest

from pytest_evalrows.plugin.collection import _Markers

SUITE = """
import pytest

pytestmark = [pytest.mark.eval(key="id"), pytest.mark.slow]


@pytest.mark.parametrize("id", [1, pytest.param(2, marks=[pytest.mark.eval, pytest.mark.fast])])
def test_module_level(id):
    pass


@pytest.mark.eval(key="n")
class TestClass:
    @pytest.mark.parametrize("n", [1, 2])
    def test_in_class(self, n):
        pass

    @pytest.mark.eval
    @pytest.mark.skip
    def test_own_marker(self):
        pass


def test_plain():
    pass
"""


def test_markers_are_what_pytest_finds_for_every_item(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nmarkers =\n    slow: slow\n    fast: fast\n")
    pytester.makepyfile(test_suite=SUITE)
    items, _ = pytester.inline_genitems()
    assert len(items) == 6
    markers = _Markers()
    for item in items:
        marker, names = markers.of(item)
        assert marker is item.get_closest_marker("eval"), item.nodeid
        expected = sorted({mark.name for mark in item.iter_markers()} - {"parametrize"})
        assert names == expected, item.nodeid
    # The cases differ where they should: a case's own marks come first.
    by_name = {item.name: markers.of(item) for item in items}
    assert by_name["test_module_level[2]"][0] is not by_name["test_module_level[1]"][0]
    assert "fast" in by_name["test_module_level[2]"][1]
