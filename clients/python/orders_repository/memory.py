"""InMemoryOrderRepository: the repository's interface and semantics with no
database, for unit tests of domain code: the same rules, the same
exceptions (rule names as the extension's constraints), versions and
removal as the extension keeps them, the events each write emits, in the
extension's order and with its payloads, units of work, and a consumer of
those events (InMemoryEventConsumer).  tests/test_contract.py runs the same
cases against both.

InMemoryStore is the twin's database: repositories and consumers made on
one store see one set of orders and one outbox, as connections to one
database do.  A unit of work (store.unit_of_work(), repo.unit_of_work(),
or unit_of_work(store)) is a transaction of it: its writes are seen by its
own reads only, until it commits; each call in it is a savepoint; a
nested unit is a savepoint.  The unit is the current one of the thread or
task that opened it (a context variable), as the real repository's is on
a pool.

What the twin does differently, and why:
- Two open units writing the same order: PostgreSQL makes the second wait
  for the first's row lock, then fails it (40001) if the first committed.
  One thread cannot wait for itself, so the twin fails the second at once
  (ConcurrencyConflict for a save or remove, DuplicateOrder for an add of
  an id another open unit added), even if the first would roll back.
- idempotency_key is accepted and ignored: the twin loses no commit, so
  there is nothing to replay.
- A consumer group is read by one member, the InMemoryEventConsumer,
  which reads every part; its holds are per part ("name/<part>") as the
  extension's.

The shop's own fields (Order.fields, and each line's and address's) are
stored as given, returned by get, and compared by save, which emits
order_fields_changed with the ones that changed, as the extension does.
The twin knows nothing of the shop's DDL, so it enforces nothing it cannot
know: it evaluates no CHECK constraint, converts no value to its column's
type (a "2" stays a string), fills no default, computes no generated or
identity column, and accepts a name that is no column (the extension
refuses it, 42703).  A field the extension would fill or convert is
therefore absent or as given here: assert on the fields you give.  It does
refuse, as the extension does, a field named as one of the extension's own
columns or attributes (22023)."""
from __future__ import annotations

import json
import re
import threading
import time
import uuid
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple,
                    TypeVar, Union)

from .errors import (ConcurrencyConflict, DuplicateOrder, InvariantViolation, OrderNotFound, OrdersError,
                     field_detail)
from .handling import HandlerFailed, Hold, Reject, retry_at
from .model import (ADDRESS_KEYS, JSON, LINE_KEYS, ORDER_KEYS, Address, Event, Fields, IdLike, Order, OrderLine,
                    Status, check_fields, check_integers, dumps, line_out_of_range, loads, only_order, uuid7)
from .specs import Anything, Spec

T = TypeVar("T")
Clock = Callable[[], datetime]

_NEXT: Dict[Status, Set[Status]] = {Status.PENDING: {Status.CONFIRMED, Status.CANCELLED},
         Status.CONFIRMED: {Status.SHIPPED, Status.CANCELLED},
         Status.SHIPPED: {Status.DELIVERED},
         Status.DELIVERED: set(), Status.CANCELLED: set()}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# the extension's longest orders.event_metadata, in bytes (src/orders.h)
EVENT_METADATA_MAX = 8192
# the extension's orders_event_types() at 1.12, which a consumer's types are checked against
EVENT_TYPES = ("order_added", "order_lines_changed", "order_shipping_address_changed", "order_confirmed",
               "order_shipped", "order_delivered", "order_cancelled", "order_removed", "order_fields_changed")


# Errors as the extension raises them: the failing field's path, and the
# detail's first sentence that gives it (the extension's explanation that
# follows is not repeated here).
def _violation(message: str, rule: str, path: str, value: Optional[str] = None) -> InvariantViolation:
    return InvariantViolation(message, rule, path=path, value=value, sqlstate="23514", constraint=rule,
                              detail=field_detail(path))


def _not_null(path: str) -> InvariantViolation:
    return InvariantViolation(f"{path} must not be null", "not_null", path=path, sqlstate="23502",
                              detail=field_detail(path))


def _conflict() -> ConcurrencyConflict:
    return ConcurrencyConflict("order was changed by someone else", sqlstate="40001", path="version",
                               detail=field_detail("version"))


def _check_text(value: str, path: str, rule: str, limit: int) -> None:
    if not 1 <= len(value) <= limit or _CONTROL.search(value):
        raise _violation(f"{path} must be 1 to {limit} characters without control characters", rule,
                         path)


