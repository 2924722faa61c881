// OrderRepository: the aggregate's repository over the orders extension.
// Every method is one call of an extension function (find: one statement
// over the orders table); inside a unit of work, in a savepoint of it.  Rows travel as JSON with bigints as
// strings, so money arrives whole and the extension may be in any schema; the shop's own columns and
// attributes travel with the rest, as each object's fields (parseJson/toJsonText: integers beyond 2^53
// as bigints).  The repository runs on a client or on a pg.Pool: with a pool, a call outside a unit takes
// a connection for that call only, and a unit takes one for its whole length, which every call made
// inside it (found through AsyncLocalStorage) uses, so concurrent units on one pool never mix.
import { AsyncLocalStorage } from 'node:async_hooks';
import type pg from 'pg';
import { isConnectionError, isPool, type Queryable, type Source } from './connections.js';
import { ConcurrencyConflict, OrderNotFound, OrdersError, overlappingCalls, translate,
         unitOutlived } from './errors.js';
import { type AddOptions, type Address, checkFields, type DraftOrder, type Event, EVENT_COLUMNS, type Fields,
         linesToJson, type NewOrder, onlyOrder, type Order, ORDER_KEYS, type OrderLine, addressToJson, eventFromRow,
         orderFromJson, orderToJson, parseJson, toJsonText } from './model.js';
import { InMemoryOrderRepository, InMemoryStore } from './memory.js';
import { Anything, type Spec } from './specs.js';
import { checkExtensionVersion } from './version.js';

export type { Queryable, Source } from './connections.js';

