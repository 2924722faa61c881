"""One contract for what a domain service does around the repository:
units of work, the events they write, and a consumer of those events.
Every case runs against the extension (ORDERS_DSN) and against the twin
(InMemoryStore), the same code with two fixtures; what only one of them
has is in the classes at the end."""
import contextvars
import os
import sys
import threading
import time
import unittest
import uuid
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import psycopg  # noqa: E402

from orders_repository import (CONFIRMED, Address, ConcurrencyConflict, DuplicateOrder,  # noqa: E402
                               EventConsumer, ExtensionTooOld, HandlerFailed, InMemoryEventConsumer,
                               InMemoryOrderRepository, InMemoryStore, InvariantViolation, Order, OrderLine,
                               OrderNotFound, OrderRepository, OrdersError, Reject, unit_of_work)
from orders_repository.memory import event_part  # noqa: E402

TEA = OrderLine(uuid.UUID("0b1e4f5a-6c7d-4e8f-9a0b-1c2d3e4f5a6b"), "Green tea", 2, 450)
POT = OrderLine(uuid.UUID("1c2f5a6b-7d8e-4f9a-8b1c-2d3e4f5a6b7c"), "Teapot", 1, 3900)
HOME = Address("Main St 1", "Berlin", "10115", "DE")


def checkout(repo, customer_id, lines, fail=False):
    """A domain service, written against the repository only."""
    with repo.unit_of_work(metadata={"command": "checkout"}):
        order = repo.add(Order.new(customer_id, "EUR", lines, HOME))
        confirmed = repo.save(order.with_(status=CONFIRMED))
        if fail:
            raise RuntimeError("payment refused")
        return confirmed


