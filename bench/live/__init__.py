"""The live-service benchmark (`bench/visitors.py`), by concern.

servers: the redis-server and gunicorn it runs (the tests' harness), its GC probe, its log;
meters: CPU, memory and fds from /proc, the collector's pauses, what Redis ran;
load: the visitor sockets it opens and the turns it sends on a clock;
phases: the run, phase by phase; report: percentiles, the summary and its verdicts.
"""

KIB = 1024
MS_PER_S = 1_000.0


def log(text: str = "") -> None:
    """Print one line of the benchmark's output at once (it is read while the run goes on)."""
    print(text, flush=True)
