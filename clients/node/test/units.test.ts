// One contract for what domain code does through the repository's unit of
// work, its events and a consumer, run against the extension (a pg.Pool on
// the throw-away cluster of test/t/016_node_repository.pl) and against the
// twin (an InMemoryStore): the same cases, the same outcomes. Also the
// integer refusals and the aggregate in and out, which both repositories
// must refuse or accept alike.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { type Address, ConcurrencyConflict, type ConsumerOptions, type Event, EventConsumer, type Handler,
         type Hold, HandlerFailed, InMemoryEventConsumer, InMemoryOrderRepository, InMemoryStore, InvariantViolation, Order,
         orderEventPart, type OrderLine, OrderNotFound, OrderRepository, OrdersError, Reject, customer, unitOfWork,
         uuid7 } from '../src/index.js';

const TEA: OrderLine = { productId: '0b1e4f5a-6c7d-4e8f-9a0b-1c2d3e4f5a6b', productName: 'Green tea', quantity: 2, unitPrice: 450n };
const POT: OrderLine = { productId: '1c2f5a6b-7d8e-4f9a-8b1c-2d3e4f5a6b7c', productName: 'Teapot', quantity: 1, unitPrice: 3900n };
const HOME: Address = { street: 'Main St 1', city: 'Berlin', postalCode: '10115', country: 'DE' };

type Repo = OrderRepository | InMemoryOrderRepository;
interface Consumer {
  run(): Promise<void>;
  holds(): Promise<Hold[]>;
  parked(): Promise<Hold[]>;
  replay(position: bigint): Promise<void>;
  discard(position: bigint): Promise<void>;
}

/** What a case needs of one side: repositories on one database, and consumers of its outbox. */
interface World {
  repo: Repo;
  /** Another repository on the same database, with its own event metadata. */
  tagged(metadata: Record<string, unknown>): Promise<Repo>;
  consumer(name: string, handler: Handler, options?: ConsumerOptions): Consumer;
  /** A repository on the same database whose units all take one connection (a pool of one), and its closing. */
  narrow(): Promise<[Repo, () => Promise<void>]>;
  close(): Promise<void>;
}

const ids = async (it: AsyncGenerator<{ id: string }>) => { const r: string[] = []; for await (const o of it) r.push(o.id); return r; };

/** A promise to resolve from outside, and its resolver. */
function gate(): [Promise<void>, () => void] {
  let open!: () => void;
  const p = new Promise<void>((r) => { open = r; });
  return [p, open];
}

const quick: ConsumerOptions = { exitWhenIdleMs: 300, wakeEveryMs: 50, handleSigterm: false };

// Registers the consumer (from now) and returns it.
async function registered(world: World, name: string, handler: Handler, options: ConsumerOptions = {}) {
  await world.consumer(name, () => undefined, { ...quick, ...options, exitWhenIdleMs: 0 }).run();
  return world.consumer(name, handler, { ...quick, ...options });
}

/** The refusal of calls of one unit that overlap where they cannot, alike from both repositories. */
const overlapping = (e: unknown) => e instanceof OrdersError && e.sqlstate === undefined &&
  e.message.startsWith('the calls in one unit of work must be awaited one by one');

/**
 * The refusal of a value that is not an integer, the same from both
 * repositories; hint: what the money's detail adds (cents(...), UNSAFE).
 */
function notInteger(path: string, value: string, hint = '') {
  return (e: unknown) => {
    assert.ok(e instanceof InvariantViolation, String(e));
    assert.deepEqual([e.rule, e.path, e.value, e.sqlstate], ['not_integer', path, value, '22P02']);
    const why = path.endsWith('unit_price') ? `money is an integer number of cents${hint}` : 'a quantity is an integer';
    assert.equal(e.detail, `The field is ${path}. The value is ${value}; ${why}.`);
    return true;
  };
}
const cents = (n: string, value: string) => ` (${n} for ${value})`;
const UNSAFE = '; a whole number beyond 2^53 loses digits: give a bigint';

