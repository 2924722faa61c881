"""InMemoryOrderRepository: the repository's interface and semantics with no
database, for unit tests of domain code: the same rules, the same
exceptions (rule names as the extension's constraints), versions and
removal as the extension keeps them.  tests/test_contract.py runs the same
cases against both."""
from __future__ import annotations

import re
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from typing import Dict, Iterable, Iterator, Optional, Set

from .errors import ConcurrencyConflict, DuplicateOrder, InvariantViolation, OrderNotFound, field_detail
from .model import Address, Order, OrderLine, Status
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


def _check_ready(order_lines, address, status):
    if status not in (Status.PENDING, Status.CANCELLED) and (not order_lines or address is None):
        raise _violation(f'an order with status "{status.value}" needs lines and a shipping address',
                         "order_ready_to_confirm", "lines" if not order_lines else "shipping_address")


class InMemoryOrderRepository:
    def __init__(self):
        self._orders: Dict[uuid.UUID, Order] = {}
        self._used: Set[uuid.UUID] = set()

    @staticmethod
    def _now():
        return datetime.now(timezone.utc)

    def add(self, customer_id, currency: str, lines: Iterable[OrderLine] = (),
            shipping_address: Optional[Address] = None, id=None) -> Order:
        lines = tuple(lines)
        total = _check(lines, currency, shipping_address)
        oid = self.next_id() if id is None else uuid.UUID(str(id))
        if oid in self._orders:
            raise DuplicateOrder(f"order {oid} already exists", sqlstate="23505", constraint="orders_pkey")
        if oid in self._used:
            raise DuplicateOrder(f"order id {oid} was used before", sqlstate="23505",
                                 constraint="orders_id_not_reused")
        now = self._now()
        order = Order(oid, uuid.UUID(str(customer_id)), Status.PENDING, currency, lines, shipping_address,
                      total, 1, now, now)
        self._orders[oid] = order
        self._used.add(oid)
        return order

    def add_many(self, orders: Iterable[dict]) -> list:
        """All or none, as the extension's orders_add_many: an error carries
        the offending order's index."""
        orders = list(orders)
        saved_orders, saved_used = dict(self._orders), set(self._used)
        added = []
        for i, o in enumerate(orders):
            try:
                added.append(self.add(o["customer_id"], o["currency"], o.get("lines", ()),
                                      o.get("shipping_address"), o.get("id")))
            except Exception as e:
                self._orders, self._used = saved_orders, saved_used
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

    def save(self, order: Order) -> Order:
        # in the extension's order: the new state's fields, then against the
        # stored order: version, immutable fields, the status step, readiness,
        # what is frozen
        lines = tuple(order.lines)
        total = _check(lines, order.currency, order.shipping_address)
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
        _check_ready(lines, order.shipping_address, status)
        if lines != stored.lines and stored.status != Status.PENDING:
            raise _violation("lines can change only while the order is pending",
                             "order_frozen_after_confirm", "lines", stored.status.value)
        if order.shipping_address != stored.shipping_address and \
                stored.status not in (Status.PENDING, Status.CONFIRMED):
            raise _violation("shipping_address can change only while the order is pending or confirmed",
                             "order_frozen_after_confirm", "shipping_address", stored.status.value)
        if lines == stored.lines and order.shipping_address == stored.shipping_address \
                and status == stored.status:
            return stored
        saved = replace(stored, status=status, lines=lines, shipping_address=order.shipping_address,
                        total=total, version=stored.version + 1, updated_at=self._now())
        self._orders[order.id] = saved
        return saved

    def remove(self, id, expected_version: Optional[int] = None) -> Order:
        stored = self._stored(uuid.UUID(str(id)))
        if expected_version is not None and expected_version != stored.version:
            raise _conflict()
        if stored.status in (Status.CONFIRMED, Status.SHIPPED):
            raise _violation("order cannot be removed while it is in flight", "order_remove_in_flight",
                             "status", stored.status.value)
        del self._orders[stored.id]
        return stored

    def next_id(self) -> uuid.UUID:
        return uuid.uuid4()

    def find(self, spec: Spec = Anything(), page_size: int = 100) -> Iterator[Order]:
        for oid in sorted(self._orders, key=lambda u: u.bytes):
            order = self._orders.get(oid)
            if order is not None and spec.is_satisfied_by(order):
                yield order
