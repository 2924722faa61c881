#!/usr/bin/python3
"""Consumer model check: a randomized, seeded, time-bounded test that the
outbox delivers every committed event to every consumer.

    consumer_model.py --dsn DSN [--seconds N] [--seed S]
                      [--restart-marker FILE --restarted-marker FILE]
                      [--summary FILE]

Defaults: ORDERS_MODEL_SECONDS (20) and ORDERS_MODEL_SEED (random).  The
seed fixes every random choice each thread makes (which transactions, which
orders, batch sizes, which events a consumer rejects, when readers die); the
interleaving of the threads is the machine's, so a seed reproduces a run's
shape, not its exact schedule.

Writers (threads, each its own connection) add, save and remove orders in
transactions that commit, roll back, roll back a savepoint and commit,
PREPARE TRANSACTION and are committed or rolled back later from another
connection, or hold their events open for seconds before committing.  Each
transaction's events are read inside it (order_events WHERE xid =
pg_current_xact_id()) and recorded as committed only once COMMIT returned;
a commit cut by the server's restart is resolved afterwards by its
transaction's status (pg_xact_status) and checked against the outbox.

Consumers of every kind read meanwhile: plain, typed, a group of three
readers, and one that rejects events, replays and discards them; the plain
one now and then handles a batch by writing an order in the transaction
that reads and acknowledges it.  Readers are terminated
(pg_terminate_backend) or close their connection mid-batch, before
acknowledging, and start again.  orders_events_purge() runs at
random moments.  With --restart-marker, once in the middle of the run the
script writes that file and waits for --restarted-marker: whoever runs it
restarts the server (immediate stop, start) in between.

At the end the writers stop, every prepared transaction is resolved, every
consumer reads to its end, and each consumer's record is checked: every
committed event delivered (of its types; across a group's readers;
discarded counts as given up), nothing rolled back delivered, each order's
events in order per reader except a repeat of an unacknowledged suffix
after a reader's death, duplicates only of deliveries whose acknowledgement
was lost, no held event purged.  Prints one line per consumer and a RESULT
line; exits 0 when every check passes, 1 when one fails, 2 when the run
itself could not be done (a restart never came, a drain did not end).

--inject FAULT plants one fault in the record (or deletes an event behind
the consumers' backs), to see that the checks catch it.
"""
import argparse
import itertools
import json
import os
import queue
import random
import sys
import threading
import time
import traceback
import uuid

import psycopg2

seq = itertools.count(1)          # global order of everything recorded (atomic under the GIL)
sessions = itertools.count(1)
reads = itertools.count(1)


def now():
    return time.monotonic()


class Ev:
    __slots__ = ('position', 'order_id', 'version', 'type', 'xid')

    def __init__(self, position, order_id, version, type_, xid):
        self.position, self.order_id, self.version, self.type, self.xid = \
            position, str(order_id), version, type_, xid

    def __repr__(self):
        return f'{self.position}:{self.type}@{self.order_id[:8]}v{self.version}'


def conn_lost(conn, e=None):
    """The connection is gone (or, given the error e, this error ended it):
    the server closed it (terminated, restarting), which the client may
    report without an SQLSTATE and before it marks the connection closed."""
    if conn is None or conn.closed != 0:
        return True
    if e is None:
        return False
    code = getattr(e, 'pgcode', None)
    if code is None or code[:2] == '08' or code[:3] == '57P':
        close(conn)
        return True
    return False


class Model:
    """What everyone recorded, and the phases of the run."""

    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.t0 = now()
        self.stop_writers = threading.Event()
        self.draining = threading.Event()
        self.stop_all = threading.Event()
        self.committed = {}        # position -> Ev
        self.rolled_back = {}      # position -> (Ev, why)
        self.unknown = []          # (xid, [Ev], what): commit cut by the restart
        self.committed_by = {}     # kind -> events
        self.txns = {}             # outcome -> count
        self.writer_errors = []    # SQL errors of writers (not connection losses)
        self.api_errors = []       # SQL errors of consumers, purger, resolver
        # each event a reader handled: (seq, consumer, reader, session, read_id,
        # position, order_id, version, type); seq orders them in time
        self.deliveries = []
        self.confirmed_through = {}  # read_id -> highest position acknowledged (ack or nack)
        self.rejections = []       # (seq, consumer, position, read_id, attempts after)
        self.skipped = 0
        self.discarded = {}        # consumer -> {position: seq}
        self.maybe_discarded = {}  # consumer -> set(position): the call's outcome unknown
        self.replayed = {}         # consumer -> count
        self.kills = {}            # consumer -> count
        self.closes = {}           # consumer -> count (closed mid-batch by the reader)
        self.pauses = {}           # consumer -> count (a reader stopped for seconds)
        self.sessions = {}         # consumer -> count
        self.lost_reads = {}       # consumer -> count (read whose ack never came)
        self.purges = 0
        self.purged = 0
        self.held_purged = []      # (when, consumer, position)
        self.holds_checks = 0
        self.readers_pids = {}     # reader name -> pid
        self.restart_at = None
        self.restart_took = None
        self.across_restart = (None, None)
        self.unknown_resolved = {}
        self.notes = []

    def elapsed(self):
        return now() - self.t0

    def count(self, d, k, n=1):
        with self.lock:
            d[k] = d.get(k, 0) + n

    def commit(self, evs, kind):
        with self.lock:
            for e in evs:
                self.committed[e.position] = e
            self.committed_by[kind] = self.committed_by.get(kind, 0) + len(evs)

    def rollback(self, evs, why):
        with self.lock:
            for e in evs:
                self.rolled_back[e.position] = (e, why)

    def deliver(self, consumer, slot, session, read_id, row):
        with self.lock:
            self.deliveries.append((next(seq), consumer, slot, session, read_id,
                                    row[0], str(row[1]), row[2], row[3]))

    def confirm(self, read_id, through):
        with self.lock:
            self.confirmed_through[read_id] = max(self.confirmed_through.get(read_id, -1), through)

    def api_error(self, who, e):
        with self.lock:
            self.api_errors.append(f'{who} at {self.elapsed():.1f}s: {type(e).__name__}: {str(e).strip()}')


