"""A small program against the installed orders-repository: what a new
user does first.  Type-checked with mypy --strict by
test/t/026_python_package.pl, so its annotations are part of the test."""
import sys
import uuid
from typing import List

import orders_repository
from orders_repository import (CONFIRMED, Address, Event, EventConsumer, InMemoryOrderRepository, Order,
                               OrderLine, OrderRepository, unit_of_work)
from psycopg_pool import ConnectionPool


def checkout(repo: OrderRepository | InMemoryOrderRepository, customer: uuid.UUID) -> Order:
    with repo.unit_of_work(metadata={"command": "checkout"}):
        order = repo.add(Order.new(customer, "EUR", [OrderLine(uuid.uuid4(), "Tea", 2, 450)],
                                   Address("Main St 1", "Berlin", "10115", "DE")))
        return repo.save(order.with_(status=CONFIRMED))


def main(dsn: str) -> None:
    print("from", orders_repository.__file__)
    print("version", orders_repository.__version__, "needs", orders_repository.REQUIRED_EXTENSION_VERSION)
    twin = checkout(InMemoryOrderRepository(), uuid.uuid4())
    print("twin", twin.status.value, twin.total)
    name = f"package-{uuid.uuid4()}"
    with ConnectionPool(dsn, min_size=1, max_size=2) as pool:
        EventConsumer(pool, name, lambda e: None).run(exit_when_idle=0)
        repo = OrderRepository(pool)
        order = checkout(repo, uuid.uuid4())
        with unit_of_work(pool):
            repo.add(uuid.uuid4(), "EUR")
        history: List[Event] = repo.events_of(order.id)
        print("events_of", [e.type for e in history])
        seen: List[str] = []
        EventConsumer(pool, name, lambda e: seen.append(e.type)).run(exit_when_idle=0.5)
        print("consumed", seen)


if __name__ == "__main__":
    main(sys.argv[1])
