"""Several gunicorn instances on one Redis (one redis-server, or a 3-master Redis Cluster:
bench/live/redis_nodes.py), for `bench/relay.py`: the tests' harness (tests/support/), each
server in a session of its own, everything on 127.0.0.1.

`servers.Servers` runs one instance with a Redis of its own; a message that crosses instances
needs two gunicorns on the same Redis, which is what `Cluster` starts (a cluster of gunicorns,
whatever the Redis is). Each instance keeps its
files (its log, its workers' GC pauses) in a directory of its own.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path

from bench.live.meters import GC_LOG_MIN_MS, proc_rss_kb
from bench.live.redis_nodes import BenchRedis
from bench.live.servers import SITECUSTOMIZE, Servers
from tests.support.gunicorn_server import GunicornServer
from tests.support.process import free_port

SECRET_KEY = "bench"  # one key for every instance: a token made by one is read by the others
PREFIX = "concierge:"  # REDIS_PREFIX's default: the benchmark makes its agents under it


class Instance:
    """One gunicorn (gevent workers) of the cluster, on a free loopback port."""

    def __init__(self, name: str, directory: Path, port: int, env: dict[str, str]) -> None:
        self.name = name
        self.directory = directory
        self.gc_log = directory / "gc"  # the probe's files: gc.<pid>
        env = {**env, "CONCIERGE_BENCH_GC_LOG": str(self.gc_log)} \
            if "CONCIERGE_BENCH_GC_MIN_MS" in env else env
        self.gunicorn = GunicornServer(directory, env, port=port, own_session=True)
        self.worker_pids: list[int] = []

    # The same readings as one instance of bench/visitors.py (servers.Servers), by its code.
    log_events = Servers.log_events
    gc_pauses = Servers.gc_pauses
    log_tail = Servers.log_tail

    @property
    def port(self) -> int:
        return self.gunicorn.port

    @property
    def origin(self) -> str:
        return self.gunicorn.url

    @property
    def master_pid(self) -> int:
        return self.gunicorn.process.pid

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        self.gunicorn.start()
        self.worker_pids = self.gunicorn.worker_pids()

    def stop(self) -> None:
        self.gunicorn.stop()

    def workers_unchanged(self) -> bool:
        return self.gunicorn.process is not None and \
            self.gunicorn.worker_pids() == self.worker_pids

    def workers_rss_kb(self) -> int:
        return sum(proc_rss_kb(pid) for pid in self.worker_pids)


class Cluster:
    """A Redis (no persistence; `redis_kind` single or cluster) and `len(names)` gunicorns on
    it, in `directory`."""

    def __init__(self, directory: Path, names: list[str], workers: int, env: dict[str, str],
                 gc_probe: bool = True, redis_kind: str = "single") -> None:
        self.directory = directory
        self.redis = BenchRedis(directory, redis_kind)
        self.probe_dir = directory / "probe"
        self.gc_probe = gc_probe
        ports = [free_port() for _ in names]  # known first: every instance's origin is allowed
        while len(set(ports)) < len(ports):
            ports = [free_port() for _ in names]
        shared = {"REDIS_URL": self.redis.service_url, "SECRET_KEY": SECRET_KEY,
                  "WEB_CONCURRENCY": str(workers), "CONCIERGE_ENV": "production",
                  "ALLOWED_ORIGINS": ",".join(f"http://127.0.0.1:{port}" for port in ports),
                  **env}
        if gc_probe:
            shared["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.probe_dir),
                                                                 os.environ.get("PYTHONPATH")]))
            shared["CONCIERGE_BENCH_GC_MIN_MS"] = str(GC_LOG_MIN_MS)
        self.env = shared
        self.instances: dict[str, Instance] = {}
        for name, port in zip(names, ports, strict=True):
            place = directory / name
            place.mkdir(parents=True, exist_ok=True)
            self.instances[name] = Instance(name, place, port, shared)

    def __getitem__(self, name: str) -> Instance:
        return self.instances[name]

    @property
    def redis_pids(self) -> list[int]:
        return self.redis.pids

    @property
    def redis_ports(self) -> list[int]:
        return self.redis.ports

    def start(self) -> None:
        """Start Redis (every node), then each gunicorn in turn, each until every worker runs."""
        if self.gc_probe:
            self.probe_dir.mkdir(exist_ok=True)
            (self.probe_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
        self.redis.start()
        for instance in self.instances.values():
            instance.start()

    def stop(self) -> None:
        """Stop every gunicorn, then Redis; a failure to stop one does not skip the rest."""
        for instance in self.instances.values():
            try:
                instance.stop()
            except Exception as exc:  # noqa: BLE001 - stop the others whatever happens
                print(f"stopping gunicorn {instance.name} failed: {exc}", flush=True)
        self.redis.stop()

    def workers_unchanged(self) -> bool:
        return all(instance.workers_unchanged() for instance in self.instances.values())

    def log_events(self, start: float, end: float) -> collections.Counter:
        events: collections.Counter = collections.Counter()
        for instance in self.instances.values():
            for kind, times in instance.log_events(start, end).items():
                events[f"{instance.name}: {kind}"] += times
        return events
