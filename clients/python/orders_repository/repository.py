"""OrderRepository: the aggregate's repository over the orders extension.

Every method is one call of an extension function (or, for find, one
statement over the orders table), run in a transaction of its own when the
connection has none, or in a savepoint of the caller's transaction (so a
refused call leaves the caller's other work standing).  Rows travel as
JSON (to_jsonb / jsonb_populate_record, the extension's own recipe): no
type needs registering, the extension may live in any schema, and the
shop's own columns and attributes travel with the rest, as Order.fields
(a number with a fraction as a Decimal, so that it comes back unchanged).

The source is a psycopg Connection or a psycopg_pool.ConnectionPool.  On a
pool, a call outside a unit of work takes a connection for that call
only; a unit of work (repo.unit_of_work() or unit_of_work(pool)) takes one
for the unit, and every call of every repository on that pool made in the
same thread or task (a context variable) uses it, so that concurrent units
never share a connection.  A task or thread started in the unit (which
copies the context) uses it only while the unit is open: once it ended,
that task's calls take a connection of their own, never the one the unit
gave back to the pool.
"""
from __future__ import annotations

import json
import random
import sys
import time
import uuid
from contextlib import contextmanager
from contextvars import ContextVar
from typing import (TYPE_CHECKING, Any, Callable, Iterable, Iterator, List, Mapping, Optional, Sequence,
                    Tuple, TypeVar, Union)

import psycopg
from psycopg import sql
from psycopg.types.json import set_json_loads

from .errors import ConcurrencyConflict, ExtensionTooOld, OrderNotFound, OrdersError, translate
from .model import (JSON, ORDER_KEYS, Address, Event, IdLike, Order, OrderLine, check_fields, dumps, loads,
                    only_order)
from .specs import Anything, Spec

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

    from .memory import InMemoryOrderRepository, InMemoryStore

T = TypeVar("T")
Connection = psycopg.Connection[Any]
Source = Union[Connection, "ConnectionPool"]

__version__ = "0.2.0"
# The extension release this client is written against: orders_fields_ddl,
# the shop's own fields and their events (1.12).
REQUIRED_EXTENSION_VERSION = "1.12"


def _version(text: str) -> Tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def extension_schema(conn: Connection) -> str:
    """The schema of the extension, checked to be at least
    REQUIRED_EXTENSION_VERSION (ExtensionTooOld)."""
    # in a transaction block of its own: on a connection that is not in
    # autocommit, an implicit transaction left open would turn every later
    # call into a savepoint of it, never committed
    with conn.transaction():
        row = conn.execute("SELECT n.nspname, e.extversion FROM pg_catalog.pg_extension e"
                           " JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace"
                           " WHERE e.extname = 'orders'").fetchone()
    if row is None:
        raise OrdersError("extension \"orders\" is not installed in this database")
    schema, version = str(row[0]), str(row[1])
    if _version(version) < _version(REQUIRED_EXTENSION_VERSION):
        raise ExtensionTooOld(
            f'extension "orders" {version} is older than {REQUIRED_EXTENSION_VERSION},'
            f" which orders-repository {__version__} needs",
            installed=version, required=REQUIRED_EXTENSION_VERSION,
            detail="Run ALTER EXTENSION orders UPDATE in this database.")
    return schema


def is_pool(source: object) -> bool:
    """Whether source is a psycopg_pool.ConnectionPool.  psycopg_pool is
    an optional dependency: a caller holding a pool has imported it, so it
    is looked for among the modules loaded, never imported here."""
    module = sys.modules.get("psycopg_pool")
    return module is not None and isinstance(source, module.ConnectionPool)


class _Binding:
    """A pool's unit of work as the context sees it: its connection, and
    whether the unit is still open.  A task or thread started in the unit
    (asyncio.create_task, contextvars.copy_context) keeps the context after
    the unit has ended, and the connection has gone back to the pool, maybe
    to another unit by now: the unit closes its binding when it ends, and
    a closed one is no unit."""

    __slots__ = ("conn", "open")

    def __init__(self, conn: Connection):
        self.conn = conn
        self.open = True


# The open unit of work of each pool, for this thread or task: concurrent
# units on one pool each have their own connection.
_bound: ContextVar[Tuple[Tuple[object, _Binding], ...]] = ContextVar("orders_pool_units", default=())


