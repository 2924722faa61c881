"""Bulk writes: N orders (3 lines each, one order_added event each) added
by single orders_add calls, and by orders_add_many, from psycopg.

    python3 test/bench/bulk.py N ROUNDS

The connection comes from the PG* environment.  Each round runs every
variant once, alternately; the median of each variant's orders per second
is printed, with its ratio to orders_add_many.  The variants:

  single, autocommit      one orders_add a transaction, each a round trip
  single, one transaction one orders_add a statement, in one transaction
  single, pipelined       executemany: one transaction, no waits per call
  orders_add_many         one call with all N orders as one jsonb value
"""
import json
import statistics
import sys
import time
import uuid

import psycopg
from psycopg.types.json import Jsonb

N = int(sys.argv[1])
ROUNDS = int(sys.argv[2])

LINES = [
    {"product_id": "0b1e4f5a-6c7d-4e8f-9a0b-1c2d3e4f5a6b", "product_name": "Green tea", "quantity": 2, "unit_price": 450},
    {"product_id": "1c2f5a6b-7d8e-4f9a-8b1c-2d3e4f5a6b7c", "product_name": "Teapot", "quantity": 1, "unit_price": 3900},
    {"product_id": "2d3a6b7c-8e9f-4a0b-9c2d-3e4f5a6b7c8d", "product_name": "Mug", "quantity": 4, "unit_price": 1250},
]
ADDRESS = {"street": "Main St 1", "city": "Berlin", "postal_code": "10115", "country": "DE"}
LINES_SQL = ("'{\"(0b1e4f5a-6c7d-4e8f-9a0b-1c2d3e4f5a6b,Green tea,2,450)\","
             "\"(1c2f5a6b-7d8e-4f9a-8b1c-2d3e4f5a6b7c,Teapot,1,3900)\","
             "\"(2d3a6b7c-8e9f-4a0b-9c2d-3e4f5a6b7c8d,Mug,4,1250)\"}'::order_line[]")
SINGLE = ("SELECT id FROM orders_add(%s, 'EUR', " + LINES_SQL
          + ", '(\"Main St 1\",Berlin,10115,DE)'::order_address)")


def customers():
    return [str(uuid.uuid4()) for _ in range(N)]


def single_autocommit(conn):
    conn.autocommit = True
    for c in customers():
        conn.execute(SINGLE, (c,), prepare=True)


def single_transaction(conn):
    conn.autocommit = False
    for c in customers():
        conn.execute(SINGLE, (c,), prepare=True)
    conn.commit()


def single_pipelined(conn):
    conn.autocommit = False
    with conn.cursor() as cur:
        cur.executemany(SINGLE, [(c,) for c in customers()])
    conn.commit()


def add_many(conn):
    conn.autocommit = False
    orders = [{"customer_id": c, "currency": "EUR", "lines": LINES, "shipping_address": ADDRESS}
              for c in customers()]
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM orders_add_many(%s)", (Jsonb(orders),))
        assert cur.fetchone()[0] == N
    conn.commit()


VARIANTS = [
    ("single orders_add, autocommit", single_autocommit),
    ("single orders_add, one transaction", single_transaction),
    ("single orders_add, pipelined (executemany)", single_pipelined),
    ("orders_add_many, one call", add_many),
]

rates = {name: [] for name, _ in VARIANTS}
with psycopg.connect() as conn:
    conn.execute("SET orders.notify = off")
    conn.commit()
    for _ in range(ROUNDS):
        for name, run in VARIANTS:
            before = conn.execute("SELECT count(*) FROM order_events").fetchone()[0]
            conn.commit()
            started = time.perf_counter()
            run(conn)
            elapsed = time.perf_counter() - started
            conn.autocommit = False
            after = conn.execute("SELECT count(*) FROM order_events").fetchone()[0]
            conn.commit()
            assert after - before == N, (name, after - before)
            rates[name].append(N / elapsed)

many = statistics.median(rates["orders_add_many, one call"])
print(f"| {N:,} orders, 3 lines each | orders per second | orders_add_many / this |")
print("| --- | ---: | ---: |")
for name, _ in VARIANTS:
    rate = statistics.median(rates[name])
    print(f"| {name} | {rate:,.0f} | {many / rate:.2f} |")