def _check(order_lines: Sequence[OrderLine], currency: Optional[str], address: Optional[Address]) -> int:
    if currency is None:
        raise _not_null("currency")
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise _violation("currency must be three upper-case ASCII letters", "order_currency_format",
                         "currency", currency)
    if len(order_lines) > 1000:
        raise _violation("too many lines", "order_lines_max", "lines")
    first_line: Dict[uuid.UUID, int] = {}
    twice = []
    total = 0
    for i, line in enumerate(order_lines, 1):
        # as the extension: a line's NULLs first, then its text, then ranges
        for name in ("product_id", "product_name", "quantity", "unit_price"):
            if getattr(line, name) is None:
                raise _not_null(f"lines[{i}].{name}")
        _check_text(line.product_name, f"lines[{i}].product_name", "order_line_product_name", 200)
        if not 1 <= line.quantity <= 1_000_000:
            raise line_out_of_range(f"lines[{i}].", "quantity", line.quantity)
        if not 0 <= line.unit_price <= 100_000_000_000:
            raise line_out_of_range(f"lines[{i}].", "unit_price", line.unit_price)
        total += line.quantity * line.unit_price
        if total > 2**63 - 1:
            raise InvariantViolation("total is out of range for type bigint", "out_of_range", path="total",
                                     sqlstate="22003", detail=field_detail("total"))
        if line.product_id in first_line:
            twice.append((line.product_id, i))
        else:
            first_line[line.product_id] = i
    if twice:
        # after every line, as the extension: the lowest product id that is
        # twice, at its second line
        product_id, i = min(twice)
        raise _violation(f"product {product_id} appears in more than one line",
                         "order_line_product_unique", f"lines[{i}].product_id")
    if address is not None:
        for name in ("street", "city", "postal_code", "country"):     # every field's NULL first
            if getattr(address, name) is None:
                raise _not_null(f"shipping_address.{name}")
        for name, limit in (("street", 200), ("city", 100), ("postal_code", 20)):
            _check_text(getattr(address, name), f"shipping_address.{name}", "order_address_fields", limit)
        if not re.fullmatch(r"[A-Z]{2}", address.country or ""):
            raise _violation("shipping_address.country must be two upper-case ASCII letters",
                             "order_address_fields", "shipping_address.country", address.country)
    return total


def _stored_fields(fields: Mapping[str, Any], own: Tuple[str, ...], path: str, kind: str) -> Fields:
    """fields as the real repository would send and read them back: checked
    for our names, through JSON (a date as its text, a Decimal whole), a
    copy that shares nothing with the caller's."""
    check_fields(fields, own, path, kind)
    return Fields(loads(dumps(dict(fields))))


def _stored_lines(lines: Iterable[OrderLine]) -> Tuple[OrderLine, ...]:
    # in the real repository's order: each line's integers and names as its
    # JSON is built, before anything reaches the server's rules
    stored = []
    for i, l in enumerate(lines, 1):
        check_integers(l, f"lines[{i}].")
        stored.append(replace(l, fields=_stored_fields(l.fields, LINE_KEYS, f"lines[{i}].fields.",
                                                       "attribute of a line")))
    return tuple(stored)


def _stored_address(address: Optional[Address]) -> Optional[Address]:
    if address is None:
        return None
    return replace(address, fields=_stored_fields(address.fields, ADDRESS_KEYS, "shipping_address.fields.",
                                                  "attribute of an address"))


_Part = TypeVar("_Part", OrderLine, Address)


def _without_nulls(o: Optional[_Part]) -> Optional[_Part]:
    """A line or an address to compare: a field that is None is no field,
    as a NULL attribute is."""
    return None if o is None else replace(o, fields={k: v for k, v in o.fields.items() if v is not None})


def _payload(value: JSON) -> JSON:
    """An event's payload as the real repository reads it: plain JSON."""
    result: JSON = json.loads(dumps(value))
    return result


def _check_ready(order_lines: Sequence[OrderLine], address: Optional[Address], status: Status) -> None:
    if status not in (Status.PENDING, Status.CANCELLED) and (not order_lines or address is None):
        raise _violation(f'an order with status "{status.value}" needs lines and a shipping address',
                         "order_ready_to_confirm", "lines" if not order_lines else "shipping_address")


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & 0xFFFFFFFF


def _mix(a: int, b: int, c: int) -> Tuple[int, int, int]:
    m = 0xFFFFFFFF
    a = (a - c) & m; a ^= _rot(c, 4); c = (c + b) & m          # noqa: E702
    b = (b - a) & m; b ^= _rot(a, 6); a = (a + c) & m          # noqa: E702
    c = (c - b) & m; c ^= _rot(b, 8); b = (b + a) & m          # noqa: E702
    a = (a - c) & m; a ^= _rot(c, 16); c = (c + b) & m         # noqa: E702
    b = (b - a) & m; b ^= _rot(a, 19); a = (a + c) & m         # noqa: E702
    c = (c - b) & m; c ^= _rot(b, 4); b = (b + a) & m          # noqa: E702
    return a, b, c


