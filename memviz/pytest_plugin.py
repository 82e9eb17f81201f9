"""A pytest plugin: fail a test whose tensors take more memory than it may.

    @pytest.mark.memviz(limit="2 GiB")                  # the tracked peak, every category
    @pytest.mark.memviz(limit="2 GiB", activation="300 MiB")  # and one category's own peak
    def test_training_step_fits(): ...

The test runs under ``memviz.track()``; when a limit is passed, it fails with what
was live at the peak, by category and by module. A category's limit applies to that
category's own highest (``max_by_category``), wherever in the test it came.
``--memviz-keep DIR`` keeps each marked test's ``.memviz`` file there to open later.
Registered through the ``pytest11`` entry point; torch is imported only by a marked
test.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Generator
from typing import Any

import pytest

from .core.categories import CATEGORIES, LABELS
from .core.sizes import parse_size

MARKER = "memviz"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("memviz").addoption(
        "--memviz-keep", metavar="DIR", default=None,
        help="keep the .memviz file of each test marked memviz in DIR (default: not kept)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "memviz(limit=None, **category_limits): fail the test when its tracked "
        "tensors pass a limit, e.g. memviz(limit='2 GiB', activation='300 MiB')")


def limits_of(marker: pytest.Mark) -> dict[str | None, int]:
    """``{None: total, category: bytes}`` from the marker's arguments."""
    options = dict(marker.kwargs)
    if marker.args:
        if len(marker.args) > 1 or "limit" in options:
            raise pytest.UsageError("memviz marker: give the limit once, e.g. limit='2 GiB'")
        options["limit"] = marker.args[0]
    limits: dict[str | None, int] = {}
    for key, value in options.items():
        if key != "limit" and key not in CATEGORIES:
            raise pytest.UsageError(f"memviz marker: no category {key!r} "
                                    f"(limit, or one of {', '.join(CATEGORIES)})")
        try:
            limits[None if key == "limit" else key] = parse_size(str(value))
        except ValueError as exc:
            raise pytest.UsageError(f"memviz marker: {exc}") from None
    if not limits:
        raise pytest.UsageError("memviz marker: give a limit, e.g. memviz(limit='2 GiB')")
    return limits


def _file_for(item: pytest.Item, keep: str | None, scratch: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid).strip("_")[:150] + ".memviz"
    if keep:
        os.makedirs(keep, exist_ok=True)
        return os.path.join(keep, name)
    return os.path.join(scratch, name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return (yield)
    limits = limits_of(marker)
    from .program.api import Tracking

    keep = item.config.getoption("--memviz-keep")
    with tempfile.TemporaryDirectory(prefix="memviz-test-") as scratch:
        tracking = Tracking(_file_for(item, keep, scratch), force=True,
                            program=item.nodeid)
        tracking.start()
        try:
            outcome = yield
        finally:
            result = tracking.stop()
        item.user_properties.append(("memviz_peak_bytes", result and result.peak_bytes))
        problems = _over(result, limits)
    if problems:
        pytest.fail(_report(item, problems, result), pytrace=False)
    return outcome


def _over(result: Any, limits: dict[str | None, int]) -> list[tuple[str, int, int]]:
    """(what, measured, limit) for every limit passed."""
    if result is None:
        return []
    most = result.summary.get("max_by_category") or {}
    over = []
    for category, limit in limits.items():
        measured = result.peak_bytes if category is None else most.get(category)
        if measured is not None and measured > limit:
            over.append(("tracked peak" if category is None else LABELS[category],
                         int(measured), limit))
    return over


def _report(item: pytest.Item, problems: list[tuple[str, int, int]], result: Any) -> str:
    lines = [f"{item.name} used more memory than its memviz limit:"]
    lines += [f"  {what}: {_mib(measured)} > limit {_mib(limit)}"
              for what, measured, limit in problems]
    if result.peak_by_category:
        lines.append(f"live at the tracked peak ({_mib(result.peak_bytes)}), by category:")
        lines += [f"  {LABELS.get(c, c):<34} {_mib(b):>12}" for c, b in
                  sorted(result.peak_by_category.items(), key=lambda kv: -kv[1])]
    if result.peak_by_module:
        lines.append("by module:")
        lines += [f"  {name or '(outside any module)':<34} {_mib(b):>12}"
                  for name, b in result.peak_by_module]
    if result.path is not None and item.config.getoption("--memviz-keep"):
        lines.append(f"open it: memviz {result.path}")
    return "\n".join(lines)


def _mib(n: int | None) -> str:
    return "—" if n is None else f"{n / 2**20:,.1f} MiB"
