// InMemoryOrderRepository: the repository's interface and semantics with no
// database, for unit tests of domain code: the same rules, exceptions (rule
// names as the extension's constraints), versions and removal.
// test/contract.test.ts runs the same cases against both.
import { randomUUID } from 'node:crypto';
import { ConcurrencyConflict, DuplicateOrder, fieldDetail, InvariantViolation, OrderNotFound, OrdersError } from './errors.js';
import type { Address, NewOrder, Order, OrderLine, Status } from './model.js';
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

const sameLines = (a: readonly OrderLine[], b: readonly OrderLine[]) =>
  a.length === b.length && a.every((l, i) => l.productId.toLowerCase() === b[i].productId.toLowerCase() &&
                                             l.productName === b[i].productName &&
                                             l.quantity === b[i].quantity && l.unitPrice === b[i].unitPrice);
const sameAddress = (a: Address | null, b: Address | null) =>
  a === b || (a !== null && b !== null && a.street === b.street && a.city === b.city &&
              a.postalCode === b.postalCode && a.country === b.country);

// uuid order as PostgreSQL sorts it: byte by byte, which is the hex text's order
const byId = (a: string, b: string) => (a.toLowerCase() < b.toLowerCase() ? -1 : a.toLowerCase() > b.toLowerCase() ? 1 : 0);

export class InMemoryOrderRepository {
  private orders = new Map<string, Order>();
  private used = new Set<string>();

  async add(customerId: string, currency: string, lines: readonly OrderLine[] = [],
            shippingAddress: Address | null = null, id?: string): Promise<Order> {
    const total = check(lines, currency, shippingAddress);
    const oid = (id ?? await this.nextId()).toLowerCase();
    if (this.orders.has(oid)) throw new DuplicateOrder(`order ${oid} already exists`, '23505', undefined, 'orders_pkey');
    if (this.used.has(oid))
      throw new DuplicateOrder(`order id ${oid} was used before`, '23505', undefined, 'orders_id_not_reused');
    const now = new Date();
    const order: Order = Object.freeze({
      id: oid, customerId: customerId.toLowerCase(), status: 'pending', currency,
      lines: Object.freeze(lines.map((l) => Object.freeze({ ...l, productId: l.productId.toLowerCase() }))),
      shippingAddress: shippingAddress === null ? null : Object.freeze({ ...shippingAddress }),
      total, version: 1, createdAt: now, updatedAt: now,
    });
    this.orders.set(oid, order);
    this.used.add(oid);
    return order;
  }

  /** All or none, as the extension's orders_add_many: an error carries the offending order's index. */
  async addMany(orders: readonly NewOrder[]): Promise<Order[]> {
    const savedOrders = new Map(this.orders);
    const savedUsed = new Set(this.used);
    const added: Order[] = [];
    for (const [i, o] of orders.entries()) {
      try {
        added.push(await this.add(o.customerId, o.currency, o.lines ?? [], o.shippingAddress ?? null, o.id));
      } catch (e) {
        this.orders = savedOrders;
        this.used = savedUsed;
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

  async save(order: Order): Promise<Order> {
    // in the extension's order: the new state's fields, then against the
    // stored order: version, immutable fields, the status step, readiness,
    // what is frozen
    const total = check(order.lines, order.currency, order.shippingAddress);
    const stored = this.stored(order.id);
    if (order.version !== stored.version) throw conflict();
    for (const [name, a, b] of [['customer_id', order.customerId.toLowerCase(), stored.customerId],
                                ['currency', order.currency, stored.currency]] as const)
      if (a !== b) throw violation(`${name} cannot change`, 'order_immutable_fields', name);
    if (order.status !== stored.status && !NEXT[stored.status].includes(order.status))
      throw violation(`status cannot move from "${stored.status}" to "${order.status}"`, 'order_status_transition', 'status');
    checkReady(order.lines, order.shippingAddress, order.status);
    const linesChanged = !sameLines(order.lines, stored.lines);
    const addressChanged = !sameAddress(order.shippingAddress, stored.shippingAddress);
    if (linesChanged && stored.status !== 'pending')
      throw violation('lines can change only while the order is pending', 'order_frozen_after_confirm', 'lines',
                      stored.status);
    if (addressChanged && stored.status !== 'pending' && stored.status !== 'confirmed')
      throw violation('shipping_address can change only while the order is pending or confirmed',
                      'order_frozen_after_confirm', 'shipping_address', stored.status);
    if (!linesChanged && !addressChanged && order.status === stored.status) return stored;
    const saved: Order = Object.freeze({
      ...stored, status: order.status,
      lines: Object.freeze(order.lines.map((l) => Object.freeze({ ...l, productId: l.productId.toLowerCase() }))),
      shippingAddress: order.shippingAddress === null ? null : Object.freeze({ ...order.shippingAddress }),
      total, version: stored.version + 1, updatedAt: new Date(),
    });
    this.orders.set(stored.id, saved);
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
