"""The command line as a pipeline sees it: `-` for standard output, one JSON spelling,
help with defaults and an example, one line where no window can open; the file as
SQL sees it: the peak's time, empty CSV fields, nothing left beside a file read."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys

import pytest

from memviz.snapshot import connect_sql, open_run

MEMVIZ = [sys.executable, "-m", "memviz"]
RUN = [*MEMVIZ, "run", "--model", "gpt2-tiny", "--steps", "2", "--batch-size", "1",
       "--seq-len", "32"]


@pytest.fixture(scope="module")
def piped(tmp_path_factory):
    """`memviz run -o -` into a file through a shell pipe, and its summary."""
    folder = tmp_path_factory.mktemp("piped")
    out = folder / "piped.memviz"
    with open(out, "wb") as sink:
        done = subprocess.run([*RUN, "-o", "-"], stdout=sink, stderr=subprocess.PIPE,
                              text=False, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return out, done.stderr.decode()


def test_run_writes_the_snapshot_to_standard_output(piped):
    out, err = piped
    assert out.read_bytes()[:16] == b"SQLite format 3\x00"
    assert "recorded to standard output" in err
    assert "peak RSS" in err  # the human report went to standard error
    run = open_run(out)
    assert run.state == "finished" and len(run.steps) == 2


def test_reading_a_file_leaves_nothing_beside_it(piped):
    out, _ = piped
    before = sorted(os.listdir(out.parent))
    open_run(out)
    db = sqlite3.connect(out)  # any SQLite reader, as a user would
    db.execute("SELECT count(*) FROM steps").fetchone()
    db.close()
    assert sorted(os.listdir(out.parent)) == before == ["piped.memviz"]


def test_the_file_knows_when_its_peak_was(piped):
    out, _ = piped
    run = open_run(out)
    tracking = run.worker_summary["tracking"]
    db = connect_sql(out)
    # which module held most at the peak: one short query (at 1 × 32 the peak is
    # AdamW's first step, with no activations live; docs/snapshot.md shows the same
    # query by category)
    rows = db.execute("SELECT module, sum(nbytes) FROM live_at_peak GROUP BY module "
                      "ORDER BY 2 DESC").fetchall()
    total, = db.execute("SELECT sum(nbytes) FROM live_at_peak").fetchone()
    by_category = dict(db.execute("SELECT category, sum(nbytes) FROM live_at_peak "
                                  "GROUP BY category").fetchall())
    db.close()
    assert rows and rows[0][1] > 0
    assert total == tracking["tracked_bytes"]
    assert by_category == {k: v for k, v in tracking["peak_by_category"].items() if v}
    # the same from the command line, as a user would ask
    done = subprocess.run([*MEMVIZ, "sql", str(out), "--csv",
                           "SELECT category, sum(nbytes) FROM live_at_peak GROUP BY category"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "category,sum(nbytes)"
    assert dict(line.split(",") for line in lines[1:]) == {
        k: str(v) for k, v in by_category.items()}
    done = subprocess.run([*MEMVIZ, "sql", str(out), "DROP TABLE steps"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "readonly" in done.stderr.replace("-", "")


def test_the_summary_goes_to_standard_output_alone():
    done = subprocess.run([*RUN, "--track", "samples", "--summary", "-"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)  # nothing but the JSON
    assert summary["state"] == "finished" and len(summary["steps"]) == 2
    assert "peak RSS" in done.stderr


def test_export_to_standard_output_and_csv_fields(piped, tmp_path):
    out, _ = piped
    done = subprocess.run([*MEMVIZ, "export", str(out), "--to", "torch-json", "-o", "-"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "device_traces" in json.loads(done.stdout)
    assert "wrote standard output" in done.stderr
    folder = tmp_path / "csv"
    done = subprocess.run([*MEMVIZ, "export", str(out), "--to", "csv", "-o", str(folder)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for name in ("samples.csv", "tensor_events.csv", "steps.csv", "summary.csv"):
        text = (folder / name).read_text()
        assert "nan" not in text.lower().split(","), name
    with open(folder / "tensor_events.csv") as f:
        live = [row for row in csv.DictReader(f) if row["t_free"] == ""]
    assert live  # the weights are never freed: an empty field, not "nan"
    with open(folder / "summary.csv") as f:
        summary = dict(csv.reader(f))
    assert int(summary["peak.tracked_bytes"]) > 0 and float(summary["peak.tracked_t"]) > 0


def test_one_json_spelling_and_the_older_ones_still_work(piped):
    out, _ = piped
    for flags in (["--summary", "-"], ["--json"]):
        done = subprocess.run([*MEMVIZ, "diff", str(out), str(out), *flags],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["a"]["tracked_peak_bytes"] > 0


@pytest.mark.parametrize("command", ["run", "export", "diff", "compare", "fit", "record",
                                     "techniques", "gui"])
def test_every_help_shows_defaults_and_an_example(command):
    done = subprocess.run([*MEMVIZ, command, "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0
    assert "example:\n  memviz " + command in done.stdout
    if command in ("run", "compare", "fit"):
        assert "(default: gpt2-tiny)" in done.stdout and "(default: train)" in done.stdout


def test_abbreviated_options_are_not_guessed():
    done = subprocess.run([*MEMVIZ, "run", "--mod", "gpt2-tiny"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "unrecognized arguments: --mod" in done.stderr


@pytest.mark.parametrize("argv", [[], ["missing.memviz"]])
def test_no_display_is_one_line(argv):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    done = subprocess.run([*MEMVIZ, *argv], capture_output=True, text=True, timeout=60,
                          env=env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("memviz: no display")
    assert "memviz run" in lines[0] and "QT_QPA_PLATFORM=offscreen" in lines[0]


@pytest.mark.parametrize("argv,says", [
    (["run", "--token", "secret"], "a token on the command line is readable"),
    (["run", "--seed", "999999999999999999999999"], "seed must be an integer from 0"),
    (["run", "--detail", "every:0"], "every:N needs N of at least 1"),
    (["run", "--technique", "lora:r=4,,,"], "lora: an empty setting"),
    (["run", "--connect", "nowhere"], "bad address 'nowhere'"),
    (["diff", "a.memviz", "b.memviz", "--top", "-5"], "--top: must be from 1 to 10000"),
    (["diff", "a.memviz", "b.memviz", "--top", "10" + "0" * 20], "--top: must be from 1"),
    (["worker", "--listen", "nowhere"], "bad address 'nowhere'"),
    (["export", "a.memviz", "--to", "folded", "-o", "-", "--at", "soon"],
     "--at is 'peak' or a number of seconds"),
    (["sql", "missing.memviz", "SELECT 1"], "no such file"),
    # abbreviations and misspellings that argparse would echo back with the token
    (["run", "--tok", "secret"], "a token on the command line is readable"),
    (["run", "--token=secret"], "a token on the command line is readable"),
    (["worker", "--listen", "tcp:127.0.0.1:0", "--toke", "secret"],
     "a token on the command line is readable"),
    (["run", "--connect", "tcp:127.0.0.1:9", "--token-file", "secret"],
     "never the token itself"),
    (["worker", "--listen", "tcp:127.0.0.1:0", "--token-file", "secret"],
     "never the token itself"),
    # numbers past anything real
    (["run", "--memory-cap", "99999999999999999999999GiB"], "more memory than any machine"),
    (["run", "--device", "cuda:99999999999999999999"], "device must be cpu, cuda or cuda:N"),
    (["run", "--detail", "first:99999999999999999999"], "step counts below 10^9"),
    (["export", "a.memviz", "--device", "-1", "--to", "csv", "-o", "x"],
     "--device: must be from 0 to 9999"),
    (["diff", "a.memviz", "b.memviz", "--rank", "-1"], "--rank: must be from 0"),
])
def test_wrong_input_exits_2_with_one_line(argv, says):
    env = {**os.environ, "MEMVIZ_TOKEN": "t"}
    done = subprocess.run([*MEMVIZ, *argv], capture_output=True, text=True, timeout=60,
                          env=env)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr
    assert "secret" not in done.stderr  # never echoed


def test_a_worker_listening_beyond_loopback_says_what_that_exposes():
    from memviz.protocol.token import new_token

    worker = subprocess.Popen([*MEMVIZ, "worker", "--listen", "tcp:0.0.0.0:0",
                               "--allow-remote"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, "MEMVIZ_TOKEN": new_token()})
    try:
        assert "listening on tcp:0.0.0.0:" in worker.stdout.readline()
        warning = worker.stderr.readline()
        assert warning.startswith("memviz worker: warning: tcp:0.0.0.0:")
        assert "unencrypted" in warning and "SSH tunnel" in warning
    finally:
        worker.kill()
        worker.wait()


def test_names_with_escapes_never_reach_the_terminal(piped, tmp_path):
    out, _ = piped
    hostile = tmp_path / "run\x1b[2Jcleared.memviz"
    hostile.write_bytes(out.read_bytes())
    done = subprocess.run([*MEMVIZ, "diff", str(hostile), str(out)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "cleared.memviz" in done.stdout


def test_memviz_sql_attaches_and_writes_nothing(tmp_path):
    """``ATTACH DATABASE 'x.db'`` creates x.db even on a read-only connection: the
    authorizer refuses it, and every other write, before SQLite acts."""
    out = tmp_path / "run.memviz"
    done = subprocess.run([*RUN, "--track", "samples", "-o", str(out)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for query in (f"ATTACH DATABASE '{tmp_path / 'x.db'}' AS x",
                  "CREATE TEMP TABLE mine AS SELECT 1", "SELECT load_extension('x')",
                  "PRAGMA writable_schema = 1"):
        done = subprocess.run([*MEMVIZ, "sql", str(out), query], capture_output=True,
                              text=True, timeout=120, cwd=tmp_path)
        assert done.returncode == 2 and "read-only" in done.stderr, (query, done.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.memviz"]
    done = subprocess.run([*MEMVIZ, "sql", str(out), "SELECT printf('%d steps', count(*)) "
                           "FROM steps"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "steps" in done.stdout  # a user's own query runs
