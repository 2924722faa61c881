"""Listens on orders_events and appends each notification to a file:
position, order_id, version, sending pid.  Reconnects when the server goes
away (a crash); stops once the file named by argv[2] exists and nothing has
arrived for a second."""
import json
import os
import select
import sys
import time

import psycopg2

log_path, stop_path = sys.argv[1], sys.argv[2]
out = open(log_path + ".tmp", "a", buffering=1)


def connect():
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = psycopg2.connect("")
            conn.autocommit = True
            conn.cursor().execute("LISTEN orders_events")
            return conn
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


conn = connect()
os.rename(log_path + ".tmp", log_path)  # the log appears once we listen
quiet_since = time.monotonic()
while True:
    try:
        if select.select([conn], [], [], 0.2) != ([], [], []):
            conn.poll()
        while conn.notifies:
            n = conn.notifies.pop(0)
            e = json.loads(n.payload)
            out.write(f"{e['position']} {e['order_id']} {e['version']} {n.pid}\n")
            quiet_since = time.monotonic()
    except (psycopg2.OperationalError, psycopg2.InterfaceError):
        conn = connect()
        continue
    if os.path.exists(stop_path) and time.monotonic() - quiet_since > 1.0:
        break
