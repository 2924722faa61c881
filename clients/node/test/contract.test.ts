// One contract, two repositories: every case runs against the extension (a
// throw-away cluster that test/t/016_node_repository.pl reaches through
// PGHOST, PGPORT, PGDATABASE, PGUSER) and against InMemoryOrderRepository.
// The shop's own fields run in a database of their own (FIELDS_DB), made
// with their DDL and dropped afterwards, so the other cases see the
// extension's table as it comes.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { type Address, ConcurrencyConflict, customer, DuplicateOrder, hasStatus, InMemoryOrderRepository,
         InvariantViolation, type Order, type OrderLine, OrderNotFound, OrderRepository, OrdersError, totalAtLeast,
         totalAtMost, unitOfWork } from '../src/index.js';

type Repo = Pick<OrderRepository, 'add' | 'addMany' | 'get' | 'save' | 'remove' | 'nextId' | 'find' | 'eventsOf'>;

const TEA: OrderLine = { productId: '0b1e4f5a-6c7d-4e8f-9a0b-1c2d3e4f5a6b', productName: 'Green tea', quantity: 2, unitPrice: 450n };
const POT: OrderLine = { productId: '1c2f5a6b-7d8e-4f9a-8b1c-2d3e4f5a6b7c', productName: 'Teapot', quantity: 1, unitPrice: 3900n };
const HOME: Address = { street: 'Main St 1', city: 'Berlin', postalCode: '10115', country: 'DE' };

/** The error's path, and the detail's first sentence that gives it. */
function assertPath(e: OrdersError, path: string) {
  assert.equal(e.path, path, e.message);
  const first = `The field is ${path}.`;
  assert.ok(e.detail === first || (e.detail ?? '').startsWith(`${first} `), e.detail);
}

async function violation(fn: () => Promise<unknown>, rule: string, path: string, value?: string) {
  await assert.rejects(fn, (e: unknown) => {
    assert.ok(e instanceof InvariantViolation, String(e));
    assert.equal(e.rule, rule, e.message);
    assertPath(e, path);
    if (value !== undefined) assert.equal(e.value, value);
    return true;
  });
}
const ids = async (it: AsyncGenerator<Order>) => { const r: string[] = []; for await (const o of it) r.push(o.id); return r; };
const sorted = (xs: string[]) => [...xs].sort();

