// The aggregate as the extension stores it: money in cents as bigint (a
// number would lose cents above 2^53), ids as strings, times as Dates; the
// shop's own columns and attributes (ALTER TABLE orders ADD COLUMN, ALTER
// TYPE order_line ADD ATTRIBUTE) as each object's fields.
import { randomBytes } from 'node:crypto';
import { fieldDetail, InvariantViolation, OrdersError } from './errors.js';

export type Status = 'pending' | 'confirmed' | 'shipped' | 'delivered' | 'cancelled';
export const STATUSES: readonly Status[] = ['pending', 'confirmed', 'shipped', 'delivered', 'cancelled'];

/**
 * The shop's own fields of an order, a line or an address: its columns or
 * attributes past the extension's, by name (as the database names them,
 * snake_case), each a JSON value: string, number, boolean, null, an array
 * or object for a json/jsonb column, and a bigint for an integer beyond
 * 2^53 (a number would lose digits). A date, a timestamp, a numeric come
 * as to_jsonb writes them; a number with a fraction is a JavaScript
 * number, so give a numeric column a scale (numeric(12,2)) for it to read
 * back the same.
 */
export type Fields = Readonly<Record<string, unknown>>;

export interface OrderLine {
  readonly productId: string;
  readonly productName: string;
  readonly quantity: number;
  readonly unitPrice: bigint; // cents
  /**
   * The shop's own attributes of order_line (ALTER TYPE order_line ADD
   * ATTRIBUTE sku text CASCADE), sent as keys of the line's JSON, so none
   * may be named as ours (product_id, product_name, quantity, unit_price).
   * Read back only when the line has any: a line of the extension's
   * attributes alone is as you wrote it. "fields" is no key of the line's
   * JSON: a shop's attribute named fields is line.fields.fields.
   */
  readonly fields?: Fields;
}

export interface Address {
  readonly street: string;
  readonly city: string;
  readonly postalCode: string;
  readonly country: string;
  /** The shop's own attributes of order_address, as OrderLine's (none named street, city, postal_code, country). */
  readonly fields?: Fields;
}

/** An order as the repository returns it; Order.new builds a DraftOrder in the domain, for add(order). */
export interface Order {
  readonly id: string;
  readonly customerId: string;
  readonly status: Status;
  readonly currency: string;
  readonly lines: readonly OrderLine[];
  readonly shippingAddress: Address | null;
  readonly total: bigint; // cents, computed by the repository
  readonly version: number;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  /**
   * The shop's own columns of orders (ALTER TABLE orders ADD COLUMN), by
   * name: every key of the order's JSON that is not one of the extension's
   * ten ({} when there are none). save sends them back as top-level keys
   * and stores them as given: a column left out is saved as NULL, as the
   * whole row is saved; none may be named as the extension's columns.
   * "fields" is no column of ours: a shop's column named fields is
   * order.fields.fields.
   */
  readonly fields: Fields;
}

/**
 * An order built in the domain and not added yet (Order.new): pending,
 * version 0, its total computed from its lines, no times until add stores
 * it (the server's clock, then, not the caller's).
 */
export interface DraftOrder extends Omit<Order, 'status' | 'version' | 'createdAt' | 'updatedAt'> {
  readonly status: 'pending';
  readonly version: 0;
  readonly createdAt: null;
  readonly updatedAt: null;
}

/** Order.new's argument: add's, as one object, as addMany takes each order (id default: uuid7()). */
export type OrderSpec = NewOrder;

/**
 * A time-ordered UUID (version 7, RFC 9562): 48 bits of Unix milliseconds,
 * then random bits, as the extension's orders_next_id() makes them, so an
 * id made here sorts and indexes as one made by the server does (new rows
 * at the right edge of the primary key's index, not all over it).
 */
