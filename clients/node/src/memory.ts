// The twin: the repository's interface and semantics with no database, for
// unit tests of domain code.  InMemoryStore is the database: committed
// orders, the ids ever used, the outbox, the consumers' checkpoints and
// holds, and the units of work in progress.  InMemoryOrderRepository has
// the real repository's rules, exceptions (rule names as the extension's
// constraints), versions and removal, and the events each write emits, in
// the extension's order and with its payloads; its units of work have the
// real one's semantics (test/contract.test.ts runs the same cases against
// both); InMemoryEventConsumer reads the outbox as EventConsumer does.
// What the twin cannot do alike is said where it differs (docs/clients.md
// lists it).
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { ConcurrencyConflict, DuplicateOrder, fieldDetail, InvariantViolation, OrderNotFound, OrdersError,
         overlappingCalls, unitOutlived } from './errors.js';
import { type ConsumerOptions, type Handler, type Hold, handleBatch } from './handling.js';
import { type AddOptions, type Address, ADDRESS_KEYS, addressToJson, checkFields, checkIntegers, type DraftOrder,
         type Event, type Fields, LINE_KEYS, lineOutOfRange, linesToJson, type NewOrder, onlyOrder, type Order, ORDER_KEYS,
         type OrderLine, orderToJson, parseJson, type Status, toJsonText, uuid7 } from './model.js';
import { Anything, type Spec } from './specs.js';

const NEXT: Record<Status, Status[]> = {
  pending: ['confirmed', 'cancelled'], confirmed: ['shipped', 'cancelled'], shipped: ['delivered'],
  delivered: [], cancelled: [],
};
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const MAX_TOTAL = 9223372036854775807n;

// Errors as the extension raises them: the failing field's path, and the
// detail's first sentence that gives it (the extension's explanation that
// follows is not repeated here).
const violation = (message: string, rule: string, path: string, value?: string) =>
  new InvariantViolation(message, rule, path, value, '23514', fieldDetail(path), rule);
const notNull = (path: string) =>
  new InvariantViolation(`${path} must not be null`, 'not_null', path, undefined, '23502', fieldDetail(path));
const conflict = () =>
  new ConcurrencyConflict('order was changed by someone else', '40001', fieldDetail('version'));

function checkText(value: string | null, path: string, rule: string, limit: number) {
  if (value === null || value === undefined) throw notNull(path);
  if ([...value].length < 1 || [...value].length > limit || CONTROL.test(value))
    throw violation(`${path} must be 1 to ${limit} characters without control characters`, rule, path);
}

function check(lines: readonly OrderLine[], currency: string, address: Address | null): bigint {
  if (currency === null || currency === undefined) throw notNull('currency');
  if (!/^[A-Z]{3}$/.test(currency))
    throw violation('currency must be three upper-case ASCII letters', 'order_currency_format', 'currency', currency);
  if (lines.length > 1000) throw violation('too many lines', 'order_lines_max', 'lines');
  const seen = new Set<string>();
  const twice: [string, number][] = [];
  let total = 0n;
  lines.forEach((l, i) => {
    const at = `lines[${i + 1}]`;
    checkText(l.productName, `${at}.product_name`, 'order_line_product_name', 200);
    if (l.quantity === null || l.quantity === undefined) throw notNull(`${at}.quantity`);
    if (l.unitPrice === null || l.unitPrice === undefined) throw notNull(`${at}.unit_price`);
    if (l.quantity < 1 || l.quantity > 1_000_000) throw lineOutOfRange(`${at}.`, 'quantity', l.quantity);
    if (l.unitPrice < 0n || l.unitPrice > 100_000_000_000n) throw lineOutOfRange(`${at}.`, 'unit_price', l.unitPrice);
    total += BigInt(l.quantity) * l.unitPrice;
    if (total > MAX_TOTAL)
      throw new InvariantViolation('total is out of range for type bigint', 'out_of_range', 'total', undefined, '22003',
                                   fieldDetail('total'));
    const id = l.productId.toLowerCase();
    if (seen.has(id)) twice.push([id, i + 1]);
    seen.add(id);
  });
  if (twice.length > 0) {
    // after every line, as the extension: the lowest product id that is
    // twice, at its second line
    const [id, line] = twice.reduce((a, b) => (b[0] < a[0] || (b[0] === a[0] && b[1] < a[1]) ? b : a));
    throw violation(`product ${id} appears in more than one line`, 'order_line_product_unique',
                    `lines[${line}].product_id`);
  }
  if (address !== null) {
    for (const [name, value] of [['street', address.street], ['city', address.city],
                                 ['postal_code', address.postalCode], ['country', address.country]] as const)
      if (value === null || value === undefined) throw notNull(`shipping_address.${name}`);
    checkText(address.street, 'shipping_address.street', 'order_address_fields', 200);
    checkText(address.city, 'shipping_address.city', 'order_address_fields', 100);
    checkText(address.postalCode, 'shipping_address.postal_code', 'order_address_fields', 20);
    if (!/^[A-Z]{2}$/.test(address.country))
      throw violation('shipping_address.country must be two upper-case ASCII letters', 'order_address_fields',
                      'shipping_address.country', address.country);
  }
  return total;
}

function checkReady(lines: readonly OrderLine[], address: Address | null, status: Status) {
  if (status !== 'pending' && status !== 'cancelled' && (lines.length === 0 || address === null))
    throw violation(`an order with status "${status}" needs lines and a shipping address`, 'order_ready_to_confirm',
                    lines.length === 0 ? 'lines' : 'shipping_address');
}