class UnitContract:
    """The cases; a subclass gives self.repo, other_repo() (a second
    connection to the same database) and consumer()."""

    def name(self):
        return f"py-unit-{uuid.uuid4()}"

    def drain(self, name, **kw):
        """Every event a new consumer sees from now on, run until idle."""
        seen = []
        self.consumer(name, seen.append, **kw).run(exit_when_idle=0.3)
        return seen

    def test_a_domain_service_commits_with_its_events(self):
        name = self.name()
        self.drain(name)
        done = checkout(self.repo, uuid.uuid4(), [TEA])
        self.assertEqual((done.status, done.version), (CONFIRMED, 2))
        self.assertEqual([(e.type, e.metadata) for e in self.repo.events_of(done.id)],
                         [("order_added", {"command": "checkout"}), ("order_confirmed", {"command": "checkout"})])
        self.assertEqual([(e.order_id, e.type) for e in self.drain(name)],
                         [(done.id, "order_added"), (done.id, "order_confirmed")])

    def test_rolled_back_means_no_order_and_no_events(self):
        name = self.name()
        self.drain(name)
        customer = uuid.uuid4()
        seen_inside = []
        with self.assertRaises(RuntimeError):
            with self.repo.unit_of_work():
                order = self.repo.add(customer, "EUR", [TEA], HOME)
                seen_inside.append(self.repo.get(order.id))
                seen_inside.append([e.type for e in self.repo.events_of(order.id)])
                raise RuntimeError("the domain changed its mind")
        self.assertEqual(seen_inside, [order, ["order_added"]], "a unit reads its own writes")
        with self.assertRaises(OrderNotFound):
            self.repo.get(order.id)
        self.assertEqual(self.repo.events_of(order.id), [])
        self.assertEqual(self.drain(name), [], "no event reached the consumer")
        again = self.repo.add(customer, "EUR", [TEA], id=order.id)
        self.assertEqual(again.id, order.id, "a rolled-back id was never used")
        self.assertEqual([(e.order_id, e.type) for e in self.drain(name)], [(order.id, "order_added")],
                         "the gap the rollback left is passed over")

    def test_a_refused_call_leaves_the_unit_standing(self):
        with self.repo.unit_of_work():
            kept = self.repo.add(uuid.uuid4(), "EUR", [TEA])
            with self.assertRaises(InvariantViolation):
                self.repo.add(uuid.uuid4(), "EURO", [TEA])
            with self.assertRaises(InvariantViolation):
                self.repo.add(uuid.uuid4(), "EUR", [OrderLine(uuid.uuid4(), "x", 1, 12.5)])
            saved = self.repo.save(kept.with_(shipping_address=HOME))
        self.assertEqual(self.repo.get(kept.id), saved)
        self.assertEqual([e.type for e in self.repo.events_of(kept.id)],
                         ["order_added", "order_shipping_address_changed"])

    def test_nested_units_are_savepoints(self):
        with self.repo.unit_of_work():
            outer = self.repo.add(uuid.uuid4(), "EUR", [TEA], HOME)
            with self.assertRaises(RuntimeError):
                with self.repo.unit_of_work():
                    inner = self.repo.add(uuid.uuid4(), "EUR", [POT])
                    self.repo.save(outer.with_(status=CONFIRMED))
                    raise RuntimeError("the inner step failed")
            with self.repo.unit_of_work():
                kept = self.repo.add(uuid.uuid4(), "EUR", [POT])
        self.assertEqual(self.repo.get(outer.id).version, 1, "the inner save was undone")
        with self.assertRaises(OrderNotFound):
            self.repo.get(inner.id)
        self.assertEqual(self.repo.get(kept.id), kept)
        self.assertEqual([e.type for e in self.repo.events_of(outer.id)], ["order_added"])

    def elsewhere(self, fn):
        """fn's result or exception in another thread: outside this
        thread's unit, on the twin as on a pool."""
        out = []

        def run():
            try:
                out.append(fn())
            except Exception as e:
                out.append(e)
        t = threading.Thread(target=run)
        t.start()
        t.join(30)
        return out[0]

    def test_a_context_copied_in_a_unit_is_in_no_unit_once_it_ended(self):
        """A task or thread started in a unit keeps its context: once the
        unit ended, its calls are in no unit (each its own), not in the
        dead one's."""
        with self.repo.unit_of_work():
            copied = contextvars.copy_context()
        stray = self.elsewhere(lambda: copied.run(lambda: self.repo.add(uuid.uuid4(), "EUR")))
        self.assertIsInstance(stray, Order)
        self.assertEqual(self.repo.get(stray.id), stray, "committed on its own")

    def test_a_unit_is_invisible_to_others_until_it_commits(self):
        name = self.name()
        self.drain(name)
        other = self.other_repo()
        with self.repo.unit_of_work():
            order = self.repo.add(uuid.uuid4(), "EUR", [TEA], HOME)
            self.assertIsInstance(self.elsewhere(lambda: other.get(order.id)), OrderNotFound)
            self.assertEqual(self.elsewhere(lambda: other.events_of(order.id)), [])
            # a higher position, committed first: read first, as the
            # extension's snapshot batches do; the unit's event is not
            # skipped for it
            later = self.elsewhere(lambda: other.add(uuid.uuid4(), "EUR", [POT]))
            self.assertEqual([e.order_id for e in self.elsewhere(lambda: self.drain(name))], [later.id])
        self.assertEqual(other.get(order.id), order)
        [event] = self.drain(name)
        self.assertEqual((event.order_id, event.type), (order.id, "order_added"))
        self.assertLess(event.position, self.repo.events_of(later.id)[0].position)

    def test_two_units_writing_one_order(self):
        order = self.repo.add(uuid.uuid4(), "EUR", [TEA], HOME)
        other = self.other_repo()
        first_wrote, second_done = threading.Event(), threading.Event()
        outcome = []

        def second():
            first_wrote.wait(10)
            try:
                with other.unit_of_work():
                    other.save(order.with_(status=CONFIRMED))
                outcome.append("saved")
            except Exception as e:
                outcome.append(e)
            second_done.set()
        t = threading.Thread(target=second)
        t.start()
        with self.repo.unit_of_work():
            first = self.repo.save(order.with_(lines=[TEA, POT]))
            first_wrote.set()
            # the twin fails the second at once; PostgreSQL makes it wait
            # for this unit, which then commits
            second_done.wait(0.5)
        t.join(10)
        self.assertEqual(len(outcome), 1)
        self.assertIsInstance(outcome[0], ConcurrencyConflict)
        self.assertEqual(self.repo.get(order.id), first)

    def test_two_units_adding_one_id(self):
        oid = uuid.uuid4()
        other = self.other_repo()
        first_wrote, second_done = threading.Event(), threading.Event()
        outcome = []

        def second():
            first_wrote.wait(10)
            try:
                with other.unit_of_work():
                    other.add(uuid.uuid4(), "EUR", id=oid)
            except Exception as e:
                outcome.append(e)
            second_done.set()
        t = threading.Thread(target=second)
        t.start()
        with self.repo.unit_of_work():
            self.repo.add(uuid.uuid4(), "EUR", id=oid)
            first_wrote.set()
            second_done.wait(0.5)
        t.join(10)
        self.assertIsInstance(outcome[0], DuplicateOrder)

    def test_the_repositorys_metadata_wins_for_its_writes_only(self):
        tagged = self.with_metadata({"actor": "batch"})
        with self.repo.unit_of_work(metadata={"causation_id": "cmd-1"}):
            a = tagged.add(uuid.uuid4(), "EUR")
            b = self.repo.add(uuid.uuid4(), "EUR")
        self.assertEqual([e.metadata for e in self.repo.events_of(a.id) + self.repo.events_of(b.id)],
                         [{"actor": "batch"}, {"causation_id": "cmd-1"}])
        c = self.repo.add(uuid.uuid4(), "EUR")
        self.assertIsNone(self.repo.events_of(c.id)[0].metadata)

    def test_a_nested_units_metadata_ends_with_it(self):
        for outer in ({"unit": "outer"}, None):
            with self.subTest(outer=outer):
                with self.repo.unit_of_work(metadata=outer):
                    a = self.repo.add(uuid.uuid4(), "EUR")
                    with self.repo.unit_of_work(metadata={"unit": "inner"}):
                        b = self.repo.add(uuid.uuid4(), "EUR")
                    c = self.repo.add(uuid.uuid4(), "EUR")
                    with self.assertRaises(RuntimeError):
                        with self.repo.unit_of_work(metadata={"unit": "undone"}):
                            raise RuntimeError("rolled back")
                    d = self.repo.add(uuid.uuid4(), "EUR")
                self.assertEqual([self.repo.events_of(o.id)[0].metadata for o in (a, b, c, d)],
                                 [outer, {"unit": "inner"}, outer, outer])

    def test_a_units_writes_have_its_start_time(self):
        """The extension stamps created_at, updated_at and occurred_at with
        the transaction's start time; the twin with its unit's."""
        with self.repo.unit_of_work():
            a = self.repo.add(uuid.uuid4(), "EUR", [TEA])
            with self.repo.unit_of_work():
                b = self.repo.add(uuid.uuid4(), "EUR")
            saved = self.repo.save(a.with_(shipping_address=HOME))
            removed = self.repo.remove(b)
        events = self.repo.events_of(a.id) + self.repo.events_of(b.id)
        self.assertEqual(len(events), 4)
        self.assertEqual({a.created_at, a.updated_at, b.created_at, saved.updated_at, removed.updated_at,
                          *(e.occurred_at for e in events)}, {a.created_at})
        c = self.repo.add(uuid.uuid4(), "EUR")
        self.assertGreater(c.created_at, a.created_at, "a call outside a unit is a unit of its own")

    def test_event_metadata_over_8192_bytes_is_refused(self):
        """The extension's limit on orders.event_metadata (54000), checked
        when an event is written, on the JSON text the repository sets."""
        largest = {"note": "x" * (8192 - len('{"note": ""}'))}
        with self.repo.unit_of_work(metadata=largest):
            a = self.repo.add(uuid.uuid4(), "EUR")
        self.assertEqual(self.repo.events_of(a.id)[0].metadata, largest)
        too_long = {"note": "é" * 1364}        # 8196 bytes as the repository sends it (\u00e9 each)
        for how, fn in (
                ("unit", lambda: self._in_unit(too_long, lambda: self.repo.add(uuid.uuid4(), "EUR"))),
                ("repository", lambda: self.with_metadata(too_long).add(uuid.uuid4(), "EUR"))):
            with self.subTest(how=how):
                with self.assertRaises(OrdersError) as e:
                    fn()
                self.assertEqual((e.exception.sqlstate, str(e.exception), e.exception.detail),
                                 ("54000", "orders.event_metadata is too long (8196 bytes)",
                                  "Every event the transaction writes carries it: at most 8192 bytes are allowed."))
        with self.repo.unit_of_work(metadata=too_long):
            self.repo.next_id()                 # no event written, nothing refused

    def _in_unit(self, metadata, fn):
        with self.repo.unit_of_work(metadata=metadata):
            return fn()

    def test_reject_retried_parked_replayed_and_discarded(self):
        name = self.name()
        self.drain(name)
        bad, good = (self.repo.add(uuid.uuid4(), "EUR", [TEA], HOME) for _ in range(2))
        self.repo.save(bad.with_(status=CONFIRMED))
        self.repo.save(good.with_(status=CONFIRMED))
        seen, tries = [], []

        def handler(event):
            if event.order_id == bad.id:
                tries.append(event.type)
                raise Reject(f"no template for {event.type}")
            seen.append((event.order_id, event.type))
        consumer = self.consumer(name, handler, max_attempts=3, retry_delay=0.0)
        consumer.run(exit_when_idle=0.3)
        self.assertEqual(seen, [(good.id, "order_added"), (good.id, "order_confirmed")])
        self.assertEqual(tries, ["order_added"] * 3)
        [parked] = consumer.parked()
        self.assertEqual((parked.consumer, parked.order_id, parked.type, parked.version, parked.attempts,
                          parked.reason), (name, bad.id, "order_added", 1, 3, "no template for order_added"))
        self.assertIsNone(parked.retry_at)
        self.assertEqual(len(parked.held_back), 1, "its confirmation waits behind it")
        with self.assertRaises(OrdersError) as e:
            consumer.replay(parked.position + 1000000)
        self.assertEqual(e.exception.sqlstate, "22023")
        consumer.replay(parked.position)
        consumer.handler = lambda event: seen.append((event.order_id, event.type))
        consumer.run(exit_when_idle=0.3)
        self.assertEqual(seen[2:], [(bad.id, "order_added"), (bad.id, "order_confirmed")])
        self.assertEqual(consumer.holds(), [])

        other = self.repo.add(uuid.uuid4(), "EUR", [TEA], HOME)
        self.repo.save(other.with_(status=CONFIRMED))

        def refuse_added(event):
            if event.type == "order_added":
                raise Reject("refused")
            seen.append((event.order_id, event.type))
        self.consumer(name, refuse_added, max_attempts=1).run(exit_when_idle=0.3)
        [parked] = consumer.parked()
        self.assertEqual((parked.order_id, parked.attempts), (other.id, 1))
        consumer.discard(parked.position)
        consumer.run(exit_when_idle=0.3)
        self.assertEqual(seen[-1], (other.id, "order_confirmed"))
        self.assertEqual(consumer.holds(), [])

    def test_a_rejected_event_is_held_with_its_retry_time(self):
        name = self.name()
        self.drain(name)
        order = self.repo.add(uuid.uuid4(), "EUR", [TEA], HOME)

        def refuse(event):
            raise Reject("later")
        self.consumer(name, refuse, retry_delay=3600.0).run(exit_when_idle=0.2)
        [held] = self.consumer(name, refuse).holds()
        self.assertEqual((held.order_id, held.attempts, held.parked), (order.id, 1, False))
        self.assertEqual(held.retry_at - held.failed_at, timedelta(hours=1))
        seen = []
        self.consumer(name, seen.append).run(exit_when_idle=0.2)
        self.assertEqual(seen, [], "not due for an hour")

    def test_a_groups_holds_are_per_part(self):
        name = self.name()
        self.drain(name, group=True)
        order = self.repo.add(uuid.uuid4(), "EUR", [TEA], HOME)

        def refuse(event):
            if event.order_id == order.id:
                raise Reject("no")
        consumer = self.consumer(name, refuse, group=True, max_attempts=1)
        consumer.run(exit_when_idle=0.3)
        [parked] = consumer.parked()
        self.assertEqual((parked.consumer, parked.order_id), (f"{name}/{event_part(order.id)}", order.id))

    def test_a_consumer_by_type(self):
        name = self.name()
        self.drain(name)
        orders = [self.repo.add(uuid.uuid4(), "EUR", [TEA], HOME) for _ in range(3)]
        self.repo.save(orders[1].with_(status=CONFIRMED))
        self.assertEqual([(e.type, e.order_id) for e in self.drain(name, types=["order_confirmed"], batch=1)],
                         [("order_confirmed", orders[1].id)])
        self.assertEqual(self.drain(name), [], "the skipped events count as acknowledged")
        with self.assertRaises(OrdersError) as e:
            self.drain(name, types=["order_confirmd"])
        self.assertEqual(e.exception.sqlstate, "22023")

    def test_a_failing_handler_ends_the_run_unacknowledged(self):
        name = self.name()
        self.drain(name)
        order = self.repo.add(uuid.uuid4(), "EUR", [TEA])

        def fail(event):
            raise KeyError("a bug")
        with self.assertRaises(HandlerFailed):
            self.consumer(name, fail).run(exit_when_idle=1)
        self.assertEqual([e.order_id for e in self.drain(name)], [order.id], "it comes again")

    def test_add_and_remove_by_aggregate(self):
        c = uuid.uuid4()
        new = Order.new(c, "EUR", [TEA, POT], HOME, fields=None)
        self.assertEqual((new.version, new.total, new.created_at, new.id.version), (0, 2 * 450 + 3900, None, 7))
        added = self.repo.add(new)
        self.assertEqual((added.id, added.customer_id, added.version, added.total), (new.id, c, 1, new.total))
        self.assertEqual(self.repo.next_id().version, 7, "the extension's and the twin's ids are uuid7")
        with self.assertRaises(TypeError):
            self.repo.add(new, "EUR")
        saved = self.repo.save(added.with_(lines=[TEA]))
        with self.assertRaises(ConcurrencyConflict):
            self.repo.remove(added)                   # read before the save: optimistic by default
        removed = self.repo.remove(saved)
        self.assertEqual(removed.version, 2)
        with self.assertRaises(OrderNotFound):
            self.repo.get(added.id)


