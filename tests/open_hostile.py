"""Opens each hostile file through every entry point, in a fresh process, and reports
what each said and the most memory it cost
(``python -m tests.open_hostile GOOD FOLDER NAME=FILE...``).

A separate process that only opens (the files were built elsewhere), so the
kernel's high-water mark of resident memory (VmHWM) can be reset before each file
and read after it, and no memory freed by building them is reused.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

from memviz.cli.main import main as cli
from memviz.worker.procmem import PeakRss


def _cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, err.getvalue()


def main() -> None:
    from memviz.snapshot import SnapshotError, open_run

    good, folder = Path(sys.argv[1]), Path(sys.argv[2])
    peak = PeakRss()
    report = []
    for item in sys.argv[3:]:
        name, _, file = item.partition("=")
        path = Path(file)
        peak.take()
        baseline = peak.take()
        outcome: dict = {"name": name, "file_bytes": path.stat().st_size}
        try:
            run = open_run(path)
            outcome["open"] = "opened"
            outcome["shown"] = json.dumps([run.spec.model, run.tensors.strings,
                                           [line.text for line in run.log]])
        except SnapshotError as exc:
            outcome["open"] = str(exc)
        except BaseException as exc:  # what the test must never see
            outcome["open"] = f"ESCAPED {type(exc).__name__}: {exc}"
        outcome["export"] = _cli(["export", str(path), "--to", "torch-json", "-o",
                                  str(folder / f"{name}.out.json"), "--force"])
        outcome["diff"] = _cli(["diff", str(path), str(good)])
        outcome["rss_delta"] = peak.take() - baseline
        outcome["ran_code"] = any(folder.glob("ran-*"))
        report.append(outcome)
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
