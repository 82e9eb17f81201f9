"""What a user sees when a run cannot go on: one line they can act on, the right exit
code, and nothing measured lost. Real CLI processes, real workers, a real full disk."""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from memviz.protocol import handshake
from memviz.session.spawn import popen_own_session
from memviz.snapshot import open_run

from .conftest import WORKER_DEADLINE_S

MEMVIZ = [sys.executable, "-m", "memviz"]


def _memviz(*args: str, timeout: float = WORKER_DEADLINE_S, **kwargs):
    return subprocess.run([*MEMVIZ, *args], capture_output=True, text=True, timeout=timeout,
                          **kwargs)


@pytest.mark.parametrize("args,says", [
    (["--technique", "prune:amount=nan"], "amount must be a finite number, not nan"),
    (["--technique", "layer-drop:keep=99"], "keep=99 but gpt2-tiny has only 4 blocks"),
    (["--device", "cuda"], "is a CPU build"),
    (["--seq-len", "5000"], "seq_len 5000 is beyond gpt2-tiny's 1024 positions"),
    (["--model", "no/such/dir"], "no preset, directory or factory named 'no/such/dir'"),
    (["--model", "missing.py:build"], "factory file missing.py does not exist"),
    (["--memory-cap", "lots"], "a memory cap is a size like 8GiB"),
])
def test_options_that_cannot_run_are_refused_before_a_worker_starts(args, says):
    started = time.monotonic()
    out = _memviz("run", "--steps", "1", *args, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"memviz: error: {out.stderr.strip()[15:]}"]
    assert says in out.stderr
    # no worker: a refusal costs no torch import (seconds); generous for a loaded machine
    assert time.monotonic() - started < 30


def test_outputs_into_a_missing_folder_are_refused_before_the_run(tmp_path):
    for flag in ("--summary", "-o"):
        out = _memviz("run", "--steps", "1", flag, str(tmp_path / "nowhere" / "x"), timeout=60)
        assert out.returncode == 2
        assert "the folder" in out.stderr and "does not exist" in out.stderr
        assert "Traceback" not in out.stderr
    export = _memviz("export", str(tmp_path / "x.memviz"), "--to", "torch-json", "-o",
                     str(tmp_path / "nowhere" / "x.json"), timeout=60)
    assert export.returncode == 2 and "does not exist" in export.stderr


def test_a_runaway_run_stops_at_its_memory_cap_with_what_was_live(tmp_path):
    summary = tmp_path / "s.json"
    out = _memviz("run", "--model", "gpt2-tiny", "--steps", "50", "--batch-size", "8",
                  "--memory-cap", "450MiB", "--summary", str(summary), "-o",
                  str(tmp_path / "r.memviz"))
    assert out.returncode == 3, out.stderr
    assert "out of memory: the run reached" in out.stderr
    assert "over the memory cap of 450 MiB" in out.stderr
    report = json.loads(summary.read_text())
    oom = report["oom"]
    assert report["state"] == "failed" and report["error_kind"] == "oom"
    assert oom["cap_bytes"] == 450 << 20 and oom["peak_bytes"] > oom["cap_bytes"]
    assert oom["tracked_bytes"] > 0 and sum(oom["by_category"].values()) == oom["tracked_bytes"]
    assert oom["by_category"]["parameter"] == 3_487_232 * 4  # the weights are always live
    assert oom["by_module"] and oom["by_module"][0][1] > 0
    back = open_run(tmp_path / "r.memviz")  # the file keeps it too
    assert back.error["kind"] == "oom" and back.error["cap_bytes"] == 450 << 20


def test_the_cpu_allocator_running_out_is_an_oom_with_the_request(tmp_path):
    factory = tmp_path / "greedy.py"
    factory.write_text(
        "import torch\n"
        "class Greedy(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.embed = torch.nn.Embedding(256, 16)\n"
        "    def forward(self, ids):\n"
        "        x = self.embed(ids)\n"
        "        huge = torch.empty(1 << 50, dtype=torch.uint8)  # 1 PiB: refused at once\n"
        "        return x @ self.embed.weight.T + huge[:1].float()\n"
        "def build():\n"
        "    return Greedy()\n")
    summary = tmp_path / "s.json"
    out = _memviz("run", "--model", f"{factory}:build", "--steps", "2", "--seq-len", "16",
                  "--summary", str(summary))
    assert out.returncode == 3, out.stderr
    assert "out of memory: a request for 1,073,741,824.0 MiB failed" in out.stderr
    oom = json.loads(summary.read_text())["oom"]
    assert oom["request_bytes"] == 1 << 50
    assert oom["by_category"]["parameter"] == 256 * 16 * 4
    assert oom["by_category"].get("activation", 0) + oom["by_category"].get("temporary", 0) > 0


