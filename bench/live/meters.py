"""What the benchmark reads while it runs: CPU and memory from /proc, collector pauses,
and the commands Redis ran."""

from __future__ import annotations

import asyncio
import collections
import os
import re
import socket
import time
from pathlib import Path

from bench.live import MS_PER_S

CLK_TCK = os.sysconf("SC_CLK_TCK")  # /proc/<pid>/stat counts CPU time in these ticks
GC_LOG_MIN_MS = 1.0  # collector pauses at least this long are logged (and every full one)
OTHERS = "others"
# MONITOR prints `+<time> [<db> <client address, or "lua" inside a script>] "<command>" ...`
MONITOR_LINE = re.compile(rb'^\+[\d.]+ \[\d+ ([^\]]+)\] "([^"]+)"')


def proc_cpu_ticks(pid: int) -> int:
    """Return the user + system CPU time of a process, in clock ticks (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": field 3 is fields[0]
    return int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of proc(5)


def proc_cpu_ns(pid: int) -> int:
    """Return the time a process has run on a CPU, in ns (/proc/<pid>/schedstat; 0 if gone):
    exact, where /proc/<pid>/stat counts in clock ticks of 10 ms."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def proc_rss_kb(pid: int) -> int:
    """Return a process's resident memory (VmRSS) in KB, or 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class CpuMeter:
    """CPU time of named groups of processes between two samples, as % of one core.

    It adds "others": what the rest of the machine used (/proc/stat busy time minus the
    groups), so a figure taken while something else ran says so.
    """

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups

    def sample(self) -> tuple[float, dict[str, int]]:
        ticks = {name: sum(proc_cpu_ticks(pid) for pid in pids)
                 for name, pids in self.groups.items()}
        ticks[OTHERS] = machine_busy_ticks() - sum(ticks.values())
        return time.monotonic(), ticks

    @staticmethod
    def percent(before: tuple[float, dict[str, int]], after: tuple[float, dict[str, int]]
                ) -> dict[str, float]:
        wall_s = max(after[0] - before[0], 1e-9)
        return {name: max(0.0, 100.0 * (after[1][name] - before[1][name]) / CLK_TCK / wall_s)
                for name in after[1]}


def machine_busy_ticks() -> int:
    """Busy CPU time of the whole machine (all cores), in clock ticks."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, iowait = fields[3], fields[4]
    return sum(fields[:8]) - idle - iowait  # user nice system idle iowait irq softirq steal



def redis_commands(port: int) -> collections.Counter:
    """Calls per command so far (INFO commandstats), read over a plain socket."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"INFO commandstats\r\n")
        reply = b""
        while not reply.startswith(b"$") or len(reply) < reply.index(b"\r\n") + 2 + int(
                reply[1:reply.index(b"\r\n")]):
            chunk = conn.recv(65536)
            if not chunk:
                break
            reply += chunk
    calls: collections.Counter = collections.Counter()
    for name, count in re.findall(r"cmdstat_([^:]+):calls=(\d+)", reply.decode()):
        if name != "info":
            calls[name] = int(count)
    return calls


class ClientGc:
    """Record this process's collector pauses (a pause here delays what the client measures)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, int, float]] = []  # (monotonic end, generation, ms)
        self._began = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        pause_ms = (time.perf_counter() - self._began) * MS_PER_S
        if pause_ms >= GC_LOG_MIN_MS or info["generation"] == 2:
            self.pauses.append((time.monotonic(), info["generation"], pause_ms))

    def between(self, start: float, end: float) -> list[tuple[int, float]]:
        return [(generation, ms) for stamp, generation, ms in self.pauses if start <= stamp <= end]


class RedisMonitor:
    """Count the commands clients send to Redis, not those run inside scripts: MONITOR on every
    port given (each node of a cluster), counts summed.

    A pipeline's commands count one by one, so this is an upper bound on round trips.
    """

    def __init__(self, ports: int | list[int]) -> None:
        self.ports = [ports] if isinstance(ports, int) else list(ports)
        self.calls: collections.Counter = collections.Counter()

    async def __aenter__(self) -> RedisMonitor:
        self.connections = []
        self.tasks = []
        for port in self.ports:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            self.connections.append(writer)
            writer.write(b"MONITOR\r\n")
            await writer.drain()
            await reader.readline()  # +OK
            self.tasks.append(asyncio.create_task(self.read(reader)))
        return self

    async def read(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            match = MONITOR_LINE.match(line)
            if match and match[1] != b"lua":
                self.calls[match[2].decode().lower()] += 1

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.sleep(0.2)  # the last answers' commands are still on their way
        for task in self.tasks:
            task.cancel()
        for writer in self.connections:
            writer.close()