// The shop's fields as the real repository would send and read them back:
// checked for our names, through JSON (a Date as its text, a bigint whole),
// a frozen copy that shares nothing with the caller's.
function storedFields(fields: Fields | undefined, own: readonly string[], path: string, kind: string): Fields {
  checkFields(fields, own, path, kind);
  return Object.freeze(parseJson(toJsonText(fields ?? {})));
}

// A line's or an address's fields only when it has any, as the real repository reads them.
const withFields = <T extends { fields?: Fields }>(o: T, fields: Fields): T => {
  const { fields: _given, ...rest } = o;
  return Object.freeze(Object.keys(fields).length === 0 ? rest as T : { ...rest, fields } as T);
};

// Each line's integers checked as the real repository checks them before
// it sends anything, then its fields.
const storedLines = (lines: readonly OrderLine[]) => Object.freeze(lines.map((given, i) => {
  const l = checkIntegers(given, `lines[${i + 1}].`);
  return withFields({ ...l, productId: typeof l.productId === 'string' ? l.productId.toLowerCase() : l.productId },
                    storedFields(l.fields, LINE_KEYS, `lines[${i + 1}].fields.`, 'attribute of a line'));
}));
const storedAddress = (a: Address | null) => a === null ? null : withFields(
  { ...a }, storedFields(a.fields, ADDRESS_KEYS, 'shipping_address.fields.', 'attribute of an address'));

// Two JSON values alike, whatever the order of their keys.
const canonical = (v: unknown): unknown => Array.isArray(v) ? v.map(canonical)
  : v !== null && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical((v as any)[k])]))
  : v;
const sameValue = (a: unknown, b: unknown) => toJsonText(canonical(a ?? null)) === toJsonText(canonical(b ?? null));
// A line's or address's fields alike: a missing one is NULL, as in a column.
const sameFields = (a: Fields | undefined, b: Fields | undefined) =>
  [...new Set([...Object.keys(a ?? {}), ...Object.keys(b ?? {})])].every((k) => sameValue(a?.[k], b?.[k]));

const sameLines = (a: readonly OrderLine[], b: readonly OrderLine[]) =>
  a.length === b.length && a.every((l, i) => l.productId.toLowerCase() === b[i].productId.toLowerCase() &&
                                             l.productName === b[i].productName &&
                                             l.quantity === b[i].quantity && l.unitPrice === b[i].unitPrice &&
                                             sameFields(l.fields, b[i].fields));
const sameAddress = (a: Address | null, b: Address | null) =>
  a === b || (a !== null && b !== null && a.street === b.street && a.city === b.city &&
              a.postalCode === b.postalCode && a.country === b.country && sameFields(a.fields, b.fields));

// uuid order as PostgreSQL sorts it: byte by byte, which is the hex text's order
const byId = (a: string, b: string) => (a.toLowerCase() < b.toLowerCase() ? -1 : a.toLowerCase() > b.toLowerCase() ? 1 : 0);


type Metadata = Record<string, unknown>;
const EVENT_METADATA_MAX = 8192;

// A unit of work in progress: its writes over the committed state (an order
// removed is null), the ids it added, its events (positions taken when
// written, as the outbox's sequence does), and its metadata.  Its time is
// the one of its start, as now() is a transaction's.
class Unit {
  writes = new Map<string, Order | null>();
  added = new Set<string>();
  events: Event[] = [];
  // its levels in progress, outermost first (the real one's transaction and savepoints)
  readonly frames: Frame[] = [];
  // its calls made and not yet seen done by their callers
  calls = 0;
  constructor(readonly now: Date, public metadata: Metadata | undefined) {}

  savepoint(): () => void {
    const writes = new Map(this.writes);
    const added = new Set(this.added);
    const events = [...this.events];
    const metadata = this.metadata;
    return () => { this.writes = writes; this.added = added; this.events = events; this.metadata = metadata; };
  }
}

// A level of a unit: the unit itself, or a unit nested in it. Open while
// its function runs: a call made in its async context afterwards (a timer,
// a promise nobody awaited) is in the nearest enclosing level still open,
// or in no unit, as the real repository's.
class Frame {
  open = true;
  constructor(readonly unit: Unit, readonly parent: Frame | null) {}
  get live(): boolean { return this.open && (this.parent === null || this.parent.live); }
}

// One consumer's checkpoint, as the extension keeps it: not a position but
// a snapshot, here the number of the last commit it has read through
// (acked); the batch open (batch: the commits up to that number, read in
// position order and acknowledged through batchPosition), and its held
// orders by order id.  A group keeps its holds in one of these per part
// ("<name>/<part>"), as the extension does.
interface Checkpoint {
  acked: number;
  batch: number | null;
  batchPosition: bigint;
  holds: Map<string, HoldState>;
}

interface HoldState {
  orderId: string;
  position: bigint;
  later: bigint[];
  attempts: number;
  reason: string | null;
  failedAt: Date | null;
  retryAt: Date | null;
  parkedAt: Date | null;
  delivered: boolean;
}

// The store's state; out of its public interface, shared by the twin's
// classes of this module.
class Database {
  orders = new Map<string, Order>();
  used = new Set<string>();
  events: Event[] = [];          // committed, by position
  lastPosition = 0n;
  // the commit each committed event's unit was, numbered in commit order
  commitOf = new Map<bigint, number>();
  commits = 0;
  open = new Set<Unit>();
  current = new AsyncLocalStorage<Frame>();
  consumers = new Map<string, Checkpoint>();
  listeners = new Set<() => void>();
  constructor(readonly clock: () => Date) {}

