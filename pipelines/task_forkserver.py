"""A pre-warmed fork server for kfp.local tasks: one process per step, without the import bill.

Where a local run's seconds went (`make bench-pipeline`): every task is a fresh interpreter that
imports KFP's executor and the scientific stack its step needs (pandas/pyarrow, scikit-learn,
XGBoost, SciPy) — 0.5-2.5 s per task, seven times per run, against ~4 s of compute at 100k rows.

Here one server process imports all of that once, then forks one child per task; it stays up for
the life of the calling process, so later local runs (the demo's, the retraining loop's, the test
suite's) skip even that. The child is the task's own process (own memory, own crash, own exit
code): it takes the task's stdin/stdout/stderr (passed over a Unix socket), working directory,
environment and argv, runs KFP's executor (`python -m kfp.dsl.executor_main`) exactly as the
fresh interpreter would, and reports its exit code. So isolation per step is unchanged; only the interpreter start and imports are
shared (copy-on-write pages, no state: the server imports modules and never runs a step).

The hook: kfp.local's SubprocessRunner starts each task as `<sys.executable> -m
kfp.dsl.executor_main ...` (it substitutes `sys.executable` for `python3` in the component's
command). `task_fork_server()` points `sys.executable` at a two-line launcher for the duration of the
run; the launcher (`pipelines/task_forkserver_client.py`, stdlib only, started with `python -S`) hands
the argv to the server, or execs the real interpreter when the server is not there. On a cluster
nothing changes: each step is a pod.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib
import json
import os
import runpy
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# What the tasks import: KFP's executor and every step module (each imports its own stack).
# skops.io first: importing it builds its trusted-type table, looking up each SciPy ufunc's
# module by scanning sys.modules in order, so it costs less (~2 s less under load here, measured
# with -X importtime) before KFP's few hundred modules are loaded. The names found are the same:
# no KFP module holds a SciPy ufunc.
PRELOAD = (
    "skops.io",
    "kfp.dsl.executor",
    "kfp.dsl.utils",
    "components.ingest",
    "components.validate",
    "components.train",
    "components.evaluate",
    "components.gate",
    "components.register",
    "components.deploy",
    "components.batch_score",
)
CLIENT = Path(__file__).with_name("task_forkserver_client.py")
_PR_SET_PDEATHSIG = 1  # prctl(2)
EXECUTOR_MODULE = "kfp.dsl.executor_main"


def _read_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the launcher closed the connection")
        data += chunk
    return data


def _exit_code(e: SystemExit) -> int:
    if e.code is None:
        return 0
    return e.code if isinstance(e.code, int) else 1


def _die_with_server(server: int) -> None:
    """Linux: the kernel kills this task when the server exits (PR_SET_PDEATHSIG), so a task
    never outlives the run that asked for it (the probe: after Ctrl-C a train task kept running,
    orphaned, at 91% CPU and 5.5 GB)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the server's process group is still killed
        return
    if os.getppid() != server:  # the server died before the request took effect
        os._exit(1)


def _run_task(conn: socket.socket, server: int) -> None:
    """In the forked child: become the task (stdio, cwd, env, argv), run the executor, report."""
    code = 1
    _die_with_server(server)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the task's own subprocesses need waitpid
    try:
        header, fds, _, _ = socket.recv_fds(conn, 8, 3)
        (length,) = struct.unpack("!Q", header)
        request = json.loads(_read_exact(conn, length))
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [EXECUTOR_MODULE, *request["args"]]
        try:
            runpy.run_module(EXECUTOR_MODULE, run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as e:
            code = _exit_code(e)
        except BaseException:
            traceback.print_exc()
            code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        with contextlib.suppress(OSError):
            conn.sendall(struct.pack("!i", code))
        os._exit(code)


def serve(path: str, modules: Sequence[str]) -> None:
    """The server loop: preload, listen, fork one child per connection (never runs a step)."""
    os.environ["_KFP_RUNTIME"] = "true"  # what the task command sets: KFP skips its client
    for name in modules:
        importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    staging = f"{path}.{os.getpid()}"
    listener.bind(staging)
    listener.listen(16)
    os.rename(staging, path)  # the socket appears only once the imports are done
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getppid()
    listener.settimeout(2.0)
    while True:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            if os.getppid() != parent:  # the run's process is gone (killed): nor do its tasks
                os.killpg(0, signal.SIGKILL)  # this server's own group: itself and its tasks
            continue
        conn.settimeout(None)
        server = os.getpid()
        if os.fork() == 0:
            listener.close()
            _run_task(conn, server)
        conn.close()


def _launcher(folder: Path, socket_path: str, server_pid: int) -> Path:
    """The executable kfp.local will take for `python3`: the client, or the real interpreter."""
    real = sys.executable
    launcher = folder / "python"
    launcher.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-m" ] && [ "$2" = "{EXECUTOR_MODULE}" ]; then\n'
        f'  shift 2; exec "{real}" -S -E "{CLIENT}" "{socket_path}" {server_pid} "{real}" "$@"\n'
        "fi\n"
        f'exec "{real}" "$@"\n'
    )
    launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return launcher


_ACTIVE = threading.Lock()  # `sys.executable` is process-wide: one server at a time


@contextlib.contextmanager
def task_fork_server(
    enabled: bool = True, modules: Sequence[str] = PRELOAD
) -> Iterator[int | None]:
    """For the block: kfp.local tasks are forked from one pre-warmed server (see module doc).

    A second local run while one is active (the retraining loop runs one in a thread) runs its
    tasks as plain interpreters. Yields the server's pid (None: no server).
    """
    if not enabled or not _ACTIVE.acquire(blocking=False):
        yield None
        return
    try:
        with _serving(modules) as pid:
            yield pid
    finally:
        _ACTIVE.release()


@dataclass
class _Server:
    process: subprocess.Popen[bytes]
    folder: Path
    launcher: Path

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop the server and every task it forked: they share its process group."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # tasks still running after the server
        shutil.rmtree(self.folder, ignore_errors=True)


# One server per module list, kept for the life of this process: the demo, the retraining loop
# and the test suite run many local pipelines, and each reuse skips the preload (stopped at exit).
_SERVERS: dict[tuple[str, ...], _Server] = {}


def _server_for(modules: tuple[str, ...]) -> _Server:
    server = _SERVERS.get(modules)
    if server is not None and server.process.poll() is None:
        return server
    if server is not None:
        server.stop()
    folder = Path(tempfile.mkdtemp(prefix="mlops-tasks-"))
    socket_path = str(folder / "server.sock")
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.task_forkserver", socket_path, *modules],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,  # the server only imports; each task's output is its own
        # Its own process group, which its tasks inherit: stopping the run kills the group, so
        # no task is left behind (and a terminal's Ctrl-C reaches the run, which does that).
        start_new_session=True,
    )
    server = _Server(process, folder, _launcher(folder, socket_path, process.pid))
    _SERVERS[modules] = server
    return server


@atexit.register
def _stop_servers() -> None:
    for server in _SERVERS.values():
        server.stop()
    _SERVERS.clear()


def kill_running_tasks() -> None:
    """An interrupted run: kill every server with the tasks it is running (SIGKILL to their
    process groups); the next run starts a fresh server."""
    for server in _SERVERS.values():
        server.stop(signal.SIGKILL)
    _SERVERS.clear()


@contextlib.contextmanager
def _serving(modules: Sequence[str]) -> Iterator[int]:
    server = _server_for(tuple(modules))
    real, sys.executable = sys.executable, str(server.launcher)
    try:
        yield server.process.pid
    finally:
        sys.executable = real


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2:])