def connect(model, dsn, deadline_s=90.0):
    """A connection, retried while the server restarts (for deadline_s)."""
    give_up = now() + deadline_s
    while True:
        try:
            # no statement may hang the run: a read never waits for a writer
            conn = psycopg2.connect(dsn, connect_timeout=5, application_name='consumer_model',
                                    options='-c statement_timeout=30000')
            conn.autocommit = True
            return conn
        except psycopg2.OperationalError:
            if now() > give_up or model.stop_all.is_set():
                raise
            time.sleep(0.2)


def close(conn):
    try:
        if conn is not None:
            conn.close()
    except Exception:
        pass


# ---------------------------------------------------------------- writers

def own_events(cur):
    """The events the open transaction wrote (and has not rolled back)."""
    cur.execute("""SELECT position, order_id, version, type, xid::text FROM order_events
                   WHERE xid = pg_current_xact_id() ORDER BY position""")
    return [Ev(*r) for r in cur.fetchall()]


LINE_PRODUCTS = [str(uuid.UUID(int=0x0b1e4f5a6c7d4e8f9a0b1c2d3e4f5a00 + i)) for i in range(8)]


class Writer(threading.Thread):
    """Transactions of adds, saves and removes on orders of its own."""

    def __init__(self, model, name, rng, resolver, long_running=False):
        super().__init__(name=name, daemon=True)
        self.model, self.rng, self.resolver, self.long = model, rng, resolver, long_running
        self.pool = {}             # order id -> True: this writer's orders
        self.conn = None
        self.gids = itertools.count(1)
        self.failed = None

    def run(self):
        try:
            while not self.model.stop_writers.is_set():
                if conn_lost(self.conn):
                    close(self.conn)
                    self.conn = connect(self.model, self.model.args.dsn)
                self.one()
                if not self.long:
                    self.model.stop_writers.wait(self.rng.uniform(0.03, 0.12))
        except Exception:
            self.failed = traceback.format_exc()
        finally:
            close(self.conn)

    def adopt(self):
        try:
            while True:
                self.pool[self.resolver.adopt.get_nowait()] = True
        except queue.Empty:
            pass

    # one operation inside the open transaction: returns (added id | None, removed id | None)
    def op(self, cur, touched):
        candidates = [o for o in self.pool if o not in touched['removed']]
        if len(candidates) < 3 or self.rng.random() < 0.3:
            lines = [{'product_id': LINE_PRODUCTS[i], 'product_name': f'Product {i}',
                      'quantity': self.rng.randint(1, 5), 'unit_price': self.rng.randint(100, 5000)}
                     for i in self.rng.sample(range(len(LINE_PRODUCTS)), self.rng.randint(1, 3))]
            cur.execute("""SELECT id FROM orders_add(%s::uuid, 'EUR',
                               ARRAY(SELECT jsonb_populate_record(NULL::order_line, l)
                                     FROM jsonb_array_elements(%s::jsonb) l),
                               ROW('Main St 1', 'Berlin', '10115', 'DE')::order_address)""",
                        (str(uuid.uuid4()), json.dumps(lines)))
            oid = str(cur.fetchone()[0])
            touched['added'].add(oid)
            return
        oid = self.rng.choice(candidates)
        cur.execute("SELECT to_jsonb(o) FROM orders_get(%s) o", (oid,))
        row = cur.fetchone()
        if row is None:
            touched['gone'].add(oid)
            return
        o = row[0]
        st = o['status']
        r = self.rng.random()
        if st == 'pending':
            change = ('confirm' if r < 0.35 else 'lines' if r < 0.55 else 'lines+confirm' if r < 0.65
                      else 'address' if r < 0.78 else 'cancel' if r < 0.88 else 'remove')
        elif st == 'confirmed':
            change = 'ship' if r < 0.6 else 'address' if r < 0.8 else 'cancel'
        elif st == 'shipped':
            change = 'deliver'
        else:
            change = 'remove'
        if change == 'remove':
            cur.execute("SELECT version FROM orders_remove(%s)", (oid,))
            touched['removed'].add(oid)
            return
        if 'lines' in change:
            o['lines'][0]['quantity'] = o['lines'][0]['quantity'] % 100 + 1
        if change == 'address':
            o['shipping_address']['street'] = f"Main St {self.rng.randint(2, 999)}"
        o['status'] = {'confirm': 'confirmed', 'lines+confirm': 'confirmed', 'ship': 'shipped',
                       'deliver': 'delivered', 'cancel': 'cancelled'}.get(change, st)
        cur.execute("SELECT version FROM orders_save(jsonb_populate_record(NULL::orders, %s::jsonb))",
                    (json.dumps(o),))
        touched['saved'].add(oid)

    def events(self, cur):
        return own_events(cur)

    def one(self):
        m, rng = self.model, self.rng
        self.adopt()
        if self.long:
            kind = 'long'
        else:
            r = rng.random()
            kind = ('commit' if r < 0.6 else 'rollback' if r < 0.7 else 'savepoint' if r < 0.85
                    else 'prepare' if self.resolver.pending() < 3 else 'commit')
        touched = {'added': set(), 'removed': set(), 'saved': set(), 'gone': set()}
        cur = self.conn.cursor()
        stage, evs, xid = 'open', [], None
        try:
            cur.execute("BEGIN")
            if kind == 'prepare':
                cur.execute("SET LOCAL orders.notify = off")
            for _ in range(rng.randint(1, 4)):
                self.op(cur, touched)
            if kind == 'savepoint':
                # what the savepoint wrote is rolled back, the rest commits
                before = {e.position for e in self.events(cur)}
                cur.execute("SAVEPOINT s")
                inner = {'added': set(), 'removed': set(touched['removed']), 'saved': set(), 'gone': set()}
                for _ in range(rng.randint(1, 3)):
                    self.op(cur, inner)
                undone = [e for e in self.events(cur) if e.position not in before]
                cur.execute("ROLLBACK TO SAVEPOINT s")
                m.rollback(undone, 'savepoint')
                if rng.random() < 0.5:
                    self.op(cur, touched)
            cur.execute("SELECT pg_current_xact_id()::text")
            xid = cur.fetchone()[0]
            evs = self.events(cur)
            if kind == 'long':
                # holds its positions open across the consumers' batches
                m.stop_writers.wait(rng.uniform(1.0, 4.0))
            if kind == 'rollback' or (kind == 'long' and rng.random() < 0.2):
                cur.execute("ROLLBACK")
                m.rollback(evs, 'rollback')
                m.count(m.txns, 'rolled back')
                return
            if kind == 'prepare':
                gid = f'model_{m.args.seed}_{self.name}_{next(self.gids)}'
                # its orders are locked until it is resolved: the resolver has them
                for o in touched['saved'] | touched['added']:
                    self.pool.pop(o, None)
                stage = 'prepare'
                cur.execute("PREPARE TRANSACTION %s", (gid,))
                stage = 'done'
                self.resolver.add(gid, xid, evs, touched['saved'] | touched['added'], sure=True)
                for o in touched['removed']:
                    self.pool.pop(o, None)
                m.count(m.txns, 'prepared')
                return
            stage = 'commit'
            cur.execute("COMMIT")
            stage = 'done'
        except psycopg2.Error as e:
            if conn_lost(self.conn, e):
                if stage == 'commit':
                    with m.lock:
                        m.unknown.append((xid, evs, kind))
                    for o in touched['added'] | touched['removed'] | touched['saved']:
                        self.pool.pop(o, None)
                elif stage == 'prepare':
                    self.resolver.add(gid, xid, evs, touched['saved'] | touched['added'], sure=False)
                    for o in touched['removed']:
                        self.pool.pop(o, None)
                else:
                    # never reached COMMIT: aborted for sure
                    m.rollback(evs, 'connection lost')
                m.count(m.txns, 'connection lost at ' + stage)
                return
            with m.lock:
                m.writer_errors.append(f'{self.name} ({kind}): {type(e).__name__}: {str(e).strip()}')
            try:
                cur.execute("ROLLBACK")
            except psycopg2.Error:
                pass
            m.rollback(evs, 'error')
            return
        m.commit(evs, kind)
        m.count(m.txns, 'committed ' + kind)
        for o in touched['added']:
            self.pool[o] = True
        for o in touched['removed'] | touched['gone']:
            self.pool.pop(o, None)


