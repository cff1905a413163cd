"""Keep the garbage collector's full passes off the p99 (docs/stack.md, "Collector pauses").

With thousands of sockets a worker holds a million long-lived objects, and a
full collection walking them paused it for 0.4-0.6 s (bench/visitors.py). So
every FREEZE_EVERY_S (5 s) the worker moves what survived into the collector's
permanent generation, which full passes skip; once every SWEEP_EVERY_S it
unfreezes and collects everything, so cycles left by closed sockets are freed
with one planned pause rather than many unplanned ones.
"""

from __future__ import annotations

import gc
import logging
import time

import gevent

log = logging.getLogger("concierge.gc")

FREEZE_EVERY_S = 5.0  # young generations stay small: their passes stay short
SWEEP_EVERY_S = 600.0


def tend() -> None:
    """Freeze survivors now and then, and sweep everything now and again (runs forever)."""
    last_sweep = time.monotonic()
    while True:
        gevent.sleep(FREEZE_EVERY_S)
        if time.monotonic() - last_sweep >= SWEEP_EVERY_S:
            started = time.monotonic()
            gc.unfreeze()
            freed = gc.collect()
            last_sweep = time.monotonic()
            log.info("full garbage collection: %d objects freed in %.0f ms", freed,
                     (last_sweep - started) * 1000)
        else:
            gc.collect(1)  # young garbage must not be frozen with the survivors
        gc.freeze()


def start() -> None:
    gevent.spawn(tend)