  order(unit: Unit, id: string): Order | undefined {
    return unit.writes.has(id) ? unit.writes.get(id) ?? undefined : this.orders.get(id);
  }

  // Another unit in progress wrote the order (added, saved or removed it):
  // the real one would wait for its row lock, which one thread cannot; the
  // twin fails at once, as the real one does once the other commits.
  writtenElsewhere(unit: Unit, id: string): boolean {
    for (const other of this.open) if (other !== unit && other.writes.has(id)) return true;
    return false;
  }

  // Another unit in progress added the id: the real one's insert would wait
  // for it, then fail on the primary key.
  addedElsewhere(unit: Unit, id: string): boolean {
    for (const other of this.open) if (other !== unit && other.added.has(id)) return true;
    return false;
  }

  emit(unit: Unit, metadata: Metadata | undefined, type: string, orderId: string, version: number, payload: unknown) {
    const meta = metadata ?? unit.metadata;
    // the extension's limit, on the text the real repository sets
    const length = meta === undefined ? 0 : Buffer.byteLength(JSON.stringify(meta));
    if (length > EVENT_METADATA_MAX)
      throw new OrdersError(`orders.event_metadata is too long (${length} bytes)`, '54000',
                            `Every event the transaction writes carries it: at most ${EVENT_METADATA_MAX} bytes are allowed.`);
    unit.events.push(Object.freeze({
      position: ++this.lastPosition, type, orderId, version, payload: parseJson(toJsonText(payload)),
      occurredAt: unit.now, id: randomUUID(), metadata: meta === undefined ? null : parseJson(JSON.stringify(meta)),
    }));
  }

  commit(unit: Unit) {
    for (const [id, o] of unit.writes) {
      if (o === null) this.orders.delete(id);
      else this.orders.set(id, o);
    }
    for (const id of unit.added) this.used.add(id);
    if (unit.events.length > 0) {
      this.commits += 1;
      for (const e of unit.events) this.commitOf.set(e.position, this.commits);
      this.events.push(...unit.events);
      this.events.sort((a, b) => (a.position < b.position ? -1 : 1));
      for (const wake of this.listeners) wake();
    }
  }

  // The level of the unit in progress that a call made here runs in, or
  // undefined; refused when a nested unit is in flight beside the caller
  // (the real one's savepoint would take the call in and undo it with it).
  private enclosing(): Frame | undefined {
    let mine = this.current.getStore();
    while (mine !== undefined && !mine.live) mine = mine.parent ?? undefined;
    if (mine === undefined) return undefined;
    const open = mine.unit.frames.filter((f) => f.live);
    if (mine !== open[open.length - 1]) throw overlappingCalls();
    return mine;
  }

  /**
   * fn as one call: in the unit of work in progress, undone alone if it
   * throws (the real repository's savepoint around each call), or on its
   * own, committed at once. fn is synchronous: no other call runs inside it.
   * In a unit, the call counts as in flight until its caller can see it
   * done (a nested unit started before then is refused, as the real one's).
   */
  call<T>(fn: (unit: Unit) => T): T {
    const unit = this.enclosing()?.unit;
    if (unit !== undefined) {
      unit.calls += 1;
      queueMicrotask(() => { unit.calls -= 1; });
      const undo = unit.savepoint();
      try {
        return fn(unit);
      } catch (e) {
        undo();
        throw e;
      }
    }
    const single = new Unit(this.clock(), undefined);
    this.open.add(single);
    try {
      const result = fn(single);
      this.commit(single);
      return result;
    } finally {
      this.open.delete(single);
    }
  }

  async unitOfWork<T>(fn: () => Promise<T>, options: { metadata?: Metadata; idempotencyKey?: string }): Promise<T> {
    const outer = this.enclosing();
    const unit = outer?.unit ?? new Unit(this.clock(), options.metadata);
    if (outer !== undefined && unit.calls > 0) throw overlappingCalls();
    const frame = new Frame(unit, outer ?? null);
    unit.frames.push(frame);
    const run = () => this.current.run(frame, async () => {
      try {
        return await fn();
      } finally {
        frame.open = false;
      }
    });
    try {
      if (outer !== undefined) {
        // a savepoint of the unit in progress; its metadata for itself only
        const undo = unit.savepoint();
        const metadata = unit.metadata;
        if (options.metadata !== undefined) unit.metadata = options.metadata;
        let result: T;
        try {
          result = await run();
        } catch (e) {
          if (outer.live) undo();
          throw e;
        }
        // the enclosing unit ended (it did not await this one), as the real one
        if (!outer.live) throw unitOutlived();
        unit.metadata = metadata;
        return result;
      }
      this.open.add(unit);
      try {
        const result = await run();
        this.commit(unit);
        return result;
      } finally {
        this.open.delete(unit);
      }
    } finally {
      frame.open = false;
      unit.frames.splice(unit.frames.indexOf(frame), 1);
    }
  }
}

const databases = new WeakMap<InMemoryStore, Database>();
const db = (store: InMemoryStore): Database => databases.get(store) as Database;

/**
 * The twin's database, for InMemoryOrderRepository and
 * InMemoryEventConsumer: repositories on one store see one database, and
 * its units of work. clock: the time of writes and of rejected events'
 * retries (default: the real time), so that a test can move time on.
 */
export class InMemoryStore {
  constructor(options: { clock?: () => Date } = {}) {
    databases.set(this, new Database(options.clock ?? (() => new Date())));
  }