export function contract(name: string, makeWorld: () => Promise<World>) {
  describe(name, () => {
    let world: World;
    let repo: Repo;
    before(async () => { world = await makeWorld(); repo = world.repo; });
    after(async () => { await world?.close(); });

    it('refuses money and quantities that are not integers, before anything is stored', async () => {
      const c = randomUUID();
      // what a plain JavaScript caller, or a cast, can hand in
      const price = (v: unknown): OrderLine => ({ ...POT, unitPrice: v as bigint });
      const cases: [OrderLine, string, string, string?][] = [
        [price(12.99), 'lines[2].unit_price', '12.99', cents('1299', '12.99')],
        [price(12.5), 'lines[2].unit_price', '12.5', cents('1250', '12.5')],
        [price(450.5), 'lines[2].unit_price', '450.5', cents('45050', '450.5')],
        [price('12.00'), 'lines[2].unit_price', '12.00', cents('1200', '12.00')],
        [price('-0.5'), 'lines[2].unit_price', '-0.5', cents('-50', '-0.5')],
        [price('12.500'), 'lines[2].unit_price', '12.500', cents('1250', '12.500')],
        // no fraction, or one of more than two digits after its trailing zeros: no cents to guess
        [price('450'), 'lines[2].unit_price', '450'],
        [price('12.999'), 'lines[2].unit_price', '12.999'],
        [price(0.001), 'lines[2].unit_price', '0.001'],
        [price(true), 'lines[2].unit_price', 'true'],
        [price(Number.NaN), 'lines[2].unit_price', 'NaN'],
        [price(Number.POSITIVE_INFINITY), 'lines[2].unit_price', 'Infinity'],
        [price(Number.NEGATIVE_INFINITY), 'lines[2].unit_price', '-Infinity'],
        // whole numbers a number cannot hold exactly
        [price(2 ** 60), 'lines[2].unit_price', '1152921504606847000', UNSAFE],
        [price(1e21), 'lines[2].unit_price', '1e+21', UNSAFE],
        [{ ...POT, quantity: 1.5 }, 'lines[2].quantity', '1.5'],
        [{ ...POT, quantity: '2' as unknown as number }, 'lines[2].quantity', '2'],
      ];
      const order = await repo.add(c, 'EUR', [TEA]);
      for (const [line, path, value, hint] of cases) {
        await assert.rejects(repo.add(c, 'EUR', [TEA, line]), notInteger(path, value, hint));
        await assert.rejects(repo.save({ ...order, lines: [TEA, line] }), notInteger(path, value, hint));
        await assert.rejects(repo.addMany([{ customerId: c, currency: 'EUR' }, { customerId: c, currency: 'EUR', lines: [TEA, line] }]),
                             (e: unknown) => notInteger(path, value, hint)(e) && (e as OrdersError).index === 1);
        assert.throws(() => Order.new({ customerId: c, currency: 'EUR', lines: [TEA, line] }), notInteger(path, value, hint));
      }
      assert.deepEqual(await ids(repo.find(customer(c))), [order.id], 'nothing else stored');
      assert.deepEqual(await repo.get(order.id), order, 'nothing changed');
      // null is the server's not_null, as before
      await assert.rejects(repo.add(c, 'EUR', [price(null)]),
                           (e: unknown) => e instanceof InvariantViolation && e.rule === 'not_null' &&
                                           e.path === 'lines[1].unit_price' && e.sqlstate === '23502');
      await assert.rejects(repo.add(c, 'EUR', [{ ...TEA, quantity: null as unknown as number }]),
                           (e: unknown) => e instanceof InvariantViolation && e.rule === 'not_null' &&
                                           e.path === 'lines[1].quantity');
      // integers beyond the columns' types: the rule's error, not the server's JSON reading's
      for (const [line, rule, path, value] of [
        [{ ...TEA, quantity: 3_000_000_000 }, 'order_line_quantity_range', 'lines[1].quantity', '3000000000'],
        [{ ...TEA, quantity: 2n ** 60n as unknown as number }, 'order_line_quantity_range', 'lines[1].quantity',
         '1152921504606846976'],
        [{ ...TEA, unitPrice: 2n ** 63n }, 'order_line_unit_price_range', 'lines[1].unit_price', '9223372036854775808'],
      ] as const)
        await assert.rejects(repo.add(c, 'EUR', [line]), (e: unknown) => {
          assert.ok(e instanceof InvariantViolation, String(e));
          assert.deepEqual([e.rule, e.path, e.value, e.sqlstate], [rule, path, value, '23514']);
          assert.equal(e.detail, `The field is ${path}. The value is ${value}; it must be between ` +
                                 (rule === 'order_line_quantity_range' ? '1 and 1000000.' : '0 and 100000000000.'));
          return true;
        });
      // the largest the column holds reaches the server, whose rule words it the same
      await assert.rejects(repo.add(c, 'EUR', [{ ...TEA, quantity: 2 ** 31 - 1 }]), (e: unknown) => {
        assert.ok(e instanceof InvariantViolation, String(e));
        assert.deepEqual([e.rule, e.path, e.value, e.detail],
                         ['order_line_quantity_range', 'lines[1].quantity', '2147483647',
                          'The field is lines[1].quantity. The value is 2147483647; it must be between 1 and 1000000.']);
        return true;
      });
      // a safe-integer number of cents, and a bigint quantity, are integers
      const plain = await repo.add(c, 'EUR', [{ ...TEA, unitPrice: 450 as unknown as bigint, quantity: 3n as unknown as number }]);
      assert.deepEqual([plain.lines[0].unitPrice, plain.lines[0].quantity, plain.total], [450n, 3, 1350n]);
    });

    it('adds an aggregate built by Order.new, and removes by the order\'s version', async () => {
      const draft = Order.new({ customerId: randomUUID(), currency: 'EUR', lines: [TEA, POT], shippingAddress: HOME });
      assert.deepEqual([draft.status, draft.version, draft.total, draft.createdAt], ['pending', 0, 4800n, null]);
      assert.match(draft.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'a uuid7');
      const added = await repo.add(draft);
      assert.deepEqual([added.id, added.version, added.total, added.lines], [draft.id, 1, 4800n, [TEA, POT]]);
      const id = uuid7();
      assert.equal((await repo.add(Order.new({ customerId: randomUUID(), currency: 'USD', id }))).id, id);
      const saved = await repo.save({ ...added, shippingAddress: { ...HOME, city: 'Bonn' } });
      await assert.rejects(repo.remove(added), ConcurrencyConflict, 'the version read is stale: optimistic');
      assert.equal((await repo.remove(saved)).version, 2);
      await assert.rejects(repo.get(added.id), OrderNotFound);
      assert.ok(uuid7(Date.UTC(2030, 0, 1)) > uuid7(Date.UTC(2029, 0, 1)), 'time-ordered');
    });

    it('add(order) takes the order alone: more arguments are a TypeError, nothing stored', async () => {
      const c = randomUUID();
      const draft = Order.new({ customerId: c, currency: 'EUR', lines: [TEA] });
      const add = repo.add.bind(repo) as (...args: unknown[]) => Promise<Order>;
      for (const extra of [['USD'], [undefined, [POT]], [undefined, undefined, HOME], [undefined, undefined, null, uuid7()]])
        await assert.rejects(add(draft, ...extra), (e: unknown) => e instanceof TypeError &&
                             e.message === 'add(order) takes the Order alone; give its parts in it (Order.new)');
      assert.deepEqual(await ids(repo.find(customer(c))), []);
      assert.equal((await add(draft, undefined)).id, draft.id, 'undefined is no argument');
    });

    it('saves an order not added yet (Order.new): OrderNotFound, from both', async () => {
      const draft = Order.new({ customerId: randomUUID(), currency: 'EUR', lines: [TEA], shippingAddress: HOME });
      await assert.rejects(repo.save(draft as unknown as Order), OrderNotFound);
      await assert.rejects(repo.get(draft.id), OrderNotFound);
    });

    it('a unit of work commits, and undoes everything when it throws: orders, ids, events', async () => {
      const c = randomUUID();
      const seen: Event[] = [];
      const consumer = await registered(world, `units-${randomUUID()}`, (e) => { if (e.payload !== null) seen.push(e); });
      let id = '';
      await assert.rejects(repo.unitOfWork(async () => {
        const o = await repo.add(c, 'EUR', [TEA], HOME);
        id = o.id;
        await repo.save({ ...o, status: 'confirmed' });
        assert.equal((await repo.eventsOf(id)).length, 2, 'its own events, before it commits');
        throw new Error('the domain changed its mind');
      }), /changed its mind/);
      await assert.rejects(repo.get(id), OrderNotFound);
      assert.deepEqual(await repo.eventsOf(id), [], 'rolled back means no events');
      const again = await repo.add(c, 'EUR', [TEA], null, id);   // the id was never used
      const kept = await unitOfWork(repo instanceof OrderRepository ? repo.source : repo, async () =>
        repo.save({ ...again, status: 'cancelled' }));
      await consumer.run();
      assert.deepEqual(seen.filter((e) => e.orderId === id).map((e) => [e.type, e.version]),
                       [['order_added', 1], ['order_cancelled', 2]], 'the consumer saw the committed ones only');
      assert.equal(kept.version, 2);
    });

    it('a refused call leaves the unit standing; an inner unit is a savepoint', async () => {
      let inner = '';
      let outer = '';
      const saved = await repo.unitOfWork(async () => {
        const kept = await repo.add(randomUUID(), 'EUR', [TEA]);
        outer = kept.id;
        await assert.rejects(repo.add(randomUUID(), 'EURO', [TEA]), InvariantViolation);
        await assert.rejects(repo.unitOfWork(async () => {
          inner = (await repo.add(randomUUID(), 'EUR', [TEA])).id;
          throw new Error('inner');
        }), /inner/);
        await assert.rejects(repo.get(inner), OrderNotFound);
        return repo.save({ ...kept, shippingAddress: HOME });
      });
      assert.deepEqual(await repo.get(outer), saved);
      assert.deepEqual(await repo.eventsOf(inner), []);
      assert.deepEqual((await repo.eventsOf(outer)).map((e) => e.type), ['order_added', 'order_shipping_address_changed']);
    });

    it('a unit\'s writes are its own until it commits; a consumer passes over none of them', async () => {
      const seen: string[] = [];
      const consumer = await registered(world, `isolation-${randomUUID()}`, (e) => { seen.push(`${e.orderId} ${e.version}`); });
      const [hold, release] = gate();
      const [inside, entered] = gate();
      let mine = '';
      const unit = repo.unitOfWork(async () => {
        mine = (await repo.add(randomUUID(), 'EUR', [TEA])).id;
        assert.equal((await repo.get(mine)).id, mine, 'its own reads see it');
        entered();
        await hold;
      });
      await inside;
      await assert.rejects(repo.get(mine), OrderNotFound, 'invisible outside the unit');
      assert.deepEqual(await repo.eventsOf(mine), []);
      const later = await repo.add(randomUUID(), 'EUR', [TEA]);   // committed, a position after the unit's
      await consumer.run();
      assert.ok(!seen.includes(`${mine} 1`), 'not before it commits');
      release();
      await unit;
      await consumer.run();
      assert.ok(seen.includes(`${mine} 1`) && seen.includes(`${later.id} 1`), 'both, none passed over');
    });

    it('commit order, not position: a committed event comes at once past an open unit\'s lower one, which comes once it commits', async () => {
      const seen: Event[] = [];
      const consumer = await registered(world, `commit-order-${randomUUID()}`, (e) => { seen.push(e); });
      const [hold, release] = gate();
      const [inside, entered] = gate();
      let mine = '';
      const unit = repo.unitOfWork(async () => {
        mine = (await repo.add(randomUUID(), 'EUR', [TEA], HOME)).id;   // the lower position, left open
        entered();
        await hold;
      });
      await inside;
      // a higher position, committed first: read first, as the
      // extension's snapshot batches do; the unit's event is not skipped for it
      const later = await repo.add(randomUUID(), 'EUR', [POT]);
      await consumer.run();
      assert.deepEqual(seen.map((e) => e.orderId), [later.id], 'the committed one at once, the open one not yet');
      release();
      await unit;
      await consumer.run();
      assert.deepEqual(seen.map((e) => [e.orderId, e.type]), [[later.id, 'order_added'], [mine, 'order_added']],
                       'the unit\'s event after it commits, nothing lost or twice');
      assert.ok(seen[1].position < (await repo.eventsOf(later.id))[0].position, 'at a lower position');
      await consumer.run();
      assert.equal(seen.length, 2, 'nothing comes again');
    });

    it('a consumer by type: the other types are passed over and count as acknowledged; an unknown type is refused', async () => {
      const name = `by-type-${randomUUID()}`;
      const drain = async (options: ConsumerOptions = {}) => {
        const seen: [string, string][] = [];
        await world.consumer(name, (e) => { seen.push([e.type, e.orderId]); }, { ...quick, ...options }).run();
        return seen;
      };
      await drain();
      const orders = [];
      for (let n = 0; n < 3; n++) orders.push(await repo.add(randomUUID(), 'EUR', [TEA], HOME));
      await repo.save({ ...orders[1], status: 'confirmed' });
      assert.deepEqual(await drain({ types: ['order_confirmed'], batch: 1 }), [['order_confirmed', orders[1].id]]);
      assert.deepEqual(await drain(), [], 'the skipped events count as acknowledged');
      await assert.rejects(async () => drain({ types: ['order_confirmd'] }),
                           (e: unknown) => e instanceof OrdersError && e.sqlstate === '22023' &&
                                           e.message === 'unknown event type "order_confirmd"');
    });

    it('a failing handler ends the run unacknowledged: its event comes again', async () => {
      const name = `failing-${randomUUID()}`;
      await world.consumer(name, () => undefined, { ...quick, exitWhenIdleMs: 0 }).run();
      const order = await repo.add(randomUUID(), 'EUR', [TEA]);
      await assert.rejects(world.consumer(name, () => { throw new Error('a bug'); }, quick).run(), HandlerFailed);
      const seen: string[] = [];
      await world.consumer(name, (e) => { seen.push(e.orderId); }, quick).run();
      assert.deepEqual(seen, [order.id], 'it comes again');
    });

    it('two units, same order: the second one\'s save fails with ConcurrencyConflict', async () => {
      const order = await repo.add(randomUUID(), 'EUR', [TEA], HOME);
      const [hold, release] = gate();
      const [inside, entered] = gate();
      const first = repo.unitOfWork(async () => {
        await repo.save({ ...order, status: 'confirmed' });
        entered();
        await hold;
      });
      await inside;
      // the extension makes it wait for the first, then fails it; the twin fails it at once
      const second = repo.unitOfWork(async () => repo.save({ ...order, status: 'cancelled' }));
      second.catch(() => undefined);
      await new Promise((r) => setTimeout(r, 100));
      release();
      await first;
      await assert.rejects(second, ConcurrencyConflict);
      assert.equal((await repo.get(order.id)).status, 'confirmed');
    });

    it('concurrent units on one pool or store never mix', async () => {
      const c = randomUUID();
      const results = await Promise.all(Array.from({ length: 8 }, (_, n) => repo.unitOfWork(async () => {
        const o = await repo.add(c, 'EUR', [{ ...TEA, quantity: n + 1 }], HOME);
        await new Promise((r) => setTimeout(r, 5 * (8 - n)));
        const got = await repo.get(o.id);
        if (n % 2 === 1) throw new Error(`unit ${n} gives up`);
        return repo.save({ ...got, status: 'confirmed' });
      }).catch((e: Error) => e.message)));
      const kept = results.filter((r): r is Exclude<typeof r, string> => typeof r !== 'string');
      assert.deepEqual(results.filter((r) => typeof r === 'string'), ['unit 1 gives up', 'unit 3 gives up',
                                                                     'unit 5 gives up', 'unit 7 gives up']);
      assert.deepEqual(kept.map((o) => [o.lines[0].quantity, o.version, o.status]),
                       [[1, 2, 'confirmed'], [3, 2, 'confirmed'], [5, 2, 'confirmed'], [7, 2, 'confirmed']]);
      assert.deepEqual((await ids(repo.find(customer(c)))).sort(), kept.map((o) => o.id).sort());
    });

    it('a call a unit made and did not await, made after it ended, is in no unit: not in the next unit on the client', async () => {
      // one connection: unit B takes the client unit A had
      const [narrow, close] = await world.narrow();
      try {
        const c = randomUUID();
        let stray!: Promise<Order>;
        await narrow.unitOfWork(async () => {
          stray = new Promise((resolve, reject) => {
            setTimeout(() => { narrow.add(c, 'EUR', [TEA]).then(resolve, reject); }, 50);
          });
        });
        await assert.rejects(narrow.unitOfWork(async () => {
          await narrow.add(c, 'EUR', [POT]);
          await new Promise((r) => setTimeout(r, 150));   // the timer's add comes meanwhile
          throw new Error('B gives up');
        }), /B gives up/);
        const added = await stray;
        assert.deepEqual(await narrow.get(added.id), added, 'committed on its own, not rolled back with B');
        assert.deepEqual(await ids(narrow.find(customer(c))), [added.id]);
      } finally {
        await close();
      }
    });

    it('calls of one unit made together run one after the other; a nested unit beside them is refused', async () => {
      const c = randomUUID();
      const [a, b, d, f] = [await repo.add(c, 'EUR', [TEA], HOME), await repo.add(c, 'EUR', [TEA], HOME),
                            await repo.add(c, 'EUR', [TEA], HOME), await repo.add(c, 'EUR', [TEA], HOME)];
      const both = await repo.unitOfWork(() => Promise.all([repo.save({ ...a, status: 'confirmed' }),
                                                            repo.save({ ...b, shippingAddress: { ...HOME, city: 'Bonn' } })]));
      assert.deepEqual([await repo.get(a.id), await repo.get(b.id)], both, 'both committed');
      assert.deepEqual(both.map((o) => o.version), [2, 2]);
      // one refused: undone alone, the other committed with the unit
      const settled = await repo.unitOfWork(() => Promise.allSettled([repo.save({ ...d, status: 'shipped' }),
                                                                      repo.save({ ...f, status: 'cancelled' })]));
      assert.equal(settled[0].status, 'rejected');
      assert.ok(settled[0].status === 'rejected' && settled[0].reason instanceof InvariantViolation &&
                settled[0].reason.rule === 'order_status_transition', String((settled[0] as PromiseRejectedResult).reason));
      assert.equal(settled[1].status, 'fulfilled');
      assert.deepEqual([(await repo.get(d.id)).version, (await repo.get(f.id)).status], [1, 'cancelled']);
      assert.deepEqual((await repo.eventsOf(f.id)).map((e) => e.type), ['order_added', 'order_cancelled']);
      // a nested unit cannot run beside the unit's other calls: refused, the rest stands
      const extra: string[] = [];
      const [got, nested] = await repo.unitOfWork(() => Promise.allSettled([
        repo.get(a.id), repo.unitOfWork(async () => { extra.push((await repo.add(c, 'EUR')).id); })]));
      assert.equal(got.status, 'fulfilled');
      assert.ok(nested.status === 'rejected' && overlapping(nested.reason), String((nested as PromiseRejectedResult).reason));
      const [first, second] = await repo.unitOfWork(() => Promise.allSettled([
        repo.unitOfWork(async () => { extra.push((await repo.add(c, 'EUR')).id); }),
        repo.unitOfWork(async () => { extra.push((await repo.add(c, 'EUR')).id); })]));
      assert.equal(first.status, 'fulfilled');
      assert.ok(second.status === 'rejected' && overlapping(second.reason), 'nor two nested units together');
      const [inner, beside] = await repo.unitOfWork(() => Promise.allSettled([
        repo.unitOfWork(async () => { extra.push((await repo.add(c, 'EUR')).id); }), repo.get(a.id)]));
      assert.equal(inner.status, 'fulfilled');
      assert.ok(beside.status === 'rejected' && overlapping(beside.reason), 'nor a call beside a nested unit');
      assert.equal(extra.length, 2);
      assert.deepEqual((await ids(repo.find(customer(c)))).sort(), [a.id, b.id, d.id, f.id, ...extra].sort());
    });

    it('a nested unit its unit did not await: its work until the unit ended is the unit\'s, later calls are on their own, and it is refused', async () => {
      const c = randomUUID();
      const [inside, entered] = gate();
      const added: string[] = [];
      let nested!: Promise<void>;
      await repo.unitOfWork(async () => {
        nested = repo.unitOfWork(async () => {
          added.push((await repo.add(c, 'EUR', [TEA])).id);
          entered();
          await new Promise((r) => setTimeout(r, 100));   // the unit ends meanwhile
          added.push((await repo.add(c, 'EUR', [POT])).id);
        });
        nested.catch(() => undefined);
        await inside;
      });
      await assert.rejects(nested, (e: unknown) => e instanceof OrdersError && e.sqlstate === undefined &&
                                                   e.message.startsWith('the unit of work this one was nested in ended first'));
      assert.equal(added.length, 2);
      assert.deepEqual((await ids(repo.find(customer(c)))).sort(), [...added].sort(), 'both committed');
    });

    it('metadata: the unit\'s, the repository\'s for its own writes, an inner unit\'s for itself', async () => {
      const tagged = await world.tagged({ actor: 'repo' });
      const [a, b, d, e] = await repo.unitOfWork(async () => {
        const a = await repo.add(randomUUID(), 'EUR');
        const b = await tagged.add(randomUUID(), 'EUR');
        const d = await repo.unitOfWork(() => repo.add(randomUUID(), 'EUR'), { metadata: { actor: 'inner' } });
        const e = await repo.add(randomUUID(), 'EUR');
        return [a, b, d, e];
      }, { metadata: { actor: 'unit' } });
      const meta = async (id: string) => (await repo.eventsOf(id))[0].metadata;
      assert.deepEqual([await meta(a.id), await meta(b.id), await meta(d.id), await meta(e.id)],
                       [{ actor: 'unit' }, { actor: 'repo' }, { actor: 'inner' }, { actor: 'unit' }]);
      assert.equal(await meta((await repo.add(randomUUID(), 'EUR')).id), null, 'none outside a unit');
      assert.deepEqual(await meta((await tagged.add(randomUUID(), 'EUR')).id), { actor: 'repo' });
      await assert.rejects(repo.unitOfWork(() => repo.add(randomUUID(), 'EUR'), { metadata: { x: 'y'.repeat(9000) } }),
                           (x: unknown) => x instanceof OrdersError && x.sqlstate === '54000' &&
                                           /^orders\.event_metadata is too long \(9008 bytes\)$/.test(x.message));
    });

    for (const group of [false, true]) {
      it(`a rejected event is retried, parked while its order waits, then replayed or discarded${group ? ' (a group)' : ''}`, async () => {
          const name = `poison-${randomUUID()}`;
        const options: ConsumerOptions = { group, maxAttempts: 3, retryDelayMs: 0 };
        await world.consumer(name, () => undefined, { ...quick, ...options, exitWhenIdleMs: 0 }).run();
        const bad = await repo.add(randomUUID(), 'EUR', [TEA], HOME);
        const good = await repo.add(randomUUID(), 'EUR', [TEA], HOME);
        await repo.save({ ...bad, status: 'confirmed' });
        await repo.save({ ...good, status: 'confirmed' });
        const seen: [string, string][] = [];
        const tries: string[] = [];
        const consumer = world.consumer(name, (e) => {
          if (e.orderId === bad.id) {
            tries.push(e.type);
            throw new Reject(`no template for ${e.type}`);
          }
          seen.push([e.orderId, e.type]);
        }, { ...quick, ...options });
        await consumer.run();
        assert.deepEqual(seen, [[good.id, 'order_added'], [good.id, 'order_confirmed']], 'the other order flows');
        assert.deepEqual(tries, ['order_added', 'order_added', 'order_added'], 'max attempts, nothing after it');
        const [parked, ...none] = await consumer.parked();
        assert.equal(none.length, 0);
        assert.deepEqual([parked.orderId, parked.type, parked.version, parked.attempts, parked.reason, parked.retryAt],
                         [bad.id, 'order_added', 1, 3, 'no template for order_added', null]);
        assert.ok(parked.parkedAt instanceof Date && parked.failedAt instanceof Date);
        // a group's holds are its parts' (real.test.ts: orderEventPart is orders_event_part)
        assert.equal(parked.consumer, group ? `${name}/${orderEventPart(bad.id)}` : name);
        assert.equal(parked.heldBack.length, 1, 'its confirmation waits behind it');
        await assert.rejects(consumer.replay(parked.position + 1000000n),
                             (e: unknown) => e instanceof OrdersError && e.sqlstate === '22023');

        // mended and replayed: the order's events come, in order
        await consumer.replay(parked.position);
        await world.consumer(name, (e) => { seen.push([e.orderId, e.type]); }, { ...quick, ...options }).run();
        assert.deepEqual(seen.slice(2), [[bad.id, 'order_added'], [bad.id, 'order_confirmed']]);
        assert.deepEqual(await consumer.holds(), []);

        // parked at once, then discarded: the order's next event follows
        const other = await repo.add(randomUUID(), 'EUR', [TEA], HOME);
        await repo.save({ ...other, status: 'confirmed' });
        await world.consumer(name, (e) => {
          if (e.type === 'order_added') throw new Reject('refused');
          seen.push([e.orderId, e.type]);
        }, { ...quick, ...options, maxAttempts: 1 }).run();
        const [again] = await consumer.parked();
        assert.equal(again.orderId, other.id);
        await consumer.discard(again.position);
        await world.consumer(name, (e) => { seen.push([e.orderId, e.type]); }, { ...quick, ...options }).run();
        assert.deepEqual(seen[seen.length - 1], [other.id, 'order_confirmed']);
        assert.deepEqual(await consumer.holds(), []);
      });
    }
  });
}

