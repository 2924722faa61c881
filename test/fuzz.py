#!/usr/bin/env python3
"""A randomized, concurrent test of the orders extension (psycopg2).

K sessions, each a thread with a connection of its own, run random
sequences of orders_add, orders_save, orders_remove and orders_get for a
bounded time, on a shared pool of order ids so that they race: valid and
invalid inputs (bad currencies, too many or invalid lines, duplicate
products, control characters, NULLs, wrong versions, illegal transitions,
removals of orders in flight, removed ids added again, ids that do not
exist), alone or in transactions that commit or roll back, with savepoints.

Every call must succeed or fail with an SQLSTATE of the contract; where the
outcome can be known (invalid input, an order this transaction has locked,
an id nobody else knows) it must be exactly the expected one, and a
successful write must return the expected order and emit exactly the
expected events.  A model of every committed order (by version) is kept.
Every few steps a session checks one order and its events in a REPEATABLE
READ transaction; after all sessions stopped, a final check compares the
whole database, the outbox and the model exactly.

Connects with the libpq environment (PGHOST, PGPORT, PGDATABASE).  It
writes random orders and adds a label to type order_status (and the amcheck
extension, if available): point it at a throw-away database.  Run by
test/t/005_fuzz.pl.  Prints a summary and a closing 'N passed, M failed'
(N and M count checks); exits non-zero if any failed.
"""
import argparse
import datetime
import json
import os
import random
import re
import sys
import threading
import time
import traceback
import uuid

import psycopg2
import psycopg2.extras

psycopg2.extras.register_uuid()

# Every SQLSTATE a call may fail with; anything else is a failure.
ALLOWED = {"23514", "23502", "23505", "40001", "40P01", "P0002", "22023", "2202E", "22003"}

STATUSES = ["pending", "confirmed", "shipped", "delivered", "cancelled"]
NEXT_STATUS = {"pending": {"confirmed", "cancelled"},
               "confirmed": {"shipped", "cancelled"},
               "shipped": {"delivered"},
               "delivered": set(), "cancelled": set()}
STATUS_EVENT = {"confirmed": "order_confirmed", "shipped": "order_shipped",
                "delivered": "order_delivered", "cancelled": "order_cancelled"}
EVENT_STATUS = {v: k for k, v in STATUS_EVENT.items()}
SAVE_EVENT_ORDER = ["order_lines_changed", "order_shipping_address_changed"] + list(STATUS_EVENT.values())
BOGUS_STATUS = "fuzz_unknown"      # a label added to order_status: 22023 when saved
ORDER_KEYS = {"id", "customer_id", "status", "currency", "lines", "shipping_address",
              "total", "version", "created_at", "updated_at"}
LINE_KEYS = ["product_id", "product_name", "quantity", "unit_price"]
ADDRESS_KEYS = ["street", "city", "postal_code", "country"]
INT64_MAX = 2 ** 63 - 1
TIMEZONES = ["UTC", "Europe/Berlin", "America/St_Johns", "Asia/Kathmandu", "Pacific/Chatham"]

OK = "ok"
ANY = "any"                        # outcome unknowable: any allowed outcome

ENCODING = "UTF8"                  # the server's; set in main()
HAVE_BOGUS = False                 # whether BOGUS_STATUS exists


class SessionBroken(Exception):
    """A statement that must not fail did, or the connection broke."""


# ---------------------------------------------------------------- the rules

def char_len(s):
    return len(s) if ENCODING == "UTF8" else len(s.encode("utf-8"))


def has_control(s):
    if ENCODING == "UTF8":
        return any(ord(c) < 0x20 or ord(c) == 0x7F or 0x80 <= ord(c) <= 0x9F for c in s)
    return any(b < 0x20 or b == 0x7F for b in s.encode("utf-8"))


def text_ok(s, max_chars):
    return isinstance(s, str) and not has_control(s) and 1 <= char_len(s) <= max_chars


def upper_ascii(s, n):
    return isinstance(s, str) and re.fullmatch("[A-Z]{%d}" % n, s) is not None


def static_violations(customer, currency, shape, lines, address, status="pending",
                      version=1):
    """The rules a new state breaks on its own, as a set of (SQLSTATE,
    constraint or None); empty if none.  lines is the flat list of lines
    (None for a NULL array); shape is 'normal', '2d' or 'lbound'."""
    v = set()
    if customer is None:
        v.add(("23502", None))
    if currency is None:
        v.add(("23502", None))
    elif not upper_ascii(currency, 3):
        v.add(("23514", "order_currency_format"))
    if status is None or version is None:
        v.add(("23502", None))
    elif status == BOGUS_STATUS:
        v.add(("22023", None))
    if lines is None:
        v.add(("23502", None))
    else:
        if shape != "normal":
            v.add(("2202E", None))
        if len(lines) > 1000:
            v.add(("23514", "order_lines_max"))
        total = 0
        pids = []
        for line in lines:
            if line is None:
                v.add(("23502", None))
                continue
            pid, name, qty, price = line
            if None in line:
                v.add(("23502", None))
            if name is not None and not text_ok(name, 200):
                v.add(("23514", "order_line_product_name"))
            if qty is not None and not 1 <= qty <= 1000000:
                v.add(("23514", "order_line_quantity_range"))
            if price is not None and not 0 <= price <= 100000000000:
                v.add(("23514", "order_line_unit_price_range"))
            if qty is not None and price is not None:
                total += qty * price
            if pid is not None:
                pids.append(pid)
        if total > INT64_MAX:
            v.add(("22003", None))
        if len(set(pids)) != len(pids):
            v.add(("23514", "order_line_product_unique"))
    if address is not None:
        if None in address:
            v.add(("23502", None))
        for value, n in zip(address[:3], (200, 100, 20)):
            if value is not None and not text_ok(value, n):
                v.add(("23514", "order_address_fields"))
        if address[3] is not None and not upper_ascii(address[3], 2):
            v.add(("23514", "order_address_fields"))
    return v


