// The aggregate as the extension stores it: money in cents as bigint (a
// number would lose cents above 2^53), ids as strings, times as Dates.

export type Status = 'pending' | 'confirmed' | 'shipped' | 'delivered' | 'cancelled';
export const STATUSES: readonly Status[] = ['pending', 'confirmed', 'shipped', 'delivered', 'cancelled'];

export interface OrderLine {
  readonly productId: string;
  readonly productName: string;
  readonly quantity: number;
  readonly unitPrice: bigint; // cents
}

export interface Address {
  readonly street: string;
  readonly city: string;
  readonly postalCode: string;
  readonly country: string;
}

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
}

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
}

// An event row's columns, from e (an outbox row), with the payload's money
// (total, and each line's unit_price) as strings, so that JSON carries the
// bigints whole.
export const EVENT_COLUMNS = `e.position::text AS position, e.type, e.order_id, e.version, e.occurred_at,
  e.id, e.metadata,
  e.payload
  OPERATOR(pg_catalog.||) CASE WHEN e.payload ? 'total'
       THEN pg_catalog.jsonb_build_object('total', e.payload->>'total') ELSE '{}' END
  OPERATOR(pg_catalog.||) CASE WHEN pg_catalog.jsonb_typeof(e.payload->'lines') = 'array'
       THEN pg_catalog.jsonb_build_object('lines', coalesce((
              SELECT pg_catalog.jsonb_agg(l OPERATOR(pg_catalog.||)
                       pg_catalog.jsonb_build_object('unit_price', l->>'unit_price') ORDER BY n)
              FROM pg_catalog.jsonb_array_elements(e.payload->'lines') WITH ORDINALITY AS a(l, n)),
              '[]'))
       ELSE '{}' END AS payload`;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function eventFromRow(r: any): Event {
  return Object.freeze({ position: BigInt(r.position), type: r.type, orderId: r.order_id, version: r.version,
                         payload: r.payload, occurredAt: r.occurred_at, id: r.id ?? null,
                         metadata: r.metadata ?? null });
}

// The JSON the repository exchanges with the server: the columns' names,
// bigints as strings so that JSON carries them whole.
export function lineToJson(l: OrderLine) {
  return { product_id: l.productId, product_name: l.productName, quantity: l.quantity,
           unit_price: l.unitPrice.toString() };
}

export function addressToJson(a: Address | null) {
  return a === null ? null : { street: a.street, city: a.city, postal_code: a.postalCode, country: a.country };
}

export function orderToJson(o: Order) {
  return { id: o.id, customer_id: o.customerId, status: o.status, currency: o.currency,
           lines: o.lines.map(lineToJson), shipping_address: addressToJson(o.shippingAddress),
           total: o.total.toString(), version: o.version,
           created_at: o.createdAt.toISOString(), updated_at: o.updatedAt.toISOString() };
}

// A role that may write orders but not read them gets back only what the
// extension may show it (README: Privileges): the rest is null, never a
// made-up value.
const maybe = <T>(v: unknown, f: (v: any) => T): T => (v === null || v === undefined ? null : f(v)) as T;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function orderFromJson(j: any): Order {
  return Object.freeze({
    id: j.id, customerId: j.customer_id ?? null, status: (j.status ?? null) as Status, currency: j.currency ?? null,
    lines: Object.freeze(((j.lines ?? []) as any[]).map((l) => Object.freeze({
      productId: l.product_id, productName: l.product_name, quantity: l.quantity, unitPrice: BigInt(l.unit_price),
    }))),
    shippingAddress: maybe(j.shipping_address, (a) => Object.freeze({
      street: a.street, city: a.city, postalCode: a.postal_code, country: a.country,
    })),
    total: maybe(j.total, BigInt), version: j.version ?? null,
    createdAt: maybe(j.created_at, (t) => new Date(t)), updatedAt: maybe(j.updated_at, (t) => new Date(t)),
  });
}