def event_part(order_id: uuid.UUID) -> int:
    """The extension's orders_event_part(order_id): the low four bits of
    PostgreSQL's uuid_hash_extended(order_id, 0), Bob Jenkins' lookup3 over
    the 16 bytes as PostgreSQL's hash_bytes_extended computes it on a
    little-endian machine, so that the twin's group holds are the parts the
    extension would name."""
    m = 0xFFFFFFFF
    w = [int.from_bytes(order_id.bytes[i:i + 4], "little") for i in range(0, 16, 4)]
    a = b = c = (0x9E3779B9 + 16 + 3923095) & m
    a, b, c = _mix((a + w[0]) & m, (b + w[1]) & m, (c + w[2]) & m)
    a = (a + w[3]) & m
    c ^= b; c = (c - _rot(b, 14)) & m       # noqa: E702
    a ^= c; a = (a - _rot(c, 11)) & m       # noqa: E702
    b ^= a; b = (b - _rot(a, 25)) & m       # noqa: E702
    c ^= b; c = (c - _rot(b, 16)) & m       # noqa: E702
    a ^= c; a = (a - _rot(c, 4)) & m        # noqa: E702
    b ^= a; b = (b - _rot(a, 14)) & m       # noqa: E702
    c ^= b; c = (c - _rot(b, 24)) & m       # noqa: E702
    return c & 15


class _Unit:
    """An open transaction of the twin: what it wrote, over the committed
    state, until it commits.  orders: each order it wrote, None once
    removed; added: the ids it used; events: what it emitted, positions
    taken from the store's counter as it wrote them; now: its time, taken
    once at its start, as the extension stamps created_at, updated_at and
    occurred_at with the transaction's start time."""

    def __init__(self, metadata: Optional[JSON], now: datetime):
        self.now = now
        self.orders: Dict[uuid.UUID, Optional[Order]] = {}
        self.added: Set[uuid.UUID] = set()
        self.events: List[Event] = []
        self.metadata = metadata
        # False once committed or rolled back: a task or thread started in
        # the unit keeps the context after it ended, and its calls are then
        # in no unit, not in this dead one
        self.open = True

    def mark(self) -> Tuple[Dict[uuid.UUID, Optional[Order]], Set[uuid.UUID], List[Event], Optional[JSON]]:
        """A savepoint."""
        return dict(self.orders), set(self.added), list(self.events), self.metadata

    def restore(self, mark: Tuple[Dict[uuid.UUID, Optional[Order]], Set[uuid.UUID], List[Event],
                                  Optional[JSON]]) -> None:
        """Rolls back to a savepoint: the positions its events took stay
        taken, as a sequence's do."""
        self.orders, self.added, self.events, self.metadata = dict(mark[0]), set(mark[1]), list(mark[2]), mark[3]


@dataclass
class _HoldState:
    """One row of the extension's order_event_holds."""
    order_id: uuid.UUID
    position: int
    later: List[int]
    attempts: int
    reason: Optional[str]
    failed_at: Optional[datetime]
    retry_at: Optional[datetime]
    parked_at: Optional[datetime]
    delivered: bool = False


@dataclass
class _ConsumerState:
    """A consumer's checkpoint, as the extension keeps it: not a position
    but a snapshot, here the number of the last commit it has read through
    (acked); the batch open, the commits up to batch, read in position
    order and acknowledged through batch_position."""
    acked: int
    batch: Optional[int] = None
    batch_position: int = 0
    holds: Dict[uuid.UUID, _HoldState] = field(default_factory=dict)


# The twin's open unit of each store, for this thread or task.
_current: ContextVar[Tuple[Tuple["InMemoryStore", _Unit], ...]] = ContextVar("orders_twin_units", default=())