def _bound_connection(pool: object) -> Optional[Connection]:
    for p, binding in _bound.get():
        if p is pool and binding.open:
            return binding.conn
    return None


@contextmanager
def _connection(source: Source) -> Iterator[Connection]:
    """The connection a call runs on: the connection given, or the pool's
    connection of the unit of work open in this context, or one taken for
    this call only."""
    if isinstance(source, psycopg.Connection):
        yield source
        return
    bound = _bound_connection(source)
    if bound is not None:
        yield bound
        return
    with source.connection() as conn:
        yield conn


def _check_source(source: object) -> None:
    """A clear error for a source of another kind (a dsn, an async
    connection), rather than an attribute missing later."""
    if not isinstance(source, psycopg.Connection) and not is_pool(source):
        raise TypeError(f"a psycopg Connection or a psycopg_pool.ConnectionPool is needed, not "
                        f"{type(source).__name__}")


# what an event row is read as: the extension's columns, by name
EVENT_COLUMNS = "position, type, order_id, version, payload, occurred_at, id, metadata"


def event_from_row(row: Sequence[Any]) -> Event:
    position, type_, order_id, version, payload, occurred_at, id_, metadata = row
    return Event(position, type_, uuid.UUID(str(order_id)), version, payload, occurred_at,
                 None if id_ is None else uuid.UUID(str(id_)), metadata)


def set_event_metadata(conn: Connection, metadata: Optional[JSON]) -> None:
    """orders.event_metadata for the rest of the transaction conn is in."""
    if metadata is not None:
        conn.execute("SELECT pg_catalog.set_config('orders.event_metadata', %s, true)",
                     (json.dumps(metadata),))


def _lines_json(lines: Iterable[OrderLine]) -> List[JSON]:
    return [l.to_json(f"lines[{i}].") for i, l in enumerate(lines, 1)]


def _fields_json(fields: Optional[Mapping[str, Any]]) -> Optional[JSON]:
    """add's fields, checked as the extension checks them: none named as
    one of its own columns."""
    if fields is None:
        return None
    check_fields(fields, ORDER_KEYS, "fields.", "column")
    return dict(fields)


def _order_json(o: Mapping[str, Any]) -> JSON:
    """One order of add_many: a dict with add's arguments as keys."""
    fields = _fields_json(o.get("fields"))
    j: JSON = {"customer_id": str(o["customer_id"]), "currency": o["currency"],
               "lines": _lines_json(o.get("lines", ()))}
    if o.get("shipping_address") is not None:
        j["shipping_address"] = o["shipping_address"].to_json()
    if o.get("id") is not None:
        j["id"] = str(o["id"])
    if fields is not None:
        j["fields"] = fields
    return j


