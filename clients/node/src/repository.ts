// OrderRepository: the aggregate's repository over the orders extension.
// Every method is one call of an extension function (find: one statement
// over the orders table); inside unitOfWork, in a savepoint of it.  Rows travel as JSON with bigints as
// strings, so money arrives whole and the extension may be in any schema.
import type pg from 'pg';
import { ConcurrencyConflict, OrderNotFound, OrdersError, translate } from './errors.js';
import { type Address, type Order, type OrderLine, addressToJson, lineToJson, orderFromJson,
         orderToJson } from './model.js';
import { Anything, type Spec } from './specs.js';

export type Queryable = pg.Client | pg.PoolClient;

const ident = (name: string) => '"' + name.replace(/"/g, '""') + '"';

export async function extensionSchema(client: Queryable): Promise<string> {
  const r = await client.query(`SELECT n.nspname FROM pg_catalog.pg_extension e
    JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'orders'`);
  if (r.rowCount === 0) throw new OrdersError('extension "orders" is not installed in this database');
  return r.rows[0].nspname;
}

// An order row as JSON, its bigints as strings.
const ROW_JSON = `pg_catalog.to_jsonb(o) OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(
  'total', o.total::text,
  'lines', coalesce((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       'product_id', u.product_id, 'product_name', u.product_name,
                       'quantity', u.quantity, 'unit_price', u.unit_price::text) ORDER BY u.n)
                     FROM pg_catalog.unnest(o.lines) WITH ORDINALITY
                          AS u(product_id, product_name, quantity, unit_price, n)), '[]'))`;

const inTransaction = new WeakMap<object, number>();

export class OrderRepository {
  private constructor(readonly client: Queryable, readonly schema: string) {}

  static async create(client: Queryable, schema?: string): Promise<OrderRepository> {
    return new OrderRepository(client, schema ?? await extensionSchema(client));
  }

  private get s() { return ident(this.schema); }

  // Inside unitOfWork a call runs in a savepoint, so that a refused call
  // leaves the unit's other work standing; outside, a statement is atomic.
  private async one(text: string, values: unknown[]): Promise<any | undefined> {
    const nested = (inTransaction.get(this.client) ?? 0) > 0;
    if (nested) await this.client.query('SAVEPOINT orders_call');
    try {
      const r = await this.client.query(text, values);
      if (nested) await this.client.query('RELEASE SAVEPOINT orders_call');
      return r.rows[0];
    } catch (e) {
      if (nested) await this.client.query('ROLLBACK TO SAVEPOINT orders_call').catch(() => undefined);
      throw translate(e);
    }
  }

  async add(customerId: string, currency: string, lines: readonly OrderLine[] = [],
            shippingAddress: Address | null = null, id?: string): Promise<Order> {
    const s = this.s;
    const row = await this.one(`SELECT ${ROW_JSON} AS j FROM ${s}.orders_add($1, $2,
        ARRAY(SELECT pg_catalog.jsonb_populate_record(NULL::${s}.order_line, x)
              FROM pg_catalog.jsonb_array_elements($3::jsonb) WITH ORDINALITY AS l(x, n) ORDER BY n),
        pg_catalog.jsonb_populate_record(NULL::${s}.order_address, $4::jsonb), $5) o`,
      [customerId, currency, JSON.stringify(lines.map(lineToJson)),
       shippingAddress === null ? null : JSON.stringify(addressToJson(shippingAddress)), id ?? null]);
    return orderFromJson(row.j);
  }

  async get(id: string): Promise<Order> {
    const row = await this.one(`SELECT ${ROW_JSON} AS j FROM ${this.s}.orders_get($1) o`, [id]);
    if (row === undefined) throw new OrderNotFound(`order ${id} does not exist`, 'P0002');
    return orderFromJson(row.j);
  }

  /** The order as read, changed: the stored one if nothing changed, else the new version. */
  async save(order: Order): Promise<Order> {
    const s = this.s;
    const row = await this.one(`SELECT ${ROW_JSON} AS j FROM ${s}.orders_save(
        pg_catalog.jsonb_populate_record(NULL::${s}.orders, $1::jsonb)) o`, [JSON.stringify(orderToJson(order))]);
    return orderFromJson(row.j);
  }

  /** The order as it was; ConcurrencyConflict if expectedVersion is not the stored one. */
  async remove(id: string, expectedVersion?: number): Promise<Order> {
    const row = await this.one(`SELECT ${ROW_JSON} AS j FROM ${this.s}.orders_remove($1, $2) o`,
                               [id, expectedVersion ?? null]);
    return orderFromJson(row.j);
  }

  async nextId(): Promise<string> {
    return (await this.one(`SELECT ${this.s}.orders_next_id() AS id`, [])).id;
  }

  /** The orders the specification selects, by id, a keyset page at a time. */
  async *find(spec: Spec = new Anything(), pageSize = 100): AsyncGenerator<Order> {
    let after: string | null = null;
    for (;;) {
      const params: unknown[] = [];
      const cond = spec.sql(params);
      let text = `SELECT ${ROW_JSON} AS j FROM ${this.s}.orders o WHERE (${cond})`;
      if (after !== null) { params.push(after); text += ` AND o.id OPERATOR(pg_catalog.>) $${params.length}`; }
      params.push(pageSize);
      text += ` ORDER BY o.id LIMIT $${params.length}`;
      let rows: any[];
      try {
        rows = (await this.client.query(text, params)).rows;
      } catch (e) {
        throw translate(e);
      }
      for (const r of rows) yield orderFromJson(r.j);
      if (rows.length < pageSize) return;
      after = rows[rows.length - 1].j.id;
    }
  }
}

/** One transaction: committed when fn resolves, rolled back when it throws. */
export async function unitOfWork<T>(client: Queryable, fn: () => Promise<T>): Promise<T> {
  await client.query('BEGIN');
  inTransaction.set(client, (inTransaction.get(client) ?? 0) + 1);
  try {
    const result = await fn();
    await client.query('COMMIT');
    return result;
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw translate(e);
  } finally {
    inTransaction.set(client, (inTransaction.get(client) ?? 1) - 1);
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