class InMemoryStore:
    """The twin's database: the orders, the ids used, the outbox and its
    consumers' checkpoints and holds, shared by the repositories and
    consumers made on it.  clock: returns the current aware datetime, for
    created_at, updated_at, occurred_at (read once at the start of each
    outermost unit of work, a call outside one being a unit of its own: a
    unit's writes all have its start time, as the extension's have their
    transaction's) and the holds' times (default: real time); a test moves
    it to make a rejected event due."""

    def __init__(self, clock: Optional[Clock] = None):
        self.clock: Clock = clock or (lambda: datetime.now(timezone.utc))
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        # counts _wake(): a consumer that read nothing waits only if none
        # came since it began to read (a wake-up while it was not waiting
        # is not lost)
        self._wakes = 0
        self._orders: Dict[uuid.UUID, Order] = {}
        self._used: Set[uuid.UUID] = set()
        self._events: List[Event] = []       # committed, by position
        self._position = 0
        # the commit each committed event's unit was, numbered in commit order
        self._commit_of: Dict[int, int] = {}
        self._commits = 0
        self._open: List[_Unit] = []
        self._consumers: Dict[str, _ConsumerState] = {}

    # -- transactions

    def _unit(self) -> Optional[_Unit]:
        for store, unit in _current.get():
            if store is self and unit.open:
                return unit
        return None

    @contextmanager
    def unit_of_work(self, metadata: Optional[JSON] = None,
                     idempotency_key: Optional[str] = None) -> Iterator["InMemoryStore"]:
        """A transaction, as unit_of_work() over the extension: committed
        when the block ends, undone when it raises; nested, a savepoint.
        metadata: carried by every event the unit writes (a repository's
        own metadata wins for its writes, as it does over the extension).
        idempotency_key: accepted, and ignored: the twin loses no commit."""
        del idempotency_key
        unit = self._unit()
        if unit is not None:
            with self._lock:
                mark = unit.mark()
                if metadata is not None:
                    unit.metadata = metadata
            try:
                yield self
            except BaseException:
                with self._lock:
                    unit.restore(mark)
                raise
            with self._lock:
                unit.metadata = mark[3]     # the nested unit's metadata ends with it
            return
        unit = _Unit(metadata, self.clock())
        with self._lock:
            self._open.append(unit)
        token = _current.set(_current.get() + ((self, unit),))
        try:
            yield self
        except BaseException:
            self._end(unit, commit=False)
            raise
        else:
            self._end(unit, commit=True)
        finally:
            _current.reset(token)

    def _end(self, unit: _Unit, commit: bool) -> None:
        with self._lock:
            self._open.remove(unit)
            unit.open = False
            if commit:
                for oid, order in unit.orders.items():
                    if order is None:
                        self._orders.pop(oid, None)
                    else:
                        self._orders[oid] = order
                self._used |= unit.added
                if unit.events:
                    self._commits += 1
                    for e in unit.events:
                        self._commit_of[e.position] = self._commits
                    self._events = sorted(self._events + unit.events, key=lambda e: e.position)
            self._wake()

    def _wake(self) -> None:
        """Wakes the consumers waiting (the lock held)."""
        self._wakes += 1
        self._changed.notify_all()

    def _write(self, fn: Callable[[_Unit], T]) -> T:
        """fn in a savepoint of the open unit, or in a unit of its own."""
        with self._lock:
            unit = self._unit()
            if unit is None:
                unit = _Unit(None, self.clock())
                self._open.append(unit)
                try:
                    result = fn(unit)
                except BaseException:
                    self._end(unit, commit=False)
                    raise
                self._end(unit, commit=True)
                return result
            mark = unit.mark()
            try:
                return fn(unit)
            except BaseException:
                unit.restore(mark)
                raise

    # -- what a unit sees

    def _get(self, unit: Optional[_Unit], oid: uuid.UUID) -> Optional[Order]:
        if unit is not None and oid in unit.orders:
            return unit.orders[oid]
        return self._orders.get(oid)

    def _visible_orders(self, unit: Optional[_Unit]) -> Dict[uuid.UUID, Order]:
        orders = dict(self._orders)
        if unit is not None:
            for oid, order in unit.orders.items():
                if order is None:
                    orders.pop(oid, None)
                else:
                    orders[oid] = order
        return orders

    def _written_elsewhere(self, unit: _Unit, oid: uuid.UUID) -> bool:
        return any(oid in other.orders for other in self._open if other is not unit)

    def _added_elsewhere(self, unit: _Unit, oid: uuid.UUID) -> bool:
        return any(oid in other.added for other in self._open if other is not unit)

    def _emit(self, unit: _Unit, type_: str, order: Order, version: int, payload: JSON, now: datetime,
              metadata: Optional[JSON]) -> None:
        effective = metadata if metadata is not None else unit.metadata
        # the extension's limit, on the text the real repository sets
        length = 0 if effective is None else len(json.dumps(effective).encode())
        if length > EVENT_METADATA_MAX:
            raise OrdersError(f"orders.event_metadata is too long ({length} bytes)", sqlstate="54000",
                              detail=f"Every event the transaction writes carries it: at most {EVENT_METADATA_MAX}"
                                     " bytes are allowed.")
        self._position += 1
        unit.events.append(Event(self._position, type_, order.id, version, _payload(payload), now, uuid.uuid4(),
                                 None if effective is None else json.loads(json.dumps(effective))))

    # -- consumers

    def _consumer(self, name: str) -> _ConsumerState:
        try:
            return self._consumers[name]
        except KeyError:
            raise OrdersError(f'consumer "{name}" is not registered', sqlstate="P0002") from None

    def _register(self, name: str, from_start: bool) -> None:
        with self._lock:
            if name not in self._consumers:
                self._consumers[name] = _ConsumerState(0 if from_start else self._commits)

    def _in_batch(self, state: _ConsumerState, e: Event) -> bool:
        """Whether e is of the consumer's open batch: committed after its
        checkpoint and by the batch's snapshot."""
        assert state.batch is not None
        return state.acked < self._commit_of[e.position] <= state.batch

    def _hold_next(self, state: _ConsumerState, h: _HoldState) -> None:
        """The held event is done with: the next one waiting is held in its
        place, due at once; none waiting, the order is held no more."""
        if h.later:
            h.position, h.later = h.later[0], h.later[1:]
            h.attempts, h.reason, h.failed_at, h.parked_at, h.delivered = 0, None, None, None, False
            h.retry_at = self.clock()
        else:
            del state.holds[h.order_id]

    def _event_at(self, position: int) -> Optional[Event]:
        for e in self._events:
            if e.position == position:
                return e
        return None