export function contract(name: string, makeRepo: () => Promise<Repo>) {
  describe(name, () => {
    let repo: Repo;
    before(async () => { repo = await makeRepo(); });

    it('adds and gets', async () => {
      const c = randomUUID();
      const added = await repo.add(c, 'EUR', [TEA, POT], HOME);
      assert.deepEqual([added.status, added.version, added.total], ['pending', 1, 2n * 450n + 3900n]);
      const got = await repo.get(added.id);
      assert.deepEqual(got, added);
      assert.deepEqual(got.lines, [TEA, POT]);
      assert.equal(typeof got.total, 'bigint');
      assert.equal(got.customerId, c);
    });

    it('keeps money whole above 2^53', async () => {
      const big: OrderLine = { ...POT, quantity: 1_000_000, unitPrice: 99_999_999_999n };
      const added = await repo.add(randomUUID(), 'EUR', [big]);
      assert.equal(added.total, 99_999_999_999_000_000n);
      assert.equal((await repo.get(added.id)).lines[0].unitPrice, 99_999_999_999n);
    });

    it('adds with an id, without an address', async () => {
      const id = await repo.nextId();
      const added = await repo.add(randomUUID(), 'EUR', [], null, id);
      assert.deepEqual([added.id, added.lines, added.shippingAddress, added.total], [id, [], null, 0n]);
    });

    it('gets no order: OrderNotFound', async () => {
      await assert.rejects(repo.get(randomUUID()), OrderNotFound);
    });

    it('refuses an id twice, and an id used before', async () => {
      const added = await repo.add(randomUUID(), 'EUR', [TEA]);
      await assert.rejects(repo.add(randomUUID(), 'EUR', [TEA], null, added.id),
                           (e: unknown) => e instanceof DuplicateOrder && e.constraint === 'orders_pkey');
      await repo.remove(added.id);
      await assert.rejects(repo.get(added.id), OrderNotFound);
      await assert.rejects(repo.add(randomUUID(), 'EUR', [TEA], null, added.id),
                           (e: unknown) => e instanceof DuplicateOrder && e.constraint === 'orders_id_not_reused');
    });

    it('checks the invariants of a new order, and stores nothing', async () => {
      const c = randomUUID();
      await violation(() => repo.add(c, 'eur', [TEA]), 'order_currency_format', 'currency', 'eur');
      await violation(() => repo.add(c, 'EUR', [{ ...TEA, quantity: 0 }]), 'order_line_quantity_range',
                      'lines[1].quantity', '0');
      await violation(() => repo.add(c, 'EUR', [TEA, { ...TEA, productName: 'Again' }]), 'order_line_product_unique',
                      'lines[2].product_id');
      await violation(() => repo.add(c, 'EUR', [{ ...POT, productName: '' }]), 'order_line_product_name',
                      'lines[1].product_name');
      await violation(() => repo.add(c, 'EUR', [TEA], { ...HOME, country: 'de' }), 'order_address_fields',
                      'shipping_address.country', 'de');
      assert.deepEqual(await ids(repo.find(customer(c))), []);
    });

    it('checks a save in the extension\'s order', async () => {
      const order = await repo.add(randomUUID(), 'EUR', [TEA]);
      await repo.save({ ...order, lines: [TEA, POT] });
      await assert.rejects(repo.save({ ...order, status: 'confirmed' }), ConcurrencyConflict); // version before readiness
      await violation(async () => repo.save({ ...await repo.get(order.id), status: 'shipped' }),
                      'order_status_transition', 'status');
      await assert.rejects(repo.save({ ...order, id: randomUUID(), status: 'confirmed' }), OrderNotFound);
    });

    it('saves: confirm, nothing changed, a stale version', async () => {
      const order = await repo.add(randomUUID(), 'EUR', [TEA], HOME);
      assert.deepEqual(await repo.save(order), order);
      assert.equal((await repo.get(order.id)).version, 1);
      const confirmed = await repo.save({ ...order, status: 'confirmed' });
      assert.deepEqual([confirmed.status, confirmed.version], ['confirmed', 2]);
      assert.deepEqual(await repo.get(order.id), confirmed);
      await assert.rejects(repo.save({ ...order, status: 'cancelled' }), ConcurrencyConflict);
    });

    it('checks the rules of a save', async () => {
      const bare = await repo.add(randomUUID(), 'EUR', [TEA]);
      await violation(() => repo.save({ ...bare, status: 'confirmed' }), 'order_ready_to_confirm', 'shipping_address');
      const order = await repo.add(randomUUID(), 'EUR', [TEA], HOME);
      await violation(() => repo.save({ ...order, status: 'shipped' }), 'order_status_transition', 'status');
      await violation(() => repo.save({ ...order, currency: 'USD' }), 'order_immutable_fields', 'currency');
      const confirmed = await repo.save({ ...order, status: 'confirmed' });
      await violation(() => repo.save({ ...confirmed, lines: [POT] }), 'order_frozen_after_confirm', 'lines');
      const cancelled = await repo.save({ ...confirmed, status: 'cancelled' });
      await violation(() => repo.save({ ...cancelled, status: 'pending' }), 'order_status_transition', 'status');
    });

    it('removes', async () => {
      const order = await repo.add(randomUUID(), 'EUR', [TEA], HOME);
      await assert.rejects(repo.remove(order.id, 2), ConcurrencyConflict);
      const confirmed = await repo.save({ ...order, status: 'confirmed' });
      await violation(() => repo.remove(order.id), 'order_remove_in_flight', 'status', 'confirmed');
      const cancelled = await repo.save({ ...confirmed, status: 'cancelled' });
      assert.equal((await repo.remove(cancelled.id)).status, 'cancelled');
      await assert.rejects(repo.remove(order.id), OrderNotFound);
      await assert.rejects(repo.save(confirmed), OrderNotFound);
    });

    it('gives every rule\'s path, the same from the extension and the twin', async () => {
      const c = randomUUID();
      const CUP: OrderLine = { productId: '2d3f6a7b-8e9f-4a0b-9c2d-3e4f5a6b7c8d', productName: 'Cup', quantity: 1, unitPrice: 100n };
      await violation(() => repo.add(c, null as unknown as string, [TEA]), 'not_null', 'currency');
      await violation(() => repo.add(c, 'EUR', [TEA, { ...POT, productName: null as unknown as string }]), 'not_null',
                      'lines[2].product_name');
      await violation(() => repo.add(c, 'EUR', [TEA], { ...HOME, city: null as unknown as string }), 'not_null',
                      'shipping_address.city');
      await violation(() => repo.add(c, 'EUR', Array(1001).fill(TEA)), 'order_lines_max', 'lines');
      await violation(() => repo.add(c, 'EUR', [TEA, { ...POT, productName: 'x'.repeat(201) }]),
                      'order_line_product_name', 'lines[2].product_name');
      await violation(() => repo.add(c, 'EUR', [TEA, POT, { ...CUP, quantity: 1_000_001 }]),
                      'order_line_quantity_range', 'lines[3].quantity', '1000001');
      await violation(() => repo.add(c, 'EUR', [TEA, { ...POT, unitPrice: -1n }]),
                      'order_line_unit_price_range', 'lines[2].unit_price', '-1');
      // the later line of the two, after every line was checked
      await violation(() => repo.add(c, 'EUR', [POT, TEA, CUP, { ...POT, quantity: 2 }]),
                      'order_line_product_unique', 'lines[4].product_id');
      const big: OrderLine[] = Array.from({ length: 100 }, (_, n) => ({
        productId: `00000000-0000-4000-8000-${String(n + 1).padStart(12, '0')}`, productName: `p${n}`,
        quantity: 1_000_000, unitPrice: 100_000_000_000n }));
      await violation(() => repo.add(c, 'EUR', big), 'out_of_range', 'total');
      await violation(() => repo.add(c, 'EUR', [TEA], { ...HOME, street: '' }), 'order_address_fields',
                      'shipping_address.street');
      await violation(() => repo.add(c, 'EUR', [TEA], { ...HOME, country: 'DEU' }), 'order_address_fields',
                      'shipping_address.country', 'DEU');
      const order = await repo.add(c, 'EUR', [TEA], HOME);
      await violation(() => repo.save({ ...order, customerId: randomUUID() }), 'order_immutable_fields', 'customer_id');
      await violation(() => repo.save({ ...order, status: 'confirmed', lines: [] }), 'order_ready_to_confirm', 'lines');
      const confirmed = await repo.save({ ...order, status: 'confirmed' });
      const shipped = await repo.save({ ...confirmed, status: 'shipped' });
      await violation(() => repo.save({ ...shipped, shippingAddress: { ...HOME, city: 'Bonn' } }),
                      'order_frozen_after_confirm', 'shipping_address');
      await violation(() => repo.remove(order.id), 'order_remove_in_flight', 'status', 'shipped');
      for (const fn of [() => repo.save({ ...order, status: 'confirmed' }), () => repo.remove(order.id, 1)])
        await assert.rejects(fn, (e: unknown) => {
          assert.ok(e instanceof ConcurrencyConflict, String(e));
          assertPath(e, 'version');
          return true;
        });
      await assert.rejects(repo.addMany([{ customerId: c, currency: 'EUR' },
                                         { customerId: c, currency: 'EUR', lines: [TEA, { ...TEA, quantity: 0 }] }]),
        (e: unknown) => {
          assert.ok(e instanceof InvariantViolation, String(e));
          assert.deepEqual([e.index, e.rule], [1, 'order_line_quantity_range']);
          assertPath(e, 'lines[2].quantity');
          return true;
        });
      await assert.rejects(repo.get(randomUUID()),   // about the call: no path
        (e: unknown) => e instanceof OrderNotFound && e.path === undefined);
    });

    it('adds many, all or none, naming the offending one', async () => {
      const c = randomUUID();
      const given = randomUUID();
      const added = await repo.addMany([
        { customerId: c, currency: 'EUR', lines: [TEA], shippingAddress: HOME },
        { customerId: c, currency: 'USD', id: given },
      ]);
      assert.deepEqual(added.map((o) => o.currency), ['EUR', 'USD']);
      assert.equal(added[1].id, given);
      assert.equal(added[0].total, 900n);
      assert.deepEqual(await repo.get(added[0].id), added[0]);
      await assert.rejects(repo.addMany([{ customerId: c, currency: 'EUR' }, { customerId: c, currency: 'eur' }]),
        (e: unknown) => {
          assert.ok(e instanceof InvariantViolation, String(e));
          assert.deepEqual([e.rule, e.index], ['order_currency_format', 1]);
          return true;
        });
      assert.equal((await ids(repo.find(customer(c)))).length, 2, 'nothing of the refused call stays');
      await assert.rejects(repo.addMany([{ customerId: c, currency: 'EUR', id: given }]),
        (e: unknown) => e instanceof DuplicateOrder && (e as OrdersError).index === 0);
    });

    it('finds by specification, a page at a time', async () => {
      const c = randomUUID();
      const small = await repo.add(c, 'EUR', [TEA], HOME);                                   // 900
      const big = await repo.save({ ...await repo.add(c, 'EUR', [POT], HOME), status: 'confirmed' }); // 3900
      const other = await repo.add(c, 'EUR', [TEA, POT], HOME);                              // 4800
      await repo.add(randomUUID(), 'EUR', [POT], HOME);
      const all = sorted([small.id, big.id, other.id]);
      assert.deepEqual(await ids(repo.find(customer(c))), all);
      assert.deepEqual(await ids(repo.find(customer(c), 1)), all);
      assert.deepEqual(await ids(repo.find(customer(c).and(hasStatus('confirmed')))), [big.id]);
      assert.deepEqual(await ids(repo.find(customer(c).and(hasStatus('confirmed').not()).and(totalAtLeast(1000n)))),
                       [other.id]);
      assert.deepEqual(await ids(repo.find(customer(c).and(totalAtMost(1000n).or(totalAtLeast(4000n))))),
                       sorted([small.id, other.id]));
    });
  });
}

