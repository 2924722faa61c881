"""What a handler of events and its caller share, whichever consumer runs
it (EventConsumer over the extension, InMemoryEventConsumer over the twin):
the exceptions a handler raises or causes, and the shape of a held order.
No database driver is imported here, so that domain code and the twin
need none."""
from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass
from typing import List, Optional


class HandlerFailed(Exception):
    """The handler raised (its exception is the cause): the loop ended, and
    the events from this one on come again at the next run."""


class Reject(Exception):
    """Raised by a handler that cannot handle this event, now or ever: the
    event is rejected with the exception's message as the reason.  The
    consumer goes on with the other orders' events; this order's later
    events wait behind the rejected one until it is handled, discarded or
    replayed."""


@dataclass(frozen=True)
class Hold:
    """A held order of a consumer: the rejected event it is held at, its
    failures, when it comes again (retry_at) or since when it is parked,
    and the positions of the order's events waiting behind it."""
    consumer: str
    order_id: uuid.UUID
    position: int
    type: Optional[str]
    version: Optional[int]
    attempts: int
    reason: Optional[str]
    failed_at: Optional[datetime.datetime]
    retry_at: Optional[datetime.datetime]
    parked_at: Optional[datetime.datetime]
    held_back: List[int]

    @property
    def parked(self) -> bool:
        return self.parked_at is not None


def retry_at(failed_at: datetime.datetime, retry_delay: float, attempts: int) -> datetime.datetime:
    """When a held event that failed attempts times comes again: as the
    extension's orders_events_retry_at, retry_delay after the first
    failure, doubled after each one since, never more than a year on."""
    seconds = min(retry_delay * 2.0 ** min(max(attempts, 1) - 1, 40), 31536000.0)
    return failed_at + datetime.timedelta(seconds=seconds)