  /** The current time, by the store's clock. */
  now(): Date { return db(this).clock(); }

  /**
   * One unit of work, as the real unitOfWork: committed when fn resolves,
   * undone (orders, used ids, events) when it throws; a call refused inside
   * it is undone alone; a unit inside another (in the same async context)
   * is a savepoint of it. Its writes are seen by its own reads only until
   * it commits. idempotencyKey is accepted and does nothing: a twin loses
   * no commit's answer, so there is nothing to replay.
   */
  unitOfWork<T>(fn: () => Promise<T>, options: { metadata?: Metadata; idempotencyKey?: string } = {}): Promise<T> {
    return db(this).unitOfWork(fn, options);
  }
}

/**
 * The repository over an InMemoryStore (a store of its own unless given
 * one). eventsOf reads the events its writes emitted, with the unit's and
 * the repository's metadata as the real one writes them.
 *
 * The shop's own fields (order.fields, and each line's and address's) are
 * stored as given, returned by get, and compared by save, which emits
 * order_fields_changed with the ones that changed, as the extension does.
 * The twin knows nothing of the shop's DDL, so it enforces nothing it
 * cannot know: it evaluates no CHECK constraint, converts no value to its
 * column's type (a '2' stays a string), fills no default, computes no
 * generated or identity column, and accepts a name that is no column (the
 * extension refuses it, 42703). A field the extension would fill or convert
 * is therefore absent or as given here: assert on the fields you give. It
 * does refuse, as the extension does, a field named as one of the
 * extension's own columns or attributes (22023).
 */
export class InMemoryOrderRepository {
  readonly store: InMemoryStore;
  readonly metadata?: Metadata;

  constructor(options: { store?: InMemoryStore; metadata?: Metadata } = {}) {
    this.store = options.store ?? new InMemoryStore();
    this.metadata = options.metadata;
  }

  private get db() { return db(this.store); }

  /** The store's unit of work: the same method as OrderRepository's. */
  unitOfWork<T>(fn: () => Promise<T>, options: { metadata?: Metadata; idempotencyKey?: string } = {}): Promise<T> {
    return this.store.unitOfWork(fn, options);
  }

  async add(order: DraftOrder | Order): Promise<Order>;
  async add(customerId: string, currency: string, lines?: readonly OrderLine[], shippingAddress?: Address | null,
            idOrOptions?: string | AddOptions): Promise<Order>;
  async add(first: string | DraftOrder | Order,
            ...rest: [currency?: string, lines?: readonly OrderLine[], shippingAddress?: Address | null,
                      idOrOptions?: string | AddOptions]): Promise<Order> {
    if (typeof first === 'object' && first !== null) {
      onlyOrder(rest);
      return this.db.call((unit) => this.addIn(unit, first.customerId, first.currency, first.lines,
                                               first.shippingAddress, { id: first.id, fields: first.fields }));
    }
    const [currency, lines = [], shippingAddress = null, idOrOptions] = rest;
    return this.db.call((unit) => this.addIn(unit, first, currency as string, lines, shippingAddress, idOrOptions));
  }

  private addIn(unit: Unit, customerId: string, currency: string, lines: readonly OrderLine[],
                shippingAddress: Address | null, idOrOptions?: string | AddOptions): Order {
    const { id, fields } = typeof idOrOptions === 'string' ? { id: idOrOptions, fields: undefined } : idOrOptions ?? {};
    const given = storedFields(fields, ORDER_KEYS, 'fields.', 'column');
    lines = storedLines(lines);
    shippingAddress = storedAddress(shippingAddress);
    const total = check(lines, currency, shippingAddress);
    const oid = (id ?? uuid7()).toLowerCase();
    if (this.db.order(unit, oid) !== undefined || this.db.addedElsewhere(unit, oid))
      throw new DuplicateOrder(`order ${oid} already exists`, '23505', undefined, 'orders_pkey');
    if (this.db.used.has(oid) || unit.added.has(oid))
      throw new DuplicateOrder(`order id ${oid} was used before`, '23505', undefined, 'orders_id_not_reused');
    const now = unit.now;
    const order: Order = Object.freeze({
      id: oid, customerId: customerId.toLowerCase(), status: 'pending', currency, lines, shippingAddress,
      total, version: 1, createdAt: now, updatedAt: now, fields: given,
    });
    unit.writes.set(oid, order);
    unit.added.add(oid);
    this.db.emit(unit, this.metadata, 'order_added', oid, 1, orderToJson(order));
    return order;
  }

  /** All or none, as the extension's orders_add_many: an error carries the offending order's index. */
  async addMany(orders: readonly NewOrder[]): Promise<Order[]> {
    return this.db.call((unit) => orders.map((o, i) => {
      try {
        return this.addIn(unit, o.customerId, o.currency, o.lines ?? [], o.shippingAddress ?? null,
                          { id: o.id, fields: o.fields });
      } catch (e) {
        if (e instanceof OrdersError) e.index = i;
        throw e;
      }
    }));
  }

  private stored(unit: Unit, id: string): Order {
    const o = this.db.order(unit, id.toLowerCase());
    if (o === undefined) throw new OrderNotFound(`order ${id} does not exist`, 'P0002');
    return o;
  }

  // The order a write changes: as the real one locks its row first, before
  // it looks at the version or at what changed, another unit in progress
  // that wrote it is a conflict at once.
  private locked(unit: Unit, id: string): Order {
    const o = this.stored(unit, id);
    if (this.db.writtenElsewhere(unit, o.id))
      throw new ConcurrencyConflict('order was changed by someone else (by a unit of work in progress)', '40001',
                                    fieldDetail('version'));
    return o;
  }

