// For test/t/027_node_package.pl: the installed package, used as an
// application would, type-checked with tsc --strict, then run against the
// test's cluster (node-postgres reads it from PG* variables): add an order
// built by Order.new, confirm it in a unit of work on a pool, read its
// history, and handle its events with a consumer on the same pool.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { type Event, EventConsumer, InvariantViolation, Order, OrderRepository, REQUIRED_EXTENSION_VERSION,
         InMemoryOrderRepository } from 'orders-repository';

const pool = new pg.Pool();
const repo = await OrderRepository.create(pool);
const name = `package-${randomUUID()}`;
await new EventConsumer(pool, name, () => undefined, { exitWhenIdleMs: 0, handleSigterm: false }).run();

const draft = Order.new({
  customerId: randomUUID(), currency: 'EUR',
  lines: [{ productId: randomUUID(), productName: 'Green tea', quantity: 2, unitPrice: 450n }],
  shippingAddress: { street: 'Main St 1', city: 'Berlin', postalCode: '10115', country: 'DE' },
});
const order = await repo.add(draft);
const confirmed = await repo.unitOfWork(() => repo.save({ ...order, status: 'confirmed' }),
                                        { metadata: { actor: 'package' } });
const history: Event[] = await repo.eventsOf(order.id);
const consumed: string[] = [];
await new EventConsumer(pool, name, (e) => { if (e.orderId === order.id) consumed.push(e.type); },
                        { exitWhenIdleMs: 200, wakeEveryMs: 50, handleSigterm: false }).run();
let refused = '';
try {
  await new InMemoryOrderRepository().add(randomUUID(), 'EUR',
    [{ productId: randomUUID(), productName: 'Tea', quantity: 1, unitPrice: 12.99 as unknown as bigint }]);
} catch (e) {
  if (e instanceof InvariantViolation) refused = e.rule;
}
const total: bigint = confirmed.total;
console.log(JSON.stringify({ total: total.toString(), version: confirmed.version, history: history.map((e) => e.type),
                             consumed, refused, required: REQUIRED_EXTENSION_VERSION }));
await pool.end();