def order_problems(o):
    """What is wrong with a stored order (a to_jsonb dict), as a list."""
    p = []
    if set(o) != ORDER_KEYS:
        return [f"keys {sorted(o)}"]
    if not upper_ascii(o["currency"], 3):
        p.append(f"currency {o['currency']!r}")
    if o["status"] not in STATUSES:
        p.append(f"status {o['status']!r}")
    if not isinstance(o["customer_id"], str):
        p.append("customer_id")
    lines = o["lines"]
    if not isinstance(lines, list):
        return p + ["lines is not a list"]
    if len(lines) > 1000:
        p.append(f"{len(lines)} lines")
    total = 0
    pids = set()
    for i, line in enumerate(lines):
        if not isinstance(line, dict) or set(line) != set(LINE_KEYS):
            p.append(f"line {i} is {line!r}")
            continue
        if not text_ok(line["product_name"], 200):
            p.append(f"line {i} product_name {line['product_name']!r}")
        if not isinstance(line["quantity"], int) or not 1 <= line["quantity"] <= 1000000:
            p.append(f"line {i} quantity {line['quantity']!r}")
        if not isinstance(line["unit_price"], int) or not 0 <= line["unit_price"] <= 100000000000:
            p.append(f"line {i} unit_price {line['unit_price']!r}")
        if line["product_id"] is None or line["product_id"] in pids:
            p.append(f"line {i} product_id {line['product_id']!r} null or repeated")
        pids.add(line["product_id"])
        if isinstance(line["quantity"], int) and isinstance(line["unit_price"], int):
            total += line["quantity"] * line["unit_price"]
    if o["total"] != total:
        p.append(f"total {o['total']} but the lines sum to {total}")
    a = o["shipping_address"]
    if a is not None:
        if not isinstance(a, dict) or set(a) != set(ADDRESS_KEYS):
            p.append(f"address {a!r}")
        else:
            for k, n in (("street", 200), ("city", 100), ("postal_code", 20)):
                if not text_ok(a[k], n):
                    p.append(f"address {k} {a[k]!r}")
            if not upper_ascii(a["country"], 2):
                p.append(f"address country {a['country']!r}")
    if o["status"] in ("confirmed", "shipped", "delivered") and (not lines or a is None):
        p.append(f"{o['status']} without lines or address")
    if not isinstance(o["version"], int) or o["version"] < 1:
        p.append(f"version {o['version']!r}")
    # created_at and updated_at are transaction start times: a save in a
    # transaction that began before the add committed may be "earlier"
    try:
        ts(o["created_at"]), ts(o["updated_at"])
    except (TypeError, ValueError):
        p.append(f"timestamps {o['created_at']!r} {o['updated_at']!r}")
    return p


def ts(s):
    return datetime.datetime.fromisoformat(s)


def norm(o):
    """An order dict with its timestamps as datetimes (their text depends
    on the writer's TimeZone)."""
    if o is None:
        return None
    o = dict(o)
    for k in ("created_at", "updated_at"):
        if isinstance(o.get(k), str):
            o[k] = ts(o[k])
    return o


def line_json(line):
    return {"product_id": str(line[0]), "product_name": line[1],
            "quantity": line[2], "unit_price": line[3]}


def address_json(a):
    return None if a is None else dict(zip(ADDRESS_KEYS, a))


def lines_tuples(lines_json):
    return [(uuid.UUID(l["product_id"]), l["product_name"], l["quantity"], l["unit_price"])
            for l in lines_json]


def address_tuple(a):
    return None if a is None else tuple(a[k] for k in ADDRESS_KEYS)


def diff(a, b):
    if a == b:
        return ""
    if isinstance(a, dict) and isinstance(b, dict):
        return "; ".join(f"{k}: {a.get(k)!r} != {b.get(k)!r}"
                         for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))[:600]
    return f"{a!r}"[:300] + " != " + f"{b!r}"[:300]


def history_problems(oid, row, events):
    """Checks one order's events (in position order) against each other, the
    rules and the stored row (None: not stored).  Returns (problems, final
    version or 0, removed)."""
    p = []
    if not events:
        if row is not None:
            p.append("stored without events")
        return p, (row or {}).get("version", 0), False
    groups = []
    for e in events:
        if groups and groups[-1][0]["version"] == e["version"]:
            groups[-1].append(e)
        else:
            groups.append([e])
    state = None
    removed = False
    for gi, g in enumerate(groups):
        gv = g[0]["version"]
        types = [e["type"] for e in g]
        where = f"version {gv} {types}"
        if removed:
            p.append(f"{where} after order_removed")
            break
        if gi == 0:
            if gv != 1 or types != ["order_added"]:
                p.append(f"first events are {where}, not order_added at version 1")
                break
        elif gv != groups[gi - 1][0]["version"] + 1:
            p.append(f"{where} follows version {groups[gi - 1][0]['version']}")
        if len({e["xid"] for e in g}) != 1 or len({e["occurred_at"] for e in g}) != 1:
            p.append(f"{where}: events of one write with different xid or occurred_at")
        if gi == 0:
            state = norm(events[0]["payload"])
            pr = order_problems(events[0]["payload"])
            if pr or state["id"] != oid or state["status"] != "pending" or state["version"] != 1 \
                    or state["created_at"] != state["updated_at"] \
                    or state["created_at"] != ts(g[0]["occurred_at"]):
                p.append(f"order_added payload {events[0]['payload']!r}: {pr}"[:800])
            continue
        if types == ["order_removed"]:
            removed = True
            if state["status"] in ("confirmed", "shipped"):
                p.append(f"{where}: removed while {state['status']}")
            d = diff(norm(g[0]["payload"]), state)
            if d:
                p.append(f"{where}: order_removed payload is not the order as it was: {d}")
            continue
        if "order_added" in types or "order_removed" in types or types != sorted(
                types, key=lambda t: SAVE_EVENT_ORDER.index(t) if t in SAVE_EVENT_ORDER else -1) \
                or len(set(types)) != len(types) \
                or sum(t in EVENT_STATUS for t in types) > 1 or any(
                    t not in SAVE_EVENT_ORDER for t in types):
            p.append(f"{where}: not the events of one save")
            break
        before = state["status"]
        for e in g:
            pl = e["payload"]
            if e["type"] == "order_lines_changed":
                if set(pl) != {"lines", "total"}:
                    p.append(f"{where}: lines payload keys {sorted(pl)}")
                    continue
                if before != "pending":
                    p.append(f"{where}: lines changed while {before}")
                if pl["lines"] == state["lines"]:
                    p.append(f"{where}: order_lines_changed without a change")
                state["lines"] = pl["lines"]
                state["total"] = pl["total"]
            elif e["type"] == "order_shipping_address_changed":
                if set(pl) != {"shipping_address"}:
                    p.append(f"{where}: address payload keys {sorted(pl)}")
                    continue
                if before not in ("pending", "confirmed"):
                    p.append(f"{where}: address changed while {before}")
                if pl["shipping_address"] == state["shipping_address"]:
                    p.append(f"{where}: order_shipping_address_changed without a change")
                state["shipping_address"] = pl["shipping_address"]
            else:
                to = EVENT_STATUS[e["type"]]
                if pl != {"status": to, "previous_status": before}:
                    p.append(f"{where}: status payload {pl!r}, the order was {before}")
                if to not in NEXT_STATUS[before]:
                    p.append(f"{where}: status moved from {before} to {to}")
                state["status"] = to
        state["version"] = gv
        state["updated_at"] = ts(g[0]["occurred_at"])
        pr = order_problems(dict(state, created_at=state["created_at"].isoformat(),
                                 updated_at=state["updated_at"].isoformat()))
        if pr:
            p.append(f"{where}: the order after it breaks rules: {pr}")
    final_version = groups[-1][0]["version"]
    if removed:
        if row is not None:
            p.append("stored although its last event is order_removed")
    elif row is None:
        p.append(f"not stored, but its last event is {groups[-1][-1]['type']}, not order_removed")
    else:
        d = diff(norm(row), state)
        if d:
            p.append(f"stored order differs from its events: {d}")
    return p, final_version, removed


# ------------------------------------------------------------------ results

