// What only the real repository has: units of work, concurrent saves with
// retry(), the error mapping of every SQLSTATE the extension raises, and the
// consumer loop killed mid-batch.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { type Address, ConcurrencyConflict, customer, EventConsumer, ExtensionTooOld, HandlerFailed, IdempotencyKeyReused,
         InvariantViolation, type OrderLine, OrderNotFound, OrderRepository, Reject, OrdersError, orderEventPart,
         PermissionDenied, ReadOnly, REQUIRED_EXTENSION_VERSION, retry, translate, unitOfWork } from '../src/index.js';

const TEA: OrderLine = { productId: '0b1e4f5a-6c7d-4e8f-9a0b-1c2d3e4f5a6b', productName: 'Green tea', quantity: 2, unitPrice: 450n };
const HOME: Address = { street: 'Main St 1', city: 'Berlin', postalCode: '10115', country: 'DE' };
const CONSUMER = join(fileURLToPath(new URL('.', import.meta.url)), 'consume_until_killed.js');

let client: pg.Client;
let repo: OrderRepository;
before(async () => { client = new pg.Client(); await client.connect(); repo = await OrderRepository.create(client); });
after(() => client.end());

describe('units of work', () => {
  it('rolls back when the function throws', async () => {
    let id = '';
    await assert.rejects(unitOfWork(client, async () => {
      id = (await repo.add(randomUUID(), 'EUR', [TEA])).id;
      throw new Error('the domain changed its mind');
    }), /changed its mind/);
    await assert.rejects(repo.get(id), OrderNotFound);
  });

  it('outlives a refused call', async () => {
    const saved = await unitOfWork(client, async () => {
      const kept = await repo.add(randomUUID(), 'EUR', [TEA]);
      await assert.rejects(repo.add(randomUUID(), 'EURO', [TEA]), InvariantViolation);
      return repo.save({ ...kept, shippingAddress: HOME });
    });
    assert.deepEqual(await repo.get(saved.id), saved);
  });

  it('nests: an inner unit is a savepoint of the outer one', async () => {
    let inner = '';
    let outer = '';
    await assert.rejects(unitOfWork(client, async () => {
      outer = (await repo.add(randomUUID(), 'EUR', [TEA])).id;
      await assert.rejects(unitOfWork(client, async () => {
        inner = (await repo.add(randomUUID(), 'EUR', [TEA])).id;
        throw new Error('inner');
      }), /inner/);
      await assert.rejects(repo.get(inner), OrderNotFound);        // the inner unit undone
      await repo.get(outer);                                       // the outer one's work standing
      await unitOfWork(client, async () => repo.add(randomUUID(), 'EUR', [TEA]));
      throw new Error('outer');
    }), /outer/);
    await assert.rejects(repo.get(outer), OrderNotFound);          // all of it rolled back
  });

  it('a failed find inside a unit leaves the unit standing', async () => {
    const kept = await unitOfWork(client, async () => {
      const o = await repo.add(randomUUID(), 'EUR', [TEA]);
      await assert.rejects(async () => { for await (const _ of repo.find(customer('not a uuid'))) { /* none */ } });
      return o;
    });
    assert.deepEqual(await repo.get(kept.id), kept);
  });

  it('four clients save one order ten times each with retry: no save lost', async () => {
    const order = await repo.add(randomUUID(), 'EUR', [TEA], HOME);
    let conflicts = 0;
    await Promise.all([0, 1, 2, 3].map(async (n) => {
      const c = new pg.Client();
      await c.connect();
      const r = await OrderRepository.create(c);
      try {
        for (let i = 0; i < 10; i++)
          await retry(async () => {
            try {
              const current = await r.get(order.id);
              return await r.save({ ...current, shippingAddress: { ...HOME, street: `Street ${n}-${i}` } });
            } catch (e) {
              if (e instanceof ConcurrencyConflict) conflicts++;
              throw e;
            }
          }, 100);
      } finally {
        await c.end();
      }
    }));
    assert.equal((await repo.get(order.id)).version, 1 + 4 * 10);
    console.error(`# concurrent saves: ${conflicts} conflicts retried`);
  });
});

