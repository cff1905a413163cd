"""Shared round trips under gevent's patched sockets, as in a worker: run as a script.

`python -m tests.support.coalesce_probe REDIS_URL` makes 200 greenlets call a script 5 times
each, with jitter, while 20 of them are killed as they wait; then one more call. It prints one
JSON line: wrong or missing replies, how many batches the calls took, and whether the last
call came back (a lost lead would leave it waiting for ever).
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402 - after patching, as a gevent worker imports
import random  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
import redis  # noqa: E402

from chat.coalesce import Coalescer  # noqa: E402

ECHO = "redis.call('INCR', KEYS[1]) return ARGV[1]"


def main(url: str) -> None:
    client = redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(
        url, max_connections=8, decode_responses=True))
    coalescer = Coalescer(client)
    shared = coalescer.wrap(client.register_script(ECHO))
    wrong: list[str] = []
    done = []

    def caller(n: int) -> None:
        for i in range(5):
            gevent.sleep(random.random() * 0.002)
            expected = f"{n}:{i}"
            got = shared(keys=["probe:calls"], args=[expected])
            if got != expected:
                wrong.append(f"{expected} got {got}")
            done.append(expected)

    random.seed(7)
    callers = [gevent.spawn(caller, n) for n in range(200)]
    gevent.sleep(0.004)
    for victim in random.sample(callers, 20):
        victim.kill(block=False)
    gevent.joinall(callers, timeout=20)
    last = gevent.spawn(shared, keys=["probe:calls"], args=["last"])
    last.join(timeout=5)
    print(json.dumps({"wrong": wrong, "done": len(done), "batches": coalescer.batches,
                      "stored": int(client.get("probe:calls") or 0),
                      "last": last.value if last.successful() else None,
                      "stuck": sum(1 for g in callers if not g.dead)}))


if __name__ == "__main__":
    main(sys.argv[1])
