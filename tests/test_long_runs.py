"""Long runs opened from a file: the whole timeline, a working set of allocations that
follows the cursor, and the same live bytes at every moment as the whole run."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.open_long import write_long_run
from memviz.core.columns import Columns
from memviz.snapshot import open_run
from memviz.snapshot.reader import window_around


@pytest.fixture(scope="module")
def long_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("long") / "long.memviz"
    length = write_long_run(str(path), 60_000)  # 30 s of run, 120k events
    return str(path), length


def test_a_window_holds_about_what_was_asked_around_the_moment(long_file):
    path, length = long_file
    assert window_around(path, 10.0, 10**9) is None  # the whole run fits: no window
    a, b = window_around(path, 20.0, 20_000)
    assert a <= 20.0 <= b and 0 < b - a < length / 3
    windowed = open_run(path, tensors_window=(a, b))
    whole = open_run(path)
    assert windowed.tensors_window == (a, b) and whole.tensors_window is None
    # the timeline is whole either way
    np.testing.assert_array_equal(windowed.samples.column("t"), whole.samples.column("t"))
    assert len(windowed.tensors) < len(whole.tensors) / 3
    nbytes_w = windowed.tensors.rows.column("nbytes")
    nbytes_a = whole.tensors.rows.column("nbytes")
    for t in np.linspace(a, b, 9):
        assert nbytes_w[windowed.tensors.live_at(t)].sum() == \
            nbytes_a[whole.tensors.live_at(t)].sum() > 0


def test_a_known_row_count_is_reserved_exactly():
    cols = Columns({"x": np.int64}, capacity=1024)
    cols.reserve(1_000_001, exact=True)
    assert len(cols._data["x"]) == 1_000_001
    cols.append({"x": np.arange(1_000_001)})
    assert len(cols._data["x"]) == 1_000_001  # filled without growing
    cols.append({"x": np.arange(10)})  # appends beyond it grow by doubling again
    assert len(cols._data["x"]) == 2_000_002 and len(cols) == 1_000_011


def test_the_window_follows_the_cursor_through_a_long_run(qtbot, long_file, tmp_path):
    from memviz.gui.app import dispose
    from memviz.gui.main_window import MainWindow

    path, length = long_file
    whole = open_run(path)
    window = MainWindow()
    window.resize(1400, 900)
    try:
        window.working_sets.max_events = 20_000
        run = window.open_snapshot(path)
        first = run.tensors_window
        assert first is not None and "a long run" in window.state_label.text()
        assert len(run.tensors) < len(whole.tensors) / 3
        # gigabytes read as GiB on the axis, not as "3 B (x1e+09)"
        axis = window.timeline.plot_item.getAxis("left")
        assert "e+0" not in axis.labelString() and axis.scale == 1
        assert axis.tickStrings([3 << 30], axis.scale, 1 << 30) == ["3 GiB"]
        band = window.timeline._loaded_band
        assert band is not None and band.isVisible() and band.getRegion() == first
        # a click far from the loaded span loads the span around it, in the background
        target = 2.0 if first[0] > length / 2 else length - 2.0
        window.set_cursor(target)
        assert "Loading the allocations" in window.state_label.text()
        qtbot.waitUntil(lambda: (window.refresh() or True) and run.tensors_window != first,
                        timeout=60_000)
        a, b = run.tensors_window
        assert a <= target <= b and band.getRegion() == (a, b)
        window.set_cursor(target)
        nbytes = whole.tensors.rows.column("nbytes")
        live = int(nbytes[whole.tensors.live_at(target)].sum())
        assert window.moment_view.moment.total == live > 0
        window.grab().save(str(tmp_path / "long-run.png"))
    finally:
        dispose(window)
