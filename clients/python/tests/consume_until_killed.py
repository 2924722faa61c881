"""A consumer process for tests/test_real.py: logs each event it handles;
with --die-after N it exits (code 3) inside the handler of its Nth event,
before the batch is acknowledged, as a crash would."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from orders_repository import EventConsumer  # noqa: E402

dsn, name, log = sys.argv[1:4]
options = sys.argv[4:]
out = open(log, "a", buffering=1)
out.write("run\n")
count = 0


def handle(event):
    global count
    count += 1
    if "--die-after" in options and count == int(options[options.index("--die-after") + 1]):
        os._exit(3)
    out.write(f"{event.order_id} {event.version}\n")


consumer = EventConsumer(dsn, name, handle, batch=5, wake_every=0.2)
if "--register" in options:
    consumer.run(exit_when_idle=0)
else:
    consumer.run(exit_when_idle=None if "--forever" in options else 0.5)
