"""One reader of a consumer group, with the Python client's EventConsumer:
logs "reader order_id version time" for each event it handles.

    group_reader.py DSN GROUP LOG NAME [--kill-after N] [--delay S] [--idle S]

--kill-after N: it sends itself SIGKILL inside the handler of its N-th
event, killed mid-batch, before acknowledging.  --delay S: each event takes
S seconds to handle (default 0.05), so that readers work side by side.
It exits when it has had nothing to read for --idle seconds (default 5).
"""
import argparse
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "clients", "python"))

from orders_repository import EventConsumer  # noqa: E402

args = argparse.ArgumentParser()
args.add_argument("dsn")
args.add_argument("group")
args.add_argument("log")
args.add_argument("name")
args.add_argument("--kill-after", type=int)
args.add_argument("--delay", type=float, default=0.05)
args.add_argument("--idle", type=float, default=5.0)
a = args.parse_args()
handled = 0
out = open(a.log, "a", buffering=1)


def handle(event):
    global handled
    handled += 1
    if a.kill_after is not None and handled == a.kill_after:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(a.delay)
    out.write(f"{a.name} {event.order_id} {event.version} {time.time():.6f}\n")


EventConsumer(a.dsn, a.group, handle, batch=5, wake_every=0.2, group=True).run(exit_when_idle=a.idle)