class Resolver(threading.Thread):
    """COMMIT PREPARED / ROLLBACK PREPARED, later, from its own connection."""

    def __init__(self, model, rng):
        super().__init__(name='resolver', daemon=True)
        self.model, self.rng = model, rng
        self.todo = []             # [due, gid, xid, evs, orders, commit?, sure]
        self.lock = threading.Lock()
        self.adopt = queue.Queue()
        self.conn = None
        self.decided = 0
        self.failed = None
        self.finish = threading.Event()

    def pending(self):
        with self.lock:
            return len(self.todo)

    def add(self, gid, xid, evs, orders, sure):
        with self.lock:
            # the first one is rolled back, so that every run has one
            commit = self.decided > 0 and self.rng.random() < 0.75
            self.decided += 1
            self.todo.append([now() + self.rng.uniform(0.3, 3.0), gid, xid, evs, orders, commit, sure])

    def run(self):
        try:
            while True:
                with self.lock:
                    due = [t for t in self.todo if t[0] <= now() or self.finish.is_set()]
                    if not self.todo and self.finish.is_set():
                        return
                for t in due:
                    self.resolve(t)
                time.sleep(0.05)
        except Exception:
            self.failed = traceback.format_exc()
        finally:
            close(self.conn)

    def resolve(self, t):
        m = self.model
        _, gid, xid, evs, orders, commit, sure = t
        for attempt in range(200):
            try:
                if conn_lost(self.conn):
                    close(self.conn)
                    self.conn = connect(m, m.args.dsn)
                cur = self.conn.cursor()
                cur.execute("SELECT count(*) FROM pg_prepared_xacts WHERE gid = %s", (gid,))
                if cur.fetchone()[0] == 1:
                    cur.execute(("COMMIT PREPARED %s" if commit else "ROLLBACK PREPARED %s"), (gid,))
                    outcome = 'committed' if commit else 'aborted'
                else:
                    # never prepared (cut by the restart), or our last
                    # COMMIT/ROLLBACK PREPARED went through unanswered
                    cur.execute("SELECT pg_xact_status(%s::xid8)", (xid,))
                    outcome = cur.fetchone()[0]
                    if outcome == 'in progress':
                        raise RuntimeError(f'prepared transaction {gid} ({xid}) is neither prepared nor ended')
                    if sure and outcome == 'committed' and not commit:
                        raise RuntimeError(f'{gid} committed though we rolled it back')
                break
            except psycopg2.Error as e:
                if not conn_lost(self.conn, e):
                    m.api_error(f'resolver ({gid})', e)
                    raise
                time.sleep(0.2)
        else:
            raise RuntimeError(f'could not resolve {gid}')
        if outcome == 'committed':
            m.commit(evs, '2pc')
            m.count(m.txns, 'commit prepared')
        else:
            m.rollback(evs, 'rollback prepared' if commit is False and sure else 'prepare cut')
            m.count(m.txns, 'rollback prepared' if sure else 'prepare cut by restart')
        with self.lock:
            self.todo.remove(t)
        for o in orders:
            self.adopt.put(o)


# ---------------------------------------------------------------- consumers

