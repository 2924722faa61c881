"""The README's consumer, killed and restarted while a writer adds orders.

It must end having handled every event written after it registered at least
once, none missing.  Connects with the libpq environment; run by
test/t/001_python_client.pl.  Prints a closing 'N passed, N failed'.
"""
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
CONSUMER = os.path.join(HERE, "..", "consumer.py")
NAME = "kill-test"
CUSTOMER = uuid.UUID("c0000000-0000-0000-0000-0000000000aa")


def writer(stop_after, done):
    conn = psycopg2.connect("")
    conn.autocommit = True
    cur = conn.cursor()
    n = 0
    deadline = time.monotonic() + stop_after
    while time.monotonic() < deadline:
        cur.execute("SELECT id FROM orders_add(%s, 'EUR', ARRAY[ROW(gen_random_uuid(), 'Tea', 1, 100)::order_line],"
                    " ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address)", (str(CUSTOMER),))
        (order_id,) = cur.fetchone()
        if n % 3 == 0:
            cur.execute("SELECT orders_save(jsonb_populate_record(o, '{\"status\": \"confirmed\"}'))"
                        " FROM orders_get(%s) o", (order_id,))
        n += 1
        time.sleep(0.005)
    conn.close()
    done.append(n)


def start_consumer(log, idle=None):
    cmd = [sys.executable, CONSUMER, "--name", NAME, "--log", log]
    if idle is not None:
        cmd += ["--exit-when-idle", str(idle)]
    return subprocess.Popen(cmd)


def main():
    setup = psycopg2.connect("")
    setup.autocommit = True
    cur = setup.cursor()
    cur.execute("SELECT orders_events_register(%s)", (NAME,))
    cur.execute("SELECT coalesce(max(position), 0) FROM order_events")
    (before,) = cur.fetchone()

    log = tempfile.NamedTemporaryFile(prefix="consumer-", suffix=".log", delete=False).name
    done = []
    w = threading.Thread(target=writer, args=(4.0, done))
    w.start()
    kills = 0
    for _ in range(3):
        p = start_consumer(log)
        time.sleep(1.0)
        p.send_signal(signal.SIGKILL)
        p.wait()
        kills += 1
    w.join()
    p = start_consumer(log, idle=2.0)
    p.wait(timeout=120)

    cur.execute("SELECT position FROM order_events WHERE position > %s AND order_id IN"
                " (SELECT id FROM orders WHERE customer_id = %s)", (before, str(CUSTOMER)))
    written = {row[0] for row in cur.fetchall()}
    with open(log) as f:
        handled = [int(line.split()[0]) for line in f if line.strip()]
    os.unlink(log)
    missing = written - set(handled)
    duplicates = len(handled) - len(set(handled))
    print(f"   writer: {done[0]} orders, {len(written)} events; consumer killed {kills} times, "
          f"handled {len(handled)} ({duplicates} more than once)")
    ok = not missing and len(written) > 0 and p.returncode == 0
    if missing:
        print(f"   MISSING {len(missing)} events: {sorted(missing)[:10]}")
    print("ok every_event_handled_at_least_once" if ok else "FAILED every_event_handled_at_least_once")
    print(f"{1 if ok else 0} passed, {0 if ok else 1} failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
