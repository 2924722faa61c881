"""OrderRepository: the aggregate's repository over the orders extension.

Every method is one call of an extension function (or, for find, one
statement over the orders table), run in a transaction of its own when the
connection has none, or in a savepoint of the caller's transaction (so a
refused call leaves the caller's other work standing).  Rows travel as
JSON (to_jsonb / jsonb_populate_record, the extension's own recipe): no
type needs registering, the extension may live in any schema, and the
shop's own columns and attributes travel with the rest, as Order.fields
(a number with a fraction as a Decimal, so that it comes back unchanged).
"""
from __future__ import annotations

import json
import random
import time
import uuid
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Optional, TypeVar

import psycopg
from psycopg import sql
from psycopg.types.json import set_json_loads

from .errors import ConcurrencyConflict, OrderNotFound, OrdersError, translate
from .model import ORDER_KEYS, Address, Event, Order, OrderLine, check_fields, dumps, loads
from .specs import Anything, Spec

T = TypeVar("T")


def extension_schema(conn: psycopg.Connection) -> str:
    # in a transaction block of its own: on a connection that is not in
    # autocommit, an implicit transaction left open would turn every later
    # call into a savepoint of it, never committed
    with conn.transaction():
        row = conn.execute("SELECT n.nspname FROM pg_catalog.pg_extension e"
                           " JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace"
                           " WHERE e.extname = 'orders'").fetchone()
    if row is None:
        raise OrdersError("extension \"orders\" is not installed in this database")
    return row[0]


# what an event row is read as: the extension's columns, by name
EVENT_COLUMNS = "position, type, order_id, version, payload, occurred_at, id, metadata"


def event_from_row(row) -> Event:
    position, type_, order_id, version, payload, occurred_at, id_, metadata = row
    return Event(position, type_, uuid.UUID(str(order_id)), version, payload, occurred_at,
                 None if id_ is None else uuid.UUID(str(id_)), metadata)


def set_event_metadata(conn: psycopg.Connection, metadata: Optional[dict]) -> None:
    """orders.event_metadata for the rest of the transaction conn is in."""
    if metadata is not None:
        conn.execute("SELECT pg_catalog.set_config('orders.event_metadata', %s, true)",
                     (json.dumps(metadata),))


def _lines_json(lines) -> list:
    return [l.to_json(f"lines[{i}].") for i, l in enumerate(lines, 1)]


def _fields_json(fields) -> Optional[dict]:
    """add's fields, checked as the extension checks them: none named as
    one of its own columns."""
    if fields is None:
        return None
    check_fields(fields, ORDER_KEYS, "fields.", "column")
    return dict(fields)


def _order_json(o) -> dict:
    """One order of add_many: a dict with add's arguments as keys."""
    j = {"customer_id": str(o["customer_id"]), "currency": o["currency"],
         "lines": _lines_json(o.get("lines", ()))}
    if o.get("shipping_address") is not None:
        j["shipping_address"] = o["shipping_address"].to_json()
    if o.get("id") is not None:
        j["id"] = str(o["id"])
    if o.get("fields") is not None:
        j["fields"] = _fields_json(o["fields"])
    return j


