"""InMemoryOrderRepository: the repository's interface and semantics with no
database, for unit tests of domain code: the same rules, the same
exceptions (rule names as the extension's constraints), versions and
removal as the extension keeps them, and the events each write emits, in
the extension's order and with its payloads.  tests/test_contract.py runs
the same cases against both.

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
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from typing import Dict, Iterable, Iterator, List, Optional, Set

from .errors import ConcurrencyConflict, DuplicateOrder, InvariantViolation, OrderNotFound, field_detail
from .model import (ADDRESS_KEYS, LINE_KEYS, ORDER_KEYS, Address, Event, Fields, Order, OrderLine, Status,
                    check_fields, dumps, loads)
from .specs import Anything, Spec

_NEXT = {Status.PENDING: {Status.CONFIRMED, Status.CANCELLED},
         Status.CONFIRMED: {Status.SHIPPED, Status.CANCELLED},
         Status.SHIPPED: {Status.DELIVERED},
         Status.DELIVERED: set(), Status.CANCELLED: set()}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


# Errors as the extension raises them: the failing field's path, and the
# detail's first sentence that gives it (the extension's explanation that
# follows is not repeated here).
def _violation(message, rule, path, value=None):
    return InvariantViolation(message, rule, path=path, value=value, sqlstate="23514", constraint=rule,
                              detail=field_detail(path))


def _not_null(path):
    return InvariantViolation(f"{path} must not be null", "not_null", path=path, sqlstate="23502",
                              detail=field_detail(path))


def _conflict():
    return ConcurrencyConflict("order was changed by someone else", sqlstate="40001", path="version",
                               detail=field_detail("version"))


def _check_text(value, path, rule, limit):
    if value is None:
        raise _not_null(path)
    if not 1 <= len(value) <= limit or _CONTROL.search(value):
        raise _violation(f"{path} must be 1 to {limit} characters without control characters", rule,
                         path)


def _check(order_lines, currency, address):
    if currency is None:
        raise _not_null("currency")
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise _violation("currency must be three upper-case ASCII letters", "order_currency_format",
                         "currency", currency)
    if len(order_lines) > 1000:
        raise _violation("too many lines", "order_lines_max", "lines")
    first_line = {}
    twice = []
    total = 0
    for i, line in enumerate(order_lines, 1):
        _check_text(line.product_name, f"lines[{i}].product_name", "order_line_product_name", 200)
        if not 1 <= line.quantity <= 1_000_000:
            raise _violation(f"lines[{i}].quantity is out of range", "order_line_quantity_range",
                             f"lines[{i}].quantity", str(line.quantity))
        if not 0 <= line.unit_price <= 100_000_000_000:
            raise _violation(f"lines[{i}].unit_price is out of range", "order_line_unit_price_range",
                             f"lines[{i}].unit_price", str(line.unit_price))
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


def _stored_fields(fields, own, path, kind) -> Fields:
    """fields as the real repository would send and read them back: checked
    for our names, through JSON (a date as its text, a Decimal whole), a
    copy that shares nothing with the caller's."""
    check_fields(fields, own, path, kind)
    return Fields(loads(dumps(dict(fields))))


def _stored_lines(lines) -> tuple:
    return tuple(replace(l, fields=_stored_fields(l.fields, LINE_KEYS, f"lines[{i}].fields.", "attribute of a line"))
                 for i, l in enumerate(lines, 1))


def _stored_address(address: Optional[Address]) -> Optional[Address]:
    if address is None:
        return None
    return replace(address, fields=_stored_fields(address.fields, ADDRESS_KEYS, "shipping_address.fields.",
                                                  "attribute of an address"))


def _without_nulls(o):
    """A line or an address to compare: a field that is None is no field,
    as a NULL attribute is."""
    return None if o is None else replace(o, fields={k: v for k, v in o.fields.items() if v is not None})


def _payload(value) -> dict:
    """An event's payload as the real repository reads it: plain JSON."""
    return json.loads(dumps(value))


def _check_ready(order_lines, address, status):
    if status not in (Status.PENDING, Status.CANCELLED) and (not order_lines or address is None):
        raise _violation(f'an order with status "{status.value}" needs lines and a shipping address',
                         "order_ready_to_confirm", "lines" if not order_lines else "shipping_address")