contract('in memory', async () => new InMemoryOrderRepository());

const client = new pg.Client();
contract('the extension', async () => { await client.connect(); return OrderRepository.create(client); });
after(() => client.end());

// The shop's DDL of the fields cases: columns of three types, an attribute
// of each composite, and a rule across a column of the shop's and one of
// ours. No default and no generated column here: the twin fills and
// computes none (the extension-only cases test those, and roll them back).
// rate has a scale, so that a JavaScript number reads back the same.
const FIELDS_DB = 'orders_client_fields_node';
const FIELDS_DDL = [
  'CREATE EXTENSION orders',
  'ALTER TABLE orders ADD COLUMN coupon text, ADD COLUMN delivery_date date, ADD COLUMN rate numeric(6,4),' +
    ' ADD COLUMN external_id bigint',
  "ALTER TABLE orders ADD CONSTRAINT coupon_only_in_eur CHECK (coupon IS NULL OR currency = 'EUR')",
  'ALTER TYPE order_line ADD ATTRIBUTE sku text CASCADE',
  'ALTER TYPE order_address ADD ATTRIBUTE door_code text CASCADE',
];
const SKU_TEA: OrderLine = { ...TEA, fields: { sku: 'TEA-1' } };
const DOOR: Address = { ...HOME, fields: { door_code: '4711' } };
const BEYOND_2_53 = 9007199254740993n;   // a double holds ...992