class Reader(threading.Thread):
    """One reader of a consumer: reads, handles (records), acknowledges;
    dies now and then (terminated from outside, or closing its connection
    in the middle of a batch) and starts again with a new session."""

    def __init__(self, model, consumer, slot, rng, kind, types=None):
        super().__init__(name=f'{consumer}[{slot}]', daemon=True)
        self.model, self.consumer, self.slot, self.rng, self.kind, self.types = \
            model, consumer, slot, rng, kind, types
        self.conn = None
        self.session = None
        self.drained = threading.Event()
        self.empty = 0
        self.failed = None
        self.rejected = set()      # positions this consumer rejected at least once
        self.leave = False         # a group reader told to leave for the final drain

    def run(self):
        m = self.model
        try:
            while not m.stop_all.is_set() and not self.drained.is_set():
                try:
                    if conn_lost(self.conn):
                        self.new_session()
                    self.step()
                except psycopg2.Error as e:
                    if not conn_lost(self.conn, e):
                        m.api_error(self.name, e)
                        close(self.conn)
                    self.end_session()
                    time.sleep(0.1)
        except Exception:
            self.failed = traceback.format_exc()
        finally:
            close(self.conn)

    def new_session(self):
        m = self.model
        close(self.conn)
        self.conn = connect(m, m.args.dsn)
        self.session = next(sessions)
        m.count(m.sessions, self.consumer)
        cur = self.conn.cursor()
        cur.execute("SELECT pg_backend_pid()")
        with m.lock:
            m.readers_pids[self.name] = cur.fetchone()[0]

    def end_session(self):
        with self.model.lock:
            self.model.readers_pids.pop(self.name, None)
        close(self.conn)
        self.conn = None

    def chaos(self):
        return not self.model.draining.is_set()

    def death(self, rows):
        """Where in this batch the reader will close its connection, if it
        does: None most of the time, and always once draining, which must
        end."""
        if self.chaos() and self.rng.random() < 0.06:
            return self.rng.randrange(len(rows))
        return None

    def die_mid_batch(self):
        """Gone in the middle of the batch, nothing more acknowledged: what
        it was handed comes again to the next session."""
        m = self.model
        m.count(m.closes, self.consumer)
        m.count(m.lost_reads, self.consumer)
        self.end_session()

    def ack_batch(self, cur, read_id, position):
        """The acknowledgement that ends a batch.  One that fails is
        counted (the summary's lost_acks): the batch comes again, and the
        duplicates it makes are ones the checks allow."""
        try:
            self.ack(cur, read_id, position)
        except psycopg2.Error:
            self.model.count(self.model.lost_reads, self.consumer)
            raise

    def read(self, cur, n):
        if self.kind == 'group':
            cur.execute("SELECT position, order_id, version, type FROM orders_events_read_group(%s, %s)",
                        (self.consumer, n))
        elif self.types:
            cur.execute("SELECT position, order_id, version, type FROM orders_events_read(%s, %s, %s::text[])",
                        (self.consumer, n, self.types))
        else:
            cur.execute("SELECT position, order_id, version, type FROM orders_events_read(%s, %s)",
                        (self.consumer, n))
        return cur.fetchall()

    def ack(self, cur, read_id, position):
        if self.kind == 'group':
            cur.execute("SELECT orders_events_ack_group(%s, %s)", (self.consumer, position))
        else:
            cur.execute("SELECT orders_events_ack(%s, %s)", (self.consumer, position))
        self.model.confirm(read_id, position)

    def idle(self, rows, complete, draining):
        """Counts empty reads; drained after two in a row once draining.
        complete: the read covered everything the consumer has (a group's
        reader held all 16 parts; no event held for later).  Two, so that
        the second read acknowledges the first one's batch, opened after
        the last commit, and the purge can then remove every event."""
        if rows:
            self.empty = 0
            return False
        self.empty = self.empty + 1 if complete and draining else 0
        if self.empty >= 2:
            self.drained.set()
            return True
        time.sleep(0.02 if draining else self.rng.uniform(0.05, 0.2))
        return True

    def pause(self):
        """Now and then a reader stops for a while: a backlog builds up,
        with transactions that were running at its checkpoint."""
        if self.chaos() and self.rng.random() < 0.02:
            self.model.count(self.model.pauses, self.consumer)
            self.model.draining.wait(self.rng.uniform(1.0, 3.0))

    def step(self):
        m, rng = self.model, self.rng
        self.pause()
        if self.kind == 'group' and self.leave:
            # the final drain is one reader's, holding all 16 parts
            cur = self.conn.cursor()
            cur.execute("SELECT orders_events_leave_group(%s)", (self.consumer,))
            self.end_session()
            self.drained.set()
            return
        cur = self.conn.cursor()
        draining = m.draining.is_set()   # before the read: it then sees every write
        # now and then the plain consumer handles a batch by writing, in the
        # transaction that reads and acknowledges it: that event of its own
        # must come in a later batch
        in_tx = self.kind == 'plain' and not m.stop_writers.is_set() and rng.random() < 0.1
        n = rng.randint(1, 30)
        read_id = next(reads)
        if in_tx:
            cur.execute("BEGIN")
        rows = self.read(cur, n)
        if in_tx and not rows:
            cur.execute("COMMIT")
        done = True
        if self.kind == 'group' and draining:
            cur.execute("SELECT cardinality(orders_internal.orders_events_group_held(%s))", (self.consumer,))
            done = cur.fetchone()[0] == 16
        if self.idle(rows, done, draining):
            return
        die_at = self.death(rows)
        ack_mid = rng.randrange(len(rows)) if rng.random() < 0.15 else None
        if m.args.inject and self.kind == 'plain':
            rows, die_at, ack_mid = self.inject(rows, read_id, die_at, ack_mid)
        if in_tx:
            ack_mid = None
        for i, row in enumerate(rows):
            if i == die_at:
                self.die_mid_batch()
                return
            m.deliver(self.consumer, self.slot, self.session, read_id, row)
            if i == ack_mid:
                self.ack(cur, read_id, row[0])
        last = max(r[0] for r in rows)   # the last: rows come in position order
        if in_tx:
            self.write_and_ack(cur, read_id, last)
            return
        self.ack_batch(cur, read_id, last)

    def write_and_ack(self, cur, read_id, last):
        """The handler's own write and the acknowledgement, committed with
        the read: both count only once COMMIT returned."""
        m = self.model
        stage, evs, xid = 'open', [], None
        try:
            cur.execute("SELECT id FROM orders_add(%s::uuid, 'EUR')", (str(uuid.uuid4()),))
            cur.execute("SELECT pg_current_xact_id()::text")
            xid = cur.fetchone()[0]
            evs = own_events(cur)
            cur.execute("SELECT orders_events_ack(%s, %s)", (self.consumer, last))
            stage = 'commit'
            cur.execute("COMMIT")
        except psycopg2.Error as e:
            m.count(m.lost_reads, self.consumer)
            if conn_lost(self.conn, e) and stage == 'commit':
                with m.lock:
                    m.unknown.append((xid, evs, 'consumer'))
            else:
                m.rollback(evs, 'consumer transaction failed')
            raise
        m.commit(evs, 'consumer')
        m.count(m.txns, 'committed by a consumer')
        m.confirm(read_id, last)

    def inject(self, rows, read_id, die_at, ack_mid):
        """--inject: a fault in the plain consumer's record, once, for
        checking that the checks catch it."""
        m = self.model
        self.reads_seen = getattr(self, 'reads_seen', 0) + 1
        fault = m.args.inject
        if getattr(self, 'injected', False) or self.reads_seen < 10:
            self.previous = rows
            return rows, die_at, ack_mid
        if fault == 'drop':
            # an event the consumer never gets, though the read moves past it
            self.injected = True
            m.notes.append(f'injected: dropped {rows[0][0]}')
            return rows[1:] or rows, None, None
        if fault == 'dup':
            # an event acknowledged in the last read, handed out again
            self.injected = True
            m.notes.append(f'injected: {self.previous[-1][0]} again')
            return [self.previous[-1]] + rows, None, None
        if fault == 'reorder':
            orders = [str(r[1]) for r in rows]
            twice = [o for o in orders if orders.count(o) > 1]
            if twice:
                self.injected = True
                m.notes.append(f'injected: order {twice[0]} reversed in read {read_id}')
                same = [r for r in rows if str(r[1]) == twice[0]]
                rest = [r for r in rows if str(r[1]) != twice[0]]
                return rest + same[::-1], None, None
        below = [p for p in list(m.rolled_back) if p < rows[-1][0]]
        if fault == 'rolled' and below:
            # (below the last position read: the acknowledgement stays the read's)
            self.injected = True
            e = m.rolled_back[max(below)][0]
            m.notes.append(f'injected: rolled back {e.position}')
            return [(e.position, e.order_id, e.version, e.type)] + rows, None, None
        self.previous = rows
        return rows, die_at, ack_mid


