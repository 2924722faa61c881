"""Adds orders one by one, printing each id once its commit has returned:
what a client saw committed.  Runs until the server goes away."""
import sys
import uuid

import psycopg2

conn = psycopg2.connect("")
conn.autocommit = True
cur = conn.cursor()
try:
    while True:
        order_id = uuid.uuid4()
        cur.execute("SELECT id FROM orders_add(%s, 'USD', id => %s)", (str(uuid.uuid4()), str(order_id)))
        print(order_id, flush=True)
except psycopg2.Error:
    sys.exit(0)