class Results:
    def __init__(self):
        self.lock = threading.Lock()
        self.passed = 0
        self.failed = 0
        self.kinds = {}
        self.messages = []
        self.ops = {}
        self.outcomes = {}
        self.constraints = {}
        self.tx = {"commit": 0, "rollback": 0, "aborted": 0, "autocommit": 0,
                   "savepoint": 0, "rollback_to": 0}

    def check(self, kind, ok, message=""):
        with self.lock:
            k = self.kinds.setdefault(kind, [0, 0])
            if ok:
                self.passed += 1
                k[0] += 1
            else:
                self.failed += 1
                k[1] += 1
                if len(self.messages) < 40:
                    self.messages.append(f"FAIL [{kind}] {message}")

    def op(self, name, outcome, constraint=None):
        with self.lock:
            self.ops[name] = self.ops.get(name, 0) + 1
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
            if constraint:
                self.constraints[constraint] = self.constraints.get(constraint, 0) + 1

    def count(self, what):
        with self.lock:
            self.tx[what] += 1


# -------------------------------------------------------------------- model

class Model:
    """Every committed order as the fuzzer knows it: the newest version
    (state None once removed) and what orders_add returned."""

    def __init__(self, pool_size):
        self.pool_size = pool_size
        self.lock = threading.Lock()
        self.orders = {}           # id -> {"version", "state", "added"}
        self.pool = []             # ids being raced on (added or attempted)
        self.attempted = set()     # every id an orders_add was tried with
        self.removed = []          # ids whose removal committed
        self.recent = []           # ids whose add committed lately
        self.advanced = []         # ids saved as confirmed or shipped lately

    def note_attempt(self, oid, rng):
        with self.lock:
            self.attempted.add(oid)
            if oid not in self.pool:
                if len(self.pool) >= self.pool_size:
                    self.pool[rng.randrange(len(self.pool))] = oid
                else:
                    self.pool.append(oid)

    def pick(self, rng):
        with self.lock:
            r = rng.random()
            if self.advanced and r < 0.2:
                return rng.choice(self.advanced)
            if self.recent and r < 0.65:
                return rng.choice(self.recent)
            return rng.choice(self.pool) if self.pool else None

    def pick_removed(self, rng):
        with self.lock:
            return rng.choice(self.removed) if self.removed else None

    def get(self, oid):
        with self.lock:
            m = self.orders.get(oid)
            return None if m is None else dict(m)

    def committed(self, effects, results):
        with self.lock:
            for kind, oid, version, state in effects:
                m = self.orders.setdefault(oid, {"version": 0, "state": None, "added": None})
                if kind == "add":
                    if m["added"] is not None:
                        results.check("model", False, f"order {oid} was added twice")
                    m["added"] = state
                    self.recent.append(oid)
                    if len(self.recent) > self.pool_size:
                        del self.recent[:len(self.recent) - self.pool_size]
                if version > m["version"]:
                    m["version"] = version
                    m["state"] = state
                if kind == "remove":
                    self.removed.append(oid)
                if kind == "save" and state["status"] in ("confirmed", "shipped"):
                    self.advanced.append(oid)
                    if len(self.advanced) > self.pool_size // 2 + 1:
                        del self.advanced[:len(self.advanced) - self.pool_size // 2 - 1]


# ----------------------------------------------------------------- sessions

SCHEMA = [None]                    # the extension's, once known


def connect(rng):
    conn = psycopg2.connect("")
    conn.autocommit = True
    conn.set_client_encoding("UTF8")
    with conn.cursor() as cur:
        if SCHEMA[0] is not None:
            cur.execute(f"SET search_path = {SCHEMA[0]}, public")
        cur.execute("SET statement_timeout = '60s'")
        cur.execute("SET TimeZone = %s", (rng.choice(TIMEZONES),))
        cur.execute("SET orders.notify = %s", (rng.choice(["on", "off"]),))
        try:
            cur.execute("SET deadlock_timeout = '100ms'")   # superusers only
        except psycopg2.Error:
            pass
    return conn


NAME_CHARS = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
              "     ,.;:()\"'\\{}[]-_/&%$#@!?*+=<>|~`^")
WIDE_CHARS = "äöüßéèçñøåÆŒ€£¥©®°±µ¶·¿ЖЗИЙ日本語中文한국어😀🍵🚚"
CONTROLS = ["\x01", "\x07", "\t", "\n", "\r", "\x1b", "\x1f", "\x7f", "\u0085", "\u009f"]


