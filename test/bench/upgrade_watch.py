"""ALTER EXTENSION orders UPDATE under load, watched.

    python3 test/bench/upgrade_watch.py

The connection comes from the PG* environment; the database holds the
extension at an old version and its data.  While three clients work as an
application does (one adds orders, one reads orders by id, one reads the
outbox as a consumer of the oldest release did), one more connection runs
ALTER EXTENSION orders UPDATE, and a sampler reads pg_locks and
pg_stat_activity every 20 ms.  Prints, as Markdown:

  - the update's time;
  - each relation it locked, with the strongest mode seen and when it was
    first seen (seconds after the update started);
  - for each client, its calls before, during and after the update: the
    longest, how many took longer than 100 ms, how many of them waited on a
    lock, and any errors.
"""
import random
import threading
import time

import psycopg2

SAMPLE = 0.02
SLOW = 0.1
LINES = ("'{\"(0b1e4f5a-6c7d-4e8f-9a0b-1c2d3e4f5a6b,Green tea,2,450)\","
         "\"(1c2f5a6b-7d8e-4f9a-8b1c-2d3e4f5a6b7c,Teapot,1,3900)\","
         "\"(2d3a6b7c-8e9f-4a0b-9c2d-3e4f5a6b7c8d,Mug,4,1250)\"}'::order_line[]")
ADD = ("SELECT id FROM orders_add(customer_id => 'c0000000-0000-4000-8000-000000000001',"
       " currency => 'EUR', lines => " + LINES + ","
       " shipping_address => '(\"Main St 1\",Berlin,10115,DE)'::order_address)")
GET = "SELECT version FROM orders_get(%s)"
READ = ("SELECT max(position), count(*) FROM (SELECT position FROM order_events"
        " WHERE position > %s ORDER BY position LIMIT 100) batch")
MODES = ["AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock",
         "ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"]

stop = threading.Event()
calls = {"add": [], "get": [], "read": []}   # (start, seconds, error or None)
waited = set()                               # (client, call start) seen waiting on a lock
client_pids = {}
current = {}                                 # client -> start of its call under way


def connect():
    conn = psycopg2.connect("")
    conn.autocommit = True
    return conn


def client(name):
    conn = connect()
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    client_pids[cur.fetchone()[0]] = name
    cur.execute("SELECT array_agg(id::text) FROM (SELECT id FROM orders ORDER BY random() LIMIT 10000) s")
    ids = cur.fetchone()[0]
    cur.execute("SELECT coalesce(max(position), 0) - 100000 FROM order_events")
    position = cur.fetchone()[0]
    while not stop.is_set():
        start = time.monotonic()
        current[name] = start
        error = None
        try:
            if name == "add":
                cur.execute(ADD)
            elif name == "get":
                cur.execute(GET, (random.choice(ids),))
            else:
                cur.execute(READ, (position,))
                last, n = cur.fetchone()
                position = last if n == 100 else position - 100000
        except psycopg2.Error as e:
            error = f"{e.pgcode} {e.pgerror.splitlines()[0] if e.pgerror else e}"
        calls[name].append((start, time.monotonic() - start, error))
        current[name] = None
        time.sleep(0.005)
    conn.close()



def sampler(update_pid, locks, started):
    conn = connect()
    cur = conn.cursor()
    while not stop.is_set():
        now = time.monotonic()
        cur.execute("""
            SELECT coalesce(c.relname, '(relations the update made)'), l.mode
            FROM pg_locks l LEFT JOIN pg_class c ON c.oid = l.relation
            WHERE l.pid = %s AND l.granted AND l.locktype = 'relation'
              AND (c.relnamespace IS NULL
                   OR c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'pg_toast'::regnamespace))""",
                    (update_pid,))
        for rel, mode in cur.fetchall():
            seen = locks.get(rel)
            if seen is None:
                locks[rel] = [mode, now - started[0] if started[0] else 0.0]
            elif MODES.index(mode) > MODES.index(seen[0]):
                seen[0] = mode
        cur.execute("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        for (pid,) in cur.fetchall():
            name = client_pids.get(pid)
            if name and current.get(name):
                waited.add((name, current[name]))
        time.sleep(SAMPLE)
    conn.close()


def main():
    updater = connect()
    ucur = updater.cursor()
    ucur.execute("SELECT pg_backend_pid(), (SELECT extversion FROM pg_extension WHERE extname = 'orders')")
    update_pid, before = ucur.fetchone()
    threads = [threading.Thread(target=client, args=(n,)) for n in calls]
    for t in threads:
        t.start()
    time.sleep(3)
    locks, started = {}, [None]
    sampling = threading.Thread(target=sampler, args=(update_pid, locks, started))
    sampling.start()
    started[0] = time.monotonic()
    try:
        ucur.execute("ALTER EXTENSION orders UPDATE")
        ended = time.monotonic()
        ucur.execute("SELECT extversion FROM pg_extension WHERE extname = 'orders'")
        after = ucur.fetchone()[0]
        time.sleep(3)
    finally:
        stop.set()
        for t in threads + [sampling]:
            t.join()

    print(f"ALTER EXTENSION orders UPDATE from {before} to {after}: {ended - started[0]:.1f} s\n")
    print("| relation | strongest lock seen | first seen at |")
    print("|---|---|---|")
    for rel, (mode, at) in sorted(locks.items(), key=lambda kv: kv[1][1]):
        print(f"| {rel} | {mode} | {at:.1f} s |")
    print("\n| client | when | calls | longest | over 100 ms | waited on a lock | errors |")
    print("|---|---|---|---|---|---|---|")
    for name, done in calls.items():
        # a call is "during" if it was under way at any time of the update
        for label, part in (("before", [c for c in done if c[0] + c[1] < started[0]]),
                            ("during", [c for c in done if c[0] < ended and c[0] + c[1] >= started[0]]),
                            ("after", [c for c in done if c[0] >= ended])):
            if not part:
                print(f"| {name} | {label} | 0 | | | | |")
                continue
            errors = sorted({c[2] for c in part if c[2]})
            slow = sum(1 for c in part if c[1] > SLOW)
            lock = sum(1 for c in part if (name, c[0]) in waited)
            print(f"| {name} | {label} | {len(part)} | {max(c[1] for c in part) * 1000:.0f} ms"
                  f" | {slow} | {lock} | {sum(1 for c in part if c[2])}{': ' + '; '.join(errors) if errors else ''} |")


main()