class RealUnits(UnitContract, unittest.TestCase):
    def setUp(self):
        self.conns = []
        self.repo = OrderRepository(self.connect())

    def tearDown(self):
        for conn in self.conns:
            conn.close()

    def connect(self):
        conn = psycopg.connect(os.environ["ORDERS_DSN"], autocommit=True)
        self.conns.append(conn)
        return conn

    def other_repo(self):
        return OrderRepository(self.connect())

    def with_metadata(self, metadata):
        return OrderRepository(self.repo.conn, metadata=metadata)

    def consumer(self, name, handler, **kw):
        return EventConsumer(os.environ["ORDERS_DSN"], name, handler, **kw)


class TwinUnits(UnitContract, unittest.TestCase):
    def setUp(self):
        self.store = InMemoryStore()
        self.repo = InMemoryOrderRepository(self.store)

    def other_repo(self):
        return InMemoryOrderRepository(self.store)

    def with_metadata(self, metadata):
        return InMemoryOrderRepository(self.store, metadata=metadata)

    def consumer(self, name, handler, **kw):
        return InMemoryEventConsumer(self.store, name, handler, **kw)


class TwinOnly(unittest.TestCase):
    def test_the_clock_makes_a_rejected_event_due(self):
        now = [datetime(2027, 1, 1, tzinfo=timezone.utc)]
        store = InMemoryStore(clock=lambda: now[0])
        repo = InMemoryOrderRepository(store)
        name = "clocked"
        InMemoryEventConsumer(store, name, lambda e: None).run(exit_when_idle=0)
        order = repo.add(uuid.uuid4(), "EUR", [TEA])
        self.assertEqual(order.created_at, now[0])
        tries = []

        def refuse(event):
            tries.append(now[0])
            raise Reject("later")
        consumer = InMemoryEventConsumer(store, name, refuse, retry_delay=10.0, max_attempts=3)
        consumer.run(exit_when_idle=0)
        [held] = consumer.holds()
        self.assertEqual(held.retry_at, now[0] + timedelta(seconds=10))
        now[0] += timedelta(seconds=9)
        consumer.run(exit_when_idle=0)
        self.assertEqual(len(tries), 1, "not due yet")
        now[0] += timedelta(seconds=1)
        consumer.run(exit_when_idle=0)
        [held] = consumer.holds()
        self.assertEqual((len(tries), held.attempts, held.retry_at), (2, 2, now[0] + timedelta(seconds=20)),
                         "the wait doubles")
        now[0] += timedelta(seconds=20)
        consumer.run(exit_when_idle=0)
        self.assertTrue(consumer.parked()[0].parked)

    def test_a_unit_takes_the_clock_once(self):
        now = [datetime(2027, 1, 1, tzinfo=timezone.utc)]

        def clock():
            now[0] += timedelta(seconds=1)        # later at every reading
            return now[0]
        store = InMemoryStore(clock=clock)
        repo = InMemoryOrderRepository(store)
        with repo.unit_of_work():
            a = repo.add(uuid.uuid4(), "EUR", [TEA])
            with repo.unit_of_work():
                b = repo.add(uuid.uuid4(), "EUR")
            saved = repo.save(a.with_(shipping_address=HOME))
        start = datetime(2027, 1, 1, 0, 0, 1, tzinfo=timezone.utc)
        self.assertEqual((a.created_at, b.created_at, saved.created_at, saved.updated_at), (start,) * 4)
        self.assertEqual([e.occurred_at for e in repo.events_of(a.id) + repo.events_of(b.id)], [start] * 3)
        c = repo.add(uuid.uuid4(), "EUR")
        self.assertEqual(c.created_at, start + timedelta(seconds=1), "a call outside a unit takes it once too")
        d = repo.save(c.with_(shipping_address=HOME))
        self.assertEqual(d.updated_at, start + timedelta(seconds=2))

    def recorded_waits(self, store):
        """The twin consumer's waits, recorded (and not waited) on a clock
        of their own that each wait moves on."""
        from unittest import mock
        now, waits = [1000.0], []
        real = store._changed

        class Recording:
            def __enter__(self):
                return real.__enter__()

            def __exit__(self, *exc):
                return real.__exit__(*exc)

            def notify_all(self):
                real.notify_all()

            def wait(self, timeout):
                waits.append(round(timeout, 6))
                now[0] += timeout
                return False
        store._changed = Recording()
        patch = mock.patch("orders_repository.memory.time", mock.Mock(monotonic=lambda: now[0]))
        patch.start()
        self.addCleanup(patch.stop)
        return waits

    def test_the_consumer_waits_what_is_left_of_its_idle_time(self):
        store = InMemoryStore()
        waits = self.recorded_waits(store)
        InMemoryEventConsumer(store, "idle", lambda e: None, wake_every=4).run(exit_when_idle=10)
        self.assertEqual(waits, [4, 4, 2])

    def test_a_commit_while_the_twin_consumer_reads_is_not_lost(self):
        store = InMemoryStore()
        repo = InMemoryOrderRepository(store)
        InMemoryEventConsumer(store, "racing", lambda e: None).run(exit_when_idle=0)
        log, added = [], []

        class Racing(InMemoryEventConsumer):
            def _once(self):
                n = super()._once()
                if not added:                   # after an empty read, before the wait
                    added.append(repo.add(uuid.uuid4(), "EUR"))
                    log.append("raced")
                return n
        waits = self.recorded_waits(store)

        def handle(event):
            log.append((event.order_id, event.type))
            consumer.stop()
        consumer = Racing(store, "racing", handle, wake_every=30)
        consumer.run(exit_when_idle=100)
        self.assertEqual((log, waits), (["raced", (added[0].id, "order_added")], []))

    def test_module_unit_of_work_on_the_twin(self):
        store = InMemoryStore()
        repo = InMemoryOrderRepository(store)
        with self.assertRaises(RuntimeError):
            with unit_of_work(store) as unit:
                self.assertIs(unit, store)
                order = repo.add(uuid.uuid4(), "EUR")
                raise RuntimeError("undo")
        with self.assertRaises(OrderNotFound):
            repo.get(order.id)
        with unit_of_work(repo, idempotency_key="accepted, not used") as unit:
            self.assertIs(unit, repo)
            kept = repo.add(uuid.uuid4(), "EUR")
        self.assertEqual(repo.get(kept.id), kept)