  async get(id: string): Promise<Order> { return this.db.call((unit) => this.stored(unit, id)); }

  /** The order's events after afterVersion, in version order (a removed order's too; a unit's own before it commits). */
  async eventsOf(id: string, afterVersion = 0): Promise<Event[]> {
    return this.db.call((unit) => [...this.db.events, ...unit.events]
      .filter((e) => e.orderId === id.toLowerCase() && e.version > afterVersion)
      .sort((a, b) => a.version - b.version));
  }

  async save(order: Order): Promise<Order> {
    return this.db.call((unit) => this.saveIn(unit, order));
  }

  private saveIn(unit: Unit, order: Order): Order {
    // in the extension's order: the new state's fields, then against the
    // stored order: version, immutable fields, the status step, readiness,
    // what is frozen
    const given = storedFields(order.fields, ORDER_KEYS, 'fields.', 'column');
    const lines = storedLines(order.lines);
    const address = storedAddress(order.shippingAddress);
    const total = check(lines, order.currency, address);
    const stored = this.locked(unit, order.id);
    if (order.version !== stored.version) throw conflict();
    for (const [name, a, b] of [['customer_id', order.customerId.toLowerCase(), stored.customerId],
                                ['currency', order.currency, stored.currency]] as const)
      if (a !== b) throw violation(`${name} cannot change`, 'order_immutable_fields', name);
    if (order.status !== stored.status && !NEXT[stored.status].includes(order.status))
      throw violation(`status cannot move from "${stored.status}" to "${order.status}"`, 'order_status_transition', 'status');
    checkReady(lines, address, order.status);
    const linesChanged = !sameLines(lines, stored.lines);
    const addressChanged = !sameAddress(address, stored.shippingAddress);
    if (linesChanged && stored.status !== 'pending')
      throw violation('lines can change only while the order is pending', 'order_frozen_after_confirm', 'lines',
                      stored.status);
    if (addressChanged && stored.status !== 'pending' && stored.status !== 'confirmed')
      throw violation('shipping_address can change only while the order is pending or confirmed',
                      'order_frozen_after_confirm', 'shipping_address', stored.status);
    // the whole row is saved: a field left out is NULL, as the stored one
    // not given is in the extension (where every column is given)
    const fields: Fields = Object.freeze({ ...Object.fromEntries(Object.keys(stored.fields).map((k) => [k, null])),
                                           ...given });
    const changed = Object.fromEntries(Object.entries(fields).filter(([k, v]) => !sameValue(stored.fields[k], v)));
    const fieldsChanged = Object.keys(changed).length > 0;
    if (!linesChanged && !addressChanged && !fieldsChanged && order.status === stored.status) return stored;
    const saved: Order = Object.freeze({
      ...stored, status: order.status, lines, shippingAddress: address, total, version: stored.version + 1,
      updatedAt: unit.now, fields,
    });
    unit.writes.set(stored.id, saved);
    // one save's events, in the extension's order, all with the new version
    const emit = (type: string, payload: unknown) =>
      this.db.emit(unit, this.metadata, type, stored.id, saved.version, payload);
    if (linesChanged) emit('order_lines_changed', { lines: linesToJson(lines), total: total.toString() });
    if (addressChanged) emit('order_shipping_address_changed', { shipping_address: addressToJson(address) });
    if (fieldsChanged) emit('order_fields_changed', changed);
    if (order.status !== stored.status)
      emit(`order_${order.status}`, { status: order.status, previous_status: stored.status });
    return saved;
  }

  /** The order as it was; remove(order) expects order.version, as the real one. */
  async remove(order: Order): Promise<Order>;
  async remove(id: string, expectedVersion?: number): Promise<Order>;
  async remove(idOrOrder: string | Order, expectedVersion?: number): Promise<Order> {
    const [id, expected] = typeof idOrOrder === 'object' && idOrOrder !== null
      ? [idOrOrder.id, idOrOrder.version] : [idOrOrder, expectedVersion];
    return this.db.call((unit) => {
      const stored = this.locked(unit, id);
      if (expected !== undefined && expected !== stored.version) throw conflict();
      if (stored.status === 'confirmed' || stored.status === 'shipped')
        throw violation('order cannot be removed while it is in flight', 'order_remove_in_flight', 'status',
                        stored.status);
      unit.writes.set(stored.id, null);
      this.db.emit(unit, this.metadata, 'order_removed', stored.id, stored.version + 1, orderToJson(stored));
      return stored;
    });
  }

  /** A uuid7, as the extension's orders_next_id(). */
  async nextId(): Promise<string> { return uuid7(); }

  async *find(spec: Spec = new Anything(), _pageSize = 100): AsyncGenerator<Order> {
    const found = this.db.call((unit) => {
      const ids = new Set([...this.db.orders.keys(), ...unit.writes.keys()]);
      return [...ids].sort(byId).map((id) => this.db.order(unit, id))
        .filter((o): o is Order => o !== undefined && spec.isSatisfiedBy(o));
    });
    for (const o of found) yield o;
  }
}

// PostgreSQL's hash_bytes_extended (Bob Jenkins' lookup3, src/common/hashfn.c)
// of a uuid's 16 bytes with seed 0, as uuid_hash_extended computes it, and
// orders_event_part's 4 low bits of it: the group part of an order.
const rot = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0;

