"""Start, await and stop server processes for tests and benchmarks: free ports, bounded waits,
clean stops."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

POLL_INTERVAL_S = 0.02  # between readiness probes; a server is up within a few hundred ms
STOP_TIMEOUT_S = 30  # longer than gunicorn's graceful_timeout (20 s), so SIGTERM gets its chance


class ServerExited(RuntimeError):
    """A server process ended before it became ready."""

    def __init__(self, name: str, returncode: int, stderr: str) -> None:
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"{name} exited with status {returncode} before it was ready:\n{stderr}")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def poll_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Poll `condition` until it is true or `timeout_s` passes; return its last answer."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_INTERVAL_S)
    return True


def wait_until_ready(
    process: subprocess.Popen,
    is_ready: Callable[[], bool],
    *,
    name: str,
    stderr_path: Path,
    timeout_s: float,
) -> None:
    """Poll `is_ready` until it is true; raise if `process` exits first or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while not is_ready():
        if process.poll() is not None:
            raise ServerExited(name, process.returncode, stderr_path.read_text())
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} not ready after {timeout_s} s:\n{stderr_path.read_text()}")
        time.sleep(POLL_INTERVAL_S)


def child_pids(pid: int) -> list[int]:
    """Return the pids whose parent is `pid` (a gunicorn master's workers), read from /proc."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # it ended while we looked
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:  # after "pid (comm) state": ppid
            children.append(int(entry))
    return sorted(children)


def stop(process: subprocess.Popen) -> None:
    """Stop `process` with SIGTERM, or SIGKILL if it has not ended within STOP_TIMEOUT_S.

    A process that leads a session of its own (started with `start_new_session`) is killed with
    its whole group, so that a gunicorn master takes its workers with it.
    """
    stop_all([process])


def stop_all(processes: list[subprocess.Popen]) -> None:
    """Stop several processes as `stop` does, all at once: each SIGTERM is sent before any is
    waited for, so their graceful shutdowns (a gunicorn's takes about a second) overlap."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for process in running:
        _wait_or_kill(process, max(deadline - time.monotonic(), 0.0))


def _wait_or_kill(process: subprocess.Popen, timeout_s: float) -> None:
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        try:
            leads_group = os.getpgid(process.pid) == process.pid
        except ProcessLookupError:  # it ended just now
            leads_group = False
        if leads_group:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait()
