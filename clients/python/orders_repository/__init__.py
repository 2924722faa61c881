"""The Order repository over the orders PostgreSQL extension (psycopg 3),
and an in-memory twin with the same interface for unit tests."""
from .consumer import EventConsumer
from .errors import (ConcurrencyConflict, DuplicateOrder, ExtensionTooOld, IdempotencyKeyReused,
                     InvariantViolation, OrderNotFound, OrdersError, PermissionDenied, ReadOnly, translate)
from .handling import HandlerFailed, Hold, Reject
from .memory import InMemoryEventConsumer, InMemoryOrderRepository, InMemoryStore
from .model import (CANCELLED, CONFIRMED, DELIVERED, PENDING, SHIPPED, Address, Event, Fields, Order,
                    OrderLine, Status, uuid7)
from .repository import REQUIRED_EXTENSION_VERSION, OrderRepository, __version__, retry, unit_of_work
from .specs import (Anything, CreatedBefore, CreatedFrom, Customer, HasStatus, Spec, TotalAtLeast,
                    TotalAtMost)

__all__ = [
    "EventConsumer", "HandlerFailed", "Hold", "Reject",
    "ConcurrencyConflict", "DuplicateOrder", "ExtensionTooOld", "IdempotencyKeyReused", "InvariantViolation", "OrderNotFound", "OrdersError",
    "PermissionDenied", "ReadOnly", "translate",
    "InMemoryEventConsumer", "InMemoryOrderRepository", "InMemoryStore",
    "CANCELLED", "CONFIRMED", "DELIVERED", "PENDING", "SHIPPED", "Address", "Event", "Fields", "Order", "OrderLine",
    "Status", "uuid7",
    "REQUIRED_EXTENSION_VERSION", "OrderRepository", "__version__", "retry", "unit_of_work",
    "Anything", "CreatedBefore", "CreatedFrom", "Customer", "HasStatus", "Spec", "TotalAtLeast", "TotalAtMost",
]
