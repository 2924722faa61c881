"""The demo's consumer, written with the Python repository client
(clients/python): reads every event the outbox holds, from the start,
through a named gap-free consumer, prints each, and stops when idle."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "clients", "python"))

from orders_repository import EventConsumer, OrderRepository  # noqa: E402
import psycopg  # noqa: E402

seen = []


def handle(event):
    seen.append(event)
    print(f"   [consumer] #{event.position} {event.type:<14} order {event.order_id} version {event.version}",
          flush=True)


EventConsumer("", "demo", handle, from_start=True, wake_every=0.5).run(exit_when_idle=1.0)
with psycopg.connect("", autocommit=True) as conn:
    left = list(OrderRepository(conn).find())
print(f"   [consumer] handled {len(seen)} events; {len(left)} orders are left", flush=True)
