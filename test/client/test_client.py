"""The extension from a real client: Debian's python3-psycopg2.

A writer connection adds and removes orders; a second connection LISTENs on
orders_events and must hear exactly the committed events, with the payloads
the contract promises.  Errors must arrive with their SQLSTATE and fields.

Connects with the libpq environment (PGHOST, PGPORT, PGDATABASE); run by
test/t/001_python_client.pl against a throw-away cluster.  Prints one line
per test and a closing 'N passed, N failed'.
"""
import json
import select
import sys
import traceback
import uuid

import psycopg2
import psycopg2.errors
import psycopg2.extras

psycopg2.extras.register_uuid()

CUSTOMER = uuid.UUID("c0000000-0000-0000-0000-0000000000c1")
TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def connect(autocommit=True):
    conn = psycopg2.connect("")
    conn.autocommit = autocommit
    return conn


class Listener:
    """A second connection that LISTENs on orders_events."""

    def __init__(self):
        self.conn = connect()
        with self.conn.cursor() as cur:
            cur.execute("LISTEN orders_events")

    def receive(self, timeout):
        """Notifications that arrive within timeout seconds (all of them)."""
        got = []
        while True:
            self.conn.poll()
            while self.conn.notifies:
                got.append(self.conn.notifies.pop(0))
            if select.select([self.conn], [], [], timeout) == ([], [], []):
                return got
            timeout = 0.2  # after the first arrival, collect what follows it

    def expect(self, n, timeout=5.0):
        got = self.receive(timeout)
        assert len(got) == n, f"expected {n} notifications, got {len(got)}: {[g.payload for g in got]}"
        for g in got:
            assert g.channel == "orders_events", g.channel
        return [json.loads(g.payload) for g in got]

    def close(self):
        self.conn.close()


def add(cur, lines=(), address=None, currency="EUR", order_id=None):
    cur.execute(
        """SELECT * FROM orders_add(%s, %s, %s::order_line[], %s::order_address, %s)""",
        (CUSTOMER, currency, list(lines), address, order_id),
    )
    return cur.fetchone()


@test
def add_is_heard_with_its_payload():
    listener = Listener()
    writer = connect()
    with writer.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        order = add(cur, [(uuid.uuid4(), "Tea", 2, 350), (uuid.uuid4(), "Cup", 1, 1200)],
                    ("Main St 1", "Berlin", "10115", "DE"))
        assert order["status"] == "pending" and order["version"] == 1, order
        assert order["total"] == 1900, order
        assert order["id"].version == 7, order["id"]
        [event] = listener.expect(1)
        assert event["type"] == "order_added", event
        assert event["order_id"] == str(order["id"]), event
        assert event["version"] == 1, event
        assert set(event) >= {"position", "type", "order_id", "version"}, event
        assert len(json.dumps(event)) < 8000
        # the outbox row at that position holds the whole order
        cur.execute("SELECT type, payload FROM order_events WHERE position = %s", (event["position"],))
        row = cur.fetchone()
        assert row["type"] == "order_added", row
        assert row["payload"]["total"] == 1900, row
        assert [l["product_name"] for l in row["payload"]["lines"]] == ["Tea", "Cup"], row
        assert row["payload"]["shipping_address"]["city"] == "Berlin", row
    writer.close()
    listener.close()


@test
def heard_only_at_commit_and_never_after_rollback():
    listener = Listener()
    writer = connect(autocommit=False)
    with writer.cursor() as cur:
        added = [add(cur)[0] for _ in range(3)]
        assert listener.receive(0.5) == [], "heard before commit"
        writer.commit()
        events = listener.expect(3)
        assert [e["order_id"] for e in events] == [str(i) for i in added], events
        assert events[0]["position"] < events[1]["position"] < events[2]["position"]

        add(cur)
        writer.rollback()
        assert listener.receive(0.5) == [], "heard a rolled-back add"

        kept = add(cur)[0]
        cur.execute("SAVEPOINT s")
        add(cur)
        cur.execute("ROLLBACK TO SAVEPOINT s")
        writer.commit()
        [event] = listener.expect(1)
        assert event["order_id"] == str(kept), event
    writer.close()
    listener.close()