contract('the twin', async () => {
  const store = new InMemoryStore();
  return {
    repo: new InMemoryOrderRepository({ store }),
    tagged: async (metadata) => new InMemoryOrderRepository({ store, metadata }),
    consumer: (name, handler, options) => new InMemoryEventConsumer(store, name, handler, options),
    narrow: async () => [new InMemoryOrderRepository({ store }), async () => undefined],
    close: async () => undefined,
  };
});

contract('the extension, on a pg.Pool', async () => {
  const pool = new pg.Pool({ max: 12 });
  return {
    repo: await OrderRepository.create(pool),
    tagged: (metadata) => OrderRepository.create(pool, { metadata }),
    consumer: (name, handler, options) => new EventConsumer(pool, name, handler, options),
    narrow: async () => {
      const one = new pg.Pool({ max: 1 });
      return [await OrderRepository.create(one), () => one.end()];
    },
    close: () => pool.end(),
  };
});

describe('the twin only', () => {
  it('refuses a consumer\'s options as the extension does, at once (22023)', () => {
    const store = new InMemoryStore();
    const refused = (options: ConsumerOptions, message: string) =>
      assert.throws(() => new InMemoryEventConsumer(store, 'x', () => undefined, options),
                    (e: unknown) => e instanceof OrdersError && e.sqlstate === '22023' && e.message === message);
    refused({ batch: 0 }, 'max_events must be at least 1');
    refused({ maxAttempts: 0 }, 'max_attempts must be at least 1');
    refused({ retryDelayMs: -1 }, 'retry_delay must not be negative');
    refused({ types: [] }, 'types must list at least one event type, and no null');
    refused({ types: ['order_added', null as unknown as string] }, 'types must list at least one event type, and no null');
    refused({ types: ['order_confirmd'] }, 'unknown event type "order_confirmd"');
  });

  it('a rejected event comes again when the store\'s clock says so: retryAt = failedAt + delay * 2^(attempts - 1)', async () => {
    let now = Date.UTC(2027, 0, 1);
    const store = new InMemoryStore({ clock: () => new Date(now) });
    const repo = new InMemoryOrderRepository({ store });
    const tries: number[] = [];
    const consumer = new InMemoryEventConsumer(store, 'mailer', () => { tries.push(now); throw new Reject('smtp down'); },
                                               { ...quick, exitWhenIdleMs: 0, fromStart: true, maxAttempts: 3, retryDelayMs: 1000 });
    const order = await repo.add(randomUUID(), 'EUR', [TEA]);
    assert.equal(order.createdAt.getTime(), now, 'the store\'s clock writes the times');
    await consumer.run();
    let [h] = await consumer.holds();
    assert.deepEqual([h.attempts, h.failedAt?.getTime(), h.retryAt?.getTime()], [1, now, now + 1000]);
    now += 999;
    await consumer.run();
    assert.equal(tries.length, 1, 'not due yet');
    now += 1;
    await consumer.run();
    [h] = await consumer.holds();
    assert.deepEqual([tries.length, h.attempts, h.retryAt?.getTime()], [2, 2, now + 2000], 'doubled');
    now += 2000;
    await consumer.run();
    [h] = await consumer.holds();
    assert.deepEqual([tries.length, h.attempts, h.retryAt, h.parkedAt?.getTime()], [3, 3, null, now], 'parked');
  });

  it('an idle consumer exits when exitWhenIdleMs has passed, however often it woke in between', async () => {
    const store = new InMemoryStore();
    const repo = new InMemoryOrderRepository({ store });
    const consumer = new InMemoryEventConsumer(store, 'idle', () => undefined,
                                               { types: ['order_confirmed'], wakeEveryMs: 60000, exitWhenIdleMs: 1000,
                                                 handleSigterm: false });
    const started = Date.now();
    // a commit of another type wakes it 600 ms in: nothing to read, 400 ms left
    const woken = new Promise((r) => setTimeout(r, 600)).then(() => repo.add(randomUUID(), 'EUR', [TEA]));
    await consumer.run();
    await woken;
    const took = Date.now() - started;
    assert.ok(took >= 990 && took < 1400, `exited after ${took} ms, not 600 + 1000`);
  });

  it('two repositories on one store see one database; the no-argument form has a store of its own', async () => {
    const store = new InMemoryStore();
    const a = new InMemoryOrderRepository({ store });
    const b = new InMemoryOrderRepository({ store });
    const o = await a.add(randomUUID(), 'EUR', [TEA]);
    assert.deepEqual(await b.get(o.id), o);
    await assert.rejects(new InMemoryOrderRepository().get(o.id), OrderNotFound);
    // unitOfWork(store) and unitOfWork(repository) are the store's unit
    await assert.rejects(unitOfWork(store, async () => { await b.remove(o); throw new Error('no'); }), /no/);
    assert.deepEqual(await a.get(o.id), o);
  });

  it('an order another unit in progress wrote is a conflict at its lookup, before the version, no-change and in-flight checks', async () => {
    // as the real one, which locks the row before it looks at anything else (memory.py's _stored)
    const store = new InMemoryStore();
    const repo = new InMemoryOrderRepository({ store });
    const order = await repo.add(randomUUID(), 'EUR', [TEA], HOME);
    const confirmed = await repo.save({ ...order, status: 'confirmed' });
    const [hold, release] = gate();
    const [inside, entered] = gate();
    const first = repo.unitOfWork(async () => {
      await repo.save({ ...confirmed, shippingAddress: { ...HOME, city: 'Bonn' } });
      entered();
      await hold;
    });
    await inside;
    await assert.rejects(repo.save(confirmed), ConcurrencyConflict, 'a save that changes nothing');
    await assert.rejects(repo.remove(confirmed), ConcurrencyConflict, 'a remove of a confirmed order: not order_remove_in_flight');
    await assert.rejects(repo.save({ ...confirmed, version: 7 }), ConcurrencyConflict);
    release();
    await first;
    assert.equal((await repo.get(order.id)).shippingAddress?.city, 'Bonn');
  });

  it('a second unit that adds an id another unit in progress added: DuplicateOrder at once', async () => {
    const store = new InMemoryStore();
    const repo = new InMemoryOrderRepository({ store });
    const id = uuid7();
    const [hold, release] = gate();
    const [inside, entered] = gate();
    const first = repo.unitOfWork(async () => { await repo.add(randomUUID(), 'EUR', [], null, id); entered(); await hold; });
    await inside;
    await assert.rejects(repo.unitOfWork(() => repo.add(randomUUID(), 'EUR', [], null, id)),
                         (e: unknown) => e instanceof OrdersError && e.constraint === 'orders_pkey');
    release();
    await first;
  });
});
