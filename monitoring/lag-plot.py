#!/usr/bin/python3
"""Plots consumer lag over a short run, as prometheus-postgres-exporter reports it.

A writer adds orders at a steady rate; two consumers read them: "steady"
all along, "stalled" too, except that it stops for a while and then catches
up, a batch at a time.  The script starts its own exporter
(/usr/bin/prometheus-postgres-exporter, Debian's package) on a free loopback
port with monitoring/postgres-exporter.yml, scrapes /metrics every second,
and plots orders_consumer_oldest_pending_age_seconds and
orders_consumer_pending of both consumers to a PNG (python3-matplotlib).

Run it against a throw-away database with the extension (it writes orders
there, and leaves them); the connection comes from PGHOST, PGPORT,
PGDATABASE, PGUSER, as for psql, over a Unix socket:

    monitoring/lag-plot.py --out docs/consumer-lag.png

docs/monitoring.md shows the result.  Not run in CI.
"""
import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect():
    conn = psycopg2.connect("")  # PGHOST, PGPORT, ... as psql takes them
    conn.autocommit = True
    return conn


def start_exporter(exporter, queries, port):
    """The exporter on loopback, connected as the current user over the socket."""
    conn = connect()
    info = conn.info
    host = info.host if info.host.startswith("/") else "/var/run/postgresql"
    dsn = "postgresql://%s@:%s/%s?%s" % (
        urllib.parse.quote(info.user), info.port, urllib.parse.quote(info.dbname),
        urllib.parse.urlencode({"host": host, "sslmode": "disable"}))
    conn.close()
    env = dict(os.environ, DATA_SOURCE_NAME=dsn)
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [exporter, "--web.listen-address=127.0.0.1:%d" % port,
         "--extend.query-path=%s" % queries, "--disable-default-metrics",
         "--disable-settings-metrics", "--no-collector.database",
         "--no-collector.bgwriter", "--log.level=warn"],
        env=env, stdout=log, stderr=log)
    return proc, log


LINE = re.compile(r'^(\w+)\{([^}]*)\}\s+(\S+)$')


def scrape(url):
    """{(metric, consumer): value} of the orders_consumer_* metrics."""
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m or not m.group(1).startswith("orders_consumer_"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        out[(m.group(1), labels.get("consumer"))] = float(m.group(3))
    return out


def writer(stop, rate):
    conn = connect()
    cur = conn.cursor()
    cur.execute("SET orders.notify = off")
    while not stop.is_set():
        cur.execute("SELECT orders_add(gen_random_uuid(), 'EUR')")
        time.sleep(1.0 / rate)
    conn.close()


def consumer(name, stop, paused, batch, every):
    """Reads and acknowledges up to batch events every `every` seconds, unless paused."""
    conn = connect()
    cur = conn.cursor()
    while not stop.is_set():
        if not paused.is_set():
            cur.execute("SELECT max(position) FROM orders_events_read(%s, %s)", (name, batch))
            last = cur.fetchone()[0]
            if last is not None:
                cur.execute("SELECT orders_events_ack(%s, %s)", (name, last))
        time.sleep(every)
    conn.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="consumer-lag.png")
    ap.add_argument("--exporter", default="/usr/bin/prometheus-postgres-exporter")
    ap.add_argument("--queries", default=os.path.join(HERE, "postgres-exporter.yml"))
    ap.add_argument("--rate", type=float, default=20, help="orders written a second")
    ap.add_argument("--stop-at", type=float, default=20, help="when 'stalled' stops, seconds")
    ap.add_argument("--stop-for", type=float, default=30, help="for how long, seconds")
    ap.add_argument("--duration", type=float, default=80, help="the whole run, seconds")
    args = ap.parse_args()

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conn = connect()
    cur = conn.cursor()
    for name in ("steady", "stalled"):
        cur.execute("SELECT orders_events_unregister(%s)", (name,))  # false if it was not
        cur.execute("SELECT orders_events_register(%s)", (name,))

    port = free_port()
    exporter, log = start_exporter(args.exporter, args.queries, port)
    url = "http://127.0.0.1:%d/metrics" % port
    for _ in range(50):
        try:
            scrape(url)
            break
        except OSError:
            time.sleep(0.1)

    stop, paused, never = threading.Event(), threading.Event(), threading.Event()
    threads = [threading.Thread(target=writer, args=(stop, args.rate)),
               # 'steady' keeps up easily; 'stalled', when it resumes, reads
               # 40 events every half second: 80 a second against the
               # writer's 20, so it catches up in a while, not at once
               threading.Thread(target=consumer, args=("steady", stop, never, 100, 0.5)),
               threading.Thread(target=consumer, args=("stalled", stop, paused, 40, 0.5))]
    for t in threads:
        t.start()

    samples = []
    start = time.monotonic()
    try:
        while True:
            t = time.monotonic() - start
            if t >= args.duration:
                break
            if args.stop_at <= t < args.stop_at + args.stop_for:
                paused.set()
            else:
                paused.clear()
            samples.append((t, scrape(url)))
            time.sleep(max(0, 1 - (time.monotonic() - start - t)))
    finally:
        stop.set()
        for t in threads:
            t.join()
        exporter.terminate()
        exporter.wait()
    log.seek(0)
    errors = log.read().decode().strip()
    if errors:
        print(errors, file=sys.stderr)

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 4.6), sharex=True, dpi=80)
    for name, style in (("steady", "tab:blue"), ("stalled", "tab:red")):
        ts = [t for t, m in samples if ("orders_consumer_pending", name) in m]
        age = [m[("orders_consumer_oldest_pending_age_seconds", name)]
               for t, m in samples if ("orders_consumer_pending", name) in m]
        pending = [m[("orders_consumer_pending", name)]
                   for t, m in samples if ("orders_consumer_pending", name) in m]
        ax1.plot(ts, age, color=style, label=name)
        ax2.plot(ts, pending, color=style, label=name)
    for ax in (ax1, ax2):
        ax.axvspan(args.stop_at, args.stop_at + args.stop_for, color="0.9", zorder=0)
        ax.grid(True, color="0.85", linewidth=0.5)
    ax1.text(args.stop_at + 1, ax1.get_ylim()[1] * 0.85, "'stalled' stopped", fontsize=9)
    ax1.set_ylabel("oldest pending, s")
    ax1.set_title("orders_consumer_oldest_pending_age_seconds and _pending, scraped every second "
                  "(%g orders/s)" % args.rate, fontsize=9)
    ax1.legend(loc="upper left", fontsize=8)
    ax2.set_ylabel("events pending")
    ax2.set_xlabel("seconds into the run")
    fig.tight_layout()
    fig.savefig(args.out)
    print("%d samples; plot in %s" % (len(samples), args.out))

    for name in ("steady", "stalled"):
        cur.execute("SELECT orders_events_unregister(%s)", (name,))
    conn.close()


if __name__ == "__main__":
    main()
