"""EventConsumer: a named, gap-free reader of the outbox.

It registers its name (the checkpoint is a row in the database), LISTENs
for wake-ups, and loops: read the next events after the checkpoint, hand
each to the handler, acknowledge them once the handler returned.  A
handler that raises stops the loop before the acknowledgement, so those
events come again on the next run: delivery is at least once, in position
order (each order's events in version order); make the handler idempotent
((order_id, version) identifies an event).  A handler that raises Reject
rejects that one event instead (orders_events_nack): it comes again after
retry_delay seconds, doubling, and is parked after max_attempts failures,
while that order's later events wait behind it and the others flow on;
holds(), parked(), replay() and discard() manage them.  A lost connection
is opened again; SIGTERM (or stop()) ends the loop after the batch in hand.

Its first argument is a connection string or a psycopg_pool.ConnectionPool.
The LISTEN connection is always a dedicated one, opened from the pool's
settings (conninfo, kwargs and connection_class; its configure callback
is not run on it), never one of the pool's: the consumer
would hold that slot for as long as it runs, and the pool would hand the
connection, LISTEN and all, to its next user.  The administrative calls
(holds, replay, discard) take a pool connection for the call.
"""
from __future__ import annotations

import datetime
import logging
import selectors
import signal
import threading
import time
import uuid
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import psycopg
from psycopg import sql

from .errors import OrdersError, translate
from .handling import HandlerFailed, Hold, Reject
from .model import Event
from .repository import EVENT_COLUMNS, Connection, event_from_row, extension_schema, is_pool

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

log = logging.getLogger("orders_repository")

__all__ = ["EventConsumer", "HandlerFailed", "Hold", "Reject"]


