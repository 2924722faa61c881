"""The demo's listener: LISTENs on orders_events and prints each event it
hears, with the outbox row it points to; stops after N events or 20 s."""
import json
import select
import sys
import time

import psycopg2

want = int(sys.argv[1]) if len(sys.argv) > 1 else 3
conn = psycopg2.connect("")
conn.autocommit = True
cur = conn.cursor()
cur.execute("LISTEN orders_events")
heard = 0
deadline = time.monotonic() + 20
while heard < want and time.monotonic() < deadline:
    if select.select([conn], [], [], 1.0) == ([], [], []):
        continue
    conn.poll()
    while conn.notifies:
        note = conn.notifies.pop(0)
        event = json.loads(note.payload)
        cur.execute("SELECT payload->>'total', jsonb_array_length(payload->'lines') "
                    "FROM order_events WHERE position = %s", (event["position"],))
        total, nlines = cur.fetchone()
        heard += 1
        print(f"   [listener] heard #{event['position']} {event['type']:<14} order {event['order_id']}"
              f" version {event['version']} (outbox: total {total}, {nlines} lines)", flush=True)
print(f"   [listener] heard {heard} events", flush=True)
