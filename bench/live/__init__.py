"""The live-service benchmark (`bench/visitors.py`), by concern.

servers: the redis-server and gunicorn it runs (the tests' harness), its GC probe, its log;
meters: CPU, memory and fds from /proc, the collector's pauses, what Redis ran;
load: the visitor sockets it opens and the turns it sends on a clock;
phases: the run, phase by phase; report: percentiles, the summary and its verdicts.
"""

import argparse

KIB = 1024
MS_PER_S = 1_000.0


def log(text: str = "") -> None:
    """Print one line of the benchmark's output at once (it is read while the run goes on)."""
    print(text, flush=True)


def rate_list(text: str) -> list[float]:
    """Read `--rates` ("500,1000,2000"): positive numbers, comma-separated."""
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes numbers, comma-separated (e.g. 500,1000), "
                                         f"not {text!r}") from None
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError("takes one or more rates above 0")
    return rates