/** A client of FIELDS_DB, made anew (a run that died left it behind). */
async function fieldsDatabase(): Promise<pg.Client> {
  const admin = new pg.Client();
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${FIELDS_DB} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${FIELDS_DB}`);
  } finally {
    await admin.end();
  }
  const c = new pg.Client({ database: FIELDS_DB });
  await c.connect();
  for (const statement of FIELDS_DDL) await c.query(statement);
  return c;
}

async function dropFieldsDatabase(c: pg.Client) {
  await c.end();
  const admin = new pg.Client();
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE ${FIELDS_DB} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}

async function refused(fn: () => Promise<unknown>, sqlstate: string, path?: string): Promise<OrdersError> {
  let caught: unknown;
  await assert.rejects(fn, (e: unknown) => { caught = e; return true; });
  assert.ok(caught instanceof OrdersError, String(caught));
  assert.equal(caught.sqlstate, sqlstate, caught.message);
  if (path !== undefined) assert.equal(caught.path, path, caught.message);
  return caught;
}

/**
 * The shop's own fields, the same from both repositories: stored as given,
 * returned, compared by save, carried by the events. What only the
 * extension can know (the columns' types, defaults, rules) is in
 * 'the shop's fields, the extension only'.
 */
export function fieldsContract(name: string, makeRepo: () => Promise<Repo>, done: () => Promise<void>) {
  describe(name, () => {
    let repo: Repo;
    before(async () => { repo = await makeRepo(); });
    after(done);

    it('adds with fields, and gets them back', async () => {
      const added = await repo.add(randomUUID(), 'EUR', [SKU_TEA, POT], DOOR, {
        fields: { coupon: 'WELCOME', delivery_date: '2027-03-01', rate: 0.125, external_id: BEYOND_2_53 } });
      assert.deepEqual([added.fields.coupon, added.fields.delivery_date, added.fields.rate, added.fields.external_id],
                       ['WELCOME', '2027-03-01', 0.125, BEYOND_2_53]);
      assert.deepEqual(added.lines[0].fields, { sku: 'TEA-1' });
      assert.equal(added.lines[1].fields?.sku ?? null, null, 'a line without one: NULL, or not there in the twin');
      assert.deepEqual(added.shippingAddress?.fields, { door_code: '4711' });
      const got = await repo.get(added.id);
      assert.deepEqual(got, added);
      assert.ok(Object.isFrozen(got.fields), 'frozen, as the order that holds them');
    });

    it('keeps today\'s positional id, and an options object', async () => {
      const id = await repo.nextId();
      assert.equal((await repo.add(randomUUID(), 'EUR', [], null, id)).id, id);
      const other = await repo.nextId();
      const added = await repo.add(randomUUID(), 'EUR', [], null, { id: other, fields: { coupon: 'X' } });
      assert.deepEqual([added.id, added.fields.coupon], [other, 'X']);
    });

    it('saves an order as read: nothing changed', async () => {
      const added = await repo.add(randomUUID(), 'EUR', [SKU_TEA], DOOR,
                                   { fields: { coupon: 'WELCOME', rate: 0.1, external_id: BEYOND_2_53 } });
      const got = await repo.get(added.id);
      assert.deepEqual(await repo.save(got), got);
      assert.equal((await repo.get(added.id)).version, 1, 'the fields made the round trip unchanged');
      // a field given as null is a NULL, as one not there is
      assert.equal((await repo.save({ ...got, fields: { ...got.fields, delivery_date: null } })).version, 1);
      assert.equal((await repo.save({ ...got, lines: [{ ...TEA, fields: { sku: 'TEA-1' } }],
                                      shippingAddress: { ...HOME, fields: { door_code: '4711', no_such: null } } }))
                     .version, 1);
      assert.deepEqual((await repo.eventsOf(added.id)).map((e) => e.type), ['order_added']);
    });

    it('saves a changed field: order_fields_changed with the new value', async () => {
      const added = await repo.add(randomUUID(), 'EUR', [SKU_TEA], DOOR,
                                   { fields: { coupon: 'WELCOME', delivery_date: '2027-03-01' } });
      const saved = await repo.save({ ...added, fields: { ...added.fields, coupon: 'SPRING' } });
      assert.deepEqual([saved.version, saved.fields.coupon, saved.fields.delivery_date], [2, 'SPRING', '2027-03-01']);
      assert.deepEqual(await repo.get(added.id), saved);
      const events = await repo.eventsOf(added.id);
      assert.deepEqual(events.map((e) => [e.type, e.version]), [['order_added', 1], ['order_fields_changed', 2]]);
      assert.deepEqual(events[1].payload, { coupon: 'SPRING' }, 'only what changed, with its new value');
      const p = events[0].payload as any;
      assert.deepEqual([p.coupon, p.delivery_date, p.lines[0].sku, p.shipping_address.door_code, p.total],
                       ['WELCOME', '2027-03-01', 'TEA-1', '4711', '900']);
      assert.deepEqual(await repo.eventsOf(added.id, 1), events.slice(1));
    });

    it('saves a field left out as null', async () => {
      const added = await repo.add(randomUUID(), 'EUR', [TEA], null, { fields: { coupon: 'WELCOME' } });
      const saved = await repo.save({ ...added, fields: {} });
      assert.deepEqual([saved.version, saved.fields.coupon], [2, null]);
      assert.deepEqual((await repo.eventsOf(added.id)).at(-1)?.payload, { coupon: null });
    });

    it('emits one save\'s events in the extension\'s order', async () => {
      const added = await repo.add(randomUUID(), 'EUR', [SKU_TEA], DOOR, { fields: { coupon: 'WELCOME' } });
      const saved = await repo.save({ ...added, status: 'confirmed', lines: [{ ...TEA, fields: { sku: 'TEA-2' } }],
                                      shippingAddress: { ...HOME, fields: { door_code: '0815' } },
                                      fields: { ...added.fields, external_id: BEYOND_2_53 } });
      const events = await repo.eventsOf(added.id, 1);
      assert.deepEqual(events.map((e) => [e.type, e.version]),
                       [['order_lines_changed', 2], ['order_shipping_address_changed', 2],
                        ['order_fields_changed', 2], ['order_confirmed', 2]]);
      assert.equal((events[0].payload as any).lines[0].sku, 'TEA-2');
      assert.equal((events[1].payload as any).shipping_address.door_code, '0815');
      assert.deepEqual(events[2].payload, { external_id: BEYOND_2_53 }, 'an integer beyond 2^53 whole');
      assert.deepEqual(saved.lines[0].fields, { sku: 'TEA-2' });
      // a line's own attribute is part of the line: frozen after confirm
      await violation(() => repo.save({ ...saved, lines: [{ ...TEA, fields: { sku: 'TEA-3' } }] }),
                      'order_frozen_after_confirm', 'lines');
      // the order's own fields are the shop's to change in any status
      const shipped = await repo.save({ ...await repo.save({ ...saved, status: 'shipped' }),
                                        fields: { ...saved.fields, coupon: 'LATE' } });
      assert.deepEqual([shipped.status, shipped.fields.coupon], ['shipped', 'LATE']);
    });

    it('adds many and removes with their fields', async () => {
      const c = randomUUID();
      const added = await repo.addMany([
        { customerId: c, currency: 'EUR', lines: [SKU_TEA], fields: { coupon: 'BULK' } },
        { customerId: c, currency: 'EUR' },
      ]);
      assert.deepEqual([added[0].fields.coupon, added[0].lines[0].fields?.sku], ['BULK', 'TEA-1']);
      assert.deepEqual(await repo.get(added[0].id), added[0]);
      await repo.remove(added[0].id);
      const removed = (await repo.eventsOf(added[0].id)).at(-1)!;
      assert.deepEqual([removed.type, removed.version, (removed.payload as any).coupon], ['order_removed', 2, 'BULK']);
    });

    it('refuses a field named as one of ours', async () => {
      const c = randomUUID();
      await refused(() => repo.add(c, 'EUR', [], null, { fields: { status: 'shipped' } }), '22023', 'fields.status');
      await refused(() => repo.add(c, 'EUR', [{ ...TEA, fields: { quantity: 9 } }]), '22023',
                    'lines[1].fields.quantity');
      await refused(() => repo.add(c, 'EUR', [TEA], { ...HOME, fields: { city: 'Bonn' } }), '22023',
                    'shipping_address.fields.city');
      await refused(() => repo.addMany([{ customerId: c, currency: 'EUR', fields: { total: 0 } }]), '22023',
                    'fields.total');
      const order = await repo.add(c, 'EUR');
      await refused(() => repo.save({ ...order, fields: { version: 7 } }), '22023', 'fields.version');
      assert.deepEqual(await ids(repo.find(customer(c))), [order.id], 'nothing else was stored');
      assert.equal((await repo.get(order.id)).version, 1);
    });
  });
}

const memory = new InMemoryOrderRepository();
fieldsContract('the shop\'s fields, in memory', async () => memory, async () => undefined);
describe('the shop\'s fields, in memory only', () => {
  it('enforces nothing it cannot know: no CHECK, no unknown column, no type', async () => {
    // the twin's side of what the extension-only cases check; asserted so
    // that a change to it is a decision
    const added = await memory.add(randomUUID(), 'USD', [], null, { fields: { coupon: 'X', no_such_column: '2' } });
    assert.deepEqual(added.fields, { coupon: 'X', no_such_column: '2' });
  });
});

let fieldsClient: pg.Client;
fieldsContract('the shop\'s fields, the extension', async () => {
  fieldsClient = await fieldsDatabase();
  return OrderRepository.create(fieldsClient);
}, async () => dropFieldsDatabase(fieldsClient));

describe('the shop\'s fields, the extension only', () => {
  let c: pg.Client;
  let repo: OrderRepository;
  before(async () => { c = await fieldsDatabase(); repo = await OrderRepository.create(c); });
  after(async () => dropFieldsDatabase(c));

  it('fails the shop\'s CHECK as an InvariantViolation named by it', async () => {
    const cust = randomUUID();
    const e = await refused(() => repo.add(cust, 'USD', [], null, { fields: { coupon: 'WELCOME' } }), '23514');
    assert.ok(e instanceof InvariantViolation);
    assert.deepEqual([e.rule, e.constraint], ['coupon_only_in_eur', 'coupon_only_in_eur']);
    assert.deepEqual(await ids(repo.find(customer(cust))), [], 'nothing was stored');
    const order = await repo.add(cust, 'USD');
    await assert.rejects(repo.save({ ...order, fields: { coupon: 'WELCOME' } }),
                         (x: unknown) => x instanceof InvariantViolation && x.rule === 'coupon_only_in_eur');
    assert.deepEqual(await repo.get(order.id), order);
    await assert.rejects(repo.addMany([{ customerId: cust, currency: 'EUR' },
                                       { customerId: cust, currency: 'USD', fields: { coupon: 'X' } }]),
                         (x: unknown) => x instanceof InvariantViolation && x.rule === 'coupon_only_in_eur' &&
                                         x.index === 1);
  });

  it('refuses unknown columns and values their types refuse; returns every column', async () => {
    await refused(() => repo.add(randomUUID(), 'EUR', [], null, { fields: { no_such_column: 1 } }), '42703',
                  'fields.no_such_column');
    const e = await refused(() => repo.add(randomUUID(), 'EUR', [], null, { fields: { delivery_date: 'next week' } }),
                            '22007', 'fields.delivery_date');
    assert.ok(!(e instanceof InvariantViolation));
    const added = await repo.add(randomUUID(), 'EUR', [], null, { fields: { coupon: 'WELCOME', rate: '2' } });
    assert.deepEqual(added.fields, { coupon: 'WELCOME', delivery_date: null, rate: 2, external_id: null },
                     'the ones not given NULL (no default here), rate converted by its type');
  });

  it('fills defaults, generated and identity columns, and keeps them as read', async () => {
    let id = '';
    await assert.rejects(unitOfWork(c, async () => {    // rolled back: its DDL with it
      await c.query("ALTER TABLE orders ADD COLUMN channel text NOT NULL DEFAULT 'web'," +
                    ' ADD COLUMN coupon_upper text GENERATED ALWAYS AS (upper(coupon)) STORED,' +
                    ' ADD COLUMN ticket bigint GENERATED ALWAYS AS IDENTITY');
      const added = await repo.add(randomUUID(), 'EUR', [], null, { fields: { coupon: 'spring' } });
      id = added.id;
      assert.deepEqual([added.fields.channel, added.fields.coupon_upper, typeof added.fields.ticket],
                       ['web', 'SPRING', 'number']);
      for (const name of ['coupon_upper', 'ticket']) {
        await refused(() => repo.add(randomUUID(), 'EUR', [], null, { fields: { [name]: 'X' } }), '428C9',
                      `fields.${name}`);
        await refused(() => repo.save({ ...added, fields: { ...added.fields, [name]: 12345 } }), '428C9');
      }
      const saved = await repo.save({ ...added, fields: { ...added.fields, coupon: 'summer' } });
      assert.equal(saved.fields.coupon_upper, 'SUMMER');
      assert.deepEqual((await repo.eventsOf(added.id)).at(-1)?.payload, { coupon: 'summer', coupon_upper: 'SUMMER' },
                       'a generated column that changed is among the changed fields');
      throw new Error('roll back');
    }), /roll back/);
    await assert.rejects(repo.get(id), OrderNotFound);
    assert.deepEqual(Object.keys((await repo.add(randomUUID(), 'EUR')).fields).sort(),
                     ['coupon', 'delivery_date', 'external_id', 'rate'], 'rolled back: the contract\'s table again');
  });
});
