// InMemoryOrderRepository: the repository's interface and semantics with no
// database, for unit tests of domain code: the same rules, exceptions (rule
// names as the extension's constraints), versions and removal, and the
// events each write emits, in the extension's order and with its payloads.
// test/contract.test.ts runs the same cases against both.
import { randomUUID } from 'node:crypto';
import { ConcurrencyConflict, DuplicateOrder, fieldDetail, InvariantViolation, OrderNotFound, OrdersError } from './errors.js';
import { type AddOptions, type Address, ADDRESS_KEYS, addressToJson, checkFields, type Event, type Fields, LINE_KEYS,
         linesToJson, type NewOrder, type Order, ORDER_KEYS, type OrderLine, orderToJson, parseJson, type Status,
         toJsonText } from './model.js';
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
    if (l.quantity < 1 || l.quantity > 1_000_000)
      throw violation(`${at}.quantity is out of range`, 'order_line_quantity_range', `${at}.quantity`, String(l.quantity));
    if (l.unitPrice < 0n || l.unitPrice > 100_000_000_000n)
      throw violation(`${at}.unit_price is out of range`, 'order_line_unit_price_range', `${at}.unit_price`,
                      String(l.unitPrice));
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

const storedLines = (lines: readonly OrderLine[]) => Object.freeze(lines.map((l, i) => withFields(
  { ...l, productId: typeof l.productId === 'string' ? l.productId.toLowerCase() : l.productId },
  storedFields(l.fields, LINE_KEYS, `lines[${i + 1}].fields.`, 'attribute of a line'))));
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

/**
 * The repository in a Map; eventsOf reads the events its writes emitted
 * (no consumers, no metadata).
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
  private orders = new Map<string, Order>();
  private used = new Set<string>();
  private events: Event[] = [];

  // An event's payload as the real repository reads it: the JSON of
  // orderToJson's shape, money as strings.
  private emit(type: string, orderId: string, version: number, payload: unknown, at: Date) {
    this.events.push(Object.freeze({ position: BigInt(this.events.length + 1), type, orderId, version,
                                     payload: parseJson(toJsonText(payload)), occurredAt: at, id: randomUUID(),
                                     metadata: null }));
  }

  async add(customerId: string, currency: string, lines: readonly OrderLine[] = [],
            shippingAddress: Address | null = null, idOrOptions?: string | AddOptions): Promise<Order> {
    const { id, fields } = typeof idOrOptions === 'string' ? { id: idOrOptions, fields: undefined } : idOrOptions ?? {};
    const given = storedFields(fields, ORDER_KEYS, 'fields.', 'column');
    lines = storedLines(lines);
    shippingAddress = storedAddress(shippingAddress);
    const total = check(lines, currency, shippingAddress);
    const oid = (id ?? await this.nextId()).toLowerCase();
    if (this.orders.has(oid)) throw new DuplicateOrder(`order ${oid} already exists`, '23505', undefined, 'orders_pkey');
    if (this.used.has(oid))
      throw new DuplicateOrder(`order id ${oid} was used before`, '23505', undefined, 'orders_id_not_reused');
    const now = new Date();
    const order: Order = Object.freeze({
      id: oid, customerId: customerId.toLowerCase(), status: 'pending', currency, lines, shippingAddress,
      total, version: 1, createdAt: now, updatedAt: now, fields: given,
    });
    this.orders.set(oid, order);
    this.used.add(oid);
    this.emit('order_added', oid, 1, orderToJson(order), now);
    return order;
  }

  /** All or none, as the extension's orders_add_many: an error carries the offending order's index. */
  async addMany(orders: readonly NewOrder[]): Promise<Order[]> {
    const savedOrders = new Map(this.orders);
    const savedUsed = new Set(this.used);
    const savedEvents = [...this.events];
    const added: Order[] = [];
    for (const [i, o] of orders.entries()) {
      try {
        added.push(await this.add(o.customerId, o.currency, o.lines ?? [], o.shippingAddress ?? null,
                                  { id: o.id, fields: o.fields }));
      } catch (e) {
        this.orders = savedOrders;
        this.used = savedUsed;
        this.events = savedEvents;
        if (e instanceof OrdersError) e.index = i;
        throw e;
      }
    }
    return added;
  }

  private stored(id: string): Order {
    const o = this.orders.get(id.toLowerCase());
    if (o === undefined) throw new OrderNotFound(`order ${id} does not exist`, 'P0002');
    return o;
  }

  async get(id: string): Promise<Order> { return this.stored(id); }

  /** The order's events after afterVersion, in version order (a removed order's too). */
  async eventsOf(id: string, afterVersion = 0): Promise<Event[]> {
    return this.events.filter((e) => e.orderId === id.toLowerCase() && e.version > afterVersion);
  }

  async save(order: Order): Promise<Order> {
    // in the extension's order: the new state's fields, then against the
    // stored order: version, immutable fields, the status step, readiness,
    // what is frozen
    const given = storedFields(order.fields, ORDER_KEYS, 'fields.', 'column');
    const lines = storedLines(order.lines);
    const address = storedAddress(order.shippingAddress);
    const total = check(lines, order.currency, address);
    const stored = this.stored(order.id);
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
    const now = new Date();
    const saved: Order = Object.freeze({
      ...stored, status: order.status, lines, shippingAddress: address, total, version: stored.version + 1,
      updatedAt: now, fields,
    });
    this.orders.set(stored.id, saved);
    // one save's events, in the extension's order, all with the new version
    if (linesChanged)
      this.emit('order_lines_changed', stored.id, saved.version, { lines: linesToJson(lines), total: total.toString() }, now);
    if (addressChanged)
      this.emit('order_shipping_address_changed', stored.id, saved.version, { shipping_address: addressToJson(address) }, now);
    if (fieldsChanged)
      this.emit('order_fields_changed', stored.id, saved.version, changed, now);
    if (order.status !== stored.status)
      this.emit(`order_${order.status}`, stored.id, saved.version,
                { status: order.status, previous_status: stored.status }, now);
    return saved;
  }

  async remove(id: string, expectedVersion?: number): Promise<Order> {
    const stored = this.stored(id);
    if (expectedVersion !== undefined && expectedVersion !== stored.version)
      throw conflict();
    if (stored.status === 'confirmed' || stored.status === 'shipped')
      throw violation('order cannot be removed while it is in flight', 'order_remove_in_flight', 'status',
                      stored.status);
    this.orders.delete(stored.id);
    this.emit('order_removed', stored.id, stored.version + 1, orderToJson(stored), new Date());
    return stored;
  }

  async nextId(): Promise<string> { return randomUUID(); }

  async *find(spec: Spec = new Anything(), _pageSize = 100): AsyncGenerator<Order> {
    for (const id of [...this.orders.keys()].sort(byId)) {
      const o = this.orders.get(id);
      if (o !== undefined && spec.isSatisfiedBy(o)) yield o;
    }
  }
}
