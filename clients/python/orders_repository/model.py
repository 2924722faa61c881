"""The aggregate as the extension stores it: money in integer cents (never a
float), ids as UUIDs, times as aware datetimes."""
from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Optional, Tuple


class Status(str, enum.Enum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"

    @classmethod
    def is_(cls, status: "Status"):
        from .specs import HasStatus
        return HasStatus(status)


PENDING, CONFIRMED, SHIPPED, DELIVERED, CANCELLED = (
    Status.PENDING, Status.CONFIRMED, Status.SHIPPED, Status.DELIVERED, Status.CANCELLED)


@dataclass(frozen=True)
class OrderLine:
    product_id: uuid.UUID
    product_name: str
    quantity: int
    unit_price: int  # cents

    def to_json(self) -> dict:
        return {"product_id": str(self.product_id), "product_name": self.product_name,
                "quantity": self.quantity, "unit_price": self.unit_price}

    @classmethod
    def from_json(cls, j: dict) -> "OrderLine":
        return cls(uuid.UUID(j["product_id"]), j["product_name"], j["quantity"], j["unit_price"])


@dataclass(frozen=True)
class Address:
    street: str
    city: str
    postal_code: str
    country: str

    def to_json(self) -> dict:
        return {"street": self.street, "city": self.city, "postal_code": self.postal_code,
                "country": self.country}

    @classmethod
    def from_json(cls, j: Optional[dict]) -> Optional["Address"]:
        return None if j is None else cls(j["street"], j["city"], j["postal_code"], j["country"])


@dataclass(frozen=True)
class Order:
    """One order as stored.  Change it with with_(...) (or dataclasses.replace)
    and hand the result to save(): the version it carries is the one read."""
    id: uuid.UUID
    customer_id: uuid.UUID
    status: Status
    currency: str
    lines: Tuple[OrderLine, ...]
    shipping_address: Optional[Address]
    total: int  # cents, the sum of quantity x unit_price, computed by the repository
    version: int
    created_at: datetime
    updated_at: datetime

    def with_(self, **changes) -> "Order":
        if "lines" in changes:
            changes["lines"] = tuple(changes["lines"])
        if "status" in changes:
            changes["status"] = Status(changes["status"])
        return replace(self, **changes)

    def to_json(self) -> dict:
        return {"id": str(self.id), "customer_id": str(self.customer_id),
                "status": self.status.value, "currency": self.currency,
                "lines": [l.to_json() for l in self.lines],
                "shipping_address": None if self.shipping_address is None else self.shipping_address.to_json(),
                "total": self.total, "version": self.version,
                "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat()}

    @classmethod
    def from_json(cls, j: dict) -> "Order":
        # A role that may write orders but not read them gets back only what
        # the extension may show it (README: Privileges): the rest is None.
        def maybe(f, v):
            return None if v is None else f(v)
        return cls(uuid.UUID(j["id"]), maybe(uuid.UUID, j.get("customer_id")), maybe(Status, j.get("status")),
                   j.get("currency"), tuple(OrderLine.from_json(l) for l in j.get("lines") or ()),
                   Address.from_json(j.get("shipping_address")), j.get("total"), j.get("version"),
                   maybe(datetime.fromisoformat, j.get("created_at")),
                   maybe(datetime.fromisoformat, j.get("updated_at")))


@dataclass(frozen=True)
class Event:
    """One outbox event: position orders all events; an order's (order_id,
    version) identify it, for idempotent handlers."""
    position: int
    type: str
    order_id: uuid.UUID
    version: int
    payload: dict
    occurred_at: datetime = field(compare=False)
    # from extension 1.8: the event's own id, and the writer's metadata
    id: Optional[uuid.UUID] = field(default=None, compare=False)
    metadata: Optional[dict] = field(default=None, compare=False)