class InMemoryOrderRepository:
    """The repository over an InMemoryStore (a new one of its own by
    default).  metadata: carried by every event this repository's writes
    emit, as the real repository's.  For the shop's fields, see the
    module's docstring: stored and compared, never checked."""

    def __init__(self, store: Optional[InMemoryStore] = None, metadata: Optional[JSON] = None):
        self.store = store if store is not None else InMemoryStore()
        self.metadata = metadata

    @contextmanager
    def unit_of_work(self, metadata: Optional[JSON] = None,
                     idempotency_key: Optional[str] = None) -> Iterator["InMemoryOrderRepository"]:
        """A unit of work of the store (InMemoryStore.unit_of_work),
        yielding this repository."""
        with self.store.unit_of_work(metadata, idempotency_key):
            yield self

    @staticmethod
    def _now(unit: _Unit) -> datetime:
        """A write's time: its unit's, the same for all its writes."""
        return unit.now

    def _add(self, unit: _Unit, customer_id: Optional[IdLike], currency: Optional[str],
             lines: Iterable[OrderLine], shipping_address: Optional[Address], id: Optional[IdLike],
             fields: Optional[Mapping[str, Any]]) -> Order:
        store = self.store
        stored_fields = _stored_fields(fields or {}, ORDER_KEYS, "fields.", "column")
        stored_lines = _stored_lines(lines)
        address = _stored_address(shipping_address)
        if customer_id is None:
            raise _not_null("customer_id")
        total = _check(stored_lines, currency, address)
        assert currency is not None
        oid = uuid7() if id is None else uuid.UUID(str(id))
        if store._get(unit, oid) is not None or store._added_elsewhere(unit, oid):
            raise DuplicateOrder(f"order {oid} already exists", sqlstate="23505", constraint="orders_pkey")
        if oid in store._used or oid in unit.added:
            raise DuplicateOrder(f"order id {oid} was used before", sqlstate="23505",
                                 constraint="orders_id_not_reused")
        now = self._now(unit)
        order = Order(oid, uuid.UUID(str(customer_id)), Status.PENDING, currency, stored_lines, address,
                      total, 1, now, now, stored_fields)
        unit.orders[oid] = order
        unit.added.add(oid)
        store._emit(unit, "order_added", order, 1, order.to_json(), now, self.metadata)
        return order

    def add(self, customer_id: Union[Order, IdLike], currency: Optional[str] = None,
            lines: Iterable[OrderLine] = (), shipping_address: Optional[Address] = None,
            id: Optional[IdLike] = None, *, fields: Optional[Mapping[str, Any]] = None) -> Order:
        """As OrderRepository.add: an Order (Order.new) or its parts."""
        if isinstance(customer_id, Order):
            o = only_order(customer_id, currency, lines, shipping_address, id, fields)
            return self.store._write(lambda unit: self._add(unit, o.customer_id, o.currency, o.lines,
                                                            o.shipping_address, o.id, o.fields))
        cid = customer_id
        return self.store._write(lambda unit: self._add(unit, cid, currency, lines, shipping_address, id, fields))

    def add_many(self, orders: Iterable[Mapping[str, Any]]) -> List[Order]:
        """All or none, as the extension's orders_add_many: an error carries
        the offending order's index."""
        orders = list(orders)

        def all_of(unit: _Unit) -> List[Order]:
            added = []
            for i, o in enumerate(orders):
                try:
                    added.append(self._add(unit, o["customer_id"], o["currency"], o.get("lines", ()),
                                           o.get("shipping_address"), o.get("id"), o.get("fields")))
                except OrdersError as e:
                    e.index = i
                    raise
            return added
        return self.store._write(all_of)

    def get(self, id: IdLike) -> Order:
        with self.store._lock:
            order = self.store._get(self.store._unit(), uuid.UUID(str(id)))
        if order is None:
            raise OrderNotFound(f"order {id} does not exist", sqlstate="P0002")
        return order

    def events_of(self, id: IdLike, after_version: int = 0) -> List[Event]:
        """The order's events after after_version, in version order (a
        removed order's too); in a unit, its own among them."""
        oid = uuid.UUID(str(id))
        with self.store._lock:
            unit = self.store._unit()
            events = self.store._events + (unit.events if unit is not None else [])
        return sorted((e for e in events if e.order_id == oid and e.version > after_version),
                      key=lambda e: e.position)

    def _stored(self, unit: _Unit, oid: uuid.UUID) -> Order:
        order = self.store._get(unit, oid)
        if order is None:
            raise OrderNotFound(f"order {oid} does not exist", sqlstate="P0002")
        if self.store._written_elsewhere(unit, oid):
            # PostgreSQL would wait for the other unit's lock; see the module's docstring
            raise _conflict()
        return order

    def save(self, order: Order) -> Order:
        return self.store._write(lambda unit: self._save(unit, order))

    def _save(self, unit: _Unit, order: Order) -> Order:
        # in the extension's order: the new state's fields, then against the
        # stored order: version, immutable fields, the status step, readiness,
        # what is frozen
        given_fields = _stored_fields(order.fields, ORDER_KEYS, "fields.", "column")
        lines = _stored_lines(order.lines)
        address = _stored_address(order.shipping_address)
        total = _check(lines, order.currency, address)
        stored = self._stored(unit, order.id)
        if order.version != stored.version:
            raise _conflict()
        for name in ("customer_id", "currency"):
            if getattr(order, name) != getattr(stored, name):
                raise _violation(f"{name} cannot change", "order_immutable_fields", name)
        status = Status(order.status)
        if status != stored.status and status not in _NEXT[stored.status]:
            raise _violation(f'status cannot move from "{stored.status.value}" to "{status.value}"',
                             "order_status_transition", "status")
        _check_ready(lines, address, status)
        lines_changed = [_without_nulls(l) for l in lines] != [_without_nulls(l) for l in stored.lines]
        address_changed = _without_nulls(address) != _without_nulls(stored.shipping_address)
        if lines_changed and stored.status != Status.PENDING:
            raise _violation("lines can change only while the order is pending",
                             "order_frozen_after_confirm", "lines", stored.status.value)
        if address_changed and stored.status not in (Status.PENDING, Status.CONFIRMED):
            raise _violation("shipping_address can change only while the order is pending or confirmed",
                             "order_frozen_after_confirm", "shipping_address", stored.status.value)
        # the whole row is saved: a field left out is NULL, as the stored
        # one not given is in the extension (where every column is given)
        fields = Fields({**{name: None for name in stored.fields}, **given_fields})
        changed = {name: value for name, value in fields.items() if stored.fields.get(name) != value}
        if not lines_changed and not address_changed and not changed and status == stored.status:
            return stored
        now = self._now(unit)
        saved = replace(stored, status=status, lines=lines, shipping_address=address, total=total,
                        version=stored.version + 1, updated_at=now, fields=fields)
        unit.orders[order.id] = saved
        emit = self.store._emit
        # one save's events, in the extension's order, all with the new version
        if lines_changed:
            emit(unit, "order_lines_changed", saved, saved.version,
                 {"lines": [l.to_json() for l in lines], "total": total}, now, self.metadata)
        if address_changed:
            emit(unit, "order_shipping_address_changed", saved, saved.version,
                 {"shipping_address": None if address is None else address.to_json()}, now, self.metadata)
        if changed:
            emit(unit, "order_fields_changed", saved, saved.version, changed, now, self.metadata)
        if status != stored.status:
            emit(unit, f"order_{status.value}", saved, saved.version,
                 {"status": status.value, "previous_status": stored.status.value}, now, self.metadata)
        return saved

    def remove(self, id: Union[Order, IdLike], expected_version: Optional[int] = None) -> Order:
        """As OrderRepository.remove: an Order is removed at its version."""
        expected: Optional[int] = expected_version
        if isinstance(id, Order):
            oid = id.id
            if expected is None:
                expected = id.version
        else:
            oid = uuid.UUID(str(id))

        def remove(unit: _Unit) -> Order:
            stored = self._stored(unit, oid)
            if expected is not None and expected != stored.version:
                raise _conflict()
            if stored.status in (Status.CONFIRMED, Status.SHIPPED):
                raise _violation("order cannot be removed while it is in flight", "order_remove_in_flight",
                                 "status", stored.status.value)
            unit.orders[stored.id] = None
            self.store._emit(unit, "order_removed", stored, stored.version + 1, stored.to_json(),
                             self._now(unit), self.metadata)
            return stored
        return self.store._write(remove)

    def next_id(self) -> uuid.UUID:
        return uuid7()

    def find(self, spec: Spec = Anything(), page_size: int = 100) -> Iterator[Order]:
        with self.store._lock:
            orders = self.store._visible_orders(self.store._unit())
        for oid in sorted(orders, key=lambda u: u.bytes):
            order = orders[oid]
            if spec.is_satisfied_by(order):
                yield order