/** The part (0 to 15) of a consumer group that reads the order's events: orders_event_part(order_id). */
export function orderEventPart(orderId: string): number {
  const k = Buffer.from(orderId.replace(/-/g, ''), 'hex');
  let a = (0x9e3779b9 + 16 + 3923095) >>> 0;
  let b = a;
  let c = a;
  a = (a + k.readUInt32LE(0)) >>> 0;
  b = (b + k.readUInt32LE(4)) >>> 0;
  c = (c + k.readUInt32LE(8)) >>> 0;
  // mix
  a = (a - c) >>> 0; a = (a ^ rot(c, 4)) >>> 0; c = (c + b) >>> 0;
  b = (b - a) >>> 0; b = (b ^ rot(a, 6)) >>> 0; a = (a + c) >>> 0;
  c = (c - b) >>> 0; c = (c ^ rot(b, 8)) >>> 0; b = (b + a) >>> 0;
  a = (a - c) >>> 0; a = (a ^ rot(c, 16)) >>> 0; c = (c + b) >>> 0;
  b = (b - a) >>> 0; b = (b ^ rot(a, 19)) >>> 0; a = (a + c) >>> 0;
  c = (c - b) >>> 0; c = (c ^ rot(b, 4)) >>> 0; b = (b + a) >>> 0;
  // the last 4 bytes, then final
  a = (a + k.readUInt32LE(12)) >>> 0;
  c = (c ^ b) >>> 0; c = (c - rot(b, 14)) >>> 0;
  a = (a ^ c) >>> 0; a = (a - rot(c, 11)) >>> 0;
  b = (b ^ a) >>> 0; b = (b - rot(a, 25)) >>> 0;
  c = (c ^ b) >>> 0; c = (c - rot(b, 16)) >>> 0;
  a = (a ^ c) >>> 0; a = (a - rot(c, 4)) >>> 0;
  b = (b ^ a) >>> 0; b = (b - rot(a, 14)) >>> 0;
  c = (c ^ b) >>> 0; c = (c - rot(b, 24)) >>> 0;
  return c & 15;
}

// The extension's orders_event_types() at 1.12, which a consumer's types are checked against.
const EVENT_TYPES: readonly string[] = [
  'order_added', 'order_lines_changed', 'order_shipping_address_changed', 'order_confirmed', 'order_shipped',
  'order_delivered', 'order_cancelled', 'order_removed', 'order_fields_changed',
];

const YEAR_MS = 31_536_000_000;
const sortByPosition = <T extends { position: bigint }>(xs: T[]) =>
  xs.sort((a, b) => (a.position < b.position ? -1 : a.position > b.position ? 1 : 0));
const maxOf = (xs: bigint[]) => xs.reduce((a, b) => (b > a ? b : a));

/**
 * When a held event that failed attempts times comes again: as the
 * extension's orders_events_retry_at, retryDelayMs after the first failure,
 * doubled after each one since, never more than a year on.
 */
const retryAt = (failedAt: Date, retryDelayMs: number, attempts: number) =>
  new Date(failedAt.getTime() + Math.min(retryDelayMs * 2 ** Math.min(Math.max(attempts, 1) - 1, 40), YEAR_MS));

/**
 * EventConsumer over an InMemoryStore's outbox: the same options, run(),
 * stop(), Reject and HandlerFailed, holds(), parked(), replay() and
 * discard(), with the extension's semantics: a named checkpoint (from the
 * events committed so far, or fromStart), committed events only, none
 * passed over.  Its checkpoint is a snapshot, not a position: each batch
 * is what committed since the last batch, in position order, so an event
 * that commits later comes in a later batch even at a lower position, and
 * a committed event comes at once even while a unit in progress holds a
 * lower position.  A rejected event is retried after retryDelayMs doubling
 * (retryAt = failedAt + retryDelayMs * 2^(attempts - 1), at most a year),
 * parked after maxAttempts, its order's later events held back behind it
 * while the other orders' flow on. The store's clock decides when a retry
 * is due; exitWhenIdleMs is real time.
 *
 * A group (options.group) is read by each consumer of it as a whole: the
 * twin hands no parts out, so two consumers of one group on one store
 * take turns rather than share; its holds are per part, as the
 * extension's ("<name>/<part>", the part orderEventPart(orderId)).
 *
 * The options are checked at once, as the extension checks them at the
 * first read or rejection: batch, maxAttempts at least 1, retryDelayMs not
 * negative, types (when given) at least one known event type and no null
 * (OrdersError 22023).
 */
export class InMemoryEventConsumer {
  private stopped = false;
  private wake: (() => void) | null = null;
  // a commit, replay or discard since the last read began: read again, not sleep
  private pending = false;
  private readonly batch: number;
  private readonly maxAttempts: number;
  private readonly retryDelayMs: number;
  private readonly types: readonly string[] | undefined;

  constructor(readonly store: InMemoryStore, readonly name: string, private readonly handler: Handler,
              private readonly options: ConsumerOptions = {}) {
    this.batch = options.batch ?? 100;
    this.maxAttempts = options.maxAttempts ?? 5;
    this.retryDelayMs = options.retryDelayMs ?? 10000;
    if (this.maxAttempts < 1) throw new OrdersError('max_attempts must be at least 1', '22023');
    if (this.retryDelayMs < 0) throw new OrdersError('retry_delay must not be negative', '22023');
    if (this.batch < 1) throw new OrdersError('max_events must be at least 1', '22023');
    const types = options.types as readonly (string | null | undefined)[] | null | undefined;
    if (types !== undefined && types !== null) {
      // as the extension's read refuses them, if here at once
      if (types.length === 0 || types.some((t) => t === null || t === undefined))
        throw new OrdersError('types must list at least one event type, and no null', '22023');
      for (const t of types)
        if (!EVENT_TYPES.includes(t as string)) throw new OrdersError(`unknown event type "${t}"`, '22023');
    }
    this.types = types === undefined || types === null ? undefined : [...types as readonly string[]];
  }