class OrderRepository:
    """metadata: orders.event_metadata (correlation id, causation id, actor,
    trace context ...) that every event this repository's writes emit
    carries; unit_of_work(metadata=...) sets it for a whole transaction."""

    def __init__(self, conn: psycopg.Connection, schema: Optional[str] = None,
                 metadata: Optional[dict] = None):
        self.conn = conn
        self.schema = schema or extension_schema(conn)
        self.metadata = metadata
        s = sql.Identifier(self.schema)
        self._add = sql.SQL(
            "SELECT pg_catalog.to_jsonb(o) FROM {s}.orders_add(%s, %s,"
            " ARRAY(SELECT pg_catalog.jsonb_populate_record(NULL::{s}.order_line, x)"
            "       FROM pg_catalog.jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS l(x, n) ORDER BY n),"
            " pg_catalog.jsonb_populate_record(NULL::{s}.order_address, %s::jsonb), %s, %s::jsonb) o").format(s=s)
        self._get = sql.SQL("SELECT pg_catalog.to_jsonb(o) FROM {s}.orders_get(%s) o").format(s=s)
        self._save = sql.SQL("SELECT pg_catalog.to_jsonb(o) FROM {s}.orders_save("
                             "pg_catalog.jsonb_populate_record(NULL::{s}.orders, %s::jsonb)) o").format(s=s)
        self._remove = sql.SQL("SELECT pg_catalog.to_jsonb(o) FROM {s}.orders_remove(%s, %s) o").format(s=s)
        self._next_id = sql.SQL("SELECT {s}.orders_next_id()").format(s=s)
        self._add_many = sql.SQL("SELECT pg_catalog.to_jsonb(o) FROM {s}.orders_add_many(%s::jsonb) o").format(s=s)
        self._events_of = sql.SQL("SELECT " + EVENT_COLUMNS + " FROM {s}.orders_events_of(%s, %s)").format(s=s)
        self._find = "SELECT pg_catalog.to_jsonb(o) FROM {s}.orders o WHERE ({cond}){after} ORDER BY o.id LIMIT %s"

    def _cursor(self, exact: bool = True) -> psycopg.Cursor:
        """A cursor of the connection; exact: its JSON read as the
        repository writes it (model.loads), so that an order's fields make
        the round trip to save unchanged."""
        cur = self.conn.cursor()
        if exact:
            set_json_loads(loads, cur)
        return cur

    def _all(self, query, params, write: bool = False, exact: bool = True) -> list:
        try:
            with self.conn.transaction():
                if write:
                    set_event_metadata(self.conn, self.metadata)
                with self._cursor(exact) as cur:
                    return cur.execute(query, params).fetchall()
        except psycopg.Error as e:
            raise translate(e) from e

    def _one(self, query, params, write: bool = True) -> Optional[tuple]:
        rows = self._all(query, params, write)
        return rows[0] if rows else None

    def add(self, customer_id, currency: str, lines: Iterable[OrderLine] = (),
            shipping_address: Optional[Address] = None, id=None, *,
            fields: Optional[dict] = None) -> Order:
        """A new pending order.  fields: the shop's own columns of orders,
        by name (extension 1.12), each a JSON value that the column type's
        input function reads as text (a date as "2027-03-01" or a date; a
        json/jsonb column takes any JSON value); a column not given takes
        its default.  The extension refuses a name that is no column
        (42703), one of its own (22023) or a generated one (428C9), and
        checks the table's CHECK constraints (InvariantViolation, rule the
        constraint's name)."""
        fields = _fields_json(fields)
        row = self._one(self._add, (
            uuid.UUID(str(customer_id)), currency, dumps(_lines_json(lines)),
            None if shipping_address is None else dumps(shipping_address.to_json()),
            None if id is None else uuid.UUID(str(id)), None if fields is None else dumps(fields)))
        return Order.from_json(row[0])

    def add_many(self, orders: Iterable[dict]) -> list:
        """Many new orders in one call: each a dict with add's arguments as
        keys (customer_id, currency, lines, shipping_address, id, fields).
        All or none are added; an error's index is the offending order's."""
        rows = self._all(self._add_many, (dumps([_order_json(o) for o in orders]),), write=True)
        return [Order.from_json(r[0]) for r in rows]

    def events_of(self, id, after_version: int = 0) -> list:
        """The order's events after after_version, in version order (events
        purged from the outbox are gone)."""
        return [event_from_row(r) for r in self._all(self._events_of, (uuid.UUID(str(id)), after_version),
                                                     exact=False)]

    def get(self, id) -> Order:
        row = self._one(self._get, (uuid.UUID(str(id)),), write=False)
        if row is None:
            raise OrderNotFound(f"order {id} does not exist", sqlstate="P0002")
        return Order.from_json(row[0])

    def save(self, order: Order) -> Order:
        """The order as read, changed: the stored one if nothing changed,
        else the new version.  ConcurrencyConflict if another save came
        first.  The order's fields (and its lines' and address's) are
        stored as given; a generated or identity column must be as read
        (428C9).  A save that changes fields emits order_fields_changed."""
        return Order.from_json(self._one(self._save, (dumps(order.to_json()),))[0])

    def remove(self, id, expected_version: Optional[int] = None) -> Order:
        """The order as it was; ConcurrencyConflict if expected_version is
        given and is not the stored version."""
        return Order.from_json(self._one(self._remove, (uuid.UUID(str(id)), expected_version))[0])

    def next_id(self) -> uuid.UUID:
        return self._one(self._next_id, (), write=False)[0]

    def find(self, spec: Spec = Anything(), page_size: int = 100) -> Iterator[Order]:
        """The orders the specification selects, by id, read a page at a
        time (keyset: each page starts after the last id of the one before)."""
        cond, params = spec.sql()
        after = None
        while True:
            query = sql.SQL(self._find).format(
                s=sql.Identifier(self.schema), cond=sql.SQL(cond),
                after=sql.SQL("" if after is None else " AND o.id OPERATOR(pg_catalog.>) %s"))
            args = params + ([] if after is None else [after]) + [page_size]
            try:
                with self.conn.transaction(), self._cursor() as cur:
                    rows = cur.execute(query, args).fetchall()
            except psycopg.Error as e:
                raise translate(e) from e
            for (j,) in rows:
                yield Order.from_json(j)
            if len(rows) < page_size:
                return
            after = uuid.UUID(rows[-1][0]["id"])


@contextmanager
def unit_of_work(conn: psycopg.Connection, metadata: Optional[dict] = None,
                 idempotency_key: Optional[str] = None):
    """One transaction: committed when the block ends, rolled back when it
    raises.  Repository calls inside it run in savepoints of it.  metadata:
    orders.event_metadata for every event the transaction writes.
    idempotency_key: orders.idempotency_key; run the same block again with
    the same key after an error at commit (a lost connection) and its calls
    return what they returned the first time, writing nothing, if the first
    commit happened."""
    try:
        with conn.transaction():
            set_event_metadata(conn, metadata)
            if idempotency_key is not None:
                conn.execute("SELECT pg_catalog.set_config('orders.idempotency_key', %s, true)",
                             (idempotency_key,))
            yield conn
    except psycopg.Error as e:
        raise translate(e) from e


def retry(fn: Callable[[], T], attempts: int = 10, pause: float = 0.01) -> T:
    """Runs fn until it does not raise ConcurrencyConflict (someone saved the
    order first), at most attempts times; fn re-reads what it changes."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except ConcurrencyConflict:
            if attempt == attempts:
                raise
            time.sleep(pause * attempt * random.random())
    raise AssertionError("unreachable")
