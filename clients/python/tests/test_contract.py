"""One contract, two repositories: every case runs against the extension
(ORDERS_DSN, a throw-away cluster started by test/t/015_python_repository.pl)
and against InMemoryOrderRepository, and must behave the same."""
import os
import sys
import unittest
import uuid
from dataclasses import replace

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import psycopg  # noqa: E402

from orders_repository import (CANCELLED, CONFIRMED, PENDING, SHIPPED, Address, ConcurrencyConflict,  # noqa: E402
                               Customer, DuplicateOrder, HasStatus, InMemoryOrderRepository,
                               InvariantViolation, OrderLine, OrderNotFound, OrderRepository, Status,
                               TotalAtLeast, TotalAtMost)

TEA = OrderLine(uuid.UUID("0b1e4f5a-6c7d-4e8f-9a0b-1c2d3e4f5a6b"), "Green tea", 2, 450)
POT = OrderLine(uuid.UUID("1c2f5a6b-7d8e-4f9a-8b1c-2d3e4f5a6b7c"), "Teapot", 1, 3900)
HOME = Address("Main St 1", "Berlin", "10115", "DE")


class Contract:
    """The cases; a subclass gives self.repo."""

    def customer(self):
        return uuid.uuid4()

    def test_add_then_get(self):
        c = self.customer()
        added = self.repo.add(c, "EUR", [TEA, POT], HOME)
        self.assertEqual((added.status, added.version, added.total), (PENDING, 1, 2 * 450 + 3900))
        got = self.repo.get(added.id)
        self.assertEqual(got, added)
        self.assertEqual(got.lines, (TEA, POT))
        self.assertEqual(got.shipping_address, HOME)
        self.assertEqual(got.customer_id, c)
        self.assertIsNotNone(got.created_at.tzinfo)

    def test_add_with_id_and_without_address(self):
        oid = self.repo.next_id()
        added = self.repo.add(self.customer(), "EUR", [], None, id=oid)
        self.assertEqual((added.id, added.lines, added.shipping_address, added.total), (oid, (), None, 0))

    def test_get_unknown(self):
        with self.assertRaises(OrderNotFound):
            self.repo.get(uuid.uuid4())

    def test_duplicate_id(self):
        added = self.repo.add(self.customer(), "EUR", [TEA])
        with self.assertRaises(DuplicateOrder) as e:
            self.repo.add(self.customer(), "EUR", [TEA], id=added.id)
        self.assertEqual(e.exception.constraint, "orders_pkey")

    def test_id_not_reused_after_remove(self):
        added = self.repo.add(self.customer(), "EUR", [TEA])
        self.repo.remove(added.id)
        with self.assertRaises(OrderNotFound):
            self.repo.get(added.id)
        with self.assertRaises(DuplicateOrder) as e:
            self.repo.add(self.customer(), "EUR", [TEA], id=added.id)
        self.assertEqual(e.exception.constraint, "orders_id_not_reused")

    def assertPath(self, e, path):
        """The error's path, and the detail's first sentence that gives it."""
        self.assertEqual(e.path, path, str(e))
        first = f"The field is {path}."
        self.assertTrue(e.detail == first or e.detail.startswith(first + " "), e.detail)

    def assertViolation(self, fn, rule, path, value=None):
        with self.assertRaises(InvariantViolation) as e:
            fn()
        self.assertEqual(e.exception.rule, rule, str(e.exception))
        self.assertPath(e.exception, path)
        if value is not None:
            self.assertEqual(e.exception.value, value)
        return e.exception

    def test_invariants_on_add(self):
        c = self.customer()
        self.assertViolation(lambda: self.repo.add(c, "eur", [TEA]), "order_currency_format", "currency", "eur")
        self.assertViolation(lambda: self.repo.add(c, "EUR", [replace(TEA, quantity=0)]),
                             "order_line_quantity_range", "lines[1].quantity", "0")
        self.assertViolation(lambda: self.repo.add(c, "EUR", [TEA, OrderLine(TEA.product_id, "Again", 1, 1)]),
                             "order_line_product_unique", "lines[2].product_id")
        self.assertViolation(lambda: self.repo.add(c, "EUR", [OrderLine(uuid.uuid4(), "", 1, 1)]),
                             "order_line_product_name", "lines[1].product_name")
        self.assertViolation(lambda: self.repo.add(c, "EUR", [TEA], Address("Main St 1", "Berlin", "10115", "de")),
                             "order_address_fields", "shipping_address.country", "de")
        self.assertEqual(list(self.repo.find(Customer(c))), [], "nothing was stored")

    def test_paths(self):
        """Every rule's path, the same from the extension and the twin."""
        c = self.customer()
        other = OrderLine(uuid.UUID("2d3f6a7b-8e9f-4a0b-9c2d-3e4f5a6b7c8d"), "Cup", 1, 100)
        add = self.repo.add
        self.assertViolation(lambda: add(c, None, [TEA]), "not_null", "currency")
        self.assertViolation(lambda: add(c, "EUR", [TEA, replace(POT, product_name=None)]), "not_null",
                             "lines[2].product_name")
        self.assertViolation(lambda: add(c, "EUR", [TEA], replace(HOME, city=None)), "not_null",
                             "shipping_address.city")
        self.assertViolation(lambda: add(c, "EUR", [TEA] * 1001), "order_lines_max", "lines")
        self.assertViolation(lambda: add(c, "EUR", [TEA, replace(POT, product_name="x" * 201)]),
                             "order_line_product_name", "lines[2].product_name")
        self.assertViolation(lambda: add(c, "EUR", [TEA, POT, replace(other, quantity=1_000_001)]),
                             "order_line_quantity_range", "lines[3].quantity", "1000001")
        self.assertViolation(lambda: add(c, "EUR", [TEA, replace(POT, unit_price=-1)]),
                             "order_line_unit_price_range", "lines[2].unit_price", "-1")
        # the later line of the two, after every line was checked
        self.assertViolation(lambda: add(c, "EUR", [POT, TEA, other, replace(POT, quantity=2)]),
                             "order_line_product_unique", "lines[4].product_id")
        big = [OrderLine(uuid.UUID(int=n + 1), f"p{n}", 1_000_000, 100_000_000_000) for n in range(100)]
        self.assertViolation(lambda: add(c, "EUR", big), "out_of_range", "total")
        self.assertViolation(lambda: add(c, "EUR", [TEA], replace(HOME, street="")), "order_address_fields",
                             "shipping_address.street")
        self.assertViolation(lambda: add(c, "EUR", [TEA], replace(HOME, country="DEU")), "order_address_fields",
                             "shipping_address.country", "DEU")
        order = self.repo.add(c, "EUR", [TEA], HOME)
        self.assertViolation(lambda: self.repo.save(order.with_(customer_id=self.customer())),
                             "order_immutable_fields", "customer_id")
        self.assertViolation(lambda: self.repo.save(order.with_(status=CONFIRMED, lines=[])),
                             "order_ready_to_confirm", "lines")
        shipped = self.repo.save(self.repo.save(order.with_(status=CONFIRMED)).with_(status=SHIPPED))
        self.assertViolation(lambda: self.repo.save(shipped.with_(shipping_address=replace(HOME, city="Bonn"))),
                             "order_frozen_after_confirm", "shipping_address")
        self.assertViolation(lambda: self.repo.remove(order.id), "order_remove_in_flight", "status", "shipped")
        for fn in (lambda: self.repo.save(order.with_(status=CONFIRMED)),
                   lambda: self.repo.remove(order.id, expected_version=1)):
            with self.assertRaises(ConcurrencyConflict) as e:
                fn()
            self.assertPath(e.exception, "version")
        with self.assertRaises(InvariantViolation) as e:
            self.repo.add_many([{"customer_id": c, "currency": "EUR"},
                                {"customer_id": c, "currency": "EUR", "lines": [TEA, replace(TEA, quantity=0)]}])
        self.assertEqual((e.exception.index, e.exception.rule), (1, "order_line_quantity_range"))
        self.assertPath(e.exception, "lines[2].quantity")
        with self.assertRaises(OrderNotFound) as e:         # about the call: no path
            self.repo.get(uuid.uuid4())
        self.assertIsNone(e.exception.path)

    def test_save_confirm(self):
        order = self.repo.add(self.customer(), "EUR", [TEA], HOME)
        saved = self.repo.save(order.with_(status=CONFIRMED))
        self.assertEqual((saved.status, saved.version), (CONFIRMED, 2))
        self.assertEqual(self.repo.get(order.id), saved)

    def test_save_nothing_changed(self):
        order = self.repo.add(self.customer(), "EUR", [TEA], HOME)
        self.assertEqual(self.repo.save(order), order)
        self.assertEqual(self.repo.get(order.id).version, 1)

    def test_save_checks_in_the_extensions_order(self):
        order = self.repo.add(self.customer(), "EUR", [TEA])
        self.repo.save(order.with_(lines=[TEA, POT]))
        with self.assertRaises(ConcurrencyConflict):     # the version first, readiness after
            self.repo.save(order.with_(status=CONFIRMED))
        self.assertViolation(lambda: self.repo.save(self.repo.get(order.id).with_(status=SHIPPED)),
                             "order_status_transition", "status")
        with self.assertRaises(OrderNotFound):
            self.repo.save(order.with_(id=uuid.uuid4(), status=CONFIRMED))

    def test_save_stale_version(self):
        order = self.repo.add(self.customer(), "EUR", [TEA], HOME)
        self.repo.save(order.with_(lines=[TEA, POT]))
        with self.assertRaises(ConcurrencyConflict):
            self.repo.save(order.with_(status=CONFIRMED))

    def test_save_rules(self):
        bare = self.repo.add(self.customer(), "EUR", [TEA])
        self.assertViolation(lambda: self.repo.save(bare.with_(status=CONFIRMED)), "order_ready_to_confirm",
                             "shipping_address")
        order = self.repo.add(self.customer(), "EUR", [TEA], HOME)
        self.assertViolation(lambda: self.repo.save(order.with_(status=SHIPPED)), "order_status_transition", "status")
        self.assertViolation(lambda: self.repo.save(order.with_(currency="USD")), "order_immutable_fields", "currency")
        confirmed = self.repo.save(order.with_(status=CONFIRMED))
        self.assertViolation(lambda: self.repo.save(confirmed.with_(lines=[POT])),
                             "order_frozen_after_confirm", "lines")
        cancelled = self.repo.save(confirmed.with_(status=CANCELLED))
        self.assertViolation(lambda: self.repo.save(cancelled.with_(status=PENDING)),
                             "order_status_transition", "status")

    def test_remove(self):
        order = self.repo.add(self.customer(), "EUR", [TEA], HOME)
        with self.assertRaises(ConcurrencyConflict):
            self.repo.remove(order.id, expected_version=2)
        confirmed = self.repo.save(order.with_(status=CONFIRMED))
        self.assertViolation(lambda: self.repo.remove(order.id), "order_remove_in_flight", "status", "confirmed")
        removed = self.repo.remove(self.repo.save(confirmed.with_(status=CANCELLED)).id)
        self.assertEqual(removed.status, CANCELLED)
        with self.assertRaises(OrderNotFound):
            self.repo.remove(order.id)
        with self.assertRaises(OrderNotFound):
            self.repo.save(confirmed)

    def test_find(self):
        c = self.customer()
        small = self.repo.add(c, "EUR", [TEA], HOME)                              # 900
        big = self.repo.save(self.repo.add(c, "EUR", [POT], HOME).with_(status=CONFIRMED))   # 3900
        other = self.repo.add(c, "EUR", [TEA, POT], HOME)                         # 4800
        self.repo.add(self.customer(), "EUR", [POT], HOME)                        # someone else's
        ids = lambda spec, **kw: [o.id for o in self.repo.find(spec, **kw)]
        everything = sorted([small.id, big.id, other.id], key=lambda u: u.bytes)
        self.assertEqual(ids(Customer(c)), everything)
        self.assertEqual(ids(Customer(c), page_size=1), everything, "keyset pages")
        self.assertEqual(ids(Customer(c) & Status.is_(CONFIRMED)), [big.id])
        self.assertEqual(ids(Customer(c) & ~HasStatus(CONFIRMED) & TotalAtLeast(1000)), [other.id])
        self.assertEqual(ids(Customer(c) & (TotalAtMost(1000) | TotalAtLeast(4000))),
                         sorted([small.id, other.id], key=lambda u: u.bytes))


    def test_add_many(self):
        c = self.customer()
        given = uuid.uuid4()
        added = self.repo.add_many([
            {"customer_id": c, "currency": "EUR", "lines": [TEA], "shipping_address": HOME},
            {"customer_id": c, "currency": "USD", "id": given},
        ])
        self.assertEqual([o.currency for o in added], ["EUR", "USD"], "in the list's order")
        self.assertEqual(added[1].id, given)
        self.assertEqual(self.repo.get(added[0].id), added[0])
        self.assertEqual(added[0].total, 900)
        # all or none: the second is refused, the first not added; the error names it
        with self.assertRaises(InvariantViolation) as e:
            self.repo.add_many([{"customer_id": c, "currency": "EUR", "id": uuid.uuid4()},
                                {"customer_id": c, "currency": "eur"}])
        self.assertEqual(e.exception.rule, "order_currency_format")
        self.assertEqual(e.exception.index, 1)
        self.assertEqual(len(list(self.repo.find(Customer(c)))), 2)
        with self.assertRaises(DuplicateOrder) as e:
            self.repo.add_many([{"customer_id": c, "currency": "EUR", "id": given}])
        self.assertEqual(e.exception.index, 0)


class InMemory(Contract, unittest.TestCase):
    def setUp(self):
        self.repo = InMemoryOrderRepository()


class Real(Contract, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.conn = psycopg.connect(os.environ["ORDERS_DSN"], autocommit=True)

    @classmethod
    def tearDownClass(cls):
        cls.conn.close()

    def setUp(self):
        self.repo = OrderRepository(self.conn)


if __name__ == "__main__":
    unittest.main()