class InMemoryOrderRepository:
    """The repository in a dict; events_of reads the events its writes
    emitted (no consumers, no metadata).  For the shop's fields, see the
    module's docstring: stored and compared, never checked."""

    def __init__(self):
        self._orders: Dict[uuid.UUID, Order] = {}
        self._used: Set[uuid.UUID] = set()
        self._events: List[Event] = []

    @staticmethod
    def _now():
        return datetime.now(timezone.utc)

    def _emit(self, type_: str, order: Order, version: int, payload: dict, now: datetime) -> None:
        self._events.append(Event(len(self._events) + 1, type_, order.id, version, _payload(payload), now,
                                  uuid.uuid4(), None))

    def add(self, customer_id, currency: str, lines: Iterable[OrderLine] = (),
            shipping_address: Optional[Address] = None, id=None, *, fields: Optional[dict] = None) -> Order:
        stored_fields = _stored_fields(fields or {}, ORDER_KEYS, "fields.", "column")
        lines = _stored_lines(lines)
        shipping_address = _stored_address(shipping_address)
        total = _check(lines, currency, shipping_address)
        oid = self.next_id() if id is None else uuid.UUID(str(id))
        if oid in self._orders:
            raise DuplicateOrder(f"order {oid} already exists", sqlstate="23505", constraint="orders_pkey")
        if oid in self._used:
            raise DuplicateOrder(f"order id {oid} was used before", sqlstate="23505",
                                 constraint="orders_id_not_reused")
        now = self._now()
        order = Order(oid, uuid.UUID(str(customer_id)), Status.PENDING, currency, lines, shipping_address,
                      total, 1, now, now, stored_fields)
        self._orders[oid] = order
        self._used.add(oid)
        self._emit("order_added", order, 1, order.to_json(), now)
        return order

    def add_many(self, orders: Iterable[dict]) -> list:
        """All or none, as the extension's orders_add_many: an error carries
        the offending order's index."""
        orders = list(orders)
        saved_orders, saved_used, saved_events = dict(self._orders), set(self._used), list(self._events)
        added = []
        for i, o in enumerate(orders):
            try:
                added.append(self.add(o["customer_id"], o["currency"], o.get("lines", ()),
                                      o.get("shipping_address"), o.get("id"), fields=o.get("fields")))
            except Exception as e:
                self._orders, self._used, self._events = saved_orders, saved_used, saved_events
                if hasattr(e, "index"):
                    e.index = i
                raise
        return added

    def get(self, id) -> Order:
        try:
            return self._orders[uuid.UUID(str(id))]
        except KeyError:
            raise OrderNotFound(f"order {id} does not exist", sqlstate="P0002") from None

    def _stored(self, id) -> Order:
        try:
            return self._orders[id]
        except KeyError:
            raise OrderNotFound(f"order {id} does not exist", sqlstate="P0002") from None

    def events_of(self, id, after_version: int = 0) -> list:
        """The order's events after after_version, in version order (a
        removed order's too)."""
        oid = uuid.UUID(str(id))
        return [e for e in self._events if e.order_id == oid and e.version > after_version]

    def save(self, order: Order) -> Order:
        # in the extension's order: the new state's fields, then against the
        # stored order: version, immutable fields, the status step, readiness,
        # what is frozen
        given_fields = _stored_fields(order.fields, ORDER_KEYS, "fields.", "column")
        lines = _stored_lines(order.lines)
        address = _stored_address(order.shipping_address)
        total = _check(lines, order.currency, address)
        stored = self._stored(order.id)
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
        lines_changed = tuple(map(_without_nulls, lines)) != tuple(map(_without_nulls, stored.lines))
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
        now = self._now()
        saved = replace(stored, status=status, lines=lines, shipping_address=address, total=total,
                        version=stored.version + 1, updated_at=now, fields=fields)
        self._orders[order.id] = saved
        # one save's events, in the extension's order, all with the new version
        if lines_changed:
            self._emit("order_lines_changed", saved, saved.version,
                       {"lines": [l.to_json() for l in lines], "total": total}, now)
        if address_changed:
            self._emit("order_shipping_address_changed", saved, saved.version,
                       {"shipping_address": None if address is None else address.to_json()}, now)
        if changed:
            self._emit("order_fields_changed", saved, saved.version, changed, now)
        if status != stored.status:
            self._emit(f"order_{status.value}", saved, saved.version,
                       {"status": status.value, "previous_status": stored.status.value}, now)
        return saved

    def remove(self, id, expected_version: Optional[int] = None) -> Order:
        stored = self._stored(uuid.UUID(str(id)))
        if expected_version is not None and expected_version != stored.version:
            raise _conflict()
        if stored.status in (Status.CONFIRMED, Status.SHIPPED):
            raise _violation("order cannot be removed while it is in flight", "order_remove_in_flight",
                             "status", stored.status.value)
        del self._orders[stored.id]
        self._emit("order_removed", stored, stored.version + 1, stored.to_json(), self._now())
        return stored

    def next_id(self) -> uuid.UUID:
        return uuid.uuid4()

    def find(self, spec: Spec = Anything(), page_size: int = 100) -> Iterator[Order]:
        for oid in sorted(self._orders, key=lambda u: u.bytes):
            order = self._orders.get(oid)
            if order is not None and spec.is_satisfied_by(order):
                yield order