class EventConsumer:
    def __init__(self, dsn: Union[str, "ConnectionPool"], name: str, handler: Callable[[Event], None],
                 batch: int = 100, wake_every: float = 5.0, from_start: bool = False,
                 schema: Optional[str] = None, types: Optional[Sequence[str]] = None, group: bool = False,
                 max_attempts: int = 5, retry_delay: float = 10.0):
        """dsn: a connection string, or a psycopg_pool.ConnectionPool whose
        settings the dedicated LISTEN connection is opened with (the
        module's docstring says why not one of its connections).  types:
        only events of these types reach the handler; the others are
        skipped, and acknowledged with the ones after them.  group: name is
        a consumer group, read by as many EventConsumers as you run, each
        handed its share of the orders (README: Consumer groups).
        max_attempts, retry_delay: for an event the handler rejects (Reject),
        how often it is tried before it is parked, and the first wait in
        seconds, doubled after each failure."""
        self.dsn = dsn
        self.name, self.handler = name, handler
        self.batch, self.wake_every, self.from_start = batch, wake_every, from_start
        self.max_attempts, self.retry_delay = max_attempts, retry_delay
        self.types = None if types is None else list(types)
        self.group = group
        self.schema = schema
        # notifications received, as a sign of life for monitoring and tests
        self.wakeups = 0
        self._stop = threading.Event()
        self._listener: Optional[Connection] = None

    def stop(self) -> None:
        self._stop.set()

    def _open(self, autocommit: bool = True) -> Connection:
        """A connection of the consumer's own, from the dsn or the pool's
        settings: its conninfo, kwargs and connection_class.  The pool's
        configure callback is not run on it: it is the pool's setup of
        its own connections (and may assume one of them, a pool's
        transaction state, a type registered for its users), not of this
        one, which only LISTENs, reads and acknowledges."""
        if isinstance(self.dsn, str):
            return psycopg.connect(self.dsn, autocommit=autocommit)
        # psycopg_pool 3.1 keeps a string and a dict; from 3.2 either may be
        # a function that gives them (a rotating password, say), and kwargs
        # may be None
        pool: Any = self.dsn
        conninfo = pool.conninfo() if callable(pool.conninfo) else pool.conninfo or ""
        given = pool.kwargs() if callable(pool.kwargs) else pool.kwargs or {}
        # the pool's kwargs are psycopg.connect's, whatever their types
        kwargs: Dict[str, Any] = {**given, "autocommit": autocommit}
        connection_class = getattr(pool, "connection_class", None) or psycopg.Connection
        conn: Connection = connection_class.connect(conninfo, **kwargs)
        return conn

    @contextmanager
    def _admin(self) -> Iterator[Connection]:
        """A connection for one administrative call: the pool's, or one
        opened for it."""
        if is_pool(self.dsn):
            assert not isinstance(self.dsn, str)
            with self.dsn.connection() as conn:
                yield conn
            return
        with self._open() as conn:
            yield conn

    def _schema(self, conn: Connection) -> str:
        if self.schema is None:
            self.schema = extension_schema(conn)
        return self.schema

    def _woken(self, notify: psycopg.Notify) -> None:
        del notify
        self.wakeups += 1

    def _connect(self) -> Connection:
        if not isinstance(self.dsn, str):
            log.info("consumer %r LISTENs on a dedicated connection opened with its pool's settings, "
                     "not on one of the pool's connections", self.name)
        conn = self._open()
        try:
            s = sql.Identifier(self._schema(conn))
            try:
                register = "orders_events_register_group" if self.group else "orders_events_register"
                conn.execute(sql.SQL("SELECT {s}.{f}(%s, %s)").format(s=s, f=sql.Identifier(register)),
                             (self.name, self.from_start))
            except psycopg.OperationalError:
                raise
            except psycopg.Error as e:
                raise translate(e) from e
            # A handler, not notifies(): notifications arrive with every
            # query's result, and psycopg 3.2.4 to 3.2.8 keep those that
            # arrive outside notifies() in a backlog, without end, unless a
            # handler is registered (3.2.9, psycopg PR #1092).  3.1 calls
            # the handler and keeps nothing.
            conn.add_notify_handler(self._woken)
            conn.execute("LISTEN orders_events")  # before the first read: no wake-up missed
            self._listener = conn
            return conn
        except BaseException:
            conn.close()
            raise

    @staticmethod
    def _drop_backlog(conn: Connection) -> None:
        """For psycopg 3.2.4 to 3.2.8, which keep every notification in
        conn._notifies_backlog even with a handler registered: the wake-ups
        have done their work (the outbox is the truth), so none is kept.
        Absent from 3.1 and after 3.2.8 nothing is added to it."""
        backlog = getattr(conn, "_notifies_backlog", None)
        if backlog:
            backlog.clear()

    def run(self, exit_when_idle: Optional[float] = None, handle_sigterm: bool = True) -> None:
        """Consumes until stop(), SIGTERM, or exit_when_idle seconds with
        nothing to read.  An exception of the handler ends it, unacknowledged."""
        previous = None
        if handle_sigterm and threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, lambda *_: self.stop())
        conn: Optional[Connection] = None
        idle_since = time.monotonic()
        pause = 0.1
        try:
            while not self._stop.is_set():
                try:
                    if conn is None or conn.closed:
                        conn = self._connect()
                    wakeups = self.wakeups
                    if self._once(conn):
                        idle_since = time.monotonic()
                        pause = 0.1
                        continue  # there may be more
                    wait = self.wake_every
                    if exit_when_idle is not None:
                        left = exit_when_idle - (time.monotonic() - idle_since)
                        if left < 0:
                            break
                        wait = min(wait, left)     # not a whole wake_every past the idle time
                    if self.wakeups != wakeups:
                        # a wake-up came in with the read's or the ack's
                        # result, for a commit the read may not have seen:
                        # read again rather than wait for the next one
                        self._drop_backlog(conn)
                        continue
                    with selectors.DefaultSelector() as sel:
                        sel.register(conn.fileno(), selectors.EVENT_READ)
                        woken = sel.select(wait)
                    if woken:
                        conn.execute("SELECT 1")  # takes in the wake-ups: the outbox is the truth
                    self._drop_backlog(conn)
                except psycopg.OperationalError:
                    # the server went away: open a new connection, after a pause
                    # that grows while it stays away
                    if conn is not None:
                        conn.close()
                    conn = None
                    self._stop.wait(pause)
                    pause = min(pause * 2, 5.0)
        finally:
            if conn is not None:
                self._drop_backlog(conn)
                conn.close()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _once(self, conn: Connection) -> int:
        s = sql.Identifier(self._schema(conn))
        try:
            if self.group:
                rows = conn.execute(sql.SQL(
                    "SELECT " + EVENT_COLUMNS + " FROM {s}.orders_events_read_group(%s, %s, %s)").format(s=s),
                    (self.name, self.batch, self.types)).fetchall()
            elif self.types is None:
                rows = conn.execute(sql.SQL(
                    "SELECT " + EVENT_COLUMNS + " FROM {s}.orders_events_read(%s, %s)").format(s=s),
                    (self.name, self.batch)).fetchall()
            else:
                rows = conn.execute(sql.SQL(
                    "SELECT " + EVENT_COLUMNS + " FROM {s}.orders_events_read(%s, %s, %s)").format(s=s),
                    (self.name, self.batch, self.types)).fetchall()
        except psycopg.OperationalError:
            raise
        except psycopg.Error as e:
            raise translate(e) from e
        rejected = set()
        for row in rows:
            position, order_id = row[0], row[2]
            if order_id in rejected:
                continue  # waits behind its order's rejected event, in the hold
            try:
                self.handler(event_from_row(row))
            except Reject as e:
                rejected.add(order_id)
                self._call("orders_events_nack_group" if self.group else "orders_events_nack",
                           position, str(e) or type(e).__name__, self.max_attempts,
                           datetime.timedelta(seconds=self.retry_delay), conn=conn)
            except Exception as e:
                # the handler's own failure, whatever it is (a database error
                # of its own included): not a lost connection to retry
                raise HandlerFailed(f"the handler of consumer {self.name!r} failed at position {position}") from e
        if rows:
            try:
                ack = "orders_events_ack_group" if self.group else "orders_events_ack"
                conn.execute(sql.SQL("SELECT {s}.{f}(%s, %s)").format(s=s, f=sql.Identifier(ack)),
                             (self.name, rows[-1][0]))
            except psycopg.OperationalError:
                raise
            except psycopg.Error as e:
                raise translate(e) from e
        return len(rows)

    def _call(self, function: str, *args: Any, conn: Optional[Connection] = None,
              consumer: Optional[str] = None) -> List[Tuple[Any, ...]]:
        """One call of function(consumer, *args), on conn or a connection
        for the call."""
        if conn is None:
            with self._admin() as own:
                return self._call(function, *args, conn=own, consumer=consumer)
        query = sql.SQL("SELECT * FROM {s}.{f}(" + ", ".join(["%s"] * (len(args) + 1)) + ")").format(
            s=sql.Identifier(self._schema(conn)), f=sql.Identifier(function))
        try:
            with conn.transaction():
                return conn.execute(query, (consumer or self.name, *args)).fetchall()
        except psycopg.OperationalError:
            raise
        except psycopg.Error as e:
            raise translate(e) from e

    def _consumers(self) -> List[str]:
        """The consumers that hold this one's events: a group's 16 parts."""
        return [f"{self.name}/{p}" for p in range(16)] if self.group else [self.name]

    def holds(self) -> List[Hold]:
        """The held orders: each one's rejected event, retried or parked."""
        held = []
        with self._admin() as conn:
            for consumer in self._consumers():
                for r in self._call("orders_events_holds", conn=conn, consumer=consumer):
                    held.append(Hold(consumer, uuid.UUID(str(r[0])), r[1], r[2], r[3], r[4], r[5], r[6], r[7],
                                     r[8], list(r[9])))
        return sorted(held, key=lambda h: h.position)

    def parked(self) -> List[Hold]:
        """The dead-letter list: the events rejected max_attempts times."""
        return [h for h in self.holds() if h.parked]

    def _hold_at(self, position: int) -> Hold:
        for h in self.holds():
            if h.position == position:
                return h
        raise OrdersError(f"consumer {self.name!r} holds no event at position {position}", sqlstate="22023")

    def replay(self, position: int) -> None:
        """The held event at position comes again at the next read, its
        failures counted from zero."""
        self._call("orders_events_replay", position, consumer=self._hold_at(position).consumer)

    def discard(self, position: int) -> None:
        """Gives up on the held event at position, as if handled: its
        order's waiting events follow."""
        self._call("orders_events_discard", position, consumer=self._hold_at(position).consumer)
