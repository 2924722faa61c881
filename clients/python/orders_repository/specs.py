"""Specifications: what find() selects, composed with & | ~.  Each compiles
to a SQL condition over the orders table with its parameters (so one
statement, planned on the table's indexes: by customer, by status, by id),
and also answers is_satisfied_by(order) for the in-memory repository."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, List, Tuple, Union

from .model import IdLike, Order, Status

Sql = Tuple[str, List[Any]]


class Spec:
    def sql(self) -> Sql:
        raise NotImplementedError

    def is_satisfied_by(self, order: Order) -> bool:
        raise NotImplementedError

    def __and__(self, other: "Spec") -> "Spec":
        return _And(self, other)

    def __or__(self, other: "Spec") -> "Spec":
        return _Or(self, other)

    def __invert__(self) -> "Spec":
        return _Not(self)


class _Compare(Spec):
    column = ""
    op = "="

    def __init__(self, value: Any):
        self.value = value

    def sql(self) -> Sql:
        return f"o.{self.column} OPERATOR(pg_catalog.{self.op}) %s", [self.value]


class Customer(_Compare):
    column = "customer_id"

    def __init__(self, customer_id: IdLike):
        super().__init__(uuid.UUID(str(customer_id)))

    def is_satisfied_by(self, order: Order) -> bool:
        return bool(order.customer_id == self.value)


class HasStatus(_Compare):
    column = "status"

    def __init__(self, status: Union[Status, str]):
        super().__init__(Status(status))

    def sql(self) -> Sql:
        # compared as text: no need to know the enum type's schema
        return "o.status::text OPERATOR(pg_catalog.=) %s", [self.value.value]

    def is_satisfied_by(self, order: Order) -> bool:
        return bool(order.status == self.value)


class TotalAtLeast(_Compare):
    column, op = "total", ">="

    def is_satisfied_by(self, order: Order) -> bool:
        return bool(order.total >= self.value)


class TotalAtMost(_Compare):
    column, op = "total", "<="

    def is_satisfied_by(self, order: Order) -> bool:
        return bool(order.total <= self.value)


class CreatedFrom(_Compare):
    column, op = "created_at", ">="

    def __init__(self, value: datetime):
        super().__init__(value)

    def is_satisfied_by(self, order: Order) -> bool:
        # an order not added yet (Order.new) has no time, as NULL compares
        return order.created_at is not None and bool(order.created_at >= self.value)


class CreatedBefore(_Compare):
    column, op = "created_at", "<"

    def __init__(self, value: datetime):
        super().__init__(value)

    def is_satisfied_by(self, order: Order) -> bool:
        return order.created_at is not None and bool(order.created_at < self.value)


class Anything(Spec):
    def sql(self) -> Sql:
        return "true", []

    def is_satisfied_by(self, order: Order) -> bool:
        return True


class _And(Spec):
    def __init__(self, a: Spec, b: Spec):
        self.a, self.b = a, b

    def sql(self) -> Sql:
        (sa, pa), (sb, pb) = self.a.sql(), self.b.sql()
        return f"({sa}) AND ({sb})", pa + pb

    def is_satisfied_by(self, order: Order) -> bool:
        return self.a.is_satisfied_by(order) and self.b.is_satisfied_by(order)


class _Or(Spec):
    def __init__(self, a: Spec, b: Spec):
        self.a, self.b = a, b

    def sql(self) -> Sql:
        (sa, pa), (sb, pb) = self.a.sql(), self.b.sql()
        return f"({sa}) OR ({sb})", pa + pb

    def is_satisfied_by(self, order: Order) -> bool:
        return self.a.is_satisfied_by(order) or self.b.is_satisfied_by(order)


class _Not(Spec):
    def __init__(self, a: Spec):
        self.a = a

    def sql(self) -> Sql:
        s, p = self.a.sql()
        # a NULL-safe negation: an order without the value is not excluded by accident
        return f"({s}) IS NOT TRUE", p

    def is_satisfied_by(self, order: Order) -> bool:
        return not self.a.is_satisfied_by(order)