class NackReader(Reader):
    """A consumer that rejects some events, and replays or discards the
    parked ones now and then; when draining it rejects nothing more."""

    def manage_parked(self, cur, all_of_them):
        m = self.model
        cur.execute("SELECT event_position FROM orders_events_parked(%s) ORDER BY event_position",
                    (self.consumer,))
        for (p,) in cur.fetchall():
            if not all_of_them and self.rng.random() < 0.5:
                continue
            if self.rng.random() < 0.5:
                cur.execute("SELECT orders_events_replay(%s, %s)", (self.consumer, p))
                m.count(m.replayed, self.consumer)
            else:
                with m.lock:
                    m.maybe_discarded.setdefault(self.consumer, set()).add(p)
                cur.execute("SELECT orders_events_discard(%s, %s)", (self.consumer, p))
                with m.lock:
                    m.discarded.setdefault(self.consumer, {})[p] = next(seq)

    def step(self):
        m, rng = self.model, self.rng
        self.pause()
        cur = self.conn.cursor()
        draining = m.draining.is_set()
        if draining or rng.random() < 0.1:
            self.manage_parked(cur, draining)
        n = rng.randint(1, 30)
        read_id = next(reads)
        rows = self.read(cur, n)
        holds = 0
        if not rows and draining:
            cur.execute("SELECT count(*) FROM orders_events_holds(%s)", (self.consumer,))
            holds = cur.fetchone()[0]
        if self.idle(rows, holds == 0, draining):
            return
        die_at = self.death(rows)
        held_now = set()           # orders rejected in this read: their later events wait
        for i, row in enumerate(rows):
            if i == die_at:
                self.die_mid_batch()
                return
            p, oid = row[0], str(row[1])
            if oid in held_now:
                with m.lock:
                    m.skipped += 1
                continue
            again = p in self.rejected
            if not draining and rng.random() < (0.5 if again else 0.08):
                cur.execute("SELECT attempts FROM orders_events_nack(%s, %s, %s, max_attempts => 3,"
                            " retry_delay => '150 milliseconds')",
                            (self.consumer, p, f'model rejects {p}'))
                attempts = cur.fetchone()[0]
                m.confirm(read_id, p - 1)
                with m.lock:
                    m.rejections.append((next(seq), self.consumer, p, read_id, attempts))
                self.rejected.add(p)
                held_now.add(oid)
                continue
            m.deliver(self.consumer, self.slot, self.session, read_id, row)
        self.ack_batch(cur, read_id, rows[-1][0])


class Chaos(threading.Thread):
    """Terminates a random reader's backend now and then."""

    def __init__(self, model, rng):
        super().__init__(name='chaos', daemon=True)
        self.model, self.rng = model, rng
        self.failed = None

    def run(self):
        m = self.model
        conn = None
        try:
            while not m.draining.wait(self.rng.uniform(0.5, 1.5)):
                with m.lock:
                    victims = sorted(m.readers_pids.items())
                if not victims:
                    continue
                name, pid = self.rng.choice(victims)
                try:
                    if conn_lost(conn):
                        close(conn)
                        conn = connect(m, m.args.dsn)
                    cur = conn.cursor()
                    cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    if cur.fetchone()[0]:
                        m.count(m.kills, name.split('[')[0])
                except psycopg2.Error as e:
                    if not conn_lost(conn, e):
                        raise
        except Exception:
            self.failed = traceback.format_exc()
        finally:
            close(conn)


HOLDS_PURGED = """
SELECT h.consumer, p
FROM order_event_holds h CROSS JOIN LATERAL unnest(h.position || h.later) p
WHERE NOT EXISTS (SELECT FROM order_events e WHERE e.position = p)"""


class Purger(threading.Thread):
    """orders_events_purge() at random moments; after each, no hold may
    name an event that is gone."""

    def __init__(self, model, rng, consumers):
        super().__init__(name='purger', daemon=True)
        self.model, self.rng, self.consumers = model, rng, consumers
        self.failed = None

    def check_holds(self, cur):
        m = self.model
        cur.execute(HOLDS_PURGED)
        gone = cur.fetchall()
        # the same through the API: a held event whose row is gone shows no type
        for c in self.consumers:
            cur.execute("SELECT event_position FROM orders_events_holds(%s) WHERE type IS NULL", (c,))
            gone += [(c, r[0]) for r in cur.fetchall()]
        with m.lock:
            m.holds_checks += 1
            m.held_purged += [(round(m.elapsed(), 1), c, p) for c, p in gone]

    def run(self):
        m = self.model
        conn = None
        try:
            while not m.stop_all.wait(self.rng.uniform(0.3, 1.5)):
                try:
                    if conn_lost(conn):
                        close(conn)
                        conn = connect(m, m.args.dsn)
                    cur = conn.cursor()
                    if m.args.inject == 'delete' and not m.notes and m.elapsed() > m.args.seconds / 2:
                        cur.execute("DELETE FROM order_events WHERE position = (SELECT max(position)"
                                    " FROM order_events) RETURNING position")
                        m.notes.append(f'injected: deleted event {cur.fetchone()}')
                    cur.execute("SELECT orders_events_purge()")
                    n = cur.fetchone()[0]
                    with m.lock:
                        m.purges += 1
                        m.purged += n
                    self.check_holds(cur)
                except psycopg2.Error as e:
                    if not conn_lost(conn, e):
                        m.api_error('purger', e)
                        close(conn)
                    conn = None
                    time.sleep(0.2)
        except Exception:
            self.failed = traceback.format_exc()
        finally:
            close(conn)


