"""The Order repository over the orders PostgreSQL extension (psycopg 3),
and an in-memory twin with the same interface for unit tests."""
from .consumer import EventConsumer, HandlerFailed, Hold, Reject
from .errors import (ConcurrencyConflict, DuplicateOrder, IdempotencyKeyReused, InvariantViolation,
                     OrderNotFound, OrdersError, PermissionDenied, ReadOnly, translate)
from .memory import InMemoryOrderRepository
from .model import (CANCELLED, CONFIRMED, DELIVERED, PENDING, SHIPPED, Address, Event, Fields, Order,
                    OrderLine, Status)
from .repository import OrderRepository, retry, unit_of_work
from .specs import (Anything, CreatedBefore, CreatedFrom, Customer, HasStatus, Spec, TotalAtLeast,
                    TotalAtMost)

__all__ = [
    "EventConsumer", "HandlerFailed", "Hold", "Reject",
    "ConcurrencyConflict", "DuplicateOrder", "IdempotencyKeyReused", "InvariantViolation", "OrderNotFound", "OrdersError",
    "PermissionDenied", "ReadOnly", "translate",
    "InMemoryOrderRepository",
    "CANCELLED", "CONFIRMED", "DELIVERED", "PENDING", "SHIPPED", "Address", "Event", "Fields", "Order", "OrderLine",
    "Status",
    "OrderRepository", "retry", "unit_of_work",
    "Anything", "CreatedBefore", "CreatedFrom", "Customer", "HasStatus", "Spec", "TotalAtLeast", "TotalAtMost",
]
