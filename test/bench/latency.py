"""Commit-to-receipt latency of the orders_events notifications.

A writer adds orders one at a time in autocommit, with orders.notify set to
the given mode, and notes when each commit returned; a listener on a second
connection notes when each notification arrived.  Prints p50 and p99 in
milliseconds.  Connection from the libpq environment.

    latency.py MODE COUNT INTERVAL_SECONDS
"""
import json
import select
import sys
import threading
import time
import uuid

import psycopg2

mode, count, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
received = {}
ready = threading.Event()
done = threading.Event()


def listen():
    conn = psycopg2.connect("")
    conn.autocommit = True
    conn.cursor().execute("LISTEN orders_events")
    ready.set()
    while not done.is_set() or select.select([conn], [], [], 0) != ([], [], []):
        if select.select([conn], [], [], 0.1) != ([], [], []):
            conn.poll()
            now = time.perf_counter()
            while conn.notifies:
                received[json.loads(conn.notifies.pop(0).payload)["order_id"]] = now


listener = threading.Thread(target=listen)
listener.start()
ready.wait()
conn = psycopg2.connect("")
conn.autocommit = True
cur = conn.cursor()
cur.execute("SELECT set_config('orders.notify', %s, false)", (mode,))
customer = str(uuid.uuid4())
sent = {}
for _ in range(count):
    order_id = str(uuid.uuid4())
    cur.execute("SELECT id FROM orders_add(%s, 'EUR', id => %s)", (customer, order_id))
    sent[order_id] = time.perf_counter()
    time.sleep(interval)
time.sleep(2)
done.set()
listener.join()
lat = sorted(max(0.0, received[i] - t) * 1000 for i, t in sent.items() if i in received)
missing = len(sent) - len(lat)


def pct(p):
    return lat[min(len(lat) - 1, int(p / 100 * len(lat)))]


print(f"{mode}: p50 {pct(50):.2f} ms, p99 {pct(99):.2f} ms over {len(lat)} notifications"
      + (f", {missing} not heard" if missing else ""))