@test
def remove_is_heard():
    listener = Listener()
    writer = connect()
    with writer.cursor() as cur:
        order_id = add(cur)[0]
        listener.expect(1)
        cur.execute("SELECT id, version FROM orders_remove(%s, expected_version => 1)", (order_id,))
        assert cur.fetchone() == (order_id, 1)
        [event] = listener.expect(1)
        assert event["type"] == "order_removed" and event["version"] == 2, event
        cur.execute("SELECT count(*) FROM orders_get(%s)", (order_id,))
        assert cur.fetchone() == (0,)
    writer.close()
    listener.close()


@test
def lines_from_json():
    """A client holding lines as JSON passes them through jsonb_populate_recordset."""
    writer = connect()
    with writer.cursor() as cur:
        lines = [{"product_id": str(uuid.uuid4()), "product_name": "Tea", "quantity": 3, "unit_price": 200},
                 {"product_id": str(uuid.uuid4()), "product_name": "Pot", "quantity": 1, "unit_price": 2500}]
        cur.execute(
            """SELECT to_jsonb(o) FROM orders_add(%s, 'EUR',
                   ARRAY(SELECT l FROM jsonb_populate_recordset(NULL::order_line, %s) l)) o""",
            (CUSTOMER, json.dumps(lines)))
        (doc,) = cur.fetchone()
        assert doc["total"] == 3100, doc
        assert doc["lines"] == lines, doc
    writer.close()


GET_JSON = "SELECT to_jsonb(o) FROM orders_get(%s) o"
SAVE_JSON = "SELECT to_jsonb(s) FROM orders_save(jsonb_populate_record(NULL::orders, %s)) s"


@test
def json_round_trip_and_save():
    """The README's recipe: hold the order as a JSON document, change it, save it."""
    writer = connect()
    listener = Listener()
    with writer.cursor() as cur:
        order_id = add(cur, [(uuid.uuid4(), "Tea", 1, 200)])[0]
        listener.expect(1)
        cur.execute(GET_JSON, (str(order_id),))
        (doc,) = cur.fetchone()
        assert doc["version"] == 1 and doc["status"] == "pending", doc
        doc["lines"][0]["quantity"] = 4
        doc["shipping_address"] = {"street": "Main St 1", "city": "Berlin", "postal_code": "10115", "country": "DE"}
        doc["status"] = "confirmed"
        doc["total"] = 1  # derived: ignored
        cur.execute(SAVE_JSON, (json.dumps(doc),))
        (saved,) = cur.fetchone()
        assert saved["version"] == 2 and saved["status"] == "confirmed", saved
        assert saved["total"] == 800, saved
        events = listener.expect(3)
        assert [e["type"] for e in events] == [
            "order_lines_changed", "order_shipping_address_changed", "order_confirmed"], events
        assert {e["version"] for e in events} == {2}, events
        # saving the document as read again changes nothing and emits nothing
        cur.execute(SAVE_JSON, (json.dumps(saved),))
        assert cur.fetchone()[0]["version"] == 2
        assert listener.receive(0.5) == []
        # the old document is stale now
        e = expect_error(cur, SAVE_JSON, (json.dumps(doc),), "40001")
        assert isinstance(e, psycopg2.errors.SerializationFailure)
    writer.close()
    listener.close()