  private get db() { return db(this.store); }

  stop(): void {
    this.stopped = true;
    this.wake?.();
  }

  // as orders_events_register: from the commits so far, or from the start
  private register() {
    if (!this.db.consumers.has(this.name))
      this.db.consumers.set(this.name, { acked: this.options.fromStart ? 0 : this.db.commits, batch: null,
                                         batchPosition: 0n, holds: new Map() });
  }

  private consumer(): Checkpoint {
    const c = this.db.consumers.get(this.name);
    if (c === undefined) throw new OrdersError(`consumer "${this.name}" is not registered`, 'P0002');
    return c;
  }

  // The consumer whose holds keep this order's.
  private holder(orderId: string): string {
    return this.options.group ? `${this.name}/${orderEventPart(orderId)}` : this.name;
  }

  // The consumers that keep this one's holds, each made on first use.
  private holdStates(): Map<string, Checkpoint> {
    const consumers = this.db.consumers;
    if (!this.options.group) {
      // not made here: a consumer not registered yet holds nothing
      const c = consumers.get(this.name);
      return new Map(c === undefined ? [] : [[this.name, c]]);
    }
    const states = new Map<string, Checkpoint>();
    for (let part = 0; part < 16; part++) {
      const n = `${this.name}/${part}`;
      // only its holds are used
      if (!consumers.has(n)) consumers.set(n, { acked: 0, batch: null, batchPosition: 0n, holds: new Map() });
      states.set(n, consumers.get(n) as Checkpoint);
    }
    return states;
  }

  private wanted(e: Event): boolean {
    return this.types === undefined || this.types.includes(e.type);
  }