class Session(threading.Thread):
    def __init__(self, index, seed, deadline, max_ops, model, results):
        super().__init__(name=f"session-{index}", daemon=True)
        self.index = index
        self.rng = random.Random(seed * 1000 + index)
        self.deadline = deadline
        self.max_ops = max_ops
        self.model = model
        self.results = results
        self.ops = 0
        self.conn = None
        self.cur = None

    # ---- plumbing

    def run(self):
        try:
            self.conn = connect(self.rng)
            self.cur = self.conn.cursor()
            while time.monotonic() < self.deadline and self.ops < self.max_ops:
                try:
                    self.transaction()
                    if self.rng.random() < 0.25:
                        self.step_check()
                except SessionBroken as e:
                    self.results.check("connection", False, f"{self.name}: {e}")
                    try:
                        self.conn.close()
                    except psycopg2.Error:
                        pass
                    self.conn = connect(self.rng)
                    self.cur = self.conn.cursor()
        except Exception:
            self.results.check("session", False, f"{self.name}: {traceback.format_exc()}")
        finally:
            if self.conn is not None:
                self.conn.close()

    def sql(self, query, params=()):
        """A statement that must not fail (plumbing, checks)."""
        try:
            self.cur.execute(query, params)
            return self.cur.fetchall() if self.cur.description else None
        except psycopg2.Error as e:
            raise SessionBroken(f"{query[:80]!r} failed: {e.pgcode} {e}".strip())

    def call(self, name, query, params):
        """One API call: (OK, rows) or (sqlstate, constraint, message)."""
        self.ops += 1
        try:
            self.cur.execute(query, params)
            rows = self.cur.fetchall()
            self.results.op(name, OK)
            return OK, rows
        except psycopg2.Error as e:
            if e.pgcode is None:
                raise SessionBroken(f"{name}: {e}")
            self.results.op(name, e.pgcode, e.diag.constraint_name)
            return e.pgcode, e.diag.constraint_name, str(e).strip().splitlines()[0]

    def judge(self, name, allowed, outcome, context):
        """Whether outcome is one of allowed (a set of OK and (sqlstate,
        constraint or None)), or ANY allowed outcome.  Deadlocks are always
        allowed."""
        if outcome[0] == OK:
            good = OK in allowed or ANY in allowed
        else:
            code, constraint = outcome[0], outcome[1]
            good = code == "40P01" or (ANY in allowed and code in ALLOWED) or any(
                a != OK and a != ANY and a[0] == code and (a[1] is None or a[1] == constraint)
                for a in allowed)
        got = "success" if outcome[0] == OK else f"{outcome[0]} {outcome[1]} ({outcome[2]})"
        want = sorted(str(a) for a in allowed)
        self.results.check(name, good, f"{context}: got {got}, expected one of {want}")
        return good

    # ---- random values

    def text(self, lo, hi, wide=True):
        n = self.rng.randint(lo, hi)
        pal = NAME_CHARS + (WIDE_CHARS if wide and ENCODING == "UTF8" else "")
        return "".join(self.rng.choice(pal) for _ in range(n))

    def bad_text(self, max_chars):
        r = self.rng.random()
        if r < 0.3:
            return ""
        if r < 0.5:
            return self.text(max_chars + 1, max_chars + 3, wide=False)
        if r < 0.6 and ENCODING == "UTF8":
            return "€" * (max_chars + 1)
        s = self.text(0, 8)
        i = self.rng.randint(0, len(s))
        return s[:i] + self.rng.choice(CONTROLS) + s[i:]

    def good_text(self, max_chars):
        r = self.rng.random()
        if r < 0.05:
            return self.text(max_chars, max_chars, wide=False)
        if r < 0.08 and ENCODING == "UTF8":
            return "😀" * max_chars
        return self.text(1, min(max_chars, 24))

    def currency(self, bad):
        if not bad:
            return self.rng.choice(["EUR", "USD", "JPY", "CHF", "GBP", "XYZ"])
        return self.rng.choice(["eur", "EU", "EURO", "E1R", "ÉUR" if ENCODING == "UTF8" else "E-R",
                                "", " EU", "EU\x01", "€", "Eur", None])

    def line(self, bad=False):
        pid = uuid.uuid4()
        name = self.good_text(200)
        qty = self.rng.choice([1, 1, 2, 3, 10, 999, 1000000, self.rng.randint(1, 1000000)])
        price = self.rng.choice([0, 1, 450, 3900, 99999, 100000000000,
                                 self.rng.randint(0, 100000000000)])
        if bad:
            what = self.rng.choice(["name", "name", "quantity", "price", "null"])
            if what == "name":
                name = self.bad_text(200)
            elif what == "quantity":
                qty = self.rng.choice([0, -1, 1000001, 2147483647])
            elif what == "price":
                price = self.rng.choice([-1, 100000000001, INT64_MAX])
            else:
                fields = [pid, name, qty, price]
                fields[self.rng.randrange(4)] = None
                pid, name, qty, price = fields
        return (pid, name, qty, price)

    def lines(self, bad):
        """(shape, flat lines or None)."""
        rng = self.rng
        n = rng.choice([0, 1, 1, 2, 3, 5])
        if rng.random() < 0.01:
            n = 1000
        lines = [self.line() for _ in range(n)]
        if n == 1000:      # stored out of line (TOAST); the total in range
            lines = [(l[0], self.text(8, 40, wide=False), 1, rng.randint(0, 1000)) for l in lines]
        if not bad:
            return "normal", lines
        what = rng.randrange(10)
        if what == 0:
            return "normal", None
        if what == 1:
            return "normal", [(uuid.uuid4(), "y", 1, 1) for _ in range(rng.choice([1001, 1002]))]
        if what == 2:      # a product twice
            l = lines + [self.line()]
            d = l[rng.randrange(len(l))]
            return "normal", l + [(d[0], "again", 1, 1)]
        if what == 3:
            return "normal", lines + [None]
        if what == 4:      # total beyond bigint
            return "normal", [(uuid.uuid4(), "dear", 1000000, 100000000000) for _ in range(93)]
        if what == 5:
            return "2d", [self.line() for _ in range(rng.choice([2, 4]))]
        if what == 6:
            return "lbound", [self.line()] * rng.choice([1, 2])
        i = rng.randint(0, len(lines))
        return "normal", lines[:i] + [self.line(bad=True)] + lines[i:]

    def address(self, bad):
        rng = self.rng
        a = [self.good_text(200), self.good_text(100), self.good_text(20),
             rng.choice(["DE", "US", "FR", "JP", "ZZ"])]
        if bad:
            i = rng.randrange(4)
            if rng.random() < 0.3:
                a[i] = None
            elif i == 3:
                a[i] = rng.choice(["de", "D", "DEU", "D1", "", "Ü" if ENCODING == "UTF8" else "D-"])
            else:
                a[i] = self.bad_text((200, 100, 20)[i])
        return tuple(a)

    @staticmethod
    def lines_sql(shape, lines):
        if lines is None:
            return "NULL::order_line[]", []
        if shape == "2d":
            half = len(lines) // 2
            return "%s::order_line[]", [[lines[:half], lines[half:]]]
        if shape == "lbound":
            return "array_fill(%s::order_line, ARRAY[%s], ARRAY[%s])", [
                lines[0], len(lines), 0]
        return "%s::order_line[]", [list(lines)]

    # ---- transactions

    def transaction(self):
        rng = self.rng
        tx = {"known": {}, "effects": [], "savepoints": [], "explicit": rng.random() < 0.6}
        if not tx["explicit"]:
            self.results.count("autocommit")
            outcome = self.step(tx)
            if outcome:
                self.model.committed(tx["effects"], self.results)
            return
        rr = rng.random() < 0.25
        self.sql("BEGIN ISOLATION LEVEL REPEATABLE READ" if rr else "BEGIN")
        tx["rr"] = rr
        for _ in range(rng.randint(1, 6)):
            r = rng.random()
            if r < 0.12:
                name = f"s{len(tx['savepoints'])}"
                self.sql(f"SAVEPOINT {name}")
                self.results.count("savepoint")
                tx["savepoints"].append((name, dict(tx["known"]), len(tx["effects"])))
                continue
            if r < 0.2 and tx["savepoints"]:
                name, known, neff = tx["savepoints"][-1]
                if rng.random() < 0.5:
                    self.sql(f"RELEASE SAVEPOINT {name}")
                    tx["savepoints"].pop()
                else:
                    self.rollback_to(tx)
                continue
            if r < 0.45:           # one step in a savepoint of its own
                name = f"s{len(tx['savepoints'])}"
                self.sql(f"SAVEPOINT {name}")
                self.results.count("savepoint")
                tx["savepoints"].append((name, dict(tx["known"]), len(tx["effects"])))
                ok = self.step(tx)
                if not ok or rng.random() < 0.25:
                    self.rollback_to(tx)
                self.sql(f"RELEASE SAVEPOINT {name}")
                tx["savepoints"].pop()
                continue
            if not self.step(tx):
                if tx["savepoints"]:
                    self.rollback_to(tx)
                    continue
                self.sql("ROLLBACK")
                self.results.count("aborted")
                return
        if rng.random() < 0.7:
            self.sql("COMMIT")
            self.results.count("commit")
            self.model.committed(tx["effects"], self.results)
        else:
            self.sql("ROLLBACK")
            self.results.count("rollback")

    def rollback_to(self, tx):
        name, known, neff = tx["savepoints"][-1]
        self.sql(f"ROLLBACK TO SAVEPOINT {name}")
        self.results.count("rollback_to")
        tx["known"] = dict(known)
        del tx["effects"][neff:]

    def step(self, tx):
        """One random call; False if it failed (the transaction is then
        aborted, unless a savepoint takes it back)."""
        r = self.rng.random()
        if r < 0.35:
            return self.op_add(tx)
        if r < 0.7:
            return self.op_save(tx)
        if r < 0.85:
            return self.op_remove(tx)
        return self.op_get(tx)

    def pick_id(self, tx, fresh_ok=True):
        """(id, stable_absent): an id of this transaction, the pool, a
        removed order, or one nobody knows."""
        rng = self.rng
        r = rng.random()
        if r < 0.3 and tx["known"]:
            return rng.choice(list(tx["known"])), False
        if r < 0.4:
            oid = self.model.pick_removed(rng)
            if oid is not None:
                return oid, False
        if r < 0.47 and fresh_ok:
            return uuid.uuid4(), True
        oid = self.model.pick(rng)
        return (oid, False) if oid is not None else (uuid.uuid4(), True)

    def lock(self, tx, oid):
        """Locks the order in this transaction, if it is there: its stored
        state is then known.  False if the statement failed."""
        if not tx["explicit"] or oid in tx["known"]:
            return True
        mode = self.rng.choice(["FOR UPDATE", "FOR NO KEY UPDATE"])
        out = self.call("lock", f"SELECT to_jsonb(o) FROM orders o WHERE id = %s {mode}", (oid,))
        if out[0] != OK:
            self.judge("lock", {("40001", None)} if tx["rr"] else set(), out, f"lock {oid}")
            return False
        if out[1]:
            tx["known"][oid] = out[1][0][0]
        return True

    def removed_committed(self, oid):
        m = self.model.get(oid)
        return m is not None and m["state"] is None and m["version"] > 0

    def events_of(self, oid, version):
        return self.sql(
            "SELECT type, version, payload, xid = pg_current_xact_id_if_assigned(), xid::text"
            " FROM order_events WHERE order_id = %s AND version = %s ORDER BY position",
            (oid, version))

    def check_events(self, tx, what, oid, version, expected):
        """The events of (oid, version) are exactly expected, a list of
        (type, payload), all from this transaction."""
        rows = self.events_of(oid, version)
        got = [(t, pl) for t, v, pl, ours, x in rows]
        same_xid = len({x for *_, x in rows}) <= 1
        ours = all(r[3] for r in rows) if tx["explicit"] else True
        exp = [(t, norm(pl) if t in ("order_added", "order_removed") else pl) for t, pl in expected]
        got_n = [(t, norm(pl) if t in ("order_added", "order_removed") else pl) for t, pl in got]
        self.results.check(f"{what} events", got_n == exp and same_xid and ours,
                           f"{what} {oid} v{version}: events {got!r}"[:600]
                           + f" expected {expected!r}"[:600] + f" same_xid={same_xid} ours={ours}")

    def check_save_events(self, tx, oid, o):
        """The events of a save whose stored order was not known: one per
        kind of change, in order, each agreeing with the saved order o."""
        rows = self.events_of(oid, o["version"])
        types = [r[0] for r in rows]
        p = []
        if not types or types != sorted(types, key=lambda t: SAVE_EVENT_ORDER.index(t)
                                         if t in SAVE_EVENT_ORDER else 99) \
                or len(set(types)) != len(types) or sum(t in EVENT_STATUS for t in types) > 1:
            p.append(f"types {types}")
        for t, v, pl, ours, x in rows:
            if t == "order_lines_changed":
                ok = pl == {"lines": o["lines"], "total": o["total"]}
            elif t == "order_shipping_address_changed":
                ok = pl == {"shipping_address": o["shipping_address"]}
            elif t in EVENT_STATUS:
                ok = (EVENT_STATUS[t] == o["status"] and set(pl) == {"status", "previous_status"}
                      and pl["status"] == o["status"]
                      and o["status"] in NEXT_STATUS.get(pl["previous_status"], ()))
            else:
                ok = False
            if not ok or (tx["explicit"] and not ours):
                p.append(f"{t} {pl!r}"[:300])
        if len({r[4] for r in rows}) > 1:
            p.append("more than one xid")
        self.results.check("orders_save events", not p, f"save of {oid} to v{o['version']}: {p}")

    # ---- the calls

    def op_add(self, tx):
        rng = self.rng
        bad = rng.random() < 0.3
        r = rng.random()
        stable = False
        if r < 0.3:
            oid = None
        elif r < 0.7:
            oid = uuid.uuid4()
        else:
            oid, stable = self.pick_id(tx, fresh_ok=False)
        customer = uuid.uuid4() if not (bad and rng.random() < 0.1) else None
        currency = self.currency(bad and rng.random() < 0.3)
        shape, lines = self.lines(bad and rng.random() < 0.6)
        address = None if rng.random() < 0.3 else self.address(bad and rng.random() < 0.4)
        static = static_violations(customer, currency, shape, lines, address)

        if static:
            allowed, how = static, "static"
        elif oid is None or (r < 0.7) or stable:
            allowed, how = {OK}, "exact"
        elif oid in tx["known"]:
            c = "orders_pkey" if tx["known"][oid] is not None else "orders_id_not_reused"
            allowed, how = {("23505", c)}, "exact"
        elif self.removed_committed(oid):
            allowed, how = {("23505", "orders_id_not_reused")}, "exact"
        elif self.model.get(oid) is not None:
            allowed, how = {("23505", None)}, "exact"
        else:
            allowed, how = {OK, ("23505", None)}, "loose"

        lsql, lparams = self.lines_sql(shape, lines)
        if rng.random() < 0.5:
            q = f"SELECT to_jsonb(r) FROM orders_add(%s, %s, {lsql}, %s::order_address, %s) r"
            params = [customer, currency] + lparams + [address, oid]
        else:
            args, params = ["customer_id => %s", "currency => %s"], [customer, currency]
            if not (shape == "normal" and lines == [] and rng.random() < 0.5):
                args.append(f"lines => {lsql}")
                params += lparams
            if not (address is None and rng.random() < 0.5):
                args.append("shipping_address => %s::order_address")
                params.append(address)
            if not (oid is None and rng.random() < 0.5):
                args.append("id => %s::uuid")
                params.append(oid)
            q = f"SELECT to_jsonb(r) FROM orders_add({', '.join(args)}) r"
        out = self.call("orders_add", q, params)
        context = (f"orders_add({customer}, {currency!r}, {shape} {str(lines)[:300]}, "
                   f"{address!r}, {oid}) [{how}]")
        self.judge(f"orders_add {how}", allowed, out, context)
        # others race on the id from now on (a fresh one: not before the
        # call, whose outcome is then known)
        given = oid
        if out[0] == OK:
            oid = uuid.UUID(out[1][0][0]["id"])
        if oid is not None and (not static or rng.random() < 0.2):
            self.model.note_attempt(oid, rng)
        if out[0] != OK:
            return False

        o = out[1][0][0]
        tx["known"][oid] = o
        tx["effects"].append(("add", oid, 1, o))
        if static:                     # a failed check already: nothing to compare with
            return True
        expect = {"customer_id": str(customer), "currency": currency, "status": "pending",
                  "lines": [line_json(l) for l in lines],
                  "shipping_address": address_json(address), "version": 1,
                  "total": sum(l[2] * l[3] for l in lines)}
        if given is not None:
            expect["id"] = str(given)
        d = diff({k: o.get(k) for k in expect}, expect)
        pr = order_problems(o)
        self.results.check("orders_add result", not d and not pr and o["created_at"] == o["updated_at"],
                           f"{context}: returned {d} {pr}")
        self.check_events(tx, "orders_add", oid, 1, [("order_added", o)])
        return True

    def mutate(self, base, oid):
        """A new state from base (None: an order made up), with the
        values orders_save takes: a dict with lines as tuples."""
        rng = self.rng
        if base is None:
            base = {"id": str(oid), "customer_id": str(uuid.uuid4()), "status": "pending",
                    "currency": "EUR", "lines": [], "shipping_address": None, "total": 0,
                    "version": 1, "created_at": None, "updated_at": None}
        n = {"id": oid, "customer_id": uuid.UUID(base["customer_id"]), "status": base["status"],
             "currency": base["currency"], "shape": "normal",
             "lines": lines_tuples(base["lines"]),
             "address": address_tuple(base["shipping_address"]),
             "total": base["total"], "version": base["version"],
             "created_at": base["created_at"], "updated_at": base["updated_at"]}
        r = rng.random()
        if r < 0.45:
            nxt = sorted(NEXT_STATUS[base["status"]])
            if nxt:
                n["status"] = rng.choice(nxt)
            # mostly ready for it, so that orders get on
            if n["status"] == "confirmed" and rng.random() < 0.8:
                if not n["lines"]:
                    n["lines"] = [self.line() for _ in range(rng.randint(1, 3))]
                if n["address"] is None:
                    n["address"] = self.address(False)
            if n["status"] != base["status"] and rng.random() < 0.7:
                return self.noise(n, small=True)
        elif r < 0.6:
            n["status"] = rng.choice(STATUSES + ([BOGUS_STATUS] if HAVE_BOGUS else []))
        return self.noise(n, small=False)

    def noise(self, n, small):
        """Other changes: lines, address, version, immutable fields, NULLs."""
        rng = self.rng
        r = rng.random() * (4 if small else 1)
        if r < 0.2:
            n["shape"], n["lines"] = self.lines(rng.random() < 0.3)
        elif r < 0.3 and n["lines"]:
            i = rng.randrange(len(n["lines"]))
            l = list(n["lines"][i])
            l[2] = rng.choice([l[2], l[2] % 1000000 + 1, 0])
            n["lines"] = n["lines"][:i] + [tuple(l)] + n["lines"][i + 1:]
        elif r < 0.35 and len(n["lines"]) > 1:
            n["lines"] = list(reversed(n["lines"]))
        r = rng.random() * (4 if small else 1)
        if r < 0.2:
            n["address"] = self.address(rng.random() < 0.3)
        elif r < 0.27:
            n["address"] = None
        r = rng.random() * (2 if small else 1)
        if r < 0.08:
            n["version"] = rng.choice([n["version"] + 1, n["version"] - 1, 0, 1, 2147483646])
        elif r < 0.1:
            n["version"] = None
        r = rng.random()
        if r < 0.03:
            n["customer_id"] = rng.choice([uuid.uuid4(), None])
        elif r < 0.06:
            n["currency"] = self.currency(rng.random() < 0.5)
        if rng.random() < 0.02:
            n["status"] = None
        r = rng.random()
        if r < 0.2:
            n["total"] = rng.choice([None, 0, -5, INT64_MAX])
        if r > 0.8:
            n["created_at"] = None
            n["updated_at"] = rng.choice([None, "2000-01-01T00:00:00+00:00"])
        return n

    def save_violations(self, stored, n):
        """What a save of n breaks against the stored order (a dict; None:
        not stored), and the events it emits when it breaks nothing."""
        if stored is None:
            return {("P0002", None)}, None
        v = set()
        if n["version"] != stored["version"]:
            v.add(("40001", None))
        if str(n["customer_id"]) != stored["customer_id"] or n["currency"] != stored["currency"]:
            v.add(("23514", "order_immutable_fields"))
        if n["status"] != stored["status"] and n["status"] not in NEXT_STATUS[stored["status"]]:
            v.add(("23514", "order_status_transition"))
        if n["status"] in ("confirmed", "shipped", "delivered") and (
                not n["lines"] or n["address"] is None):
            v.add(("23514", "order_ready_to_confirm"))
        new_lines = [line_json(l) for l in n["lines"]]
        new_address = address_json(n["address"])
        lines_changed = new_lines != stored["lines"]
        address_changed = new_address != stored["shipping_address"]
        if (lines_changed and stored["status"] != "pending") or (
                address_changed and stored["status"] not in ("pending", "confirmed")):
            v.add(("23514", "order_frozen_after_confirm"))
        events = []
        total = sum(l[2] * l[3] for l in n["lines"])
        if lines_changed:
            events.append(("order_lines_changed", {"lines": new_lines, "total": total}))
        if address_changed:
            events.append(("order_shipping_address_changed", {"shipping_address": new_address}))
        if n["status"] != stored["status"]:
            events.append((STATUS_EVENT.get(n["status"], "?"),
                           {"status": n["status"], "previous_status": stored["status"]}))
        return v, events

    def pick_base(self, tx, purpose):
        """An id to write, and what this session knows of its order: (oid,
        base, exact), or None when locking or reading it failed."""
        oid, stable = self.pick_id(tx)
        if self.rng.random() < 0.5 and not self.lock(tx, oid):
            return None
        if oid in tx["known"]:
            return oid, tx["known"][oid], True
        if stable or (self.removed_committed(oid) and not tx.get("rr")):
            # nobody else knows the id, or its removal has committed (a
            # snapshot older than that sees it: 40001)
            return oid, None, True
        out = self.call("orders_get", "SELECT to_jsonb(g) FROM orders_get(%s) g", (oid,))
        if out[0] != OK:
            self.judge("orders_get", set(), out, f"read {oid} to {purpose}")
            return None
        return oid, (out[1][0][0] if out[1] else None), False

    def op_save(self, tx):
        rng = self.rng
        picked = self.pick_base(tx, "save")
        if picked is None:
            return False
        oid, base, exact = picked
        n = self.mutate(base, oid)
        static = static_violations(n["customer_id"], n["currency"], n["shape"], n["lines"],
                                   n["address"], n["status"], n["version"])
        events = None
        if static:
            allowed, how = static, "static"
        else:
            v, events = self.save_violations(base, n)
            if exact:
                allowed, how = (v or {OK}), "exact"
            elif base is not None and n["version"] == base["version"]:
                # a success means the stored order was still base
                allowed, how = (v or {OK}) | {("40001", None), ("P0002", None)}, "loose"
            else:
                allowed, how = {ANY}, "any"

        lsql, lparams = self.lines_sql(n["shape"], n["lines"])
        if n["shape"] == "normal" and n["lines"] is not None and rng.random() < 0.3:
            doc = {"id": str(oid), "customer_id": n["customer_id"] and str(n["customer_id"]),
                   "status": n["status"], "currency": n["currency"],
                   "lines": [{"product_id": l and l[0] and str(l[0]), "product_name": l and l[1],
                              "quantity": l and l[2], "unit_price": l and l[3]}
                             if l is not None else None for l in n["lines"]],
                   "shipping_address": None if n["address"] is None else dict(zip(ADDRESS_KEYS, n["address"])),
                   "total": n["total"], "version": n["version"],
                   "created_at": n["created_at"], "updated_at": n["updated_at"]}
            q = ("SELECT to_jsonb(r) FROM orders_save(jsonb_populate_record(NULL::orders, %s)) r")
            params = [json.dumps(doc)]
        else:
            q = ("SELECT to_jsonb(r) FROM orders_save(ROW(%s::uuid, %s::uuid, %s::order_status, "
                 f"%s::text, {lsql}, %s::order_address, %s::bigint, %s::integer, "
                 "%s::timestamptz, %s::timestamptz)::orders) r")
            params = ([oid, n["customer_id"], n["status"], n["currency"]] + lparams +
                      [n["address"], n["total"], n["version"], n["created_at"], n["updated_at"]])
        out = self.call("orders_save", q, params)
        shown = {k: (str(v)[:200] if k == "lines" else v) for k, v in n.items()}
        context = f"orders_save {shown} on {str(base)[:500]} [{how}]"
        self.judge(f"orders_save {how}", allowed, out, context)
        if out[0] != OK:
            return False

        o = out[1][0][0]
        if how == "static":            # a failed check already: judge o on its own
            how, n["lines"] = "any", [l for l in n["lines"] or [] if l is not None and None not in l]
        new_lines = [line_json(l) for l in n["lines"]]
        expect = {"id": str(oid), "status": n["status"], "lines": new_lines,
                  "shipping_address": address_json(n["address"]),
                  "total": sum(l[2] * l[3] for l in n["lines"])}
        if base is not None and events is not None and how != "any":
            if events:
                expect.update(version=base["version"] + 1, customer_id=base["customer_id"],
                              currency=base["currency"], created_at=base["created_at"])
            else:
                expect = base
        d = diff({k: o.get(k) for k in expect}, expect)
        pr = order_problems(o)
        changed = o["version"] != n["version"]
        if changed and o["version"] != n["version"] + 1:
            pr.append(f"version {o['version']} after saving version {n['version']}")
        self.results.check("orders_save result", not d and not pr, f"{context}: returned {d} {pr}")
        if changed:
            if how == "any":           # the stored order was not known: the events follow from o
                self.check_save_events(tx, oid, o)
            else:
                self.check_events(tx, "orders_save", oid, o["version"], events)
            tx["effects"].append(("save", oid, o["version"], o))
        elif tx["explicit"]:           # the row is locked: nobody else wrote since
            self.check_events(tx, "orders_save (no change)", oid, o["version"] + 1, [])
        tx["known"][oid] = o
        return True

    def op_remove(self, tx):
        rng = self.rng
        picked = self.pick_base(tx, "remove")
        if picked is None:
            return False
        oid, base, exact = picked
        r = rng.random()
        if r < 0.4 or base is None:
            expected_version = None if r < 0.6 else rng.choice([1, 2, 3])
        elif r < 0.85:
            expected_version = base["version"]
        else:
            expected_version = base["version"] + rng.choice([-1, 1, 7])
        if base is None:
            v = {("P0002", None)}
        else:
            v = set()
            if expected_version is not None and expected_version != base["version"]:
                v.add(("40001", None))
            if base["status"] in ("confirmed", "shipped"):
                v.add(("23514", "order_remove_in_flight"))
        if exact:
            allowed, how = (v or {OK}), "exact"
        elif base is not None and expected_version == base["version"]:
            allowed, how = (v or {OK}) | {("40001", None), ("P0002", None)}, "loose"
        else:
            allowed, how = {ANY}, "any"
        if expected_version is None and rng.random() < 0.5:
            q, params = "SELECT to_jsonb(r) FROM orders_remove(%s) r", (oid,)
        elif rng.random() < 0.5:
            q, params = "SELECT to_jsonb(r) FROM orders_remove(%s, %s) r", (oid, expected_version)
        else:
            q, params = ("SELECT to_jsonb(r) FROM orders_remove(id => %s, expected_version => %s) r",
                         (oid, expected_version))
        out = self.call("orders_remove", q, params)
        context = f"orders_remove({oid}, {expected_version}) of {str(base)[:500]} [{how}]"
        self.judge(f"orders_remove {how}", allowed, out, context)
        if out[0] != OK:
            return False
        o = out[1][0][0]
        pr = order_problems(o)
        d = diff(o, base) if how != "any" else ""
        if expected_version is not None and o["version"] != expected_version:
            pr.append(f"removed version {o['version']}, expected {expected_version}")
        if o["status"] in ("confirmed", "shipped"):
            pr.append(f"removed while {o['status']}")
        self.results.check("orders_remove result", not d and not pr, f"{context}: returned {d} {pr}")
        self.check_events(tx, "orders_remove", oid, o["version"] + 1, [("order_removed", o)])
        tx["known"][oid] = None
        tx["effects"].append(("remove", oid, o["version"] + 1, None))
        return True

    def op_get(self, tx):
        oid, stable = self.pick_id(tx)
        out = self.call("orders_get", "SELECT to_jsonb(g) FROM orders_get(%s) g", (oid,))
        self.judge("orders_get", {OK}, out, f"orders_get({oid})")
        if out[0] != OK:
            return False
        rows = [r[0] for r in out[1]]
        pr = [] if len(rows) <= 1 else [f"{len(rows)} rows"]
        for o in rows:
            pr += order_problems(o)
        if oid in tx["known"]:
            want = [] if tx["known"][oid] is None else [tx["known"][oid]]
            if [norm(o) for o in rows] != [norm(o) for o in want]:
                pr.append(f"not what this transaction holds: {str(rows)[:300]} != {str(want)[:300]}")
        elif stable and rows:
            pr.append("an id nobody added was found")
        self.results.check("orders_get result", not pr, f"orders_get({oid}): {pr}")
        return True

    # ---- the check after a step: one order and its events, one snapshot

    def step_check(self):
        oid = self.model.pick(self.rng)
        if oid is None:
            return
        m = self.model.get(oid)        # committed before the snapshot is taken
        self.sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        rows = self.sql("SELECT to_jsonb(o) FROM orders o WHERE id = %s", (oid,))
        got = self.sql("SELECT to_jsonb(g) FROM orders_get(%s) g", (oid,))
        events = self.sql(
            "SELECT position, xid::text, type, version, payload, to_jsonb(occurred_at) #>> '{}'"
            " FROM order_events WHERE order_id = %s ORDER BY position", (oid,))
        self.sql("COMMIT")
        row = rows[0][0] if rows else None
        events = [dict(zip(["position", "xid", "type", "version", "payload", "occurred_at"], e))
                  for e in events]
        p = []
        if [r[0] for r in got] != [r[0] for r in rows]:
            p.append(f"orders_get gives {got!r}, the table {rows!r}")
        if row is not None:
            p += order_problems(row)
        hp, version, removed = history_problems(str(oid), row, events)
        p += hp
        if m is not None:
            if version < m["version"]:
                p.append(f"version {version} is older than the committed {m['version']}")
            elif version == m["version"]:
                if m["state"] is None and not removed:
                    p.append("its removal committed, yet it is not removed")
                if m["state"] is not None and norm(row) != norm(m["state"]):
                    p.append(f"differs from what committed: {diff(norm(row), norm(m['state']))}")
        self.results.check("step check", not p, f"order {oid}: {p}"[:1500])