const ident = (name: string) => '"' + name.replace(/"/g, '""') + '"';

/**
 * The orders extension's schema in the client's database, after checking
 * its version: ExtensionTooOld when it is older than
 * REQUIRED_EXTENSION_VERSION.
 */
export async function extensionSchema(client: Queryable): Promise<string> {
  const r = await client.query(`SELECT n.nspname, e.extversion FROM pg_catalog.pg_extension e
    JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'orders'`);
  if (r.rowCount === 0) throw new OrdersError('extension "orders" is not installed in this database');
  checkExtensionVersion(r.rows[0].extversion);
  return r.rows[0].nspname;
}

// An order row as JSON text, its money as strings so that JSON carries the
// bigints whole: the extension's own JSON form (orders_json, docs/api.md),
// read by parseJson, which keeps the shop's integers beyond 2^53 whole.
const rowJson = (schema: string) => `${schema}.orders_json(o)::pg_catalog.text`;
const fromRow = (r: { j: string }) => orderFromJson(parseJson(r.j));

// add's fields, checked as the extension checks them: none named as one of its own columns.
function fieldsJson(fields: Fields | undefined): Fields | undefined {
  checkFields(fields, ORDER_KEYS, 'fields.', 'column');
  return fields;
}

// A unit of work's level on a client: the outermost unit (its transaction)
// or one nested in it (a savepoint). It is open while the unit's function
// runs; a call made in its async context afterwards (a timer, a promise
// nobody awaited) is in no unit, or in the nearest enclosing one still open.
interface Frame {
  readonly client: Queryable;
  readonly parent: Frame | null;
  open: boolean;
}
const live = (f: Frame): boolean => f.open && (f.parent === null || live(f.parent));

// The frames of the units in progress in this async context: by client, the
// innermost; by pool, the outermost one, whose client every repository call
// on the pool made inside it runs on while it is open.
const scope = new AsyncLocalStorage<ReadonlyMap<object, Frame>>();
// Clients whose connection broke (or whose ROLLBACK failed): a pool must not hand them out again.
const broken = new WeakSet<Queryable>();

// A client's units in progress (outermost first), the calls made in them
// that are not done yet, and the end of its queue: one call at a time, its
// SAVEPOINT, statement and RELEASE (or ROLLBACK TO) together, so that calls
// made without awaiting each other run one after the other.
interface ClientState {
  readonly frames: Frame[];
  calls: number;
  tail: Promise<unknown>;
}
const states = new WeakMap<object, ClientState>();
function stateOf(client: Queryable): ClientState {
  let st = states.get(client);
  if (st === undefined) states.set(client, st = { frames: [], calls: 0, tail: Promise.resolve() });
  return st;
}

// fn when the client's earlier calls are done.
function serial<T>(st: ClientState, fn: () => Promise<T>): Promise<T> {
  const run = st.tail.then(fn);
  st.tail = run.catch(() => undefined);
  return run;
}

// The unit a call on the client made here runs in: the client's innermost
// open unit, when this context is in it (or, on a client given as such, in
// no unit of it at all: the unit's other users join it, as before); null
// when the client is in no unit. A context in an enclosing unit while a
// nested one is in flight would have its call undone with the nested one:
// refused.
function enclosing(client: Queryable, st: ClientState): Frame | null {
  const open = st.frames.filter(live);
  const top = open[open.length - 1];
  if (top === undefined) return null;
  let mine = scope.getStore()?.get(client);
  while (mine !== undefined && !live(mine)) mine = mine.parent ?? undefined;
  if (mine === top || (mine === undefined && open.length === 1)) return top;
  throw overlappingCalls();
}

/**
 * fn on a client of source: the client itself, the client of the pool's
 * unit in progress, or a pool connection taken for fn alone (destroyed, not
 * returned, if the connection broke). A unit is in progress while its
 * function runs: a call made in its async context after it (a timer, a
 * promise it did not await) takes a connection of its own.
 */
export async function onClient<T>(source: Source, fn: (client: Queryable) => Promise<T>): Promise<T> {
  if (!isPool(source)) return fn(source);
  const held = scope.getStore()?.get(source);
  if (held !== undefined && held.open) return fn(held.client);
  const [client, release] = await borrow(source);
  try {
    return await fn(client);
  } catch (e) {
    if (isConnectionError(e)) broken.add(client);
    throw e;
  } finally {
    release();
  }
}

/**
 * A pool's client, and how to give it back: destroyed rather than returned
 * when it broke. While it is out, an error the connection raises between
 * statements (the server ended it) is the holder's to see in its next
 * statement, not an uncaught 'error' event that ends the process: pg-pool
 * listens for those only while the client is idle in the pool.
 */
async function borrow(pool: pg.Pool): Promise<[pg.PoolClient, () => void]> {
  const client = await pool.connect();
  const onError = () => { broken.add(client); };
  client.on('error', onError);
  return [client, () => {
    client.removeListener('error', onError);
    client.release(broken.has(client) ? new Error('the connection broke while in use') : undefined);
  }];
}

// A counter for savepoint names.
let savepoints = 0;

// Runs fn in a savepoint when the client is inside unitOfWork (so that a
// refused call leaves the unit's other work standing), as it is otherwise:
// one statement is atomic on its own; own: fn's statements are a
// transaction of their own outside a unit. One call at a time on a client:
// fn is told whether it runs in a unit.
async function guarded<T>(client: Queryable, fn: (inUnit: boolean) => Promise<T>, own = false): Promise<T> {
  const st = stateOf(client);
  const inUnit = enclosing(client, st) !== null;
  const name = `orders_call_${++savepoints}`;
  const [begin, end, undo] = inUnit ? [`SAVEPOINT ${name}`, `RELEASE SAVEPOINT ${name}`, `ROLLBACK TO SAVEPOINT ${name}`]
    : own ? ['BEGIN', 'COMMIT', 'ROLLBACK'] : [null, null, null];
  st.calls += 1;
  try {
    return await serial(st, async () => {
      if (begin !== null) await client.query(begin);
      try {
        const result = await fn(inUnit);
        if (end !== null) await client.query(end);
        return result;
      } catch (e) {
        if (undo !== null) await client.query(undo).catch(() => { if (!inUnit) broken.add(client); });
        throw translate(e);
      }
    });
  } finally {
    st.calls -= 1;
  }
}

/**
 * orders.event_metadata for the rest of the client's transaction; returns
 * the value it replaced ('' for none), read in the same statement (a
 * target list is evaluated in order).
 */
async function setEventMetadata(client: Queryable, metadata: Record<string, unknown>): Promise<string> {
  const r = await client.query(`SELECT pg_catalog.current_setting('orders.event_metadata', true) AS previous,
      pg_catalog.set_config('orders.event_metadata', $1, true)`, [JSON.stringify(metadata)]);
  return r.rows[0].previous ?? '';
}

// A SET LOCAL made in a savepoint outlives its RELEASE, to the end of the
// transaction: a nested unit's or a repository's metadata is set back to
// the enclosing unit's when it is done, or it would tag the outer unit's
// later events too.
async function restoreEventMetadata(client: Queryable, previous: string) {
  await client.query(`SELECT pg_catalog.set_config('orders.event_metadata', $1, true)`, [previous]);
}

type AddArguments = [currency?: string, lines?: readonly OrderLine[], shippingAddress?: Address | null,
                     idOrOptions?: string | AddOptions];

// add's arguments, from either form: add(order) (alone: TypeError if more are given) or add(customerId, ...).
function addArguments(first: string | DraftOrder | Order, rest: AddArguments):
    [string, string, readonly OrderLine[] | undefined, Address | null | undefined, string | AddOptions | undefined] {
  if (typeof first === 'object' && first !== null) {
    onlyOrder(rest);
    return [first.customerId, first.currency, first.lines, first.shippingAddress,
            { id: first.id, fields: first.fields }];
  }
  return [first, rest[0] as string, rest[1], rest[2], rest[3]];
}

// remove's arguments: remove(order) expects the order's version.
function removeArguments(idOrOrder: string | Order, expectedVersion?: number): [string, number | undefined] {
  return typeof idOrOrder === 'object' && idOrOrder !== null ? [idOrOrder.id, idOrOrder.version]
                                                             : [idOrOrder, expectedVersion];
}

export interface RepositoryOptions {
  schema?: string;
  /**
   * orders.event_metadata (correlation id, causation id, actor, trace
   * context ...) for the events of this repository's writes; set on the
   * transaction each write runs in.  unitOfWork's metadata sets it for a
   * whole transaction.
   */
  metadata?: Record<string, unknown>;
}

export class OrderRepository {
  private constructor(readonly source: Source, readonly schema: string,
                      readonly metadata?: Record<string, unknown>) {}

  /**
   * The repository on a client (pg.Client, a pool's client) or a pg.Pool;
   * ExtensionTooOld if the database's orders extension is older than
   * REQUIRED_EXTENSION_VERSION.
   */
  static async create(source: Source, options: RepositoryOptions | string = {}): Promise<OrderRepository> {
    const o = typeof options === 'string' ? { schema: options } : options;
    const found = await onClient(source, extensionSchema);
    return new OrderRepository(source, o.schema ?? found, o.metadata);
  }

  /** The client or pool given to create, by its earlier name. */
  get client(): Source { return this.source; }

  private get s() { return ident(this.schema); }

  /**
   * One unit of work on this repository's client or pool: unitOfWork(source,
   * fn, options). The same method as InMemoryOrderRepository's, so that
   * domain code given only a repository runs unchanged on either.
   */
  unitOfWork<T>(fn: () => Promise<T>, options: UnitOptions = {}): Promise<T> {
    return unitOfWork(this.source, fn, options);
  }

  private async rows(text: string, values: unknown[], write = false): Promise<any[]> {
    const metadata = write ? this.metadata : undefined;
    return onClient(this.source, (client) => guarded(client, async (inUnit) => {
      if (metadata === undefined) return (await client.query(text, values)).rows;
      // a write with metadata: the setting and the call in one transaction,
      // the unit's own metadata back afterwards
      const previous = await setEventMetadata(client, metadata);
      const result = (await client.query(text, values)).rows;
      if (inUnit) await restoreEventMetadata(client, previous);
      return result;
    }, metadata !== undefined));
  }

  private async one(text: string, values: unknown[], write = true): Promise<any | undefined> {
    return (await this.rows(text, values, write))[0];
  }

  /**
   * A new pending order. The last argument is its id, or { id, fields }:
   * fields are the shop's own columns (AddOptions). The extension refuses a
   * field that is no column (42703), one of its own (22023) or a generated
   * one (428C9), and checks the table's CHECK constraints
   * (InvariantViolation, rule the constraint's name). Or add(order): an
   * order built in the domain (Order.new), with its id and fields.
   */
  async add(order: DraftOrder | Order): Promise<Order>;
  async add(customerId: string, currency: string, lines?: readonly OrderLine[], shippingAddress?: Address | null,
            idOrOptions?: string | AddOptions): Promise<Order>;
  async add(first: string | DraftOrder | Order, ...rest: AddArguments): Promise<Order> {
    const [customerId, currency, lines = [], shippingAddress = null, idOrOptions] = addArguments(first, rest);
    const s = this.s;
    const { id, fields } = typeof idOrOptions === 'string' ? { id: idOrOptions, fields: undefined } : idOrOptions ?? {};
    const given = fieldsJson(fields);
    const row = await this.one(`SELECT ${rowJson(s)} AS j FROM ${s}.orders_add($1, $2,
        ARRAY(SELECT pg_catalog.jsonb_populate_record(NULL::${s}.order_line, x)
              FROM pg_catalog.jsonb_array_elements($3::jsonb) WITH ORDINALITY AS l(x, n) ORDER BY n),
        pg_catalog.jsonb_populate_record(NULL::${s}.order_address, $4::jsonb), $5, $6::jsonb) o`,
      [customerId, currency, toJsonText(linesToJson(lines)),
       shippingAddress === null ? null : toJsonText(addressToJson(shippingAddress)), id ?? null,
       given === undefined ? null : toJsonText(given)]);
    return fromRow(row);
  }

  /**
   * Many new orders in one call, checked and written all or none; an
   * error's index is the offending order's.
   */
  async addMany(orders: readonly NewOrder[]): Promise<Order[]> {
    const json = orders.map((o, i) => {
      try {
        return {
          customer_id: o.customerId, currency: o.currency, lines: linesToJson(o.lines ?? []),
          ...(o.shippingAddress ? { shipping_address: addressToJson(o.shippingAddress) } : {}),
          ...(o.id !== undefined ? { id: o.id } : {}),
          ...(o.fields !== undefined ? { fields: fieldsJson(o.fields) } : {}),
        };
      } catch (e) {
        // refused here, before the server saw it: the index as the server gives it
        if (e instanceof OrdersError) e.index = i;
        throw e;
      }
    });
    const rows = await this.rows(`SELECT ${rowJson(this.s)} AS j FROM ${this.s}.orders_add_many($1::jsonb) o`,
                                 [toJsonText(json)], true);
    return rows.map(fromRow);
  }

  /** The order's events after afterVersion, in version order (purged events are gone). */
  async eventsOf(id: string, afterVersion = 0): Promise<Event[]> {
    const rows = await this.rows(`SELECT ${EVENT_COLUMNS} FROM ${this.s}.orders_events_of($1, $2) e`,
                                 [id, afterVersion]);
    return rows.map(eventFromRow);
  }

  async get(id: string): Promise<Order> {
    const row = await this.one(`SELECT ${rowJson(this.s)} AS j FROM ${this.s}.orders_get($1) o`, [id], false);
    if (row === undefined) throw new OrderNotFound(`order ${id} does not exist`, 'P0002');
    return fromRow(row);
  }

  /**
   * The order as read, changed: the stored one if nothing changed, else the
   * new version. Its fields (and its lines' and address's) are stored as
   * given; a generated or identity column must be as read (428C9). A save
   * that changes fields emits order_fields_changed.
   */
  async save(order: Order): Promise<Order> {
    const s = this.s;
    const row = await this.one(`SELECT ${rowJson(s)} AS j FROM ${s}.orders_save(
        pg_catalog.jsonb_populate_record(NULL::${s}.orders, $1::jsonb)) o`, [toJsonText(orderToJson(order))]);
    return fromRow(row);
  }

  /**
   * The order as it was; ConcurrencyConflict if expectedVersion is not the
   * stored one. remove(order) expects order.version: optimistic, as save.
   */
  async remove(order: Order): Promise<Order>;
  async remove(id: string, expectedVersion?: number): Promise<Order>;
  async remove(idOrOrder: string | Order, expectedVersion?: number): Promise<Order> {
    const [id, expected] = removeArguments(idOrOrder, expectedVersion);
    expectedVersion = expected;
    const row = await this.one(`SELECT ${rowJson(this.s)} AS j FROM ${this.s}.orders_remove($1, $2) o`,
                               [id, expectedVersion ?? null]);
    return fromRow(row);
  }

  async nextId(): Promise<string> {
    return (await this.one(`SELECT ${this.s}.orders_next_id() AS id`, [], false)).id;
  }

  /** The orders the specification selects, by id, a keyset page at a time. */
  async *find(spec: Spec = new Anything(), pageSize = 100): AsyncGenerator<Order> {
    let after: string | null = null;
    for (;;) {
      const params: unknown[] = [];
      const cond = spec.sql(params);
      let text = `SELECT ${rowJson(this.s)} AS j FROM ${this.s}.orders o WHERE (${cond})`;
      if (after !== null) { params.push(after); text += ` AND o.id OPERATOR(pg_catalog.>) $${params.length}`; }
      params.push(pageSize);
      text += ` ORDER BY o.id LIMIT $${params.length}`;
      const rows: any[] = await onClient(this.source,
                                         (client) => guarded(client, async () => (await client.query(text, params)).rows));
      const orders = rows.map(fromRow);
      for (const o of orders) yield o;
      if (rows.length < pageSize) return;
      after = orders[orders.length - 1].id;
    }
  }
}

/** unitOfWork's options. */
export interface UnitOptions {
  /** orders.event_metadata for every event the unit writes (a repository's own metadata replaces it for its writes). */
  readonly metadata?: Record<string, unknown>;
  /**
   * orders.idempotency_key; run the same unit again with the same key after
   * an error at commit and, if the first commit happened, its calls return
   * what they returned then, writing nothing.
   */
  readonly idempotencyKey?: string;
}

/**
 * One transaction: committed when fn resolves, rolled back when it throws.
 * source: a client, a pg.Pool (a client taken for the unit and released
 * after it, destroyed if it broke; every repository call on the pool made
 * inside fn runs on it), or the twin (an InMemoryStore or an
 * InMemoryOrderRepository: its unit of work, with the same semantics).
 * Inside another unit of the same client (or pool, in the same async
 * context) it is a savepoint of that one. It must own the transaction: do
 * not call it after a BEGIN of your own.
 */
export async function unitOfWork<T>(source: Source | InMemoryStore | InMemoryOrderRepository, fn: () => Promise<T>,
                                    options: UnitOptions = {}): Promise<T> {
  if (source instanceof InMemoryStore || source instanceof InMemoryOrderRepository)
    return source.unitOfWork(fn, options);
  if (!isPool(source)) return clientUnit(source, fn, options);
  const held = scope.getStore()?.get(source);
  if (held !== undefined && held.open) return clientUnit(held.client, fn, options);
  const [client, release] = await borrow(source);
  try {
    return await clientUnit(client, fn, options, source);
  } finally {
    release();
  }
}

// A unit on the client: its transaction, or a savepoint of the unit in
// progress on it; pool: the pool it came from, whose calls in fn run on it.
async function clientUnit<T>(client: Queryable, fn: () => Promise<T>, options: UnitOptions,
                             pool?: pg.Pool): Promise<T> {
  const st = stateOf(client);
  const parent = enclosing(client, st);
  // calls of the enclosing unit in flight would run inside the savepoint,
  // undone with it: they cannot wait for it either, as its own calls come
  // after them
  if (parent !== null && st.calls > 0) throw overlappingCalls();
  const frame: Frame = { client, parent, open: true };
  const name = parent !== null ? `orders_unit_${++savepoints}` : null;
  const frames = new Map(scope.getStore());
  frames.set(client, frame);
  if (pool !== undefined) frames.set(pool, frame);
  st.frames.push(frame);
  let begun = false;
  try {
    let previous: string | undefined;
    await serial(st, async () => {
      await client.query(name === null ? 'BEGIN' : `SAVEPOINT ${name}`);
      begun = true;
      if (options.metadata !== undefined) previous = await setEventMetadata(client, options.metadata);
      if (options.idempotencyKey !== undefined)
        await client.query(`SELECT pg_catalog.set_config('orders.idempotency_key', $1, true)`, [options.idempotencyKey]);
    });
    const result = await scope.run(frames, async () => {
      try {
        return await fn();
      } finally {
        frame.open = false;
      }
    });
    // the enclosing unit ended (it did not await this one; its end is
    // queued, or done): the client is no longer this unit's to touch
    if (parent !== null && !live(parent)) throw unitOutlived();
    // after the calls the unit made and did not await
    await serial(st, async () => {
      if (name !== null) {
        if (previous !== undefined) await restoreEventMetadata(client, previous);
        await client.query(`RELEASE SAVEPOINT ${name}`);
      } else {
        // the server answers COMMIT with ROLLBACK when the transaction had failed
        const end = await client.query('COMMIT');
        if (end.command === 'ROLLBACK')
          throw new OrdersError('the unit of work was rolled back: a statement in it failed', '25P02');
      }
    });
    return result;
  } catch (e) {
    if (!begun) throw e;
    if (parent !== null && !live(parent)) throw translate(e);
    await serial(st, () => client.query(name === null ? 'ROLLBACK' : `ROLLBACK TO SAVEPOINT ${name}`))
      .catch(() => { broken.add(client); });
    throw translate(e);
  } finally {
    frame.open = false;
    st.frames.splice(st.frames.indexOf(frame), 1);
  }
}

/** Runs fn until it does not throw ConcurrencyConflict, at most attempts times; fn re-reads. */
export async function retry<T>(fn: () => Promise<T>, attempts = 10, pauseMs = 10): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (!(e instanceof ConcurrencyConflict) || attempt >= attempts) throw e;
      await new Promise((r) => setTimeout(r, pauseMs * attempt * Math.random()));
    }
  }
}
