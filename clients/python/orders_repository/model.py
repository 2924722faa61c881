"""The aggregate as the extension stores it: money in integer cents (never a
float), ids as UUIDs, times as aware datetimes; the shop's own columns and
attributes (ALTER TABLE orders ADD COLUMN, ALTER TYPE order_line ADD
ATTRIBUTE) as each object's fields."""
from __future__ import annotations

import enum
import json
import math
import os
import re
import time as _time
import uuid
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Dict, Iterable, Mapping, Optional, Tuple, Union

if TYPE_CHECKING:
    from .errors import InvariantViolation
    from .specs import HasStatus

# a JSON object as the repository reads and writes it
JSON = Dict[str, Any]
# what an id may be given as: a UUID, or its text
IdLike = Union[uuid.UUID, str]


class Status(str, enum.Enum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"

    @classmethod
    def is_(cls, status: "Status") -> "HasStatus":
        from .specs import HasStatus
        return HasStatus(status)


PENDING, CONFIRMED, SHIPPED, DELIVERED, CANCELLED = (
    Status.PENDING, Status.CONFIRMED, Status.SHIPPED, Status.DELIVERED, Status.CANCELLED)


# The extension's own keys of each object's JSON; any other key is one of
# the shop's fields.
ORDER_KEYS = ("id", "customer_id", "status", "currency", "lines", "shipping_address", "total", "version",
              "created_at", "updated_at")
LINE_KEYS = ("product_id", "product_name", "quantity", "unit_price")
ADDRESS_KEYS = ("street", "city", "postal_code", "country")


class Fields(Dict[str, Any]):
    """The shop's own fields of an order, a line or an address: its columns
    or attributes past the extension's, by name, each a JSON value (str,
    int, Decimal for a number with a fraction, bool, None, or a list or dict
    for a json/jsonb column).  A dict that cannot be changed in place, as
    the frozen object that holds it: make a changed copy,
    order.with_(fields={**order.fields, "coupon": "WELCOME"})."""

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("fields cannot be changed in place: "
                        "order.with_(fields={**order.fields, name: value}) makes a changed copy")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _read_only  # type: ignore[assignment]

    def __reduce__(self) -> Tuple[Any, ...]:
        return (Fields, (dict(self),))

    def __repr__(self) -> str:
        return dict.__repr__(self)


def _fields(value: Optional[Mapping[str, Any]]) -> Fields:
    return value if isinstance(value, Fields) else Fields(value or {})


def _split(j: JSON, own: Tuple[str, ...]) -> Fields:
    """The keys of j that are not the extension's own."""
    return Fields({k: v for k, v in j.items() if k not in own})


def own_field_error(path: str, kind: str) -> Exception:
    """The error for a field that names one of the extension's own keys, as
    the extension raises it for orders_add's fields (22023)."""
    from .errors import OrdersError
    name = path.rsplit(".", 1)[-1]
    return OrdersError(f'"{name}" is the extension\'s own {kind}, not one of the shop\'s fields',
                       sqlstate="22023", detail=f"The field is {path}.")


def check_fields(fields: Mapping[str, Any], own: Tuple[str, ...], path: str, kind: str) -> None:
    """Refuses a field that would stand in for one of the extension's own
    keys: the JSON carries both at one level."""
    for name in fields:
        if name in own:
            raise own_field_error(f"{path}{name}", kind)


# JSON as the repository exchanges it with the server: a number with a
# fraction as a Decimal both ways, so that a numeric field comes back as it
# was stored (a float would turn 0.1000 into 0.1, and cut 20 digits to 17,
# and save would store that).  json cannot write a Decimal as a number, so
# it writes it as a string marked with a NUL, which no JSON string the
# server sends can hold (jsonb refuses \u0000), and the mark is then taken
# off the number.
_NUMBER = "\x00number:"
_MARKED = re.compile(r'"\\u0000number:([-+0-9.eE]+)"')


def _encode(o: object) -> str:
    if isinstance(o, Decimal) and o.is_finite():
        return _NUMBER + str(o)
    if isinstance(o, (date, time)):
        return o.isoformat()       # the text the column type's input function reads
    if isinstance(o, uuid.UUID):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


def dumps(value: Any) -> str:
    """value as JSON text: a Decimal as the number it is; a date, time,
    datetime or UUID as its text, which the column's input function reads."""
    return _MARKED.sub(r"\1", json.dumps(value, default=_encode))


def loads(text: Union[str, bytes]) -> Any:
    """JSON text, a number with a fraction as a Decimal."""
    return json.loads(text, parse_float=Decimal)


def uuid7() -> uuid.UUID:
    """A new time-ordered UUID (version 7, RFC 9562): 48 bits of Unix
    milliseconds, then random bits, as the extension's orders_next_id()
    makes them, so that ids made in the client and in the server sort
    together by time and keep the primary key's inserts at its right edge."""
    ms = _time.time_ns() // 1_000_000
    value = (ms & (2**48 - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)          # the version
    value = (value & ~(0x3 << 62)) | (0x2 << 62)          # the RFC 4122 variant
    return uuid.UUID(int=value)


def _as_text(value: object) -> str:
    """A refused value as the error states it: a bool as JSON writes it, a
    float that is not finite as JavaScript writes it (NaN, Infinity,
    -Infinity), as the TypeScript client states them too."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    return str(value)


# a refused unit price that the caller probably meant in units of the
# currency: digits, a point and a fraction of 1 or 2 digits (after its
# trailing zeros): 12.99, 12.5, 12.00, not 450, 1e+21 or 12.999
_MONEY = re.compile(r"(-?)(\d+)\.(\d+)")


def _not_integer(path: str, value: object, money: bool) -> "InvariantViolation":
    from .errors import InvariantViolation, field_detail
    text = _as_text(value)
    if money:
        why = "money is an integer number of cents"
        m = None if isinstance(value, bool) else _MONEY.fullmatch(text)
        fraction = "" if m is None else m.group(3).rstrip("0")
        if m is not None and len(fraction) <= 2:
            why += f" ({int(m.group(1) + m.group(2) + fraction.ljust(2, '0'))} for {text})"
        message = f"{path} must be an integer number of cents"
    else:
        why = "a quantity is an integer"
        message = f"{path} must be an integer"
    return InvariantViolation(message, "not_integer", path=path, value=text, sqlstate="22P02",
                              detail=f"{field_detail(path)} The value is {text}; {why}.")


def check_integers(line: "OrderLine", path: str) -> None:
    """Refuses a quantity or a unit price that is not an int, before
    anything is sent: json would send a Decimal not at all and a float as a
    fraction the server refuses with a bare 22P02, and a Decimal("12.00")
    would silently be 12 cents.  Both repositories call this, so they
    refuse alike.  None is left to the not_null rule, the server's."""
    for name, money in (("quantity", False), ("unit_price", True)):
        value = getattr(line, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise _not_integer(f"{path}{name}", value, money)
        # Beyond its column's type (integer, bigint) the server's reading of
        # the JSON would fail with a bare 22003 and no path: the rule's own
        # error instead, as a value out of the rule's range gets it (the
        # twin's too).
        bits = _LINE_RANGES[name][0]
        if value is not None and not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
            raise line_out_of_range(path, name, value)


def line_out_of_range(path: str, name: str, value: int) -> "InvariantViolation":
    """The error of a line's quantity or unit_price out of its rule's range,
    worded as the extension words it (src/invariants.c); path: "lines[2]."."""
    from .errors import InvariantViolation, field_detail
    _, low, high, rule = _LINE_RANGES[name]
    return InvariantViolation(f"{path}{name} is out of range", rule, path=f"{path}{name}", value=str(value),
                              sqlstate="23514", constraint=rule,
                              detail=f"{field_detail(path + name)} The value is {value};"
                                     f" it must be between {low} and {high}.")


# A line's numbers: their column type's width, and the range and name of
# the extension's rule for each (src/invariants.c).
_LINE_RANGES = {"quantity": (32, 1, 1_000_000, "order_line_quantity_range"),
                "unit_price": (64, 0, 100_000_000_000, "order_line_unit_price_range")}


@dataclass(frozen=True)
class OrderLine:
    """One line.  fields: the shop's own attributes of order_line (ALTER
    TYPE order_line ADD ATTRIBUTE sku text CASCADE), by name; sent as keys
    of the line's JSON, so none may be named as ours (product_id,
    product_name, quantity, unit_price).  The attribute is "fields", which
    no key of the line's JSON maps to: the shop's attribute "fields", if
    there is one, is line.fields["fields"]."""
    product_id: uuid.UUID
    product_name: str
    quantity: int
    unit_price: int  # cents
    fields: Mapping[str, Any] = field(default_factory=Fields, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", _fields(self.fields))

    def to_json(self, path: str = "line.") -> JSON:
        check_integers(self, path)
        check_fields(self.fields, LINE_KEYS, path + "fields.", "attribute of a line")
        return {**self.fields,
                "product_id": str(self.product_id), "product_name": self.product_name,
                "quantity": self.quantity, "unit_price": self.unit_price}

    @classmethod
    def from_json(cls, j: JSON) -> "OrderLine":
        return cls(uuid.UUID(j["product_id"]), j["product_name"], j["quantity"], j["unit_price"],
                   _split(j, LINE_KEYS))


@dataclass(frozen=True)
class Address:
    """A shipping address.  fields: the shop's own attributes of
    order_address, by name, as OrderLine's (none named street, city,
    postal_code or country)."""
    street: str
    city: str
    postal_code: str
    country: str
    fields: Mapping[str, Any] = field(default_factory=Fields, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", _fields(self.fields))

    def to_json(self) -> JSON:
        check_fields(self.fields, ADDRESS_KEYS, "shipping_address.fields.", "attribute of an address")
        return {**self.fields,
                "street": self.street, "city": self.city, "postal_code": self.postal_code,
                "country": self.country}

    @classmethod
    def from_json(cls, j: Optional[JSON]) -> Optional["Address"]:
        return None if j is None else cls(j["street"], j["city"], j["postal_code"], j["country"],
                                          _split(j, ADDRESS_KEYS))


@dataclass(frozen=True)
class Order:
    """One order as stored.  Change it with with_(...) (or dataclasses.replace)
    and hand the result to save(): the version it carries is the one read.

    fields: the shop's own columns of orders (ALTER TABLE orders ADD
    COLUMN), by name: every key of the order's JSON that is not one of the
    extension's ten.  save() sends them back as top-level keys, so it
    stores them as given (a column left out is saved as NULL, as the whole
    row is saved); none may be named as the extension's columns.  The
    attribute is "fields", which no column of ours is called: a shop's
    column "fields", if there is one, is order.fields["fields"]."""
    id: uuid.UUID
    customer_id: uuid.UUID
    status: Status
    currency: str
    lines: Tuple[OrderLine, ...]
    shipping_address: Optional[Address]
    total: int  # cents, the sum of quantity x unit_price, computed by the repository
    version: int
    created_at: Optional[datetime]   # None in an Order.new not added yet
    updated_at: Optional[datetime]
    fields: Mapping[str, Any] = field(default_factory=Fields, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", _fields(self.fields))

    @classmethod
    def new(cls, customer_id: IdLike, currency: str, lines: Iterable[OrderLine] = (),
            shipping_address: Optional[Address] = None, *, id: Optional[IdLike] = None,
            fields: Optional[Mapping[str, Any]] = None) -> "Order":
        """An order built in the domain, for repo.add(order): pending,
        version 0 (none stored yet), its total computed from the lines, its
        id the given one or a new uuid7() (so that the domain knows it
        before the add, as with next_id()).  The lines are checked for
        integer quantities and prices here already: a wrong one is a bug
        best met where it is made.  The repository checks the rest."""
        lines = tuple(lines)
        for i, line in enumerate(lines, 1):
            check_integers(line, f"lines[{i}].")
        total = sum((l.quantity or 0) * (l.unit_price or 0) for l in lines)
        return cls(uuid7() if id is None else uuid.UUID(str(id)), uuid.UUID(str(customer_id)), Status.PENDING,
                   currency, lines, shipping_address, total, 0, None, None, _fields(fields))

    def with_(self, **changes: Any) -> "Order":
        if "lines" in changes:
            changes["lines"] = tuple(changes["lines"])
        if "status" in changes:
            changes["status"] = Status(changes["status"])
        return replace(self, **changes)

    def to_json(self) -> JSON:
        check_fields(self.fields, ORDER_KEYS, "fields.", "column")
        return {**self.fields,
                "id": str(self.id), "customer_id": str(self.customer_id),
                "status": self.status.value, "currency": self.currency,
                "lines": [l.to_json(f"lines[{i}].") for i, l in enumerate(self.lines, 1)],
                "shipping_address": None if self.shipping_address is None else self.shipping_address.to_json(),
                "total": self.total, "version": self.version,
                "created_at": None if self.created_at is None else self.created_at.isoformat(),
                "updated_at": None if self.updated_at is None else self.updated_at.isoformat()}

    @classmethod
    def from_json(cls, j: JSON) -> "Order":
        # A role that may write orders but not read them gets back only what
        # the extension may show it (README: Privileges): the rest is None.
        def maybe(f: Any, v: Any) -> Any:
            return None if v is None else f(v)
        return cls(uuid.UUID(j["id"]), maybe(uuid.UUID, j.get("customer_id")), maybe(Status, j.get("status")),
                   maybe(str, j.get("currency")), tuple(OrderLine.from_json(l) for l in j.get("lines") or ()),
                   Address.from_json(j.get("shipping_address")), maybe(int, j.get("total")),
                   maybe(int, j.get("version")),
                   maybe(datetime.fromisoformat, j.get("created_at")),
                   maybe(datetime.fromisoformat, j.get("updated_at")), _split(j, ORDER_KEYS))


@dataclass(frozen=True)
class Event:
    """One outbox event: position orders all events; an order's (order_id,
    version) identify it, for idempotent handlers.  type is any of the
    extension's event types, kept as the text it is (a type added later,
    such as order_fields_changed from 1.12, reads like the others), and
    payload the event's JSON as it is: order_added and order_removed carry
    the shop's own columns as top-level keys beside the extension's, and
    order_fields_changed carries {"<column>": <new value>, ...} for the
    columns a save changed (docs/events.md)."""
    position: int
    type: str
    order_id: uuid.UUID
    version: int
    payload: JSON
    occurred_at: datetime = field(compare=False)
    # from extension 1.8: the event's own id, and the writer's metadata
    id: Optional[uuid.UUID] = field(default=None, compare=False)
    metadata: Optional[JSON] = field(default=None, compare=False)


def only_order(order: Order, *rest: object) -> Order:
    """add(order) takes the order alone: its parts given as well would be
    a second truth."""
    if any(r not in (None, ()) for r in rest):
        raise TypeError("add(order) takes the Order alone; give its parts in it (Order.new)")
    return order
