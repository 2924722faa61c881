"""One contract, two repositories: every case runs against the extension
(ORDERS_DSN, a throw-away cluster started by test/t/015_python_repository.pl)
and against InMemoryOrderRepository, and must behave the same.  The shop's
own fields run in a database of their own (FIELDS_DB), made with their DDL
and dropped afterwards, so the other cases see the extension's table as it
comes."""
import os
import sys
import unittest
import uuid
from dataclasses import replace
from datetime import date
from decimal import Decimal

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import psycopg  # noqa: E402
from psycopg.conninfo import make_conninfo  # noqa: E402

from orders_repository import (CANCELLED, CONFIRMED, PENDING, SHIPPED, Address, ConcurrencyConflict,  # noqa: E402
                               Customer, DuplicateOrder, HasStatus, InMemoryOrderRepository,
                               InvariantViolation, Order, OrderLine, OrderNotFound, OrderRepository, OrdersError,
                               Status, TotalAtLeast, TotalAtMost)

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


    def test_money_and_quantities_that_are_not_integers_are_refused_before_anything_is_sent(self):
        c = self.customer()
        order = self.repo.add(c, "EUR", [TEA], HOME)
        cases = [("unit_price", Decimal("12.99"), "12.99", "money is an integer number of cents (1299 for 12.99)"),
                 ("unit_price", 450.5, "450.5", "money is an integer number of cents (45050 for 450.5)"),
                 ("unit_price", Decimal("12.00"), "12.00", "money is an integer number of cents (1200 for 12.00)"),
                 ("unit_price", 12.5, "12.5", "money is an integer number of cents (1250 for 12.5)"),
                 ("unit_price", Decimal("-0.5"), "-0.5", "money is an integer number of cents (-50 for -0.5)"),
                 ("unit_price", Decimal("12.500"), "12.500", "money is an integer number of cents (1250 for 12.500)"),
                 # no cents to suggest: no fraction, or one of more than 2 digits
                 ("unit_price", "450", "450", "money is an integer number of cents"),
                 ("unit_price", Decimal("450"), "450", "money is an integer number of cents"),
                 ("unit_price", 1e21, "1e+21", "money is an integer number of cents"),
                 ("unit_price", 12.999, "12.999", "money is an integer number of cents"),
                 ("unit_price", True, "true", "money is an integer number of cents"),
                 # worded as the TypeScript client words them
                 ("unit_price", float("nan"), "NaN", "money is an integer number of cents"),
                 ("unit_price", float("inf"), "Infinity", "money is an integer number of cents"),
                 ("unit_price", float("-inf"), "-Infinity", "money is an integer number of cents"),
                 ("quantity", float("nan"), "NaN", "a quantity is an integer"),
                 ("quantity", 1.5, "1.5", "a quantity is an integer"),
                 ("quantity", Decimal("2"), "2", "a quantity is an integer"),
                 ("quantity", False, "false", "a quantity is an integer")]
        for name, value, text, why in cases:
            bad = replace(POT, **{name: value})
            for how, fn, index in (
                    ("add", lambda: self.repo.add(c, "EUR", [TEA, bad]), None),
                    ("save", lambda: self.repo.save(order.with_(lines=[TEA, bad])), None),
                    ("add_many", lambda: self.repo.add_many([{"customer_id": c, "currency": "EUR"},
                                                             {"customer_id": c, "currency": "EUR",
                                                              "lines": [TEA, bad]}]), 1)):
                with self.subTest(how=how, name=name, value=value):
                    e = self.assertViolation(fn, "not_integer", f"lines[2].{name}", text)
                    self.assertEqual((e.sqlstate, e.index, e.constraint), ("22P02", index, None))
                    self.assertEqual(e.detail, f"The field is lines[2].{name}. The value is {text}; {why}.")
        self.assertEqual([o.id for o in self.repo.find(Customer(c))], [order.id], "nothing was stored")
        self.assertEqual(self.repo.get(order.id), order)
        with self.assertRaises(InvariantViolation):
            Order.new(c, "EUR", [replace(TEA, unit_price=Decimal("4.50"))])
        # None is not a type error: the server's not_null, which the twin mirrors
        self.assertViolation(lambda: self.repo.add(c, "EUR", [replace(TEA, unit_price=None)]), "not_null",
                             "lines[1].unit_price")
        self.assertViolation(lambda: self.repo.add(c, "EUR", [replace(TEA, quantity=None)]), "not_null",
                             "lines[1].quantity")

    def test_integers_beyond_their_column_type_break_the_lines_range_rule(self):
        """Past integer (quantity) or bigint (unit_price), the server could
        not even read the line (a bare 22003, no path): the range rule's
        error, from both, as for any value out of its range."""
        c = self.customer()
        for name, value, rule, between in (
                ("quantity", 2 ** 31, "order_line_quantity_range", "1 and 1000000"),
                ("quantity", -2 ** 31 - 1, "order_line_quantity_range", "1 and 1000000"),
                ("unit_price", 2 ** 63, "order_line_unit_price_range", "0 and 100000000000")):
            with self.subTest(name=name, value=value):
                e = self.assertViolation(lambda: self.repo.add(c, "EUR", [TEA, replace(POT, **{name: value})]),
                                         rule, f"lines[2].{name}", str(value))
                self.assertEqual((e.sqlstate, e.constraint), ("23514", rule))
                self.assertEqual(e.detail, f"The field is lines[2].{name}. The value is {value};"
                                           f" it must be between {between}.")
        # the largest the column holds reaches the server, whose rule says the same
        e = self.assertViolation(lambda: self.repo.add(c, "EUR", [replace(TEA, quantity=2 ** 31 - 1)]),
                                 "order_line_quantity_range", "lines[1].quantity", str(2 ** 31 - 1))
        self.assertEqual(e.detail, f"The field is lines[1].quantity. The value is {2 ** 31 - 1};"
                                   " it must be between 1 and 1000000.")
        self.assertEqual(list(self.repo.find(Customer(c))), [], "nothing was stored")


