"""What only the real repository has: transactions, concurrent saves with
retry(), the error mapping of every SQLSTATE the extension raises, and the
consumer loop killed mid-batch."""
import os
import signal
import subprocess
import sys
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import psycopg  # noqa: E402

from orders_repository import (CONFIRMED, Address, ConcurrencyConflict, Customer, InvariantViolation,  # noqa: E402
                               OrderLine, OrderNotFound, OrderRepository, OrdersError, PermissionDenied,
                               ReadOnly, retry, translate, unit_of_work)

DSN = os.environ.get("ORDERS_DSN", "")
TEA = OrderLine(uuid.UUID("0b1e4f5a-6c7d-4e8f-9a0b-1c2d3e4f5a6b"), "Green tea", 2, 450)
HOME = Address("Main St 1", "Berlin", "10115", "DE")
CONSUMER = os.path.join(os.path.dirname(__file__), "consume_until_killed.py")


class Transactions(unittest.TestCase):
    def setUp(self):
        self.conn = psycopg.connect(DSN, autocommit=True)
        self.repo = OrderRepository(self.conn)

    def tearDown(self):
        self.conn.close()

    def test_unit_of_work_rolls_back(self):
        with self.assertRaises(RuntimeError):
            with unit_of_work(self.conn):
                order = self.repo.add(uuid.uuid4(), "EUR", [TEA])
                raise RuntimeError("the domain changed its mind")
        with self.assertRaises(OrderNotFound):
            self.repo.get(order.id)

    def test_a_refused_call_leaves_the_unit_of_work_standing(self):
        with unit_of_work(self.conn):
            kept = self.repo.add(uuid.uuid4(), "EUR", [TEA])
            with self.assertRaises(InvariantViolation):
                self.repo.add(uuid.uuid4(), "EURO", [TEA])
            saved = self.repo.save(kept.with_(shipping_address=HOME))
        self.assertEqual(self.repo.get(kept.id), saved)

    def test_a_connection_not_in_autocommit_commits_each_call(self):
        with psycopg.connect(DSN) as conn:          # autocommit off, psycopg's default
            added = OrderRepository(conn).add(uuid.uuid4(), "EUR", [TEA])
            self.assertEqual(self.repo.get(added.id), added, "seen by another connection: committed")

    def test_concurrent_saves_with_retry(self):
        order = self.repo.add(uuid.uuid4(), "EUR", [TEA], HOME)
        conflicts = []

        def worker(n):
            with psycopg.connect(DSN, autocommit=True) as conn:
                repo = OrderRepository(conn)
                for i in range(10):
                    def change():
                        try:
                            current = repo.get(order.id)
                            return repo.save(current.with_(shipping_address=Address(f"Street {n}-{i}", "Berlin",
                                                                                    "10115", "DE")))
                        except ConcurrencyConflict:
                            conflicts.append(1)
                            raise
                    retry(change, attempts=100)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(self.repo.get(order.id).version, 1 + 4 * 10, "no save lost")
        print(f"# concurrent saves: {len(conflicts)} conflicts retried", file=sys.stderr)