export function uuid7(now: number = Date.now()): string {
  const b = randomBytes(16);
  b.writeUIntBE(now, 0, 6);
  b[6] = 0x70 | (b[6] & 0x0f);
  b[8] = 0x80 | (b[8] & 0x3f);
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// Money and quantities must be integers before anything is sent or stored:
// JSON would carry 12.99 to the server, which refuses it with a bare 22P02
// and no path, and a twin summing numbers would store it; a bigint-typed
// field does not stop a plain JavaScript caller from passing 12.99 or
// '450'. Both repositories call checkIntegers, so they refuse alike.

// A value with a fraction of one or two digits after its trailing zeros
// (12.99, 12.5, 12.00, 12.500; not 450, 1e+21, 12.999): the cents it
// probably meant, as the Python client reads it too.
const CENTS = /^(-?)(\d+)\.(\d+)$/;

// A refused value as the error states it: as String() writes it (true, 12.99,
// NaN, Infinity, 1152921504606847000).
function notInteger(path: string, value: unknown, money: boolean): InvariantViolation {
  const text = String(value);
  let why = 'a quantity is an integer';
  if (money) {
    why = 'money is an integer number of cents';
    const m = typeof value === 'number' || typeof value === 'string' ? CENTS.exec(text) : null;
    const fraction = m === null ? '' : m[3].replace(/0+$/, '');
    if (typeof value === 'number' && Number.isInteger(value))
      // whole, but not safe: its digits are gone already (2 ** 60 is 1152921504606846976)
      why += '; a whole number beyond 2^53 loses digits: give a bigint';
    else if (m !== null && fraction.length <= 2)
      why += ` (${BigInt(m[1] + m[2] + fraction.padEnd(2, '0'))} for ${text})`;
  }
  const message = money ? `${path} must be an integer number of cents` : `${path} must be an integer`;
  return new InvariantViolation(message, 'not_integer', path, text, '22P02',
                                `${fieldDetail(path)} The value is ${text}; ${why}.`);
}

/**
 * The line with its quantity a number and its unitPrice a bigint, or
 * InvariantViolation not_integer (22P02, value as text) when either is not
 * an integer: unitPrice a bigint or a safe-integer number, quantity a
 * safe-integer number or a bigint. An integer beyond its column's type
 * (integer, bigint) is its range rule's InvariantViolation. null and
 * undefined pass, for the not_null rule to refuse as the server does.
 * path: "lines[1]."
 */
export function checkIntegers(line: OrderLine, path: string): OrderLine {
  const q: unknown = line.quantity;
  const p: unknown = line.unitPrice;
  let quantity = q;
  if (typeof q === 'bigint')
    quantity = q >= -(2n ** 31n) && q < 2n ** 31n ? Number(q) : q;
  else if (q !== null && q !== undefined && !Number.isSafeInteger(q))
    throw notInteger(`${path}quantity`, q, false);
  let unitPrice = p;
  if (typeof p === 'number' && Number.isSafeInteger(p))
    unitPrice = BigInt(p);
  else if (p !== null && p !== undefined && typeof p !== 'bigint')
    throw notInteger(`${path}unit_price`, p, true);
  // Beyond the column types (integer, bigint) the server's JSON reading
  // would fail with no path; the rule's own error is the one a value out
  // of its range gets, and the twin's.
  if ((typeof quantity === 'number' || typeof quantity === 'bigint') && (quantity < -(2 ** 31) || quantity >= 2 ** 31))
    throw lineOutOfRange(path, 'quantity', quantity as number | bigint);
  if (typeof unitPrice === 'bigint' && (unitPrice < -(2n ** 63n) || unitPrice >= 2n ** 63n))
    throw lineOutOfRange(path, 'unit_price', unitPrice);
  return quantity === q && unitPrice === p ? line : { ...line, quantity: quantity as number, unitPrice: unitPrice as bigint };
}

// A line's numbers: the range and name of the extension's rule for each (src/invariants.c).
const LINE_RANGES = {
  quantity: ['1 and 1000000', 'order_line_quantity_range'],
  unit_price: ['0 and 100000000000', 'order_line_unit_price_range'],
} as const;

/**
 * The error of a line's quantity or unit_price out of its rule's range,
 * worded as the extension words it; path: "lines[2].". The twin's, and the
 * client's for an integer its column's type cannot hold.
 */
export function lineOutOfRange(path: string, name: keyof typeof LINE_RANGES, value: number | bigint): InvariantViolation {
  const [range, rule] = LINE_RANGES[name];
  return new InvariantViolation(`${path}${name} is out of range`, rule, `${path}${name}`, String(value), '23514',
                                `${fieldDetail(path + name)} The value is ${value}; it must be between ${range}.`, rule);
}

/** Each line through checkIntegers, paths lines[1]. on. */
export const checkedLines = (lines: readonly OrderLine[]): OrderLine[] =>
  lines.map((l, i) => checkIntegers(l, `lines[${i + 1}].`));

/** Order.new: a DraftOrder for add(order). */
export const Order = Object.freeze({
  /**
   * A new pending order built in the domain: version 0, its total the sum
   * of its lines (after their integer check: InvariantViolation
   * not_integer), its id given or a uuid7(). The repository checks the
   * aggregate's other rules when add stores it.
   */
  new(spec: OrderSpec): DraftOrder {
    const lines = Object.freeze(checkedLines(spec.lines ?? []));
    const total = lines.reduce((sum, l) => sum + BigInt(l.quantity ?? 0) * (l.unitPrice ?? 0n), 0n);
    return Object.freeze({
      id: spec.id ?? uuid7(), customerId: spec.customerId, status: 'pending', currency: spec.currency, lines,
      shippingAddress: spec.shippingAddress ?? null, total, version: 0, createdAt: null, updatedAt: null,
      fields: Object.freeze({ ...spec.fields }),
    });
  },
});

/**
 * add(order) takes the order alone: its parts given beside it would be a
 * second truth, silently ignored. A TypeError when any is given (undefined
 * counts as not given), in both repositories, as the Python client's.
 */
export function onlyOrder(rest: readonly unknown[]): void {
  if (rest.some((r) => r !== undefined))
    throw new TypeError('add(order) takes the Order alone; give its parts in it (Order.new)');
}

/**
 * One outbox event. type is any of the extension's event types, as text (a
 * type added later, such as order_fields_changed from 1.12, reads like the
 * others); payload is the event's JSON: order_added and order_removed carry
 * the shop's own columns as top-level keys beside the extension's, and
 * order_fields_changed is { "<column>": <new value>, ... } for the columns
 * a save changed (docs/events.md). Its money (total, each line's
 * unit_price) is a string, any other integer beyond 2^53 a bigint.
 */
export interface Event {
  readonly position: bigint;
  readonly type: string;
  readonly orderId: string;
  readonly version: number;
  readonly payload: unknown;
  readonly occurredAt: Date;
  /** From extension 1.8: the event's own id (null for events written before). */
  readonly id: string | null;
  /** The writer's orders.event_metadata, or null. */
  readonly metadata: Record<string, unknown> | null;
}

/** One order for addMany: add's arguments. */
export interface NewOrder {
  readonly customerId: string;
  readonly currency: string;
  readonly lines?: readonly OrderLine[];
  readonly shippingAddress?: Address | null;
  readonly id?: string;
  /** The shop's own columns, as add's fields. */
  readonly fields?: Fields;
}

/** add's last argument: the order's id, and the shop's own columns. */
export interface AddOptions {
  readonly id?: string;
  /**
   * The shop's own columns of orders, by name (extension 1.12), each a JSON
   * value that the column type's input function reads as text (a date as
   * '2027-03-01'; a json/jsonb column takes any JSON value); a column not
   * given takes its default.
   */
  readonly fields?: Fields;
}

// The extension's own keys of each object's JSON; any other key is one of
// the shop's fields.
export const ORDER_KEYS: readonly string[] = ['id', 'customer_id', 'status', 'currency', 'lines', 'shipping_address',
                                              'total', 'version', 'created_at', 'updated_at'];
export const LINE_KEYS: readonly string[] = ['product_id', 'product_name', 'quantity', 'unit_price'];
export const ADDRESS_KEYS: readonly string[] = ['street', 'city', 'postal_code', 'country'];

/**
 * Refuses a field named as one of the extension's own keys (the JSON
 * carries both at one level), as the extension refuses it in orders_add's
 * fields: 22023, the detail giving the path.
 */
export function checkFields(fields: Fields | undefined, own: readonly string[], path: string, kind: string) {
  for (const name of Object.keys(fields ?? {}))
    if (own.includes(name))
      throw new OrdersError(`"${name}" is the extension's own ${kind}, not one of the shop's fields`, '22023',
                            `The field is ${path}${name}.`);
}

// JSON as the repository exchanges it with the server, integers beyond
// 2^53 as bigints both ways: JSON.parse would round them, and save would
// store the rounded value. JSON.stringify cannot write a bigint as a number,
// so it writes it as a string marked with a NUL, which no JSON string the
// server sends can hold (jsonb refuses \u0000), and the mark is then taken
// off the number; reading, such an integer is marked the same way first.
const BIG = '\u0000bigint:';
const MARKED = /"\\u0000bigint:(-?\d+)"/g;
const TOKENS = /"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;

/** JSON text as a value, an integer beyond 2^53 as a bigint. */
export function parseJson(text: string): any {
  let marked = false;
  const safe = text.replace(TOKENS, (t) => {
    if (t[0] === '"' || /[.eE]/.test(t) || Number.isSafeInteger(Number(t))) return t;
    marked = true;
    return `"\\u0000bigint:${t}"`;
  });
  return marked
    ? JSON.parse(safe, (_k, v) => (typeof v === 'string' && v.startsWith(BIG) ? BigInt(v.slice(BIG.length)) : v))
    : JSON.parse(text);
}

/** A value as JSON text, a bigint as the number it is (a Date as its ISO text, as JSON.stringify writes it). */
export function toJsonText(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? BIG + v.toString() : v)).replace(MARKED, '$1');
}