def test_a_factory_that_exits_says_so(tmp_path):
    factory = tmp_path / "quits.py"
    factory.write_text("import sys\ndef build():\n    sys.exit(0)\n")
    out = _memviz("run", "--model", f"{factory}:build", "--steps", "1")
    assert out.returncode == 2
    assert "called sys.exit(0) instead of returning a model" in out.stderr


def _steps_in(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return db.execute("SELECT count(*) FROM steps").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.parametrize("when", ["before the first step", "after a step"])
def test_ctrl_c_is_a_clean_stop_at_any_moment(tmp_path, when):
    path = tmp_path / "run.memviz"
    proc = subprocess.Popen([*MEMVIZ, "run", "--steps", "10000", "--batch-size", "1",
                             "--seq-len", "32", "-o", str(path)], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + WORKER_DEADLINE_S
    if when == "before the first step":
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    else:
        while _steps_in(path) < 1 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: the whole group
    _out, err = proc.communicate(timeout=WORKER_DEADLINE_S)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "TypeError" not in err
    assert "stopped after" in err
    back = open_run(path)
    assert back.state == "stopped"
    if when == "after a step":
        assert len(back.steps) >= 1


def _full_disk(size: str) -> tuple[Path, callable]:
    """A real small filesystem (tmpfs) where this process may mount one, else None."""
    mount = Path(tempfile.mkdtemp(prefix="memviz-full-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                          capture_output=True) if shutil.which("mount") else None
    if done is None or done.returncode != 0:
        mount.rmdir()
        return None, None

    def release() -> None:
        subprocess.run(["umount", str(mount)], capture_output=True)
        mount.rmdir()

    return mount, release


def test_a_full_disk_stops_the_run_cleanly_and_says_so(tmp_path):
    mount, release = _full_disk("400k")
    limit = None
    if mount is None:  # no right to mount here: the kernel's file size limit instead
        mount, release = tmp_path, lambda: None
        limit = 400 << 10
    path = mount / "run.memviz"
    try:
        out = subprocess.run(
            [*MEMVIZ, "run", "--steps", "100000", "--batch-size", "1", "--seq-len", "64",
             "-o", str(path)], capture_output=True, text=True, timeout=WORKER_DEADLINE_S,
            preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
            if limit else None)
        reason = "File too large" if limit else "No space left on device"
        assert out.returncode == 1, out.stderr
        assert f"memviz: error: could not write {path}: " in out.stderr, out.stderr
        assert reason in out.stderr or "disk I/O error" in out.stderr
        assert "exited with code" not in out.stderr and "Traceback" not in out.stderr
        back = open_run(path)  # what was written before the disk filled still opens
        assert len(back.samples) > 0
    finally:
        release()


def _sigint_bit(status: str, field: str) -> bool:
    mask = int(re.search(rf"^{field}:\s*([0-9a-f]+)$", status, re.M).group(1), 16)
    return bool(mask & (1 << (signal.SIGINT - 1)))


def test_a_ctrl_c_while_the_worker_is_spawned_cannot_kill_it(tmp_path):
    """A Ctrl-C reaches the controller's whole group; a child caught between fork and
    setsid got it too and died of it (the run failed: "killed by SIGINT"). Spawned
    with SIGINT blocked, the child keeps such a Ctrl-C pending instead."""
    itself = ["sh", "-c", "kill -INT $$; echo alive"]  # a Ctrl-C at its first instant
    plain = subprocess.run(itself, start_new_session=True, capture_output=True, text=True,
                           # SIGINT as a terminal's shell leaves it (a background job's
                           # parent may have it ignored, and a child would inherit that)
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert plain.returncode == -signal.SIGINT  # what the plain spawn does with it
    child = popen_own_session(itself, stdout=subprocess.PIPE, text=True)
    assert child.communicate(timeout=60)[0] == "alive\n" and child.returncode == 0

    # the real worker: once started, SIGINT is ignored and no longer blocked
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "w.sock"))
    server.listen(1)
    server.settimeout(WORKER_DEADLINE_S)
    worker = popen_own_session([*MEMVIZ, "worker", "--connect", f"unix:{tmp_path / 'w.sock'}"],
                               env={**os.environ, "MEMVIZ_TOKEN": handshake.new_token()},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        peer, _ = server.accept()  # it connects after setting its disposition
        status = Path(f"/proc/{worker.pid}/status").read_text()
        assert _sigint_bit(status, "SigIgn") and not _sigint_bit(status, "SigBlk")
        peer.close()
    finally:
        worker.kill()
        worker.wait()
        server.close()


def test_a_disk_that_fills_at_any_moment_is_a_failure_that_says_so(tmp_path):
    """Wherever the file stops growing, in the run or in its last commit, `memviz run`
    says why and exits 1: never 0 with a file that lacks what was measured."""
    spec = ["--steps", "2", "--batch-size", "1", "--seq-len", "32", "--sample-hz", "20"]
    whole = tmp_path / "whole.memviz"
    done = subprocess.run([*MEMVIZ, "run", *spec, "-o", str(whole)], capture_output=True,
                          text=True, timeout=WORKER_DEADLINE_S)
    assert done.returncode == 0, done.stderr
    size = whole.stat().st_size
    for share in (0.3, 0.6, 0.9, 0.99):
        path = tmp_path / f"cut-{share}.memviz"
        limit = int(size * share)
        out = subprocess.run(
            [*MEMVIZ, "run", *spec, "-o", str(path)], capture_output=True, text=True,
            timeout=WORKER_DEADLINE_S,
            preexec_fn=lambda limit=limit: resource.setrlimit(resource.RLIMIT_FSIZE,
                                                              (limit, limit)))
        assert out.returncode == 1, (share, out.stderr)
        assert f"memviz: error: could not write {path}: " in out.stderr, (share, out.stderr)
        assert "Traceback" not in out.stderr


def test_an_export_that_fills_the_disk_is_one_line(tmp_path):
    recorded = tmp_path / "run.memviz"
    done = subprocess.run([*MEMVIZ, "run", "--steps", "1", "--batch-size", "1", "--seq-len",
                           "32", "-o", str(recorded)], capture_output=True, text=True,
                          timeout=WORKER_DEADLINE_S)
    assert done.returncode == 0, done.stderr
    before = recorded.read_bytes()
    out = tmp_path / "run.pickle"
    done = subprocess.run(
        [*MEMVIZ, "export", str(recorded), "--to", "torch-pickle", "-o", str(out)],
        capture_output=True, text=True, timeout=120,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)))
    assert done.returncode == 1
    assert done.stderr == f"memviz: error: could not write {out}: File too large\n"
    assert recorded.read_bytes() == before  # what was read is untouched


def test_ctrl_c_stops_a_comparison_and_leaves_no_worker(tmp_path):
    """One Ctrl-C stops the running set at its next phase and starts no other; the
    comparison reports what finished and exits 130, with no worker left behind."""
    import threading

    import psutil

    summary = tmp_path / "sets.json"
    proc = subprocess.Popen([*MEMVIZ, "compare", "--steps", "100000", "--batch-size", "1",
                             "--seq-len", "32", "--set", "checkpointing", "--set", "amp",
                             "--summary", str(summary)], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _stop_a_comparison(proc, summary, psutil, threading)
    finally:  # whatever failed, nothing of it runs on
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _stop_a_comparison(proc, summary, psutil, threading) -> None:
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(proc.stderr), daemon=True)
    reader.start()
    family = [psutil.Process(proc.pid)]
    deadline = time.monotonic() + WORKER_DEADLINE_S
    while time.monotonic() < deadline and proc.poll() is None and \
            not any("baseline: running" in line for line in said):
        family += [p for p in family[0].children(recursive=True) if p not in family]
        time.sleep(0.05)
    assert any("baseline: running" in line for line in said), said
    family += [p for p in family[0].children(recursive=True) if p not in family]
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole group
    assert proc.wait(WORKER_DEADLINE_S) == 130, said
    reader.join(10)
    err = "".join(said)
    assert time.monotonic() - started < 60
    assert "stopping at the next phase" in err and "Traceback" not in err
    sets = json.loads(summary.read_text())["sets"]
    assert [s["name"] for s in sets] == ["baseline"]  # no set started after the Ctrl-C
    assert sets[0]["state"] == "stopped"
    _gone, alive = psutil.wait_procs(family[1:], timeout=30)
    assert not alive, [p.pid for p in alive]  # no worker, no warm parent left


@pytest.fixture(params=["own", "parent's"])
def memory_cgroup(request):
    """A real memory cgroup a process can be put in (v2 or v1), where this machine lets
    us make one, with a limit of 3 GiB on it ("own") or only on its parent, as systemd
    slices and pods set it ("parent's")."""
    limit = 3 << 30
    name = f"memviz-test-{os.getpid()}"
    v2 = Path("/sys/fs/cgroup/cgroup.controllers")
    if v2.exists() and "memory" in v2.read_text():
        top, limit_file = Path("/sys/fs/cgroup") / name, "memory.max"
    else:
        top, limit_file = Path("/sys/fs/cgroup/memory") / name, "memory.limit_in_bytes"
    folder = top if request.param == "own" else top / "job"
    try:
        top.mkdir()
        (top / limit_file).write_text(str(limit))
        if folder != top:
            if limit_file == "memory.max":  # v2: the child needs the controller
                (top / "cgroup.subtree_control").write_text("+memory")
            folder.mkdir()
    except OSError as exc:
        with contextlib.suppress(OSError):
            top.rmdir()
        pytest.skip(f"no memory cgroup can be made here: {exc}")
    yield folder, limit
    for made in {folder, top}:
        with contextlib.suppress(OSError):
            made.rmdir()


def test_the_automatic_cap_stays_inside_a_containers_limit(memory_cgroup):
    folder, limit = memory_cgroup
    code = ("import os, sys; open(sys.argv[1], 'w').write(str(os.getpid()));"
            "from memviz.session.memory_cap import parse_cap;"
            "print(parse_cap('auto').bytes)")
    done = subprocess.run([sys.executable, "-c", code, str(folder / "cgroup.procs")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    cap = int(done.stdout)
    assert 0 < cap <= 0.8 * limit  # not the host's 80 %, which is far more
    import psutil

    assert psutil.virtual_memory().available * 0.8 > limit  # the host alone would say more


def test_a_v2_limit_above_the_process_counts_memory_high_too(tmp_path):
    """cgroup v2, where this machine has only v1: its files are made here (a real v2
    hierarchy cannot be mounted beside the v1 one). The pod's memory.max and the
    slice's memory.high both sit above the process's own cgroup."""
    from memviz.session.memory_cap import container_room_bytes

    proc = tmp_path / "cgroup"
    proc.write_text("0::/kubepods/pod1/worker\n")
    pod, container = tmp_path / "kubepods" / "pod1", tmp_path / "kubepods" / "pod1" / "worker"
    container.mkdir(parents=True)
    (tmp_path / "memory.max").write_text("max\n")  # the root: none
    (tmp_path / "kubepods" / "memory.high").write_text(str(6 << 30))
    (tmp_path / "kubepods" / "memory.current").write_text(str(1 << 30))
    (pod / "memory.max").write_text(str(4 << 30))
    (pod / "memory.current").write_text(str(3 << 30))
    (container / "memory.max").write_text("max\n")
    (container / "memory.current").write_text(str(1 << 29))
    assert container_room_bytes(tmp_path, proc) == 1 << 30  # the pod's 4 GiB less its 3
    (pod / "memory.current").write_text(str(1 << 30))
    assert container_room_bytes(tmp_path, proc) == 3 << 30  # now the pod has more room...
    (tmp_path / "kubepods" / "memory.current").write_text(str(4 << 30))
    assert container_room_bytes(tmp_path, proc) == 2 << 30  # ...than the slice above it
    proc.write_text("0::/../../kubepods/pod1/worker\n")  # a path cannot climb out
    assert container_room_bytes(tmp_path, proc) == 2 << 30