class ErrorMapping(unittest.TestCase):
    """Each SQLSTATE the extension raises, and the exception it becomes."""

    def setUp(self):
        self.conn = psycopg.connect(DSN, autocommit=True)
        self.repo = OrderRepository(self.conn)

    def tearDown(self):
        self.conn.close()

    def raised(self, query, params=()):
        try:
            with self.conn.transaction():
                self.conn.execute(query, params)
        except psycopg.Error as e:
            return translate(e)
        self.fail(f"{query} did not fail")

    def test_each_sqlstate(self):
        # the last: the path, from the detail's first sentence; none for an error about the call
        cases = [
            ("SELECT orders_add(NULL, 'EUR')", InvariantViolation, "23502", "not_null", "customer_id"),
            ("SELECT orders_add(gen_random_uuid(), 'EUR', '[0:0]={\"(0b1e4f5a-6c7d-4e8f-9a0b-1c2d3e4f5a6b,Tea,1,1)\"}')",
             InvariantViolation, "2202E", "array_shape", "lines"),
            ("SELECT orders_add(gen_random_uuid(), 'EUR', ARRAY(SELECT ROW(gen_random_uuid(), 'Tea', 1000000,"
             " 100000000000)::order_line FROM generate_series(1, 100)))",
             InvariantViolation, "22003", "out_of_range", "total"),
            ("SELECT orders_remove(NULL)", InvariantViolation, "22004", "not_null", None),
            ("SELECT orders_remove(gen_random_uuid())", OrderNotFound, "P0002", None, None),
            ("SET TRANSACTION READ ONLY; SELECT orders_add(gen_random_uuid(), 'EUR')", ReadOnly, "25006", None, None),
        ]
        for query, cls, sqlstate, rule, path in cases:
            with self.subTest(query=query):
                e = self.raised(query)
                self.assertIsInstance(e, cls)
                self.assertEqual(e.sqlstate, sqlstate)
                if rule is not None:
                    self.assertEqual(e.rule, rule)
                self.assertEqual(e.path, path)

    def test_unknown_status_label(self):
        self.conn.execute("ALTER TYPE order_status ADD VALUE IF NOT EXISTS 'lost'")
        e = self.raised("SELECT orders_save(jsonb_populate_record(o, '{\"status\": \"lost\"}'))"
                        " FROM orders_add(gen_random_uuid(), 'EUR') o")
        self.assertIsInstance(e, InvariantViolation)
        self.assertEqual((e.sqlstate, e.rule, e.path), ("22023", "unknown_status", "status"))

    def test_permission(self):
        self.conn.execute("DROP ROLE IF EXISTS orders_py_nobody; CREATE ROLE orders_py_nobody")
        try:
            e = self.raised("SET LOCAL ROLE orders_py_nobody; SELECT orders_add(gen_random_uuid(), 'EUR')")
            self.assertIsInstance(e, PermissionDenied)
        finally:
            self.conn.execute("DROP ROLE orders_py_nobody")

    def test_not_ours(self):
        e = self.raised("SELECT 1/0")
        self.assertIs(type(e), OrdersError)
        self.assertEqual(e.sqlstate, "22012")


class Events(unittest.TestCase):
    """Metadata, one order's history, reading by type (extension 1.8)."""

    def setUp(self):
        self.conn = psycopg.connect(DSN, autocommit=True)

    def tearDown(self):
        self.conn.close()

    def test_metadata_from_the_repository_and_the_unit_of_work(self):
        repo = OrderRepository(self.conn, metadata={"correlation_id": "py-corr", "actor": "alice"})
        order = repo.add(uuid.uuid4(), "EUR", [TEA], HOME)
        repo.save(order.with_(status=CONFIRMED))
        history = repo.events_of(order.id)
        self.assertEqual([(e.type, e.version) for e in history],
                         [("order_added", 1), ("order_confirmed", 2)])
        self.assertEqual({e.metadata["correlation_id"] for e in history}, {"py-corr"})
        self.assertTrue(all(isinstance(e.id, uuid.UUID) for e in history), "each event has an id")
        self.assertEqual([e.version for e in repo.events_of(order.id, after_version=1)], [2])
        plain = OrderRepository(self.conn)
        with unit_of_work(self.conn, metadata={"causation_id": "cmd-9"}):
            a = plain.add(uuid.uuid4(), "EUR", [TEA])
            b = plain.add(uuid.uuid4(), "EUR", [TEA])
        self.assertEqual([e.metadata for e in plain.events_of(a.id) + plain.events_of(b.id)],
                         [{"causation_id": "cmd-9"}] * 2)
        c = plain.add(uuid.uuid4(), "EUR", [TEA])
        self.assertIsNone(plain.events_of(c.id)[0].metadata, "none outside the unit of work")
        with self.assertRaises(OrdersError) as e:
            with unit_of_work(self.conn, metadata={"x": "y" * 9000}):
                plain.add(uuid.uuid4(), "EUR", [TEA])
        self.assertEqual(e.exception.sqlstate, "54000")

    def test_consumer_by_type(self):
        from orders_repository import EventConsumer
        name = f"py-types-{uuid.uuid4()}"
        EventConsumer(DSN, name, lambda e: None).run(exit_when_idle=0)
        repo = OrderRepository(self.conn)
        orders = [repo.add(uuid.uuid4(), "EUR", [TEA], HOME) for _ in range(5)]
        for o in orders[:3]:
            repo.save(o.with_(status=CONFIRMED))
        seen = []
        EventConsumer(DSN, name, seen.append, batch=2, types=["order_confirmed"]).run(exit_when_idle=0.2)
        self.assertEqual([(e.type, e.order_id) for e in seen],
                         [("order_confirmed", o.id) for o in orders[:3]])
        pending = self.conn.execute("SELECT pending FROM orders_events_consumers() WHERE name = %s",
                                    (name,)).fetchone()[0]
        self.assertEqual(pending, 0, "the skipped events are acknowledged")
        with self.assertRaises(OrdersError) as e:
            EventConsumer(DSN, name, seen.append, types=["order_confirmd"]).run(exit_when_idle=0.2)
        self.assertEqual(e.exception.sqlstate, "22023")