# ------------------------------------------------------------- final check

def final_check(model, results, amcheck):
    conn = connect(random.Random(0))
    cur = conn.cursor()
    cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    cur.execute("SELECT to_jsonb(o) FROM orders o")
    stored = {r[0]["id"]: r[0] for r in cur.fetchall()}
    cur.execute("SELECT position, xid::text, order_id::text, type, version, payload,"
                " to_jsonb(occurred_at) #>> '{}' FROM order_events ORDER BY position")
    events = {}
    n_events = 0
    for pos, xid, oid, typ, version, payload, occurred in cur.fetchall():
        n_events += 1
        events.setdefault(oid, []).append({"position": pos, "xid": xid, "type": typ,
                                           "version": version, "payload": payload,
                                           "occurred_at": occurred})
    committed = {str(k): v for k, v in model.orders.items()}
    statuses = {}
    for o in stored.values():
        statuses[o["status"]] = statuses.get(o["status"], 0) + 1
    types = {}
    for evs in events.values():
        for e in evs:
            types[e["type"]] = types.get(e["type"], 0) + 1
    stats = {"stored": len(stored), "events": n_events, "statuses": statuses, "types": types}

    for oid in sorted(set(stored) | set(events) | set(committed)):
        row = stored.get(oid)
        p = order_problems(row) if row is not None else []
        hp, version, removed = history_problems(oid, row, events.get(oid, []))
        p += hp
        m = committed.get(oid)
        if m is None:
            p.append(f"stored={row is not None}, {len(events.get(oid, []))} events, "
                     "but no add of it committed")
        else:
            if version != m["version"]:
                p.append(f"version {version}, the last committed {m['version']}")
            if m["state"] is None:
                if not removed:
                    p.append("its removal committed, yet it is not removed")
            elif norm(row) != norm(m["state"]):
                p.append(f"differs from the last committed save: {diff(norm(row), norm(m['state']))}")
            added = events.get(oid, [{}])[0].get("payload")
            if norm(added) != norm(m["added"]):
                p.append(f"order_added payload is not what orders_add returned: "
                         f"{diff(norm(added), norm(m['added']))}")
        results.check("final order", not p, f"order {oid}: {p}"[:1500])

    results.check("final ids", set(events) == set(committed) and
                  set(stored) == {k for k, v in committed.items() if v["state"] is not None},
                  f"ids with events but never committed: {sorted(set(events) - set(committed))[:5]}; "
                  f"committed without events: {sorted(set(committed) - set(events))[:5]}")

    attempted = {str(i) for i in model.attempted}
    results.check("final attempted", set(stored) <= attempted | set(committed),
                  "stored orders with ids nobody used")

    # the queries agree with the table
    cur.execute("SELECT orders_count()")
    n = cur.fetchone()[0]
    results.check("final orders_count", n == len(stored), f"orders_count() {n}, {len(stored)} stored")
    cur.execute("SELECT currency, orders, total FROM orders_total()")
    got = {c: (int(k), int(t)) for c, k, t in cur.fetchall()}
    want = {}
    for o in stored.values():
        k, t = want.get(o["currency"], (0, 0))
        want[o["currency"]] = (k + 1, t + o["total"])
    results.check("final orders_total", got == want, f"orders_total() {got}, computed {want}")
    cur.execute("SELECT id::text FROM orders_find(max_rows => NULL)")
    found = [r[0] for r in cur.fetchall()]
    results.check("final orders_find", found == sorted(stored), "orders_find() is not every order by id")
    cur.execute("COMMIT")

    # the indexes the extension writes itself hold every row, in order
    if amcheck:
        cur.execute("""SELECT c.oid::regclass::text FROM pg_index i
                       JOIN pg_class c ON c.oid = i.indexrelid
                       JOIN pg_am a ON a.oid = c.relam AND a.amname = 'btree'
                       WHERE i.indrelid IN ('orders'::regclass, 'order_events'::regclass)""")
        for (index,) in cur.fetchall():
            try:
                cur.execute("SELECT bt_index_check(%s::regclass, true)", (index,))
                results.check("final amcheck", True)
            except psycopg2.Error as e:
                results.check("final amcheck", False, f"{index}: {e.pgcode} {e}")
    conn.close()
    return stats