/** The keys of j that are not the extension's own. */
function split(j: Record<string, unknown>, own: readonly string[]): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(j)) if (!own.includes(k)) fields[k] = v;
  return fields;
}

// An event row's columns, from e (an outbox row), with the payload's money
// (total, and each line's unit_price) as strings, so that JSON carries the
// bigints whole, and the payload as text, read by parseJson (the shop's
// integers beyond 2^53 as bigints).
export const EVENT_COLUMNS = `e.position::text AS position, e.type, e.order_id, e.version, e.occurred_at,
  e.id, e.metadata,
  (e.payload
  OPERATOR(pg_catalog.||) CASE WHEN e.payload ? 'total'
       THEN pg_catalog.jsonb_build_object('total', e.payload->>'total') ELSE '{}' END
  OPERATOR(pg_catalog.||) CASE WHEN pg_catalog.jsonb_typeof(e.payload->'lines') = 'array'
       THEN pg_catalog.jsonb_build_object('lines', coalesce((
              SELECT pg_catalog.jsonb_agg(l OPERATOR(pg_catalog.||)
                       pg_catalog.jsonb_build_object('unit_price', l->>'unit_price') ORDER BY n)
              FROM pg_catalog.jsonb_array_elements(e.payload->'lines') WITH ORDINALITY AS a(l, n)),
              '[]'))
       ELSE '{}' END)::pg_catalog.text AS payload`;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function eventFromRow(r: any): Event {
  return Object.freeze({ position: BigInt(r.position), type: r.type, orderId: r.order_id, version: r.version,
                         payload: typeof r.payload === 'string' ? parseJson(r.payload) : r.payload,
                         occurredAt: r.occurred_at, id: r.id ?? null,
                         metadata: r.metadata ?? null });
}