class Idempotency(unittest.TestCase):
    def test_a_retry_after_a_lost_commit_replays_and_writes_nothing(self):
        from orders_repository import IdempotencyKeyReused
        key = f"checkout-{uuid.uuid4()}"
        customer_id = uuid.uuid4()

        def checkout(conn):
            repo = OrderRepository(conn)
            with unit_of_work(conn, idempotency_key=key):
                order = repo.add(customer_id, "EUR", [TEA], HOME)      # its id generated
                return repo.save(order.with_(status=CONFIRMED))

        # the first attempt committed; its client, told nothing (the
        # connection was lost with the answer to COMMIT), retries on a new one
        with psycopg.connect(DSN, autocommit=True) as first:
            done = checkout(first)
        with psycopg.connect(DSN, autocommit=True) as conn:
            before = conn.execute("SELECT count(*) FROM order_events").fetchone()[0]
            again = checkout(conn)                    # the client's retry, on a new connection
            self.assertEqual(again, done, "the same order, as returned the first time")
            self.assertEqual(conn.execute("SELECT count(*) FROM order_events").fetchone()[0], before,
                             "nothing written")
            self.assertEqual(len(list(OrderRepository(conn).find(Customer(customer_id)))), 1)
            with self.assertRaises(IdempotencyKeyReused):
                with unit_of_work(conn, idempotency_key=key):
                    OrderRepository(conn).add(customer_id, "USD")