# ---------------------------------------------------------------------- main

def main():
    global ENCODING, HAVE_BOGUS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--max-ops", type=int, default=200000, help="calls per session, at most")
    ap.add_argument("--pool", type=int, default=48, help="how many ids the sessions race on")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2 ** 31)
    print(f"seed {seed} (--seed {seed} to repeat the choices; the interleaving varies)", flush=True)

    conn = connect(random.Random(seed))
    cur = conn.cursor()
    cur.execute("SHOW server_encoding")
    ENCODING = cur.fetchone()[0]
    cur.execute("SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'orders'")
    row = cur.fetchone()
    if row is None:
        print("the orders extension is not installed")
        print("0 passed, 1 failed")
        return 1
    SCHEMA[0] = row[0]
    conn.close()
    conn = connect(random.Random(seed))
    cur = conn.cursor()
    # the final check accounts for every order and event: none may be there before
    cur.execute("SELECT (SELECT count(*) FROM order_events) + (SELECT count(*) FROM orders)")
    if cur.fetchone()[0] > 0:
        print("orders or events exist already: run against a fresh database")
        print("0 passed, 1 failed")
        return 1
    cur.execute(f"ALTER TYPE order_status ADD VALUE IF NOT EXISTS '{BOGUS_STATUS}'")
    HAVE_BOGUS = True
    cur.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'amcheck'")
    amcheck = cur.fetchone()[0] > 0
    if amcheck:
        cur.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
    conn.close()

    model = Model(max(1, args.pool))
    results = Results()
    start = time.monotonic()
    deadline = start + args.seconds
    sessions = [Session(i, seed, deadline, args.max_ops, model, results)
                for i in range(args.sessions)]
    for s in sessions:
        s.start()
    for s in sessions:
        s.join(max(0.0, deadline - time.monotonic()) + 90)
        if s.is_alive():
            results.check("session", False, f"{s.name} did not stop within 90 s of the deadline")
    ran = time.monotonic() - start
    hung = any(s.is_alive() for s in sessions)
    stats = {"stored": 0, "events": 0, "statuses": {}, "types": {}}
    if not hung:
        try:
            stats = final_check(model, results, amcheck)
        except Exception:
            results.check("final", False, traceback.format_exc())

    def counts(d):
        return ", ".join(f"{k} {v}" for k, v in sorted(d.items()))

    ops = sum(results.ops.values())
    errors = {k: v for k, v in results.outcomes.items() if k != OK}
    print(f"{args.sessions} sessions for {ran:.1f} s: {ops} calls ({counts(results.ops)}), "
          f"{results.outcomes.get(OK, 0)} succeeded")
    print(f"errors by SQLSTATE: {sum(errors.values())} ({counts(errors)})")
    print(f"errors by constraint: {counts(results.constraints)}")
    print("transactions: " + ", ".join(f"{k} {v}" for k, v in results.tx.items()))
    print(f"orders: {len(model.orders)} added and committed, {stats['stored']} stored at the end "
          f"({counts(stats['statuses'])}); {stats['events']} events ({counts(stats['types'])})")
    kinds = results.kinds
    step = sum(sum(v) for k, v in kinds.items() if k == "step check")
    final = sum(sum(v) for k, v in kinds.items() if k.startswith("final"))
    print(f"checks: {results.passed + results.failed} ({step} step checks, {final} final checks, "
          f"{results.passed + results.failed - step - final} checks of calls and their events)")
    print("checks by kind: " + ", ".join(f"{k} {p}/{p + f}" for k, (p, f) in sorted(kinds.items())))
    for m in results.messages:
        print(m)
    print(f"{results.passed} passed, {results.failed} failed", flush=True)
    return 0 if results.failed == 0 and not hung else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # a session stuck in a call would keep the interpreter alive
    os._exit(code)