class OrderRepository:
    """source: a psycopg Connection, or a psycopg_pool.ConnectionPool (see
    the module's docstring).  metadata: orders.event_metadata (correlation
    id, causation id, actor, trace context ...) that every event this
    repository's writes emit carries, in place of a unit of work's for
    those writes; unit_of_work(metadata=...) sets it for a whole
    transaction."""

    def __init__(self, source: Source, schema: Optional[str] = None, metadata: Optional[JSON] = None):
        _check_source(source)
        self.source: Source = source
        # the connection given, as before pools; None on a pool
        self.conn: Optional[Connection] = source if isinstance(source, psycopg.Connection) else None
        if schema is None:
            with _connection(source) as conn:
                schema = extension_schema(conn)
        self.schema = schema
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

    @contextmanager
    def unit_of_work(self, metadata: Optional[JSON] = None,
                     idempotency_key: Optional[str] = None) -> Iterator["OrderRepository"]:
        """unit_of_work() on this repository's connection or pool, yielding
        the repository: a domain service written against the repository
        runs unchanged on InMemoryOrderRepository."""
        with unit_of_work(self.source, metadata, idempotency_key):
            yield self

    @staticmethod
    def _cursor(conn: Connection, exact: bool = True) -> psycopg.Cursor[Any]:
        """A cursor of the connection; exact: its JSON read as the
        repository writes it (model.loads), so that an order's fields make
        the round trip to save unchanged."""
        cur = conn.cursor()
        if exact:
            set_json_loads(loads, cur)
        return cur

    def _all(self, query: sql.Composed, params: Sequence[Any], write: bool = False,
             exact: bool = True) -> List[Tuple[Any, ...]]:
        try:
            with _connection(self.source) as conn:
                in_unit = conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
                with conn.transaction():
                    previous = None
                    if write and self.metadata is not None and in_unit:
                        # the repository's metadata for this call only: set
                        # in a savepoint that is released, it would stay for
                        # the rest of the unit, for other repositories' writes
                        row = conn.execute("SELECT pg_catalog.current_setting('orders.event_metadata', true),"
                                           " pg_catalog.set_config('orders.event_metadata', %s, true)",
                                           (json.dumps(self.metadata),)).fetchone()
                        previous = "" if row is None or row[0] is None else str(row[0])
                    elif write:
                        set_event_metadata(conn, self.metadata)
                    with self._cursor(conn, exact) as cur:
                        rows = cur.execute(query, params).fetchall()
                    if previous is not None:
                        conn.execute("SELECT pg_catalog.set_config('orders.event_metadata', %s, true)",
                                     (previous,))
                    return rows
        except psycopg.Error as e:
            raise translate(e) from e

    def _one(self, query: sql.Composed, params: Sequence[Any], write: bool = True) -> Tuple[Any, ...]:
        rows = self._all(query, params, write)
        if not rows:        # the extension's writes raise rather than return nothing
            raise OrdersError("the extension returned no row")
        return rows[0]

    def add(self, customer_id: Union[Order, IdLike], currency: Optional[str] = None,
            lines: Iterable[OrderLine] = (), shipping_address: Optional[Address] = None,
            id: Optional[IdLike] = None, *, fields: Optional[Mapping[str, Any]] = None) -> Order:
        """A new pending order: an Order built in the domain (Order.new),
        alone, added with its id and fields (its status, version, total
        and times are the repository's), or its parts.  fields: the shop's
        own columns of orders, by name (extension 1.12), each a JSON value
        that the column type's input function reads as text (a date as
        "2027-03-01" or a date; a json/jsonb column takes any JSON value); a
        column not given takes its default.  The extension refuses a name
        that is no column (42703), one of its own (22023) or a generated one
        (428C9), and checks the table's CHECK constraints
        (InvariantViolation, rule the constraint's name).  A quantity or
        unit price that is not an int is refused before anything is sent
        (InvariantViolation, rule not_integer)."""
        if isinstance(customer_id, Order):
            o = only_order(customer_id, currency, lines, shipping_address, id, fields)
            customer_id, currency, lines, shipping_address, id = (
                o.customer_id, o.currency, o.lines, o.shipping_address, o.id)
            fields = o.fields or None
        given = _fields_json(fields)
        row = self._one(self._add, (
            None if customer_id is None else uuid.UUID(str(customer_id)), currency, dumps(_lines_json(lines)),
            None if shipping_address is None else dumps(shipping_address.to_json()),
            None if id is None else uuid.UUID(str(id)), None if given is None else dumps(given)))
        return Order.from_json(row[0])

    def add_many(self, orders: Iterable[Mapping[str, Any]]) -> List[Order]:
        """Many new orders in one call: each a dict with add's arguments as
        keys (customer_id, currency, lines, shipping_address, id, fields).
        All or none are added; an error's index is the offending order's."""
        given = []
        for i, o in enumerate(orders):
            try:
                given.append(_order_json(o))
            except OrdersError as e:
                e.index = i
                raise
        rows = self._all(self._add_many, (dumps(given),), write=True)
        return [Order.from_json(r[0]) for r in rows]

    def events_of(self, id: IdLike, after_version: int = 0) -> List[Event]:
        """The order's events after after_version, in version order (events
        purged from the outbox are gone)."""
        return [event_from_row(r) for r in self._all(self._events_of, (uuid.UUID(str(id)), after_version),
                                                     exact=False)]

    def get(self, id: IdLike) -> Order:
        rows = self._all(self._get, (uuid.UUID(str(id)),))
        if not rows:
            raise OrderNotFound(f"order {id} does not exist", sqlstate="P0002")
        return Order.from_json(rows[0][0])

    def save(self, order: Order) -> Order:
        """The order as read, changed: the stored one if nothing changed,
        else the new version.  ConcurrencyConflict if another save came
        first.  The order's fields (and its lines' and address's) are
        stored as given; a generated or identity column must be as read
        (428C9).  A save that changes fields emits order_fields_changed."""
        return Order.from_json(self._one(self._save, (dumps(order.to_json()),))[0])

    def remove(self, id: Union[Order, IdLike], expected_version: Optional[int] = None) -> Order:
        """The order as it was.  Given an Order, its version is the one
        expected (optimistic, as save); given an id, ConcurrencyConflict
        only if expected_version is given and is not the stored version."""
        if isinstance(id, Order):
            if expected_version is None:
                expected_version = id.version
            id = id.id
        return Order.from_json(self._one(self._remove, (uuid.UUID(str(id)), expected_version))[0])

    def next_id(self) -> uuid.UUID:
        value = self._one(self._next_id, (), write=False)[0]
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))

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
            rows = self._all(query, args)
            for (j,) in rows:
                yield Order.from_json(j)
            if len(rows) < page_size:
                return
            after = uuid.UUID(rows[-1][0]["id"])


