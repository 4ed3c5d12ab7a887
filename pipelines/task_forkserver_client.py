"""The launcher side of `pipelines.task_forkserver`: stdlib only, run as `python -S -E`.

argv: <server socket> <server pid> <real python> <executor args...>. Hands this process's stdin/stdout/stderr,
working directory, environment and the executor's args to the fork server, then exits with the
task's exit code. When the server cannot be reached (not started yet: retried for a while; gone:
refused), it execs the real interpreter on the same command, so a task always runs.
"""

import json
import os
import socket
import struct
import sys
import time

CONNECT_WAIT_S = 120.0  # the server imports the scientific stack once before it listens


def alive(pid: int) -> bool:
    """The server is running (not gone, not a zombie its parent has yet to reap)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def connect(path: str, server_pid: int) -> socket.socket | None:
    deadline = time.monotonic() + CONNECT_WAIT_S
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            if not alive(server_pid) or time.monotonic() > deadline:
                return None
            time.sleep(0.05)


def main() -> None:
    path, server_pid, real_python, args = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    sock = connect(path, server_pid)
    if sock is None:
        os.execv(real_python, [real_python, "-m", "kfp.dsl.executor_main", *args])
    body = json.dumps({"args": args, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
    socket.send_fds(sock, [struct.pack("!Q", len(body))], [0, 1, 2])
    sock.sendall(body)
    reply = b""
    while len(reply) < 4:
        chunk = sock.recv(4 - len(reply))
        if not chunk:  # the task process died without reporting (a crash): a failed task
            sys.exit(1)
        reply += chunk
    sys.exit(struct.unpack("!i", reply)[0])


if __name__ == "__main__":
    main()
