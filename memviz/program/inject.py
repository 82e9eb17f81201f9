"""Run a Python file inside another running Python process of this user.

Python 3.14 has this built in (``sys.remote_exec``, PEP 768); before it, the way
memray and py-spy's peers use is a debugger: gdb stops the process for a moment and
queues the file with ``Py_AddPendingCall``, so it runs on the main thread at the
next bytecode boundary, holding the GIL, as if the program had called it itself.
Nothing here imports torch: the controller only hands the file over.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

GDB_TIMEOUT_S = 60


class InjectError(RuntimeError):
    """Why the code cannot be run in that process (one line)."""


def check_target(pid: int) -> str:
    """Process ``pid``'s command line, if it is a Python process of this user;
    ``InjectError`` (why not) otherwise."""
    proc = Path(f"/proc/{pid}")
    try:
        owner = proc.stat().st_uid
    except FileNotFoundError:
        raise InjectError(f"no process {pid}") from None
    if owner != os.getuid():
        raise InjectError(f"process {pid} belongs to another user")
    try:
        exe = os.readlink(proc / "exe")
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace").strip()
    except FileNotFoundError:
        raise InjectError(f"no process {pid}") from None
    except PermissionError:  # one's own process, out of reach (pid 1, ptrace rules)
        raise InjectError(f"process {pid} is yours, but this system does not let memviz "
                          "look into it (attaching needs ptrace rights over it: see "
                          "/proc/sys/kernel/yama/ptrace_scope)") from None
    if "python" not in Path(exe).name.lower():
        raise InjectError(f"process {pid} is not Python ({Path(exe).name})")
    return cmdline


def python_processes() -> list[tuple[int, str]]:
    """This user's other Python programs, (pid, command line), newest first (memviz's
    own workers and recorded programs left out): what can be attached to."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        try:
            command = check_target(pid)
        except (InjectError, OSError):
            continue
        if " worker" not in command and "memviz.program" not in command:
            found.append((pid, command))
    return sorted(found, reverse=True)


def run_file_in(pid: int, script: Path) -> None:
    """Queue ``script`` to run in process ``pid``'s main thread."""
    if sys.version_info >= (3, 14) and hasattr(sys, "remote_exec"):
        try:
            sys.remote_exec(pid, str(script))
            return
        except (OSError, RuntimeError) as exc:  # an older target, or remote debugging off
            first = exc
    else:
        first = None
    gdb = shutil.which("gdb")
    if gdb is None:
        raise InjectError("attaching to a running process needs gdb on Python before 3.14 "
                          "(install gdb), or start the program under memviz record"
                          + (f"; sys.remote_exec: {first}" if first else ""))
    source = f'exec(compile(open({str(script)!r}).read(), {str(script)!r}, "exec"))'
    command = ("call (int)Py_AddPendingCall((int (*)(void *))PyRun_SimpleString, "
               f"(void *){_c_string(source)})")
    try:
        done = subprocess.run([gdb, "--batch", "-nx", "-p", str(pid), "-ex", command],
                              capture_output=True, text=True, timeout=GDB_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise InjectError(f"gdb did not attach to process {pid} within "
                          f"{GDB_TIMEOUT_S} s") from None
    if "$1 = 0" not in done.stdout:
        why = next((line for line in (done.stderr + done.stdout).splitlines()
                    if "ptrace" in line or "not permitted" in line or "No symbol" in line),
                   "gdb could not queue the call")
        raise InjectError(f"cannot attach to process {pid}: {why.strip()}")


def _c_string(text: str) -> str:
    """``text`` as a C string literal gdb copies into the target."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