class Consumer(unittest.TestCase):
    def test_killed_mid_batch_every_event_at_least_once_in_order(self):
        name = f"py-{uuid.uuid4()}"
        log = os.path.join(os.environ.get("TMPDIR", "/tmp"), name + ".log")
        run = lambda *extra: subprocess.run([sys.executable, CONSUMER, DSN, name, log, *extra],
                                            timeout=120)
        self.assertEqual(run("--register").returncode, 0)
        with psycopg.connect(DSN, autocommit=True) as conn:
            repo = OrderRepository(conn)
            orders = [repo.add(uuid.uuid4(), "EUR", [TEA], HOME) for _ in range(30)]
            for o in orders[::2]:
                repo.save(o.with_(status=CONFIRMED))
            expected = {(str(o), v) for (o, v) in conn.execute(
                "SELECT order_id, version FROM order_events WHERE order_id = ANY(%s)",
                ([o.id for o in orders],)).fetchall()}
        kills = 0
        while run("--die-after", "7").returncode == 3:   # it handled 7 events and died before acknowledging
            kills += 1
            self.assertLess(kills, 100)
        self.assertGreater(kills, 2)
        runs, handled = [], set()
        with open(log) as f:
            for line in f:
                if line.startswith("run"):
                    runs.append([])
                    continue
                order_id, version = line.split()
                runs[-1].append((order_id, int(version)))
                handled.add((order_id, int(version)))
        self.assertEqual(handled & expected, expected, "every event handled at least once")
        for events in runs:
            last = {}
            for order_id, version in events:
                self.assertGreaterEqual(version, last.get(order_id, 0), "an order's events in version order")
                last[order_id] = version

    def test_sigterm_stops_it(self):
        name = f"py-{uuid.uuid4()}"
        proc = subprocess.Popen([sys.executable, CONSUMER, DSN, name, os.devnull, "--forever"])
        try:
            with psycopg.connect(DSN, autocommit=True) as conn:
                deadline = time.monotonic() + 30
                while not conn.execute("SELECT count(*) FROM order_event_consumers WHERE name = %s",
                                       (name,)).fetchone()[0]:
                    self.assertIsNone(proc.poll(), "the consumer is running")
                    self.assertLess(time.monotonic(), deadline, "the consumer registered")
                    time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=15), 0)
        finally:
            proc.kill()

    def test_a_rejected_event_is_retried_then_parked_while_its_order_waits(self):
        from orders_repository import EventConsumer, Reject
        name = f"py-poison-{uuid.uuid4()}"
        EventConsumer(DSN, name, lambda e: None).run(exit_when_idle=0)
        with psycopg.connect(DSN, autocommit=True) as conn:
            repo = OrderRepository(conn)
            bad, good = (repo.add(uuid.uuid4(), "EUR", [TEA], HOME) for _ in range(2))
            repo.save(bad.with_(status=CONFIRMED))
            repo.save(good.with_(status=CONFIRMED))
        seen, tries = [], []

        def handler(event):
            if event.order_id == bad.id:
                tries.append(event.type)
                raise Reject(f"no template for {event.type}")
            seen.append((event.order_id, event.type))
        consumer = EventConsumer(DSN, name, handler, max_attempts=3, retry_delay=0.0)
        consumer.run(exit_when_idle=0.5)
        self.assertEqual(seen, [(good.id, "order_added"), (good.id, "order_confirmed")],
                         "the other order's events flow")
        self.assertEqual(tries, ["order_added"] * 3, "tried max_attempts times, nothing of the order after it")
        [parked] = consumer.parked()
        self.assertEqual((parked.order_id, parked.type, parked.attempts, parked.reason),
                         (bad.id, "order_added", 3, "no template for order_added"))
        self.assertEqual(len(parked.held_back), 1, "its order's confirmation waits behind it")
        with self.assertRaises(OrdersError) as e:
            consumer.replay(parked.position + 1000000)
        self.assertEqual(e.exception.sqlstate, "22023")

        # mended: replayed, the order's events come, in order
        consumer.replay(parked.position)
        consumer.handler = lambda event: seen.append((event.order_id, event.type))
        consumer.run(exit_when_idle=0.5)
        self.assertEqual(seen[2:], [(bad.id, "order_added"), (bad.id, "order_confirmed")])
        self.assertEqual(consumer.holds(), [])

        # parked at once, then discarded: the order's next event follows
        with psycopg.connect(DSN, autocommit=True) as conn:
            repo = OrderRepository(conn)
            other = repo.add(uuid.uuid4(), "EUR", [TEA], HOME)
            repo.save(other.with_(status=CONFIRMED))

        def refuse_added(event):
            if event.type == "order_added":
                raise Reject("refused")
            seen.append((event.order_id, event.type))
        EventConsumer(DSN, name, refuse_added, max_attempts=1).run(exit_when_idle=0.3)
        [parked] = consumer.parked()
        self.assertEqual(parked.order_id, other.id)
        consumer.discard(parked.position)
        consumer.run(exit_when_idle=0.3)
        self.assertEqual(seen[-1], (other.id, "order_confirmed"))
        self.assertEqual(consumer.holds(), [])

    def test_notifications_while_the_handler_is_busy_are_handled_and_not_kept(self):
        """A slow handler while another connection writes events and sends
        many more NOTIFYs: every event is handled, the consumer was woken,
        and nothing is left in psycopg's backlog (3.2.4 to 3.2.8 keep there
        what arrives outside notifies(); 3.1 has none)."""
        from orders_repository import EventConsumer
        name = f"py-notify-{uuid.uuid4()}"
        EventConsumer(DSN, name, lambda e: None).run(exit_when_idle=0)
        handled = []

        def slow(event):
            time.sleep(0.02)
            handled.append(event.order_id)
        consumer = EventConsumer(DSN, name, slow, batch=5)
        runner = threading.Thread(target=consumer.run, kwargs={"exit_when_idle": 1.0})
        runner.start()
        written = []
        with psycopg.connect(DSN, autocommit=True) as conn:
            repo = OrderRepository(conn)
            for n in range(20):
                written.append(repo.add(uuid.uuid4(), "EUR", [TEA]).id)
                for _ in range(50):
                    conn.execute("NOTIFY orders_events")
        runner.join(60)
        self.assertFalse(runner.is_alive())
        self.assertEqual(handled, written, "every event, in order")
        self.assertGreater(consumer.wakeups, 0, "woken by the notifications")
        backlog = getattr(consumer._listener, "_notifies_backlog", None)
        self.assertFalse(backlog, "no notification kept")

    def test_a_failing_handler_ends_the_loop_unacknowledged(self):
        from orders_repository import EventConsumer, HandlerFailed
        name = f"py-{uuid.uuid4()}"
        EventConsumer(DSN, name, lambda e: None).run(exit_when_idle=0)
        with psycopg.connect(DSN, autocommit=True) as conn:
            OrderRepository(conn).add(uuid.uuid4(), "EUR", [TEA])

        def fail(event):
            raise psycopg.OperationalError("the handler's own database is down")
        with self.assertRaises(HandlerFailed):
            EventConsumer(DSN, name, fail).run(exit_when_idle=5)
        seen = []
        EventConsumer(DSN, name, seen.append).run(exit_when_idle=0.2)
        self.assertEqual(len(seen), 1, "the event comes again")


if __name__ == "__main__":
    unittest.main()