# ---------------------------------------------------------------- checks

def check(model, consumers, start_position, cur):
    """Every consumer's record against what committed.  Returns (lines, failures)."""
    m = model
    lines, failures = [], []
    committed = {p: e for p, e in m.committed.items() if p > start_position}
    rolled = {p: v for p, v in m.rolled_back.items() if p > start_position}

    # the model's own bookkeeping: every event present in the outbox is one
    # it recorded as committed, and none it recorded as rolled back exists
    cur.execute("SELECT position, order_id, version, type, xid::text FROM order_events WHERE position > %s",
                (start_position,))
    present = {r[0]: Ev(*r) for r in cur.fetchall()}
    unrecorded = sorted(p for p in present if p not in committed)
    if unrecorded:
        failures.append(f'events in the outbox that no writer saw commit: {unrecorded[:20]}'
                        f' (of {len(unrecorded)}; rolled back by the record: '
                        f'{[p for p in unrecorded if p in rolled][:20]})')
    for p, e in present.items():
        c = committed.get(p)
        if c and (c.order_id, c.version, c.type) != (e.order_id, e.version, e.type):
            failures.append(f'event {p} is {e} in the outbox but {c} in the record')

    # each order's events take later positions for later versions
    by_order = {}
    for p in sorted(committed):
        by_order.setdefault(committed[p].order_id, []).append(committed[p])
    for oid, evs in by_order.items():
        for a, b in zip(evs, evs[1:]):
            if b.version < a.version:
                failures.append(f'order {oid}: {b} takes a later position than {a}')

    for name, spec in consumers.items():
        types = spec.get('types')
        expected = {p for p, e in committed.items() if types is None or e.type in types}
        ds = [d for d in m.deliveries if d[1] == name and d[5] > start_position]
        discarded = m.discarded.get(name, {})
        maybe_discarded = m.maybe_discarded.get(name, set())
        confirmed = [d[5] <= m.confirmed_through.get(d[4], -1) for d in ds]
        seen = {}
        for i, d in enumerate(ds):
            seen.setdefault(d[5], []).append(i)
        problems = []

        missing = sorted(expected - set(seen) - set(discarded) - maybe_discarded)
        if missing:
            problems.append(f'never delivered: {[committed[p] for p in missing][:20]} (of {len(missing)})')
        unexpected = sorted(p for p in seen if p not in expected)
        for p in unexpected[:20]:
            if p in committed:
                why = f'of type {committed[p].type}, not one of its types'
            elif p in rolled:
                why = f'rolled back ({rolled[p][1]}): {rolled[p][0]}'
            else:
                why = 'written by no transaction the model knows'
            problems.append(f'delivered event {p}: {why}')
        if len(unexpected) > 20:
            problems.append(f'... {len(unexpected)} unexpected deliveries in all')
        for p, idx in seen.items():
            e = committed.get(p)
            d = ds[idx[0]]
            if e and (e.order_id, e.version, e.type) != (d[6], d[7], d[8]):
                problems.append(f'event {p} delivered as {d[8]}@{d[6][:8]}v{d[7]}, committed as {e}')

        # duplicates: only of a delivery whose acknowledgement was lost
        duplicates = []
        bad_dups = []
        for p, idx in seen.items():
            if len(idx) < 2:
                continue
            duplicates.append(p)
            for i in idx[:-1]:
                if confirmed[i]:
                    later = [ds[j] for j in idx if j > i]
                    bad_dups.append(f'{p} acknowledged (read {ds[i][4]}, session {ds[i][3]}, reader {ds[i][2]})'
                                    f' and delivered again (read {later[0][4]}, session {later[0][3]},'
                                    f' reader {later[0][2]})')
                    break
        problems += [f'delivered after its acknowledgement: {b}' for b in bad_dups[:20]]
        for p, s in discarded.items():
            after = [d for d in ds if d[5] == p and d[0] > s]
            if after:
                problems.append(f'event {p} delivered after it was discarded (read {after[0][4]})')

        # per reader, each order's events in order, except a repeat of a
        # suffix that was never acknowledged, after the reader's session ended
        backwards = []
        last = {}                  # (slot, order) -> (position, version, session)
        confirmed_max = {}         # order -> highest position delivered and acknowledged so far
        for i, d in enumerate(ds):
            _, _, slot, session, read_id, p, oid, ver, _ = d
            prev = last.get((slot, oid))
            if prev is not None and (p <= prev[0] or ver < prev[1]):
                # back to an event handled before by a session that ended
                # without acknowledging it, nor any later one of the order
                ok = p <= prev[0] and session != prev[2] \
                    and all(not confirmed[j] for j in seen[p] if j < i) \
                    and confirmed_max.get(oid, -1) < p
                if not ok:
                    backwards.append(f'reader {slot}, order {oid[:8]}: v{ver} (event {p}, session {session},'
                                     f' read {read_id}) after v{prev[1]} (event {prev[0]}, session {prev[2]})')
            last[(slot, oid)] = (p, ver, session)
            if confirmed[i]:
                confirmed_max[oid] = max(confirmed_max.get(oid, -1), p)
        problems += [f'out of order: {b}' for b in backwards[:20]]

        rej = [r for r in m.rejections if r[1] == name]
        extra = ''
        if spec['kind'] == 'nack':
            parked = sum(1 for r in rej if r[4] >= 3)
            extra = (f' rejected={len(rej)} parked={parked} replayed={m.replayed.get(name, 0)}'
                     f' discarded={len(discarded)} skipped_behind_held={m.skipped}')
        readers = sorted({d[2] for d in ds})
        per_reader = ''
        if spec['kind'] == 'group':
            per_reader = ' per_reader=' + ','.join(f'{r}:{sum(1 for d in ds if d[2] == r)}' for r in readers)
        line = (f'CONSUMER {name} kind={spec["kind"]}'
                + (f' types={",".join(types)}' if types else '')
                + f' committed={len(expected)} delivered={len(set(seen) & expected)}'
                f' handled={len(ds)} duplicates={len(duplicates)} lost_acks={m.lost_reads.get(name, 0)}'
                f' sessions={m.sessions.get(name, 0)} kills={m.kills.get(name, 0)}'
                f' closes={m.closes.get(name, 0)} pauses={m.pauses.get(name, 0)}{extra}{per_reader}'
                f' missing={len(missing)} unexpected={len(unexpected)} out_of_order={len(backwards)}'
                f' bad_duplicates={len(bad_dups)} {"ok" if not problems else "FAILED"}')
        lines.append(line)
        if duplicates:
            lines.append(f'  {name} duplicates (ack lost): ' + ' '.join(
                f'{p}x{len(seen[p])}' for p in sorted(duplicates)[:60]) + (' ...' if len(duplicates) > 60 else ''))
        failures += [f'{name}: {p}' for p in problems]
    return lines, failures


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--dsn', default=os.environ.get('ORDERS_MODEL_DSN', ''))
    ap.add_argument('--seconds', type=float, default=float(os.environ.get('ORDERS_MODEL_SECONDS', '20')))
    ap.add_argument('--seed', type=int, default=int(os.environ['ORDERS_MODEL_SEED'])
                    if os.environ.get('ORDERS_MODEL_SEED') else None)
    ap.add_argument('--restart-marker')
    ap.add_argument('--restarted-marker')
    ap.add_argument('--summary', help='write the counts as JSON there')
    ap.add_argument('--drain-seconds', type=float, default=60.0)
    ap.add_argument('--inject', choices=['drop', 'dup', 'reorder', 'rolled', 'delete'],
                    help='a fault, to see the checks catch it: the plain consumer drops an event, gets an'
                         ' acknowledged one again, gets an order\'s events reversed, gets a rolled-back one;'
                         ' or an event is deleted behind the consumers\' backs')
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 2**31)
    repro = (f'ORDERS_MODEL_SEED={args.seed} ORDERS_MODEL_SECONDS={args.seconds:g} '
             f'make installcheck REGRESS= ISOLATION= PROVE_TESTS=test/t/020_consumer_model.pl'
             f'   (or: ORDERS_MODEL_SEED={args.seed} ORDERS_MODEL_SECONDS={args.seconds:g}'
             f' prove test/t/020_consumer_model.pl; the script alone: test/model/consumer_model.py'
             f' --dsn ... --seed {args.seed} --seconds {args.seconds:g})')
    print(f'MODEL seed={args.seed} seconds={args.seconds:g}', flush=True)
    master = random.Random(args.seed)

    def rng():
        return random.Random(master.randrange(2**62))

    model = Model(args)
    admin = connect(model, args.dsn)
    acur = admin.cursor()
    acur.execute("SELECT extversion FROM pg_extension WHERE extname = 'orders'")
    version = acur.fetchone()[0]
    acur.execute("SELECT coalesce(max(position), 0) FROM order_events")
    start_position = acur.fetchone()[0]
    acur.execute("SELECT current_setting('max_prepared_transactions')::int")
    if acur.fetchone()[0] < 4:
        print('RESULT error: max_prepared_transactions must be at least 4', flush=True)
        return 2

    # the consumers, registered before the first write: every event
    # written from now on is theirs (from_start would add older ones)
    typed = sorted(rng().sample(['order_lines_changed', 'order_shipping_address_changed',
                                 'order_shipped', 'order_delivered'], 2)
                   + ['order_confirmed', 'order_cancelled', 'order_removed'])
    consumers = {'model_plain': {'kind': 'plain'},
                 'model_typed': {'kind': 'typed', 'types': typed},
                 'model_group': {'kind': 'group'},
                 'model_nack': {'kind': 'nack'}}
    for name, spec in consumers.items():
        if spec['kind'] == 'group':
            acur.execute("SELECT orders_events_unregister_group(%s)", (name,))
            acur.execute("SELECT orders_events_register_group(%s)", (name,))
        else:
            acur.execute("SELECT orders_events_unregister(%s)", (name,))
            acur.execute("SELECT orders_events_register(%s)", (name,))
    close(admin)

    resolver = Resolver(model, rng())
    writers = [Writer(model, f'writer{i}', rng(), resolver) for i in range(1, 4)]
    writers.append(Writer(model, 'long', rng(), resolver, long_running=True))
    readers = [Reader(model, 'model_plain', 'p', rng(), 'plain'),
               Reader(model, 'model_typed', 't', rng(), 'typed', typed),
               NackReader(model, 'model_nack', 'n', rng(), 'nack')]
    group = [Reader(model, 'model_group', f'g{i}', rng(), 'group') for i in range(3)]
    readers += group
    chaos = Chaos(model, rng())
    purger = Purger(model, rng(), [n for n, s in consumers.items() if s['kind'] != 'group'])
    threads = writers + [resolver] + readers + [chaos, purger]
    restart_after = args.seconds * master.uniform(0.35, 0.6)
    for t in threads:
        t.start()

    status = 0
    failures = []
    try:
        if args.restart_marker:
            model.stop_writers.wait(restart_after)
            model.restart_at = model.elapsed()
            with open(args.restart_marker, 'w') as f:
                f.write(f'{model.restart_at:.1f}\n')
            print(f'RESTART requested at {model.restart_at:.1f}s', flush=True)
            waited = now()
            while not os.path.exists(args.restarted_marker):
                if now() - waited > 120:
                    failures.append('the restart never came (no --restarted-marker file after 120 s)')
                    status = 2
                    break
                time.sleep(0.05)
            model.restart_took = now() - waited
            # what the restart had to keep: prepared transactions and holds
            conn = connect(model, args.dsn)
            cur = conn.cursor()
            cur.execute("SELECT (SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE %s),"
                        " (SELECT count(*) FROM order_event_holds)", (f'model_{args.seed}_%',))
            model.across_restart = cur.fetchone()
            close(conn)
            print(f'RESTART done in {model.restart_took:.1f}s; prepared transactions across it:'
                  f' {model.across_restart[0]}, held orders: {model.across_restart[1]}', flush=True)
        model.stop_writers.wait(max(0.0, args.seconds - model.elapsed()))
        model.stop_writers.set()
        stopped_at = model.elapsed()
        for w in writers:
            w.join(30)
        resolver.finish.set()
        resolver.join(60)

        # commits cut by the restart: their transaction's status decides
        conn = connect(model, args.dsn)
        cur = conn.cursor()
        resolved = {}
        for xid, evs, kind in model.unknown:
            cur.execute("SELECT pg_xact_status(%s::xid8)", (xid,))
            st = cur.fetchone()[0]
            resolved[st] = resolved.get(st, 0) + 1
            positions = [e.position for e in evs]
            cur.execute("SELECT count(*) FROM order_events WHERE position = ANY (%s) AND xid <> %s::xid8",
                        (positions, xid))
            if cur.fetchone()[0]:
                failures.append(f'commit of {xid} cut by the restart: its positions {positions} hold another xid')
            if st == 'committed':
                model.commit(evs, kind + ' (cut, committed)')
            elif st == 'aborted':
                cur.execute("SELECT count(*) FROM order_events WHERE position = ANY (%s)", (positions,))
                if cur.fetchone()[0]:
                    failures.append(f'transaction {xid} aborted, yet its events {positions} exist')
                model.rollback(evs, 'commit cut by the restart, aborted')
            else:
                failures.append(f'transaction {xid}, cut by the restart, is {st}')
        cur.execute("SELECT gid FROM pg_prepared_xacts WHERE gid LIKE %s", (f'model_{args.seed}_%',))
        left = [r[0] for r in cur.fetchall()]
        if left:
            failures.append(f'prepared transactions left: {left}')
        model.unknown_resolved = resolved
        writers_done = model.elapsed()

        # drain: no more chaos or rejections; the group's last reader alone
        # takes the 16 parts and reads them to the end
        model.draining.set()
        for r in group[1:]:
            r.leave = True
        drain_deadline = now() + args.drain_seconds
        for r in readers:
            r.join(max(0.1, drain_deadline - now()))
        undrained = [r.name for r in readers if not r.drained.is_set()]
        if undrained:
            failures.append(f'readers not drained within {args.drain_seconds:g}s: {undrained}')
            status = 2
        drained_at = model.elapsed()
        model.stop_all.set()
        purger.join(10)
        chaos.join(10)
        # one last look at the holds; the record against the outbox; then
        # what a purge leaves once every consumer has everything
        purger.check_holds(cur)
        cur.execute("SELECT count(*) FROM orders_events_holds('model_nack')")
        holds_left = cur.fetchone()[0]
        for t in threads:
            if t.failed:
                failures.append(f'thread {t.name} failed:\n{t.failed}')
                status = 2
        lines, problems = check(model, consumers, start_position, cur)
        failures += problems
        cur.execute("SELECT orders_events_purge()")
        cur.execute("SELECT count(*) FROM order_events WHERE position > %s", (start_position,))
        left_after_purge = cur.fetchone()[0]
        close(conn)
    except Exception:
        failures.append('the model itself failed:\n' + traceback.format_exc())
        status = 2
        lines = []
        stopped_at = writers_done = drained_at = model.elapsed()
        holds_left = left_after_purge = -1

    m = model
    committed = {p: e for p, e in m.committed.items() if p > start_position}
    txns = ' '.join(f'{k.replace(" ", "_")}={v}' for k, v in sorted(m.txns.items()))
    print(f'MODEL extension={version} seed={args.seed} seconds={args.seconds:g}'
          f' writes_stopped={stopped_at:.1f}s writers_done={writers_done:.1f}s drained={drained_at:.1f}s'
          f' restart_at={m.restart_at if m.restart_at is None else round(m.restart_at, 1)}'
          f' prepared_across_restart={m.across_restart[0]} holds_across_restart={m.across_restart[1]}', flush=True)
    print(f'WRITES committed_events={len(committed)} rolled_back_events={len(m.rolled_back)}'
          f' by_kind={json.dumps(m.committed_by, sort_keys=True).replace(" ", "")}'
          f' unknown_commits={len(m.unknown)}'
          f' ({",".join(f"{k}:{v}" for k, v in sorted(m.unknown_resolved.items())) or "none"})'
          f' {txns} writer_errors={len(m.writer_errors)}', flush=True)
    print(f'PURGE purges={m.purges} purged={m.purged} holds_checks={m.holds_checks}'
          f' held_purged={len(m.held_purged)} holds_left={holds_left} left_after_final_purge={left_after_purge}',
          flush=True)
    for line in lines:
        print(line, flush=True)
    for n in m.notes:
        print(f'NOTE {n}', flush=True)
    for e in m.writer_errors[:10]:
        print(f'WRITER ERROR {e}', flush=True)
    if m.held_purged:
        failures.append(f'held events purged: {m.held_purged[:20]}')
    if m.api_errors:
        failures += [f'error: {e}' for e in m.api_errors[:20]]
    if holds_left:
        failures.append(f'{holds_left} holds left after the drain')
    if left_after_purge:
        failures.append(f'{left_after_purge} events left in the outbox after every consumer read to its end'
                        f' and orders_events_purge()')
    for f in failures:
        print(f'FAIL {f}', flush=True)
    if failures and status == 0:
        status = 1
    if failures:
        print(f'FAIL seed={args.seed}; reproduce with: {repro}', flush=True)
    print(f'RESULT {"ok" if status == 0 else "FAILED"} seed={args.seed} failures={len(failures)}', flush=True)
    if args.summary:
        with open(args.summary, 'w') as f:
            json.dump({'seed': args.seed, 'status': status, 'failures': failures,
                       'committed_events': len(committed), 'rolled_back_events': len(m.rolled_back),
                       'txns': m.txns, 'committed_by': m.committed_by, 'unknown_commits': len(m.unknown),
                       'writer_errors': m.writer_errors, 'api_errors': m.api_errors,
                       'purges': m.purges, 'purged': m.purged, 'held_purged': len(m.held_purged),
                       'restart_at': m.restart_at, 'kills': m.kills, 'closes': m.closes,
                       'lines': lines, 'left_after_final_purge': left_after_purge}, f, indent=1)
    sys.stdout.flush()
    os._exit(status)               # daemon threads may still sit in a connect: do not wait for them


if __name__ == '__main__':
    sys.exit(main())