describe('error mapping', () => {
  async function raised(text: string) {
    try {
      await client.query(text);
    } catch (e) {
      await client.query('ROLLBACK').catch(() => undefined);
      return translate(e) as OrdersError;
    }
    assert.fail(`${text} did not fail`);
  }
  // the last: the path, from the detail's first sentence; none for an error about the call
  const cases: [string, Function, string, string | undefined, string | undefined][] = [
    ["SELECT orders_add(NULL, 'EUR')", InvariantViolation, '23502', 'not_null', 'customer_id'],
    ["SELECT orders_add(gen_random_uuid(), 'EUR', '[0:0]={\"(0b1e4f5a-6c7d-4e8f-9a0b-1c2d3e4f5a6b,Tea,1,1)\"}')",
     InvariantViolation, '2202E', 'array_shape', 'lines'],
    ["SELECT orders_add(gen_random_uuid(), 'EUR', ARRAY(SELECT ROW(gen_random_uuid(), 'Tea', 1000000, 100000000000)::order_line FROM generate_series(1, 100)))",
     InvariantViolation, '22003', 'out_of_range', 'total'],
    ['SELECT orders_remove(NULL)', InvariantViolation, '22004', 'not_null', undefined],
    ['SELECT orders_remove(gen_random_uuid())', OrderNotFound, 'P0002', undefined, undefined],
    ["BEGIN READ ONLY; SELECT orders_add(gen_random_uuid(), 'EUR')", ReadOnly, '25006', undefined, undefined],
  ];
  for (const [text, cls, sqlstate, rule, path] of cases)
    it(`${sqlstate}: ${cls.name}`, async () => {
      const e = await raised(text);
      assert.ok(e instanceof cls, String(e));
      assert.equal(e.sqlstate, sqlstate);
      if (rule !== undefined) assert.equal((e as InvariantViolation).rule, rule);
      assert.equal(e.path, path);
    });

  it('22023: InvariantViolation unknown_status', async () => {
    await client.query("ALTER TYPE order_status ADD VALUE IF NOT EXISTS 'lost'");
    const e = await raised(`SELECT orders_save(jsonb_populate_record(o, '{"status": "lost"}'))
                            FROM orders_add(gen_random_uuid(), 'EUR') o`);
    assert.ok(e instanceof InvariantViolation, String(e));
    assert.deepEqual([e.sqlstate, e.rule, e.path], ['22023', 'unknown_status', 'status']);
  });

  it('42501: PermissionDenied', async () => {
    await client.query('DROP ROLE IF EXISTS orders_node_nobody; CREATE ROLE orders_node_nobody');
    try {
      const e = await raised("BEGIN; SET LOCAL ROLE orders_node_nobody; SELECT orders_add(gen_random_uuid(), 'EUR')");
      assert.ok(e instanceof PermissionDenied, String(e));
    } finally {
      await client.query('DROP ROLE orders_node_nobody');
    }
  });

  it('an error not of ours: OrdersError with its SQLSTATE', async () => {
    const e = await raised('SELECT 1/0');
    assert.equal(e.constructor, OrdersError);
    assert.equal(e.sqlstate, '22012');
  });
});

