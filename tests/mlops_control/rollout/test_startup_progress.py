"""Waiting for a starting process by the CPU it gets, not by the wall clock
(mlops_control/traffic/model_server_process.py: StartupProgress, wait_for_http_ready).

The local router's start used to fail on a loaded 2-core machine: it waited a fixed 120 s for the
router, which answers only after its stable's model server is ready (two cold Python processes in
a row, importing scipy, kserve and xgboost), and the router waited the same 120 s for that child.
A cold start needs about the same CPU time however loaded the machine is; these tests load one
core on purpose and check that a slow start succeeds while a spinning or stuck one is given up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mlops_control.traffic.model_server_process import (
    ModelServerError,
    StartupProgress,
    free_port,
    process_tree_cpu_s,
    wait_for_http_ready,
)

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

# Burns `work` CPU-seconds, then answers 200 on every GET (a cold start, then ready).
SERVER = textwrap.dedent(
    """
    import sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer
    port, work = int(sys.argv[1]), float(sys.argv[2])
    while time.process_time() < work:
        pass
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers()
        def log_message(self, *a):
            pass
    HTTPServer(("127.0.0.1", port), H).serve_forever()
    """
)
CPU = min(os.sched_getaffinity(0))


def _pinned() -> None:
    os.sched_setaffinity(0, {CPU})


@contextmanager
def busy_neighbours(n: int) -> Iterator[None]:
    """`n` busy loops on the same core: a noisy machine."""
    procs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=_pinned)
        for _ in range(n)
    ]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _spawn(code: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code, *args], preexec_fn=_pinned)


def test_a_start_slowed_by_load_succeeds_where_the_wall_clock_would_have_failed(tmp_path):
    port = free_port()
    with busy_neighbours(3):
        started = time.monotonic()
        proc = _spawn(SERVER, str(port), "1.0")
        try:
            wait_for_http_ready(
                f"http://127.0.0.1:{port}/", proc, tmp_path / "log", what="slow", cpu_budget_s=3
            )
            wall = time.monotonic() - started
        finally:
            proc.kill()
            proc.wait()
    # One CPU-second of start-up took several wall seconds next to three busy loops: more than
    # the whole CPU budget, had it been counted in wall seconds.
    assert wall > 3.0, wall


def test_a_process_that_spins_without_becoming_ready_is_given_up_by_its_cpu_budget(tmp_path):
    proc = _spawn("while True: pass")
    log = tmp_path / "log"
    log.write_text("spinning\n")
    with pytest.raises(ModelServerError, match=r"used \d+ CPU-seconds .* without becoming ready"):
        wait_for_http_ready(f"http://127.0.0.1:{free_port()}/", proc, log, what="x", cpu_budget_s=1)
    assert proc.poll() is not None  # killed, not left behind


def test_a_process_that_gets_no_cpu_is_stuck_not_slow():
    proc = _spawn("import time; time.sleep(60)")
    try:
        progress = StartupProgress(proc, "sleeper", stall_s=1.0)
        deadline = time.monotonic() + 20
        reason = None
        while reason is None and time.monotonic() < deadline:
            time.sleep(0.2)
            reason = progress.give_up()
        assert reason is not None and "got no CPU time for 1 s" in reason
    finally:
        proc.kill()
        proc.wait()


def test_an_exited_process_fails_at_once_with_its_status(tmp_path):
    proc = _spawn("raise SystemExit(3)")
    proc.wait()
    started = time.monotonic()
    with pytest.raises(ModelServerError, match="exited with 3"):
        wait_for_http_ready(f"http://127.0.0.1:{free_port()}/", proc, tmp_path / "log", what="x")
    assert time.monotonic() - started < 10


def test_the_cpu_of_children_counts():
    # A parent that only waits for a busy child: the tree's CPU grows, the parent's own does not.
    proc = _spawn(
        "import subprocess, sys; subprocess.run([sys.executable, '-c', "
        "'import time\\nwhile time.process_time() < 1.5: pass'])"
    )
    try:
        start = process_tree_cpu_s(proc.pid) or 0.0
        grown, deadline = 0.0, time.monotonic() + 30
        while grown <= 0.5 and time.monotonic() < deadline:
            time.sleep(0.2)
            grown = (process_tree_cpu_s(proc.pid) or 0.0) - start
        assert grown > 0.5, grown
    finally:
        proc.kill()
        proc.wait()