UnitSource = Union[Connection, "ConnectionPool", OrderRepository, "InMemoryStore", "InMemoryOrderRepository"]


@contextmanager
def unit_of_work(source: UnitSource, metadata: Optional[JSON] = None,
                 idempotency_key: Optional[str] = None) -> Iterator[Any]:
    """One transaction: committed when the block ends, rolled back when it
    raises; nested, a savepoint.  Repository calls inside it run in
    savepoints of it.  source: a connection (yielded), a pool (the unit
    takes one of its connections, yielded, which every repository on the
    pool uses in this thread or task until the unit ends), a repository
    (yielded), or the twin: an InMemoryStore or InMemoryOrderRepository
    (yielded).  metadata: orders.event_metadata for every event the
    transaction writes.  idempotency_key: orders.idempotency_key; run the
    same block again with the same key after an error at commit (a lost
    connection) and its calls return what they returned the first time,
    writing nothing, if the first commit happened."""
    from .memory import InMemoryOrderRepository, InMemoryStore
    if isinstance(source, (InMemoryStore, InMemoryOrderRepository, OrderRepository)):
        with source.unit_of_work(metadata, idempotency_key) as unit:
            yield unit
        return
    if isinstance(source, psycopg.Connection):
        with _transaction(source, metadata, idempotency_key):
            yield source
        return
    _check_source(source)
    bound = _bound_connection(source)
    if bound is not None:           # nested: a savepoint of the unit's connection
        with _transaction(bound, metadata, idempotency_key):
            yield bound
        return
    with source.connection() as conn:
        binding = _Binding(conn)
        # the bindings of this pool that ended (closed) are dropped
        token = _bound.set(tuple(b for b in _bound.get() if b[1].open) + ((source, binding),))
        try:
            with _transaction(conn, metadata, idempotency_key):
                yield conn
        finally:
            binding.open = False
            _bound.reset(token)


@contextmanager
def _transaction(conn: Connection, metadata: Optional[JSON], idempotency_key: Optional[str]) -> Iterator[None]:
    try:
        nested = conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
        with conn.transaction():
            previous = None
            if nested and metadata is not None:
                # a nested unit's metadata for the nested unit only: set in
                # a savepoint that is released, it would stay for the rest
                # of the outer unit; put back before the release (a
                # rollback to the savepoint undoes it by itself)
                row = conn.execute("SELECT pg_catalog.current_setting('orders.event_metadata', true),"
                                   " pg_catalog.set_config('orders.event_metadata', %s, true)",
                                   (json.dumps(metadata),)).fetchone()
                previous = "" if row is None or row[0] is None else str(row[0])
            else:
                set_event_metadata(conn, metadata)
            if idempotency_key is not None:
                conn.execute("SELECT pg_catalog.set_config('orders.idempotency_key', %s, true)",
                             (idempotency_key,))
            yield
            if previous is not None:
                conn.execute("SELECT pg_catalog.set_config('orders.event_metadata', %s, true)", (previous,))
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