Handler = Callable[[Event], None]


class InMemoryEventConsumer:
    """EventConsumer over an InMemoryStore: a named reader of the twin's
    outbox with the same run(), stop(), Reject, holds(), parked(), replay()
    and discard(), and the extension's semantics: it starts after the last
    committed event (or at the first, from_start), reads committed events
    only, in batches of what committed since the last batch (as the
    extension's snapshots: a unit's events come after those of a unit
    that committed first, even at higher positions), each batch in
    position order, acknowledges what it read once the handler returned, holds an order at an event the handler
    rejected (retried after retry_delay seconds of the store's clock,
    doubling, parked after max_attempts failures) while the others flow on.
    group: the twin reads a group as one member that has every part; its
    holds are per part, "name/<part>", as the extension's."""

    def __init__(self, store: InMemoryStore, name: str, handler: Handler, batch: int = 100,
                 from_start: bool = False, types: Optional[Sequence[str]] = None, group: bool = False,
                 max_attempts: int = 5, retry_delay: float = 10.0, wake_every: float = 5.0):
        if max_attempts < 1:
            raise OrdersError("max_attempts must be at least 1", sqlstate="22023")
        if retry_delay < 0:
            raise OrdersError("retry_delay must not be negative", sqlstate="22023")
        if batch < 1:
            raise OrdersError("max_events must be at least 1", sqlstate="22023")
        if types is not None:
            # as the extension's read refuses them, if here at once
            if not types or any(t is None for t in types):
                raise OrdersError("types must list at least one event type, and no null", sqlstate="22023")
            for t in types:
                if t not in EVENT_TYPES:
                    raise OrdersError(f'unknown event type "{t}"', sqlstate="22023")
        self.store, self.name, self.handler = store, name, handler
        self.batch, self.from_start, self.group = batch, from_start, group
        self.types = None if types is None else list(types)
        self.max_attempts, self.retry_delay, self.wake_every = max_attempts, retry_delay, wake_every
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def _holder(self, order_id: uuid.UUID) -> str:
        """The consumer whose holds keep this order's."""
        return f"{self.name}/{event_part(order_id)}" if self.group else self.name

    def _hold_states(self) -> Dict[str, _ConsumerState]:
        """The consumers that keep this one's holds, each made on first use."""
        store = self.store
        if not self.group:
            # not made here: a consumer not registered yet holds nothing
            return {n: s for n, s in store._consumers.items() if n == self.name}
        names = [f"{self.name}/{p}" for p in range(16)]
        for n in names:
            store._consumers.setdefault(n, _ConsumerState(0))   # only its holds are used
        return {n: store._consumers[n] for n in names}

    def _find_hold(self, order_id: uuid.UUID) -> Tuple[_ConsumerState, Optional[_HoldState]]:
        state = self._hold_states()[self._holder(order_id)]
        return state, state.holds.get(order_id)

    def run(self, exit_when_idle: Optional[float] = None, handle_sigterm: bool = True) -> None:
        """Consumes until stop(), or exit_when_idle seconds (real time) with
        nothing to read.  handle_sigterm: accepted for the real one's
        signature; the twin runs in a test, not as a service."""
        del handle_sigterm
        self.store._register(self.name, self.from_start)
        idle_since = time.monotonic()
        while not self._stop.is_set():
            with self.store._lock:
                wakes = self.store._wakes
            if self._once():
                idle_since = time.monotonic()
                continue
            wait = self.wake_every
            if exit_when_idle is not None:
                left = exit_when_idle - (time.monotonic() - idle_since)
                if left <= 0:
                    break
                wait = min(wait, left)      # what is left of the idle time, as the real one
            with self.store._changed:
                if self.store._wakes == wakes:      # else a commit came while reading: read again
                    self.store._changed.wait(max(wait, 0.01))

    def _read(self) -> List[Event]:
        """The next events, as the extension's read: the held ones that are
        due with the stream's, in position order; reading on past a part
        of the stream that is all held orders' or other types'."""
        while True:
            events, more = self._read_some()
            if events or not more:
                return events

    def _read_some(self) -> Tuple[List[Event], bool]:
        store = self.store
        with store._lock:
            state = store._consumer(self.name)
            holders = self._hold_states()
            now = store.clock()
            due: List[Event] = []
            for hs in holders.values():
                for h in list(hs.holds.values()):
                    while h.order_id in hs.holds and h.parked_at is None and h.retry_at is not None \
                            and h.retry_at <= now:
                        e = store._event_at(h.position)
                        if e is not None and (self.types is None or e.type in self.types):
                            due.append(e)
                            break
                        store._hold_next(hs, h)     # passed over, as handled
            scanned: List[Event] = []
            eligible: List[Event] = []
            for attempt in range(2):
                if state.batch is None:
                    # a new batch: every commit since the checkpoint, as the
                    # extension's snapshot; an event whose unit committed
                    # later than a higher position's comes in a later batch
                    state.batch, state.batch_position = store._commits, 0
                for e in store._events:
                    if len(eligible) >= self.batch:
                        break
                    if e.position <= state.batch_position or not store._in_batch(state, e):
                        continue
                    scanned.append(e)
                    if e.order_id not in holders[self._holder(e.order_id)].holds and \
                            (self.types is None or e.type in self.types):
                        eligible.append(e)
                if scanned or due:
                    break
                # the batch is read to its end: its snapshot is the checkpoint
                state.acked, state.batch = state.batch, None
            result = sorted(due + eligible, key=lambda e: e.position)[:self.batch]
            last = result[-1].position if result else (scanned[-1].position if scanned else None)
            if last is None:
                return [], False
            # a held order's events met in the stream join its hold, up to
            # what the reader acknowledges; the held events returned are
            # delivered, for ack or nack
            for e in scanned:
                waiting = holders[self._holder(e.order_id)].holds.get(e.order_id)
                if e.position <= last and waiting is not None and \
                        e.position > max([waiting.position] + waiting.later):
                    waiting.later.append(e.position)
            returned = {e.position for e in result}
            for hs in holders.values():
                for h in hs.holds.values():
                    h.delivered = h.position in returned
            if not result:
                # nothing to hand over in what was scanned: passed, and on
                state.batch_position = max(state.batch_position, last)
                return [], True
            return result, True

    def _ack(self, last: int) -> None:
        store = self.store
        with store._lock:
            state = store._consumer(self.name)
            state.batch_position = max(state.batch_position, last)
            for hs in self._hold_states().values():
                for h in list(hs.holds.values()):
                    if h.delivered and h.position <= last:
                        store._hold_next(hs, h)

    def _nack(self, event: Event, reason: str) -> None:
        store = self.store
        with store._lock:
            now = store.clock()
            self._ack(event.position - 1)
            hs, h = self._find_hold(event.order_id)
            if h is not None and h.position == event.position:
                h.attempts += 1
                h.reason, h.failed_at, h.delivered = reason[:2000], now, False
                if h.attempts >= self.max_attempts:
                    h.retry_at, h.parked_at = None, now
                else:
                    h.retry_at = retry_at(now, self.retry_delay, h.attempts)
                return
            state = store._consumer(self.name)
            # the order's later events in the batch: they wait behind it
            later = [e.position for e in store._events
                     if e.order_id == event.order_id and e.position > event.position
                     and state.batch is not None and store._in_batch(state, e)]
            hs.holds[event.order_id] = _HoldState(
                event.order_id, event.position, later, 1, reason[:2000], now,
                retry_at(now, self.retry_delay, 1) if self.max_attempts > 1 else None,
                now if self.max_attempts <= 1 else None)
            state.batch_position = max(state.batch_position, event.position)

    def _once(self) -> int:
        events = self._read()
        rejected: Set[uuid.UUID] = set()
        for event in events:
            if event.order_id in rejected:
                continue  # waits behind its order's rejected event, in the hold
            try:
                self.handler(event)
            except Reject as e:
                rejected.add(event.order_id)
                self._nack(event, str(e) or type(e).__name__)
            except Exception as e:
                raise HandlerFailed(f"the handler of consumer {self.name!r} failed at position "
                                    f"{event.position}") from e
        if events:
            self._ack(events[-1].position)
        return len(events)

    def holds(self) -> List[Hold]:
        """The held orders: each one's rejected event, retried or parked."""
        with self.store._lock:
            held = []
            for name, hs in self._hold_states().items():
                for h in hs.holds.values():
                    e = self.store._event_at(h.position)
                    held.append(Hold(name, h.order_id, h.position, None if e is None else e.type,
                                     None if e is None else e.version, h.attempts, h.reason, h.failed_at,
                                     h.retry_at, h.parked_at, list(h.later)))
        return sorted(held, key=lambda h: h.position)

    def parked(self) -> List[Hold]:
        """The dead-letter list: the events rejected max_attempts times."""
        return [h for h in self.holds() if h.parked]

    def _hold_at(self, position: int) -> Tuple[_ConsumerState, _HoldState]:
        for hs in self._hold_states().values():
            for h in hs.holds.values():
                if h.position == position:
                    return hs, h
        raise OrdersError(f"consumer {self.name!r} holds no event at position {position}", sqlstate="22023")

    def replay(self, position: int) -> None:
        """The held event at position comes again at the next read, its
        failures counted from zero."""
        with self.store._lock:
            _, h = self._hold_at(position)
            h.attempts, h.retry_at, h.parked_at, h.delivered = 0, self.store.clock(), None, False
            self.store._wake()

    def discard(self, position: int) -> None:
        """Gives up on the held event at position, as if handled: its
        order's waiting events follow."""
        with self.store._lock:
            hs, h = self._hold_at(position)
            self.store._hold_next(hs, h)
            self.store._wake()
