// One contract, two repositories: every case runs against the extension (a
// throw-away cluster that test/t/015_node_repository.pl... reaches through
// PGHOST, PGPORT, PGDATABASE, PGUSER) and against InMemoryOrderRepository.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { type Address, ConcurrencyConflict, customer, DuplicateOrder, hasStatus, InMemoryOrderRepository,
         InvariantViolation, type Order, type OrderLine, OrderNotFound, OrderRepository, OrdersError, totalAtLeast,
         totalAtMost } from '../src/index.js';

type Repo = Pick<OrderRepository, 'add' | 'addMany' | 'get' | 'save' | 'remove' | 'nextId' | 'find'>;

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