class InMemory(Contract, unittest.TestCase):
    def setUp(self):
        self.repo = InMemoryOrderRepository()


# The shop's DDL of the fields cases: two columns, a numeric one, an
# attribute of each composite, and a rule across a column of the shop's
# and one of ours.  No default and no generated column here: the twin fills
# and computes none (RealFieldsOnly tests those, and rolls them back).
FIELDS_DB = "orders_client_fields"
FIELDS_DDL = [
    "CREATE EXTENSION orders",
    "ALTER TABLE orders ADD COLUMN coupon text, ADD COLUMN delivery_date date, ADD COLUMN rate numeric",
    "ALTER TABLE orders ADD CONSTRAINT coupon_only_in_eur CHECK (coupon IS NULL OR currency = 'EUR')",
    "ALTER TYPE order_line ADD ATTRIBUTE sku text CASCADE",
    "ALTER TYPE order_address ADD ATTRIBUTE door_code text CASCADE",
]
SKU_TEA = replace(TEA, fields={"sku": "TEA-1"})
DOOR = replace(HOME, fields={"door_code": "4711"})


def fields_database():
    """A connection to FIELDS_DB, made anew (a run that died left it behind)."""
    with psycopg.connect(os.environ["ORDERS_DSN"], autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {FIELDS_DB} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {FIELDS_DB}")
    conn = psycopg.connect(make_conninfo(os.environ["ORDERS_DSN"], dbname=FIELDS_DB), autocommit=True)
    for statement in FIELDS_DDL:
        conn.execute(statement)
    return conn


def drop_fields_database(conn):
    conn.close()
    with psycopg.connect(os.environ["ORDERS_DSN"], autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {FIELDS_DB} WITH (FORCE)")


class FieldsContract:
    """The shop's own fields, the same from both repositories: stored as
    given, returned, compared by save, carried by the events.  What only the
    extension can know (the columns' types, defaults, rules) is in
    RealFieldsOnly."""

    def customer(self):
        return uuid.uuid4()

    def test_add_with_fields_then_get(self):
        added = self.repo.add(self.customer(), "EUR", [SKU_TEA, POT], DOOR,
                              fields={"coupon": "WELCOME", "delivery_date": date(2027, 3, 1),
                                      "rate": Decimal("0.1000")})
        self.assertEqual(added.fields["coupon"], "WELCOME")
        self.assertEqual(added.fields["delivery_date"], "2027-03-01", "a date travels as its text")
        self.assertEqual(str(added.fields["rate"]), "0.1000", "a numeric comes back whole, not as a float")
        self.assertEqual(added.lines[0].fields, {"sku": "TEA-1"})
        self.assertIsNone(added.lines[1].fields.get("sku"), "a line without one: NULL, or not there in the twin")
        self.assertEqual(added.shipping_address.fields, {"door_code": "4711"})
        got = self.repo.get(added.id)
        self.assertEqual(got, added)
        self.assertEqual((got.fields["coupon"], got.lines[0].fields), ("WELCOME", {"sku": "TEA-1"}))
        with self.assertRaises(TypeError):          # frozen, as the order that holds them
            got.fields["coupon"] = "MINE"

    def test_save_as_read_changes_nothing(self):
        added = self.repo.add(self.customer(), "EUR", [SKU_TEA], DOOR,
                              fields={"coupon": "WELCOME", "rate": Decimal("12345678901234567890.123450")})
        got = self.repo.get(added.id)
        self.assertEqual(self.repo.save(got), got)
        self.assertEqual(self.repo.get(added.id).version, 1, "the fields made the round trip unchanged")
        # a field given as None is a NULL, as one not there is
        self.assertEqual(self.repo.save(got.with_(lines=[replace(TEA, fields={"sku": "TEA-1"})],
                                                  fields={**got.fields, "delivery_date": None})).version, 1)
        self.assertEqual(self.repo.save(got.with_(lines=[replace(TEA, fields={"sku": "TEA-1"})],
                                                  shipping_address=replace(DOOR, fields={**DOOR.fields,
                                                                                         "no_such": None}))).version, 1)
        self.assertEqual([e.type for e in self.repo.events_of(added.id)], ["order_added"])

    def test_save_changes_a_field(self):
        added = self.repo.add(self.customer(), "EUR", [SKU_TEA], DOOR,
                              fields={"coupon": "WELCOME", "delivery_date": "2027-03-01"})
        saved = self.repo.save(added.with_(fields={**added.fields, "coupon": "SPRING"}))
        self.assertEqual((saved.version, saved.fields["coupon"], saved.fields["delivery_date"]),
                         (2, "SPRING", "2027-03-01"))
        self.assertEqual(self.repo.get(added.id), saved)
        events = self.repo.events_of(added.id)
        self.assertEqual([(e.type, e.version) for e in events], [("order_added", 1), ("order_fields_changed", 2)])
        self.assertEqual(events[1].payload, {"coupon": "SPRING"}, "only what changed, with its new value")
        self.assertEqual((events[0].payload["coupon"], events[0].payload["delivery_date"]), ("WELCOME", "2027-03-01"))
        self.assertEqual(events[0].payload["lines"][0]["sku"], "TEA-1")
        self.assertEqual(events[0].payload["shipping_address"]["door_code"], "4711")
        self.assertEqual(self.repo.events_of(added.id, after_version=1), events[1:])

    def test_a_field_left_out_is_saved_null(self):
        added = self.repo.add(self.customer(), "EUR", [TEA], fields={"coupon": "WELCOME"})
        saved = self.repo.save(added.with_(fields={}))
        self.assertEqual((saved.version, saved.fields["coupon"]), (2, None))
        self.assertEqual(self.repo.events_of(added.id)[-1].payload, {"coupon": None})

    def test_one_save_emits_its_events_in_order(self):
        added = self.repo.add(self.customer(), "EUR", [SKU_TEA], DOOR, fields={"coupon": "WELCOME"})
        saved = self.repo.save(added.with_(
            status=CONFIRMED, lines=[replace(SKU_TEA, fields={"sku": "TEA-2"})],
            shipping_address=replace(DOOR, fields={"door_code": "0815"}),
            fields={**added.fields, "delivery_date": "2027-04-01"}))
        events = self.repo.events_of(added.id, after_version=1)
        self.assertEqual([(e.type, e.version) for e in events],
                         [("order_lines_changed", 2), ("order_shipping_address_changed", 2),
                          ("order_fields_changed", 2), ("order_confirmed", 2)])
        self.assertEqual(events[0].payload["lines"][0]["sku"], "TEA-2")
        self.assertEqual(events[1].payload["shipping_address"]["door_code"], "0815")
        self.assertEqual(events[2].payload, {"delivery_date": "2027-04-01"})
        self.assertEqual(saved.lines[0].fields, {"sku": "TEA-2"})
        # a line's own attribute is part of the line: frozen after confirm
        with self.assertRaises(InvariantViolation) as e:
            self.repo.save(saved.with_(lines=[replace(SKU_TEA, fields={"sku": "TEA-3"})]))
        self.assertEqual(e.exception.rule, "order_frozen_after_confirm")
        # but the order's own fields are the shop's to change in any status
        shipped = self.repo.save(self.repo.save(saved.with_(status=SHIPPED)).with_(
            fields={**saved.fields, "coupon": "LATE"}))
        self.assertEqual((shipped.status, shipped.fields["coupon"]), (SHIPPED, "LATE"))

    def test_add_many_and_remove_carry_fields(self):
        c = self.customer()
        added = self.repo.add_many([
            {"customer_id": c, "currency": "EUR", "lines": [SKU_TEA], "fields": {"coupon": "BULK"}},
            {"customer_id": c, "currency": "EUR"},
        ])
        self.assertEqual((added[0].fields["coupon"], added[0].lines[0].fields["sku"]), ("BULK", "TEA-1"))
        self.assertEqual(self.repo.get(added[0].id), added[0])
        self.repo.remove(added[0].id)
        removed = self.repo.events_of(added[0].id)[-1]
        self.assertEqual((removed.type, removed.version, removed.payload["coupon"]), ("order_removed", 2, "BULK"))

    def test_a_field_named_as_ours_is_refused(self):
        c = self.customer()
        for fn, path in ((lambda: self.repo.add(c, "EUR", fields={"status": "shipped"}), "fields.status"),
                         (lambda: self.repo.add(c, "EUR", [replace(TEA, fields={"quantity": 9})]),
                          "lines[1].fields.quantity"),
                         (lambda: self.repo.add(c, "EUR", [TEA], replace(HOME, fields={"city": "Bonn"})),
                          "shipping_address.fields.city"),
                         (lambda: self.repo.add_many([{"customer_id": c, "currency": "EUR",
                                                       "fields": {"total": 0}}]), "fields.total")):
            with self.subTest(path=path):
                with self.assertRaises(OrdersError) as e:
                    fn()
                self.assertEqual((e.exception.sqlstate, e.exception.path), ("22023", path), str(e.exception))
        order = self.repo.add(c, "EUR")
        with self.assertRaises(OrdersError) as e:
            self.repo.save(order.with_(fields={"version": 7}))
        self.assertEqual((e.exception.sqlstate, e.exception.path), ("22023", "fields.version"))
        self.assertEqual([o.id for o in self.repo.find(Customer(c))], [order.id], "nothing else was stored")
        self.assertEqual(self.repo.get(order.id).version, 1)


class InMemoryFields(FieldsContract, unittest.TestCase):
    def setUp(self):
        self.repo = InMemoryOrderRepository()

    def test_only_the_twin_enforces_nothing_it_cannot_know(self):
        """The twin's side of what RealFieldsOnly checks: no CHECK, no
        unknown column, no type, no default.  Documented, and asserted so
        that a change to it is a decision."""
        added = self.repo.add(uuid.uuid4(), "USD", fields={"coupon": "X", "no_such_column": "2"})
        self.assertEqual(dict(added.fields), {"coupon": "X", "no_such_column": "2"})


class RealFields(FieldsContract, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.conn = fields_database()

    @classmethod
    def tearDownClass(cls):
        drop_fields_database(cls.conn)

    def setUp(self):
        self.repo = OrderRepository(self.conn)


class RealFieldsOnly(unittest.TestCase):
    """What only the extension can enforce or fill: the shop's CHECK, its
    columns' existence and types, defaults, generated and identity columns.
    The DDL these add beyond FIELDS_DDL is rolled back."""

    @classmethod
    def setUpClass(cls):
        cls.conn = fields_database()

    @classmethod
    def tearDownClass(cls):
        drop_fields_database(cls.conn)

    def setUp(self):
        self.repo = OrderRepository(self.conn)

    def refused(self, fn, cls=OrdersError):
        with self.assertRaises(cls) as e:
            fn()
        return e.exception

    def test_the_shops_check_is_an_invariant_violation_named_by_it(self):
        c = uuid.uuid4()
        e = self.refused(lambda: self.repo.add(c, "USD", fields={"coupon": "WELCOME"}), InvariantViolation)
        self.assertEqual((e.rule, e.sqlstate, e.constraint), ("coupon_only_in_eur", "23514", "coupon_only_in_eur"))
        self.assertEqual(list(self.repo.find(Customer(c))), [], "nothing was stored")
        order = self.repo.add(c, "USD")
        e = self.refused(lambda: self.repo.save(order.with_(fields={"coupon": "WELCOME"})), InvariantViolation)
        self.assertEqual(e.rule, "coupon_only_in_eur")
        self.assertEqual(self.repo.get(order.id), order)
        e = self.refused(lambda: self.repo.add_many([{"customer_id": c, "currency": "EUR"},
                                                     {"customer_id": c, "currency": "USD",
                                                      "fields": {"coupon": "X"}}]), InvariantViolation)
        self.assertEqual((e.rule, e.index), ("coupon_only_in_eur", 1))

    def test_unknown_columns_and_types_are_refused(self):
        e = self.refused(lambda: self.repo.add(uuid.uuid4(), "EUR", fields={"no_such_column": 1}))
        self.assertEqual((e.sqlstate, e.path), ("42703", "fields.no_such_column"))
        e = self.refused(lambda: self.repo.add(uuid.uuid4(), "EUR", fields={"delivery_date": "next week"}))
        self.assertEqual((e.sqlstate, e.path), ("22007", "fields.delivery_date"))
        self.assertNotIsInstance(e, InvariantViolation)
        # every column comes back, the ones not given as NULL (no default here)
        added = self.repo.add(uuid.uuid4(), "EUR", fields={"coupon": "WELCOME"})
        self.assertEqual(dict(added.fields), {"coupon": "WELCOME", "delivery_date": None, "rate": None})
        self.assertEqual(self.repo.add(uuid.uuid4(), "EUR", fields={"rate": "2"}).fields["rate"], 2,
                         "converted by the column's type")

    def test_defaults_generated_and_identity_columns(self):
        with self.conn.transaction(force_rollback=True):
            self.conn.execute("ALTER TABLE orders ADD COLUMN channel text NOT NULL DEFAULT 'web',"
                              " ADD COLUMN coupon_upper text GENERATED ALWAYS AS (upper(coupon)) STORED,"
                              " ADD COLUMN ticket bigint GENERATED ALWAYS AS IDENTITY")
            added = self.repo.add(uuid.uuid4(), "EUR", fields={"coupon": "spring"})
            self.assertEqual((added.fields["channel"], added.fields["coupon_upper"]), ("web", "SPRING"))
            self.assertIsInstance(added.fields["ticket"], int)
            for name in ("coupon_upper", "ticket"):
                e = self.refused(lambda: self.repo.add(uuid.uuid4(), "EUR", fields={name: "X"}))
                self.assertEqual((e.sqlstate, e.path), ("428C9", f"fields.{name}"))
                e = self.refused(lambda: self.repo.save(added.with_(fields={**added.fields, name: 12345})))
                self.assertEqual(e.sqlstate, "428C9")
            saved = self.repo.save(added.with_(fields={**added.fields, "coupon": "summer"}))
            self.assertEqual(saved.fields["coupon_upper"], "SUMMER")
            self.assertEqual(self.repo.events_of(added.id)[-1].payload, {"coupon": "summer", "coupon_upper": "SUMMER"},
                             "a generated column that changed is among the changed fields")
        with self.assertRaises(OrderNotFound):
            self.repo.get(added.id)
        self.assertEqual(set(self.repo.add(uuid.uuid4(), "EUR").fields), {"coupon", "delivery_date", "rate"},
                         "rolled back: the contract's table again")


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