@test
def concurrent_read_change_save_loses_no_update():
    """Threads each add 1 to a line's quantity, many times, retrying on 40001."""
    import threading

    threads, rounds = 4, 15
    setup = connect()
    with setup.cursor() as cur:
        order_id = add(cur, [(uuid.uuid4(), "Counter", 1, 1)])[0]
    retries = []
    failures = []

    def worker():
        conn = connect(autocommit=False)
        tried = 0
        try:
            with conn.cursor() as cur:
                for _ in range(rounds):
                    while True:
                        try:
                            cur.execute(GET_JSON, (str(order_id),))
                            (doc,) = cur.fetchone()
                            doc["lines"][0]["quantity"] += 1
                            cur.execute(SAVE_JSON, (json.dumps(doc),))
                            conn.commit()
                            break
                        except psycopg2.errors.SerializationFailure:
                            conn.rollback()
                            tried += 1
        except Exception as exc:  # reported by the main thread
            failures.append(exc)
        finally:
            retries.append(tried)
            conn.close()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(120)
    assert not failures, failures
    with setup.cursor() as cur:
        cur.execute("SELECT version, (lines[1]).quantity, total FROM orders WHERE id = %s", (order_id,))
        version, quantity, total = cur.fetchone()
        assert quantity == 1 + threads * rounds, (quantity, retries)
        assert version == 1 + threads * rounds, version
        assert total == quantity, total
        cur.execute("""SELECT count(*), count(DISTINCT version), min(version), max(version)
                       FROM order_events WHERE order_id = %s AND type = 'order_lines_changed'""",
                    (order_id,))
        assert cur.fetchone() == (threads * rounds, threads * rounds, 2, 1 + threads * rounds)
    print(f"   {threads} threads x {rounds} saves, {sum(retries)} retries on 40001")
    setup.close()


def expect_error(cur, sql, args, pgcode, constraint=None, column=None, detail_has=None):
    try:
        cur.execute(sql, args)
    except psycopg2.Error as e:
        assert e.pgcode == pgcode, (e.pgcode, e.pgerror)
        assert e.diag.constraint_name == constraint, (e.diag.constraint_name, e.pgerror)
        if column is not None:
            assert e.diag.column_name == column, (e.diag.column_name, e.pgerror)
        if detail_has is not None:
            assert detail_has in (e.diag.message_detail or ""), e.diag.message_detail
        return e
    raise AssertionError(f"no error from {sql}")


@test
def errors_carry_sqlstate_and_fields():
    listener = Listener()
    writer = connect()
    with writer.cursor() as cur:
        add_sql = "SELECT orders_add(%s, %s, %s::order_line[], NULL, %s)"
        oid = uuid.uuid4()
        e = expect_error(cur, add_sql, (CUSTOMER, "eur", [], oid), "23514",
                         "order_currency_format", "currency", '"eur"')
        assert isinstance(e, psycopg2.errors.CheckViolation)
        # the order is named in the error's context, not in its message
        assert e.diag.context == f"order {oid}", e.diag.context
        assert e.diag.table_name == "orders", e.diag.table_name
        expect_error(cur, add_sql, (None, "EUR", [], oid), "23502", None, "customer_id")
        expect_error(cur, add_sql, (CUSTOMER, "EUR", [(uuid.uuid4(), "Tea", 0, 1)], oid), "23514",
                     "order_line_quantity_range", "lines", "is 0")
        p = uuid.uuid4()
        expect_error(cur, add_sql, (CUSTOMER, "EUR", [(p, "Tea", 1, 1), (p, "Tea", 1, 1)], oid),
                     "23514", "order_line_product_unique", "lines")
        existing = add(cur)[0]
        listener.expect(1)
        e = expect_error(cur, add_sql, (CUSTOMER, "EUR", [], existing), "23505", "orders_pkey")
        assert isinstance(e, psycopg2.errors.UniqueViolation)
        e = expect_error(cur, "SELECT orders_remove(%s)", (uuid.uuid4(),), "P0002")
        assert isinstance(e, psycopg2.errors.NoDataFound)
        e = expect_error(cur, "SELECT orders_remove(%s, 5)", (existing,), "40001")
        assert isinstance(e, psycopg2.errors.SerializationFailure)
        # none of the failures was heard, or stored
        assert listener.receive(0.5) == []
        cur.execute("SELECT count(*) FROM orders WHERE id = %s", (oid,))
        assert cur.fetchone() == (0,)
    writer.close()
    listener.close()


def main():
    passed = failed = 0
    for fn in TESTS:
        try:
            fn()
            passed += 1
            print(f"ok {fn.__name__}")
        except Exception:
            failed += 1
            print(f"FAILED {fn.__name__}")
            traceback.print_exc(file=sys.stdout)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
