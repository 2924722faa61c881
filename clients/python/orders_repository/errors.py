"""Every error the extension raises, as an exception a caller can catch by
meaning rather than by SQLSTATE.  The extension names the broken rule in
the constraint, and the failing field's path in the first sentence of the
detail, "The field is lines[2].quantity.", followed by the offending value
(README: "Invariants and errors")."""
from __future__ import annotations

import re
from typing import Any, Dict, Optional


_PATH = re.compile(r"^The field is (\S+)\.(?: |$)")


def path_of(detail: Optional[str]) -> Optional[str]:
    """The path the detail's first sentence gives ("The field is
    lines[2].quantity."), or None."""
    m = _PATH.match(detail or "")
    return m.group(1) if m else None


def field_detail(path: str) -> str:
    """The first sentence of the detail of an error about the field at path."""
    return f"The field is {path}."


class OrdersError(Exception):
    """Base: the server's SQLSTATE, message, detail and constraint, kept;
    path: the failing field's path (lines[2].quantity, shipping_address.city,
    status, fields.coupon), from the detail's first sentence (the
    extension puts it first in the detail of a value that a shop's field's
    type refuses too), else the column error field, else None (an error
    about the call, not a field);
    index: for add_many, the offending order's index in the list."""

    def __init__(self, message: str, sqlstate: Optional[str] = None, detail: Optional[str] = None,
                 constraint: Optional[str] = None, column: Optional[str] = None,
                 index: Optional[int] = None, path: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.detail = detail
        self.constraint = constraint
        self.column = column
        self.index = index
        self.path = path or path_of(detail) or column


class OrderNotFound(OrdersError, LookupError):
    """No order has this id (P0002, or no row from a read)."""


class ConcurrencyConflict(OrdersError):
    """Someone saved the order first (40001): read it again, reapply, save.
    retry() does that loop."""


class DuplicateOrder(OrdersError):
    """The id is taken, or was used by an order since removed (23505)."""


class InvariantViolation(OrdersError, ValueError):
    """A rule of the aggregate: rule is the extension's constraint name
    (order_status_transition, order_line_quantity_range ...), or the name
    of the shop's own CHECK constraint on orders (path and value then None:
    the server's detail is the failing row), or for the
    rules without one: not_null, array_shape, out_of_range,
    unknown_status (a status label the extension does not know); path the
    failing field's (lines[2].quantity), as OrdersError reads it; value the
    offending value, when the detail states one."""

    def __init__(self, message: str, rule: str, path: Optional[str] = None, value: Optional[str] = None,
                 **kw: Any):
        super().__init__(message, path=path, **kw)
        self.rule = rule
        self.value = value

    @property
    def field(self) -> Optional[str]:
        """The path, by its earlier name."""
        return self.path


class ExtensionTooOld(OrdersError):
    """The database's extension is older than the release this client needs
    (REQUIRED_EXTENSION_VERSION): ALTER EXTENSION orders UPDATE.  Raised
    where the repository or a consumer first finds the extension, before
    any call could fail in a less telling way.  sqlstate None: the client
    raises it, not the server."""

    def __init__(self, message: str, installed: str, required: str, **kw: Any):
        super().__init__(message, **kw)
        self.installed = installed
        self.required = required
        self.hint = "ALTER EXTENSION orders UPDATE"


class IdempotencyKeyReused(OrdersError):
    """orders.idempotency_key was used for another request (22023): a retry
    must repeat the same calls in the same order; a new request needs a new
    key."""


class ReadOnly(OrdersError):
    """A write on a standby or in a read-only transaction (25006)."""


class PermissionDenied(OrdersError):
    """The role lacks a grant (42501)."""


_VALUE = re.compile(r"^The (?:value|currency|country|order's status) is (?:\"?)(.*?)(?:\"?)(?:;|\.$)")
_INDEX = re.compile(r"at index (\d+) of orders_add_many")
_RULE_OF_STATE = {"23502": "not_null", "22004": "not_null", "2202E": "array_shape",
                  "22003": "out_of_range"}


def translate(exc: Exception) -> Exception:
    """The exception for a psycopg error raised by the extension; any other
    exception comes back as it was."""
    sqlstate = getattr(exc, "sqlstate", None)
    diag = getattr(exc, "diag", None)
    if sqlstate is None or diag is None:
        return exc
    message = diag.message_primary or str(exc)
    at = _INDEX.search(diag.context or "")
    kw: Dict[str, Any] = dict(sqlstate=sqlstate, detail=diag.message_detail, constraint=diag.constraint_name,
              column=diag.column_name, index=int(at.group(1)) if at else None,
              path=path_of(diag.message_detail))
    if sqlstate == "P0002":
        return OrderNotFound(message, **kw)
    if sqlstate == "40001":
        return ConcurrencyConflict(message, **kw)
    if sqlstate == "23505":
        return DuplicateOrder(message, **kw)
    if sqlstate == "25006":
        return ReadOnly(message, **kw)
    if sqlstate == "42501":
        return PermissionDenied(message, **kw)
    if sqlstate == "22023" and message.startswith("idempotency key"):
        return IdempotencyKeyReused(message, **kw)
    if sqlstate == "22023" and message.startswith('status "'):
        return InvariantViolation(message, "unknown_status", **kw)
    if sqlstate == "23514" or sqlstate in _RULE_OF_STATE:
        rule = diag.constraint_name or _RULE_OF_STATE.get(sqlstate, sqlstate)
        # the value is stated in the sentence after the path's
        v = _VALUE.match(_PATH.sub("", diag.message_detail or "", count=1))
        return InvariantViolation(message, rule, value=v.group(1) if v else None, **kw)
    return OrdersError(message, **kw)