class RealOnly(unittest.TestCase):
    DSN = os.environ.get("ORDERS_DSN", "")

    def test_an_older_extension_is_refused_by_name(self):
        from psycopg.conninfo import make_conninfo
        db = "orders_client_old"
        with psycopg.connect(self.DSN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {db}")
        try:
            dsn = make_conninfo(self.DSN, dbname=db)
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION orders VERSION '1.11'")
                with self.assertRaises(ExtensionTooOld) as e:
                    OrderRepository(conn)
                self.assertEqual(str(e.exception),
                                 'extension "orders" 1.11 is older than 1.12, which orders-repository 0.2.0 needs')
                self.assertIsNone(e.exception.sqlstate)
                self.assertIn("ALTER EXTENSION orders UPDATE", e.exception.detail)
                with self.assertRaises(ExtensionTooOld):
                    EventConsumer(dsn, "old", lambda e: None).run(exit_when_idle=0)
                conn.execute("ALTER EXTENSION orders UPDATE")
                OrderRepository(conn)
        finally:
            with psycopg.connect(self.DSN, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE {db} WITH (FORCE)")

    def test_concurrent_units_on_one_pool(self):
        from psycopg_pool import ConnectionPool
        with ConnectionPool(self.DSN, min_size=2, max_size=4, open=True) as pool:
            repo = OrderRepository(pool)
            self.assertIsNone(repo.conn)
            outside = repo.add(uuid.uuid4(), "EUR", [TEA])
            self.assertEqual(repo.get(outside.id), outside)
            errors, done = [], []
            barrier = threading.Barrier(4)

            def worker(n):
                try:
                    with repo.unit_of_work(metadata={"worker": n}):
                        barrier.wait(10)       # four units open at once, each on its own connection
                        order = repo.add(uuid.uuid4(), "EUR", [TEA], HOME)
                        repo.save(order.with_(status=CONFIRMED))
                        if n % 2:
                            raise RuntimeError("odd workers roll back")
                except RuntimeError:
                    pass
                except Exception as e:
                    errors.append(e)
                else:
                    done.append((n, order.id))
            threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            self.assertEqual(errors, [])
            self.assertEqual(sorted(n for n, _ in done), [0, 2])
            for n, oid in done:
                self.assertEqual([(e.type, e.metadata) for e in repo.events_of(oid)],
                                 [("order_added", {"worker": n}), ("order_confirmed", {"worker": n})],
                                 "each unit's calls on its own connection")
            with unit_of_work(pool) as conn:
                a = repo.add(uuid.uuid4(), "EUR")
                self.assertEqual(conn.execute("SELECT count(*) FROM orders WHERE id = %s", (a.id,)).fetchone()[0],
                                 1, "the repository used the unit's connection")
                with self.assertRaises(RuntimeError):
                    with unit_of_work(pool):
                        b = repo.add(uuid.uuid4(), "EUR")
                        raise RuntimeError("inner")
            self.assertEqual(repo.get(a.id), a)
            with self.assertRaises(OrderNotFound):
                repo.get(b.id)
            self.assertEqual(pool.get_stats()["pool_size"] - pool.get_stats().get("pool_available", 0), 0,
                             "every connection back in the pool")

    def test_a_context_copied_in_a_unit_does_not_keep_its_connection(self):
        """A thread running a context copied in a unit, after the unit
        ended, while another unit holds the pool's only connection: its
        call waits for a connection of its own rather than writing into
        the other unit, which rolls back."""
        from psycopg_pool import ConnectionPool
        with ConnectionPool(self.DSN, min_size=1, max_size=1, open=True) as pool:
            repo = OrderRepository(pool)
            with unit_of_work(pool):
                copied = contextvars.copy_context()
            out = []
            t = threading.Thread(target=lambda: out.append(copied.run(lambda: repo.add(uuid.uuid4(), "EUR"))))
            with self.assertRaises(RuntimeError):
                with unit_of_work(pool):
                    t.start()
                    # until the stray call is done (on this unit's connection)
                    # or waits for the pool's (on a connection of its own)
                    deadline = time.monotonic() + 20
                    while t.is_alive() and not pool.get_stats().get("requests_waiting", 0):
                        self.assertLess(time.monotonic(), deadline)
                        time.sleep(0.01)
                    raise RuntimeError("the second unit rolls back")
            t.join(30)
            [stray] = out
            self.assertEqual(repo.get(stray.id), stray, "the stray call committed on its own connection")

    def test_a_source_of_another_kind_is_a_type_error(self):
        for source in (self.DSN, psycopg.AsyncConnection):
            with self.assertRaises(TypeError):
                OrderRepository(source)
            with self.assertRaises(TypeError):
                with unit_of_work(source):
                    pass

    def test_a_consumer_on_a_pool_connects_with_its_connection_class(self):
        """The dedicated LISTEN connection is of the pool's connection
        class; the pool's configure callback is the pool's own, not run on
        it."""
        from psycopg_pool import ConnectionPool

        class Shop(psycopg.Connection):
            pass
        configured = []
        with ConnectionPool(self.DSN, min_size=1, max_size=1, open=True, connection_class=Shop,
                            configure=configured.append) as pool:
            with pool.connection() as conn:
                self.assertIsInstance(conn, Shop)
            consumer = EventConsumer(pool, f"py-class-{uuid.uuid4()}", lambda e: None)
            with self.assertLogs("orders_repository", "INFO"):
                consumer.run(exit_when_idle=0)
            self.assertIsInstance(consumer._listener, Shop)
            self.assertNotIn(consumer._listener, configured)

    def test_a_wake_up_taken_in_by_a_read_is_not_lost(self):
        """A NOTIFY that arrives with the result of the consumer's read (or
        ack) is counted there, by the handler of notifications: the loop
        reads again at once rather than waiting wake_every for the next
        one.  Made certain here: after an empty read, an order commits
        and the listening connection takes in its wake-up before the loop
        decides whether to wait.  The loop's waits are recorded (and
        return at once) rather than timed."""
        from unittest import mock
        name = f"py-wake-{uuid.uuid4()}"
        EventConsumer(self.DSN, name, lambda e: None).run(exit_when_idle=0)
        writer = psycopg.connect(self.DSN, autocommit=True)
        self.addCleanup(writer.close)
        log, added = [], []

        class Racing(EventConsumer):
            def _once(self, conn):
                n = super()._once(conn)
                if not added:
                    before = self.wakeups
                    added.append(OrderRepository(writer).add(uuid.uuid4(), "EUR"))
                    for _ in range(500):          # as if it came with the read's result
                        conn.execute("SELECT pg_catalog.pg_sleep(0.01)")
                        if self.wakeups != before:
                            break
                    assert self.wakeups != before, "the wake-up never came"
                    log.append("raced")
                return n

        class Selector:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def register(self, *args):
                pass

            def select(self, timeout):
                log.append("waited")
                return []

        def handle(event):
            log.append((event.order_id, event.type))
            consumer.stop()
        consumer = Racing(self.DSN, name, handle, wake_every=30)
        with mock.patch("orders_repository.consumer.selectors",
                        mock.Mock(DefaultSelector=Selector, EVENT_READ=1)):
            consumer.run(exit_when_idle=20)
        self.assertEqual(log, ["raced", (added[0].id, "order_added")], "no wait between the wake-up and the read")

    def test_a_consumer_on_a_pool_listens_on_its_own_connection(self):
        from psycopg_pool import ConnectionPool
        name = f"py-pool-{uuid.uuid4()}"
        with ConnectionPool(self.DSN, min_size=1, max_size=1, open=True) as pool:
            with self.assertLogs("orders_repository", "INFO") as logged:
                EventConsumer(pool, name, lambda e: None).run(exit_when_idle=0)
            self.assertIn("dedicated connection", logged.output[0])
            order = OrderRepository(pool).add(uuid.uuid4(), "EUR")
            seen = []

            def refuse(event):
                seen.append(event)
                raise Reject("no")
            consumer = EventConsumer(pool, name, refuse, max_attempts=1)
            with self.assertLogs("orders_repository", "INFO"):
                consumer.run(exit_when_idle=0.2)
            [parked] = consumer.parked()          # on the pool's one connection, while none is held
            self.assertEqual(parked.order_id, order.id)
            consumer.discard(parked.position)
            self.assertEqual(consumer.holds(), [])
            with pool.connection() as conn:
                self.assertEqual(conn.execute("SELECT count(*) FROM pg_listening_channels()").fetchone()[0], 0,
                                 "no LISTEN left on the pool's connection")


if __name__ == "__main__":
    unittest.main()
