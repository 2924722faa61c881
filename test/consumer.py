#!/usr/bin/python3
"""A consumer of the orders outbox, to copy and adapt.

It registers a named consumer (its checkpoint lives in the database), LISTENs
on orders_events, and then loops: read the next batch after its checkpoint,
handle each event, acknowledge the batch, and read again; when there is
nothing left, sleep until a NOTIFY wakes it or a timer runs out (the timer
catches up whatever a lost notification, a pooler or a standby kept from it).
Killed at any point, it resumes from its checkpoint: an event is handled at
least once, never skipped.  Make handle() idempotent (the event's position,
or its order_id and version, identify it).

    test/consumer.py --name billing            # connection from PGHOST, PGDATABASE, ...
"""
import argparse
import select
import time

import psycopg2


def consume(dsn, name, handle, batch=100, wake_every=5.0, exit_when_idle=None):
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SELECT orders_events_register(%s)", (name,))  # false if it exists
    cur.execute("LISTEN orders_events")  # before the first read: no wake-up missed
    idle_since = time.monotonic()
    while True:
        cur.execute("SELECT position, type, order_id, version, payload"
                    " FROM orders_events_read(%s, %s)", (name, batch))
        events = cur.fetchall()
        for event in events:
            handle(*event)
        if events:
            cur.execute("SELECT orders_events_ack(%s, %s)", (name, events[-1][0]))
            idle_since = time.monotonic()
            continue  # there may be more
        if exit_when_idle is not None and time.monotonic() - idle_since > exit_when_idle:
            return
        if select.select([conn], [], [], wake_every) != ([], [], []):
            conn.poll()
            conn.notifies.clear()  # a wake-up only: the outbox is the truth


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", default="", help="libpq connection string (default: environment)")
    parser.add_argument("--name", required=True, help="the consumer's name")
    parser.add_argument("--log", help="append each handled event to this file instead of printing it")
    parser.add_argument("--exit-when-idle", type=float, help="stop after this many idle seconds")
    args = parser.parse_args()

    out = open(args.log, "a", buffering=1) if args.log else None

    def handle(position, type_, order_id, version, payload):
        line = f"{position} {type_} {order_id} {version}"
        if out:
            out.write(line + "\n")  # line-buffered: written before the ack
        else:
            print(line, flush=True)

    consume(args.dsn, args.name, handle, exit_when_idle=args.exit_when_idle)


if __name__ == "__main__":
    main()