  /**
   * Consumes until stop(), SIGTERM (handleSigterm, default true, as the
   * real one), or exitWhenIdleMs of real time with nothing to read; wakes
   * at a commit with events, a replay or discard, or every wakeEveryMs.
   */
  async run(): Promise<void> {
    const onTerm = () => this.stop();
    if (this.options.handleSigterm ?? true) process.once('SIGTERM', onTerm);
    const listener = () => {
      this.pending = true;
      this.wake?.();
    };
    this.db.listeners.add(listener);
    const wakeEvery = this.options.wakeEveryMs ?? 5000;
    const exitWhenIdle = this.options.exitWhenIdleMs;
    let idleSince = Date.now();
    try {
      this.register();
      while (!this.stopped) {
        this.pending = false;
        if (await this.once() > 0) {
          idleSince = Date.now();
          continue;
        }
        let wait = Math.max(wakeEvery, 10);
        if (exitWhenIdle !== undefined) {
          // what is left of the idle time, as the real one: not a whole
          // exitWhenIdleMs again after a wake-up that brought nothing
          const left = exitWhenIdle - (Date.now() - idleSince);
          if (left < 0) break;
          wait = Math.min(wait, left);
        }
        if (this.pending) continue;
        await this.sleep(wait);
      }
    } finally {
      this.db.listeners.delete(listener);
      process.removeListener('SIGTERM', onTerm);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.max(ms, 0));
      function done() { clearTimeout(timer); resolve(); }
      this.wake = () => { this.wake = null; done(); };
    });
  }

  private async once(): Promise<number> {
    const events = this.read();
    await handleBatch(this.name, events, this.handler, async (event, reason) => this.nack(event, reason));
    if (events.length > 0) this.ack(events[events.length - 1].position);
    return events.length;
  }

  // Whether e is of the consumer's open batch: committed after its
  // checkpoint and by the batch's snapshot.
  private inBatch(c: Checkpoint, e: Event): boolean {
    const commit = this.db.commitOf.get(e.position) as number;
    return c.batch !== null && c.acked < commit && commit <= c.batch;
  }

  // The held event is done with: the next one waiting is held in its place,
  // due at once; none waiting, the order is held no more.
  private holdNext(hs: Checkpoint, h: HoldState) {
    const next = h.later.shift();
    if (next === undefined) {
      hs.holds.delete(h.orderId);
      return;
    }
    Object.assign(h, { position: next, attempts: 0, reason: null, failedAt: null, retryAt: this.db.clock(),
                       parkedAt: null, delivered: false });
  }

  private eventAt(position: bigint): Event | undefined {
    return this.db.events.find((e) => e.position === position);
  }

  // The next events, as the extension's read: the held ones that are due
  // with the stream's, in position order; reading on past a part of the
  // stream that is all held orders' or other types'.
  private read(): Event[] {
    for (;;) {
      const [events, more] = this.readSome();
      if (events.length > 0 || !more) return events;
    }
  }

  private readSome(): [Event[], boolean] {
    const c = this.consumer();
    const holders = this.holdStates();
    const holdsOf = (orderId: string) => (holders.get(this.holder(orderId)) as Checkpoint).holds;
    const now = this.db.clock();
    const due: Event[] = [];
    for (const hs of holders.values())
      for (const h of [...hs.holds.values()])
        while (hs.holds.has(h.orderId) && h.parkedAt === null && h.retryAt !== null && h.retryAt <= now) {
          const e = this.eventAt(h.position);
          if (e !== undefined && this.wanted(e)) {
            due.push(e);
            break;
          }
          this.holdNext(hs, h); // passed over, as handled
        }
    const scanned: Event[] = [];
    const eligible: Event[] = [];
    for (let attempt = 0; attempt < 2; attempt++) {
      if (c.batch === null) {
        // a new batch: every commit since the checkpoint, as the
        // extension's snapshot; an event whose unit committed later than
        // a higher position's comes in a later batch
        c.batch = this.db.commits;
        c.batchPosition = 0n;
      }
      for (const e of this.db.events) {
        if (eligible.length >= this.batch) break;
        if (e.position <= c.batchPosition || !this.inBatch(c, e)) continue;
        scanned.push(e);
        if (!holdsOf(e.orderId).has(e.orderId) && this.wanted(e)) eligible.push(e);
      }
      if (scanned.length > 0 || due.length > 0) break;
      // the batch is read to its end: its snapshot is the checkpoint
      c.acked = c.batch;
      c.batch = null;
    }
    const result = sortByPosition([...due, ...eligible]).slice(0, this.batch);
    const last = result.length > 0 ? result[result.length - 1].position
      : scanned.length > 0 ? scanned[scanned.length - 1].position : null;
    if (last === null) return [[], false];
    // a held order's events met in the stream join its hold, up to what
    // the reader acknowledges; the held events returned are delivered,
    // for ack or nack
    for (const e of scanned) {
      const waiting = holdsOf(e.orderId).get(e.orderId);
      if (e.position <= last && waiting !== undefined && e.position > maxOf([waiting.position, ...waiting.later]))
        waiting.later.push(e.position);
    }
    const returned = new Set(result.map((e) => e.position));
    for (const hs of holders.values())
      for (const h of hs.holds.values()) h.delivered = returned.has(h.position);
    if (result.length === 0) {
      // nothing to hand over in what was scanned: passed, and on
      if (last > c.batchPosition) c.batchPosition = last;
      return [[], true];
    }
    return [result, true];
  }

  private ack(last: bigint) {
    const c = this.consumer();
    if (last > c.batchPosition) c.batchPosition = last;
    for (const hs of this.holdStates().values())
      for (const h of [...hs.holds.values()])
        if (h.delivered && h.position <= last) this.holdNext(hs, h);
  }

  // orders_events_nack
  private nack(event: Event, reason: string) {
    const now = this.db.clock();
    this.ack(event.position - 1n);
    const hs = this.holdStates().get(this.holder(event.orderId)) as Checkpoint;
    const h = hs.holds.get(event.orderId);
    if (h !== undefined && h.position === event.position) {
      // a held event, failed again
      h.attempts += 1;
      h.reason = reason.slice(0, 2000);
      h.failedAt = now;
      h.delivered = false;
      if (h.attempts >= this.maxAttempts) {
        h.retryAt = null;
        h.parkedAt = now;
      } else {
        h.retryAt = retryAt(now, this.retryDelayMs, h.attempts);
      }
      return;
    }
    const c = this.consumer();
    hs.holds.set(event.orderId, {
      orderId: event.orderId, position: event.position,
      // the order's later events in the batch: they wait behind it
      later: this.db.events.filter((e) => e.orderId === event.orderId && e.position > event.position &&
                                          this.inBatch(c, e)).map((e) => e.position),
      attempts: 1, reason: reason.slice(0, 2000), failedAt: now,
      retryAt: this.maxAttempts > 1 ? retryAt(now, this.retryDelayMs, 1) : null,
      parkedAt: this.maxAttempts <= 1 ? now : null, delivered: false,
    });
    if (event.position > c.batchPosition) c.batchPosition = event.position;
  }

  /** The held orders: each one's rejected event, retried or parked, in position order. */
  async holds(): Promise<Hold[]> {
    const held: Hold[] = [];
    for (const [consumer, hs] of this.holdStates())
      for (const h of hs.holds.values()) {
        const e = this.eventAt(h.position);
        held.push({ consumer, orderId: h.orderId, position: h.position, type: e?.type ?? null,
                    version: e?.version ?? null, attempts: h.attempts, reason: h.reason, failedAt: h.failedAt,
                    retryAt: h.retryAt, parkedAt: h.parkedAt, heldBack: [...h.later] });
      }
    return sortByPosition(held);
  }

  /** The dead-letter list: the events rejected maxAttempts times. */
  async parked(): Promise<Hold[]> {
    return (await this.holds()).filter((h) => h.parkedAt !== null);
  }

  private holdAt(position: bigint): [Checkpoint, HoldState] {
    for (const hs of this.holdStates().values())
      for (const h of hs.holds.values())
        if (h.position === position) return [hs, h];
    throw new OrdersError(`consumer "${this.name}" holds no event at position ${position}`, '22023');
  }

  private wakeAll() {
    for (const wake of this.db.listeners) wake();
  }

  /** The held event at position comes again at the next read, its failures counted from zero. */
  async replay(position: bigint): Promise<void> {
    const [, h] = this.holdAt(position);
    Object.assign(h, { attempts: 0, retryAt: this.db.clock(), parkedAt: null, delivered: false });
    this.wakeAll();
  }

  /** Gives up on the held event at position, as if handled: its order's waiting events follow. */
  async discard(position: bigint): Promise<void> {
    const [hs, h] = this.holdAt(position);
    this.holdNext(hs, h);
    this.wakeAll();
  }
}
