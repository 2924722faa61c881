"""One reader of a consumer group, with the Python client's EventConsumer:
logs "reader order_id version time" for each event it handles.

    group_reader.py DSN GROUP LOG NAME [--kill-after N]

With --kill-after N it sends itself SIGKILL inside the handler of its N-th
event: killed mid-batch, before acknowledging.  It exits when it has had
nothing to read for 3 seconds.
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "clients", "python"))

from orders_repository import EventConsumer  # noqa: E402

dsn, group, log, name = sys.argv[1:5]
kill_after = int(sys.argv[6]) if len(sys.argv) > 6 and sys.argv[5] == "--kill-after" else None
handled = 0
out = open(log, "a", buffering=1)


def handle(event):
    global handled
    handled += 1
    if kill_after is not None and handled == kill_after:
        os.kill(os.getpid(), signal.SIGKILL)
    out.write(f"{name} {event.order_id} {event.version} {time.time():.6f}\n")


EventConsumer(dsn, group, handle, batch=5, wake_every=0.2, group=True).run(exit_when_idle=3)