// The JSON the repository exchanges with the server: the columns' names,
// money as strings so that JSON carries it whole, the shop's fields as keys
// beside ours (written with toJsonText, which keeps their bigints whole).
export function lineToJson(l: OrderLine, path = 'line.') {
  l = checkIntegers(l, path);
  checkFields(l.fields, LINE_KEYS, `${path}fields.`, 'attribute of a line');
  return { ...l.fields, product_id: l.productId, product_name: l.productName, quantity: l.quantity,
           // null stays null, for the server's not_null rule
           unit_price: l.unitPrice === null || l.unitPrice === undefined ? l.unitPrice : l.unitPrice.toString() };
}

export const linesToJson = (lines: readonly OrderLine[]) => lines.map((l, i) => lineToJson(l, `lines[${i + 1}].`));

export function addressToJson(a: Address | null) {
  if (a === null) return null;
  checkFields(a.fields, ADDRESS_KEYS, 'shipping_address.fields.', 'attribute of an address');
  return { ...a.fields, street: a.street, city: a.city, postal_code: a.postalCode, country: a.country };
}

export function orderToJson(o: Order | DraftOrder) {
  checkFields(o.fields, ORDER_KEYS, 'fields.', 'column');
  return { ...o.fields, id: o.id, customer_id: o.customerId, status: o.status, currency: o.currency,
           lines: linesToJson(o.lines), shipping_address: addressToJson(o.shippingAddress),
           total: o.total.toString(), version: o.version,
           // null for an order not added yet (Order.new): save finds no such order, on either repository
           created_at: o.createdAt?.toISOString() ?? null, updated_at: o.updatedAt?.toISOString() ?? null };
}

// A role that may write orders but not read them gets back only what the
// extension may show it (README: Privileges): the rest is null, never a
// made-up value.
const maybe = <T>(v: unknown, f: (v: any) => T): T => (v === null || v === undefined ? null : f(v)) as T;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
// A line's or an address's fields only when it has any, so that a line of
// ours alone reads back as it was written.
function withFields<T extends object>(o: T, fields: Record<string, unknown>): T {
  return Object.freeze(Object.keys(fields).length === 0 ? o : { ...o, fields: Object.freeze(fields) });
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function orderFromJson(j: any): Order {
  return Object.freeze({
    id: j.id, customerId: j.customer_id ?? null, status: (j.status ?? null) as Status, currency: j.currency ?? null,
    lines: Object.freeze(((j.lines ?? []) as any[]).map((l) => withFields({
      productId: l.product_id, productName: l.product_name, quantity: l.quantity, unitPrice: BigInt(l.unit_price),
    }, split(l, LINE_KEYS)))),
    shippingAddress: maybe(j.shipping_address, (a) => withFields({
      street: a.street, city: a.city, postalCode: a.postal_code, country: a.country,
    }, split(a, ADDRESS_KEYS))),
    total: maybe(j.total, BigInt), version: j.version ?? null,
    createdAt: maybe(j.created_at, (t) => new Date(t)), updatedAt: maybe(j.updated_at, (t) => new Date(t)),
    fields: Object.freeze(split(j, ORDER_KEYS)),
  });
}