describe('the consumer', () => {
  it('killed mid-batch and restarted: every event at least once, each order\'s in version order', async () => {
    const name = `node-${randomUUID()}`;
    const log = join(process.env.TMPDIR ?? tmpdir(), `${name}.log`);
    const run = (...extra: string[]) => spawnSync(process.execPath, [CONSUMER, name, log, ...extra], { stdio: 'inherit' });
    assert.equal(run().status, 0); // registers: from now
    const orders: Awaited<ReturnType<typeof repo.add>>[] = [];
    for (let i = 0; i < 30; i++) orders.push(await repo.add(randomUUID(), 'EUR', [TEA], HOME));
    for (const o of orders.filter((_, i) => i % 2 === 0)) await repo.save({ ...o, status: 'confirmed' });
    const expected = (await client.query('SELECT order_id, version FROM order_events WHERE order_id = ANY($1)',
                                         [orders.map((o) => o.id)])).rows.map((r) => `${r.order_id} ${r.version}`);
    let kills = 0;
    while (run('--die-after', '7').status === 3) assert.ok(++kills < 100);
    assert.ok(kills > 2, `killed ${kills} times`);
    const handled = new Set<string>();
    let lastInRun = new Map<string, number>();
    for (const line of readFileSync(log, 'utf8').split('\n').filter(Boolean)) {
      if (line === 'run') { lastInRun = new Map(); continue; }
      const [orderId, version] = line.split(' ');
      assert.ok(Number(version) >= (lastInRun.get(orderId) ?? 0), 'an order\'s events in version order');
      lastInRun.set(orderId, Number(version));
      handled.add(line);
    }
    for (const e of expected) assert.ok(handled.has(e), `handled ${e}`);
  });

  it('stops on SIGTERM', async () => {
    const name = `node-${randomUUID()}`;
    const child = spawn(process.execPath, [CONSUMER, name, '/dev/null', '--forever'], { stdio: 'inherit' });
    const exited = new Promise((r) => child.on('exit', r));
    try {
      for (let waited = 0; ; waited += 100) {
        const r = await client.query('SELECT count(*)::int AS n FROM order_event_consumers WHERE name = $1', [name]);
        if (r.rows[0].n > 0) break;
        assert.ok(child.exitCode === null && waited < 30000, 'the consumer runs and registers');
        await new Promise((r) => setTimeout(r, 100));
      }
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('a failing handler ends the loop, and its event comes again', async () => {
    const name = `node-${randomUUID()}`;
    await new EventConsumer({}, name, () => undefined, { exitWhenIdleMs: 0, handleSigterm: false }).run();
    await repo.add(randomUUID(), 'EUR', [TEA]);
    await assert.rejects(new EventConsumer({}, name, () => { throw Object.assign(new Error('ECONNRESET of its own'), { code: 'ECONNRESET' }); },
                                           { exitWhenIdleMs: 5000, handleSigterm: false }).run(), HandlerFailed);
    const seen: unknown[] = [];
    await new EventConsumer({}, name, (e) => { seen.push(e); }, { exitWhenIdleMs: 200, handleSigterm: false }).run();
    assert.equal(seen.length, 1);
  });

  it('a notification that comes during an empty read is not lost: the next event comes without waiting wakeEveryMs', async () => {
    const name = `node-${randomUUID()}`;
    await new EventConsumer({}, name, () => undefined, { exitWhenIdleMs: 0, handleSigterm: false }).run();
    // the consumer's first read (empty): a write commits while it is under
    // way, and its NOTIFY reaches the consumer's connection before the read returns
    const query = pg.Client.prototype.query;
    let written = 0;
    let order = '';
    (pg.Client.prototype as any).query = function (this: pg.Client, ...args: any[]) {
      const result = (query as any).apply(this, args);
      if (order !== '' || typeof args[0] !== 'string' || !args[0].includes('.orders_events_read(') || args[1]?.[0] !== name)
        return result;
      order = 'pending';
      return (async () => {
        const r = await result;
        assert.equal(r.rows.length, 0);
        order = (await repo.add(randomUUID(), 'EUR', [TEA])).id;
        written = Date.now();
        await new Promise((resolve) => setTimeout(resolve, 300));
        return r;
      })();
    };
    const seen: [string, number][] = [];
    const consumer = new EventConsumer({}, name, (e) => { seen.push([e.orderId, Date.now()]); consumer.stop(); },
                                       { wakeEveryMs: 60000, exitWhenIdleMs: 5000, handleSigterm: false });
    try {
      await consumer.run();
    } finally {
      pg.Client.prototype.query = query;
    }
    assert.equal(seen.length, 1);
    assert.equal(seen[0][0], order);
    assert.ok(seen[0][1] - written < 1500, `delivered ${seen[0][1] - written} ms after its commit, not after a sleep`);
  });

  it('carries the payload\'s money whole', async () => {
    const name = `node-${randomUUID()}`;
    await new EventConsumer({}, name, () => undefined, { exitWhenIdleMs: 0, handleSigterm: false }).run();
    const big: OrderLine = { ...TEA, quantity: 1_000_000, unitPrice: 99_999_999_999n };
    await repo.add(randomUUID(), 'EUR', [big]);
    const payloads: any[] = [];
    await new EventConsumer({}, name, (e) => { payloads.push(e.payload); }, { exitWhenIdleMs: 200, handleSigterm: false }).run();
    assert.equal(BigInt(payloads[0].total), 99_999_999_999_000_000n);
    assert.equal(BigInt(payloads[0].lines[0].unit_price), 99_999_999_999n);
  });
});

describe('events (extension 1.8)', () => {
  it('metadata from the repository and the unit of work; one order\'s history', async () => {
    const tagged = await OrderRepository.create(client, { metadata: { correlation_id: 'node-corr', actor: 'bob' } });
    const order = await tagged.add(randomUUID(), 'EUR', [TEA], HOME);
    await tagged.save({ ...order, status: 'confirmed' });
    const history = await repo.eventsOf(order.id);
    assert.deepEqual(history.map((e) => [e.type, e.version]), [['order_added', 1], ['order_confirmed', 2]]);
    assert.deepEqual(history.map((e) => e.metadata?.correlation_id), ['node-corr', 'node-corr']);
    assert.ok(history.every((e) => typeof e.id === 'string' && e.id.length === 36), 'each event has an id');
    assert.equal(typeof (history[0].payload as any).total, 'string', 'money as strings');
    assert.deepEqual((await repo.eventsOf(order.id, 1)).map((e) => e.version), [2]);
    const [a, b] = await unitOfWork(client, async () => [await repo.add(randomUUID(), 'EUR', [TEA]),
                                                          await repo.add(randomUUID(), 'EUR', [TEA])],
                                    { metadata: { causation_id: 'cmd-9' } });
    assert.deepEqual([...await repo.eventsOf(a.id), ...await repo.eventsOf(b.id)].map((e) => e.metadata),
                     [{ causation_id: 'cmd-9' }, { causation_id: 'cmd-9' }]);
    const c = await repo.add(randomUUID(), 'EUR', [TEA]);
    assert.equal((await repo.eventsOf(c.id))[0].metadata, null, 'none outside the unit of work');
    await assert.rejects(unitOfWork(client, () => repo.add(randomUUID(), 'EUR', [TEA]), { metadata: { x: 'y'.repeat(9000) } }),
                         (e: unknown) => e instanceof OrdersError && e.sqlstate === '54000');
  });

  it('a consumer reads by type; the skipped events count as acknowledged', async () => {
    const name = `node-types-${randomUUID()}`;
    await new EventConsumer({}, name, () => undefined, { exitWhenIdleMs: 0, handleSigterm: false }).run();
    const orders: Awaited<ReturnType<typeof repo.add>>[] = [];
    for (let i = 0; i < 5; i++) orders.push(await repo.add(randomUUID(), 'EUR', [TEA], HOME));
    for (const o of orders.slice(0, 3)) await repo.save({ ...o, status: 'confirmed' });
    const seen: [string, string][] = [];
    await new EventConsumer({}, name, (e) => { seen.push([e.type, e.orderId]); },
                            { batch: 2, types: ['order_confirmed'], exitWhenIdleMs: 200, handleSigterm: false }).run();
    assert.deepEqual(seen, orders.slice(0, 3).map((o) => ['order_confirmed', o.id]));
    const { rows } = await client.query('SELECT pending FROM orders_events_consumers() WHERE name = $1', [name]);
    assert.equal(Number(rows[0].pending), 0);
    await assert.rejects(new EventConsumer({}, name, () => undefined,
                                           { types: ['order_confirmd'], exitWhenIdleMs: 200, handleSigterm: false }).run(),
                         (e: unknown) => e instanceof OrdersError && e.sqlstate === '22023');
  });
});

describe('idempotent retries', () => {
  it('a retry after a commit whose answer was lost replays, writing nothing', async () => {
    const key = `checkout-${randomUUID()}`;
    const customerId = randomUUID();
    const checkout = (c: pg.Client, r: OrderRepository) => unitOfWork(c, async () => {
      const order = await r.add(customerId, 'EUR', [TEA], HOME);   // its id generated
      return r.save({ ...order, status: 'confirmed' });
    }, { idempotencyKey: key });
    // the first attempt committed; its client, told nothing, retries on a new connection
    const first = new pg.Client();
    await first.connect();
    const done = await checkout(first, await OrderRepository.create(first));
    await first.end();
    const count = async () => Number((await client.query('SELECT count(*) AS n FROM order_events')).rows[0].n);
    const before = await count();
    const again = await checkout(client, repo);
    assert.deepEqual(again, done);
    assert.equal(await count(), before, 'nothing written');
    await assert.rejects(unitOfWork(client, () => repo.add(customerId, 'USD'), { idempotencyKey: key }),
                         IdempotencyKeyReused);
  });
});

describe('consumer groups', () => {
  it('two consumers of one group share its events, each order\'s with one of them, in order', async () => {
    const name = `node-group-${randomUUID()}`;
    const orders: Awaited<ReturnType<typeof repo.add>>[] = [];
    for (let i = 0; i < 12; i++) orders.push(await repo.add(randomUUID(), 'EUR', [TEA], HOME));
    for (const o of orders) await repo.save({ ...o, status: 'confirmed' });
    const seen = new Map<string, [string, number][]>();
    const consumer = (tag: string) => new EventConsumer({}, name, (e) => {
      if (!orders.some((o) => o.id === e.orderId)) return;
      const list = seen.get(e.orderId) ?? [];
      list.push([tag, e.version]);
      seen.set(e.orderId, list);
    }, { group: true, fromStart: true, batch: 3, exitWhenIdleMs: 500, wakeEveryMs: 50, handleSigterm: false });
    await Promise.all([consumer('a').run(), consumer('b').run()]);
    assert.equal(seen.size, orders.length, 'every order\'s events');
    for (const [, list] of seen) {
      assert.deepEqual(list.map(([, v]) => v), [1, 2], 'in version order, once each');
    }
  });
});

describe('poison events', () => {
  for (const group of [false, true]) {
    it(`a rejected event is retried, parked while its order waits, then replayed or discarded${group ? ' (in a group)' : ''}`, async () => {
      const name = `node-poison-${randomUUID()}`;
      const options = { group, exitWhenIdleMs: 300, wakeEveryMs: 50, handleSigterm: false, maxAttempts: 3, retryDelayMs: 0 };
      await new EventConsumer({}, name, () => undefined, { ...options, exitWhenIdleMs: 0 }).run();
      const bad = await repo.add(randomUUID(), 'EUR', [TEA], HOME);
      const good = await repo.add(randomUUID(), 'EUR', [TEA], HOME);
      await repo.save({ ...bad, status: 'confirmed' });
      await repo.save({ ...good, status: 'confirmed' });
      const seen: [string, string][] = [];
      const tries: string[] = [];
      const consumer = new EventConsumer({}, name, (e) => {
        if (e.orderId === bad.id) {
          tries.push(e.type);
          throw new Reject(`no template for ${e.type}`);
        }
        seen.push([e.orderId, e.type]);
      }, options);
      await consumer.run();
      assert.deepEqual(seen, [[good.id, 'order_added'], [good.id, 'order_confirmed']], 'the other order flows');
      assert.deepEqual(tries, ['order_added', 'order_added', 'order_added'], 'max attempts, nothing after it');
      const [parked, ...none] = await consumer.parked();
      assert.equal(none.length, 0);
      assert.deepEqual([parked.orderId, parked.type, parked.attempts, parked.reason],
                       [bad.id, 'order_added', 3, 'no template for order_added']);
      assert.equal(parked.heldBack.length, 1, 'its confirmation waits behind it');
      await assert.rejects(consumer.replay(parked.position + 1000000n),
                           (e: unknown) => e instanceof OrdersError && e.sqlstate === '22023');

      // mended and replayed: the order's events come, in order
      await consumer.replay(parked.position);
      await new EventConsumer({}, name, (e) => { seen.push([e.orderId, e.type]); }, options).run();
      assert.deepEqual(seen.slice(2), [[bad.id, 'order_added'], [bad.id, 'order_confirmed']]);
      assert.deepEqual(await consumer.holds(), []);

      // parked at once, then discarded: the order's next event follows
      const other = await repo.add(randomUUID(), 'EUR', [TEA], HOME);
      await repo.save({ ...other, status: 'confirmed' });
      await new EventConsumer({}, name, (e) => {
        if (e.type === 'order_added') throw new Reject('refused');
        seen.push([e.orderId, e.type]);
      }, { ...options, maxAttempts: 1 }).run();
      const [again] = await consumer.parked();
      assert.equal(again.orderId, other.id);
      await consumer.discard(again.position);
      await new EventConsumer({}, name, (e) => { seen.push([e.orderId, e.type]); }, options).run();
      assert.deepEqual(seen[seen.length - 1], [other.id, 'order_confirmed']);
      assert.deepEqual(await consumer.holds(), []);
    });
  }
});

describe('pools, versions, reconnecting (0.2.0)', () => {
  it('the twin\'s orderEventPart is the extension\'s orders_event_part', async () => {
    const { rows } = await client.query(
      'SELECT id::text, orders_event_part(id) AS part FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, 500)) x');
    assert.deepEqual(rows.map((r) => orderEventPart(r.id)), rows.map((r) => r.part));
  });

  it('a unit on a pool returns its client, and destroys it when its connection broke', async () => {
    const pool = new pg.Pool({ max: 2, application_name: 'orders-node-broken' });
    try {
      const r = await OrderRepository.create(pool);
      await r.unitOfWork(() => r.add(randomUUID(), 'EUR', [TEA]));
      assert.deepEqual([pool.totalCount, pool.idleCount], [1, 1], 'back in the pool');
      let id = '';
      await assert.rejects(r.unitOfWork(async () => {
        id = (await r.add(randomUUID(), 'EUR', [TEA])).id;
        await client.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                            WHERE application_name = 'orders-node-broken' AND state = 'idle in transaction'`);
        await r.get(id);
      }));
      assert.equal(pool.totalCount, 0, 'the broken client was destroyed, not returned');
      await assert.rejects(r.get(id), OrderNotFound, 'a new connection; the unit was not committed');
    } finally {
      await pool.end();
    }
  });

  it('a consumer on a pool LISTENs on a connection of its own, and says so', async () => {
    const pool = new pg.Pool({ max: 1, connectionTimeoutMillis: 5000 });
    try {
      const r = await OrderRepository.create(pool);
      const name = `node-pool-${randomUUID()}`;
      const log: string[] = [];
      await new EventConsumer(pool, name, () => undefined, { exitWhenIdleMs: 0, handleSigterm: false }).run();
      const order = await r.add(randomUUID(), 'EUR', [TEA]);
      const read: string[] = [];
      // the handler uses the pool's one connection: were the LISTEN on it, this would time out
      await new EventConsumer(pool, name, async (e) => { read.push((await r.get(e.orderId)).id); },
                              { exitWhenIdleMs: 200, wakeEveryMs: 50, handleSigterm: false, log: (m) => log.push(m) }).run();
      assert.deepEqual(read, [order.id]);
      assert.ok(log.some((m) => /dedicated connection/.test(m)), log.join('\n'));
      const { rows } = await pool.query('SELECT pg_catalog.pg_listening_channels() AS c');
      assert.deepEqual(rows, [], 'no LISTEN left on the pool\'s connection');
    } finally {
      await pool.end();
    }
  });

  it('an extension older than the client needs: ExtensionTooOld', async () => {
    const db = 'orders_node_old';
    await client.query(`DROP DATABASE IF EXISTS ${db}`);
    await client.query(`CREATE DATABASE ${db}`);
    const old = new pg.Client({ database: db });
    try {
      await old.connect();
      await old.query("CREATE EXTENSION orders VERSION '1.11'");
      for (const attempt of [() => OrderRepository.create(old),
                             () => new EventConsumer({ database: db }, 'old', () => undefined,
                                                     { exitWhenIdleMs: 0, handleSigterm: false }).run()])
        await assert.rejects(attempt, (e: unknown) => {
          assert.ok(e instanceof ExtensionTooOld && e instanceof OrdersError, String(e));
          assert.equal(e.message, `extension "orders" 1.11 is older than ${REQUIRED_EXTENSION_VERSION}, which orders-repository 0.2.0 needs`);
          assert.deepEqual([e.sqlstate, e.hint, e.installed], [undefined, 'ALTER EXTENSION orders UPDATE', '1.11']);
          return true;
        });
      await old.query('ALTER EXTENSION orders UPDATE');
      await OrderRepository.create(old);
    } finally {
      await old.end();
      await client.query(`DROP DATABASE ${db}`);
    }
  });

  it('a read that fails right after each connect: the pause doubles (reset only by a read that worked)', async () => {
    // an extension stand-in whose read ends its own connection, as a
    // server that drops it at once would
    await client.query(`CREATE SCHEMA orders_node_flaky;
      CREATE FUNCTION orders_node_flaky.orders_events_register(text, boolean) RETURNS void LANGUAGE sql AS 'SELECT';
      CREATE FUNCTION orders_node_flaky.orders_events_read(text, integer) RETURNS SETOF order_events LANGUAGE plpgsql
        AS 'BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN; END'`);
    try {
      const pauses: number[] = [];
      const consumer = new EventConsumer({}, 'flaky', () => undefined, {
        schema: 'orders_node_flaky', handleSigterm: false,
        log: (m) => {
          const at = /connecting again in (\d+) ms/.exec(m);
          if (at !== null && pauses.push(Number(at[1])) >= 5) consumer.stop();
        },
      });
      await consumer.run();
      assert.deepEqual(pauses, [100, 200, 400, 800, 1600]);
    } finally {
      await client.query('DROP SCHEMA orders_node_flaky CASCADE');
    }
  });
});
