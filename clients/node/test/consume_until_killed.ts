// A consumer process for real.test.ts: logs each event it handles; with
// --die-after N it exits (code 3) inside the handler of its Nth event,
// before the batch is acknowledged, as a crash would.
import { appendFileSync } from 'node:fs';
import { EventConsumer } from '../src/index.js';

const [name, log, ...options] = process.argv.slice(2);
appendFileSync(log, 'run\n');
const dieAt = options.includes('--die-after') ? Number(options[options.indexOf('--die-after') + 1]) : 0;
let count = 0;
const consumer = new EventConsumer({}, name, (e) => {
  if (++count === dieAt) process.exit(3);
  appendFileSync(log, `${e.orderId} ${e.version}\n`);
}, { batch: 5, wakeEveryMs: 200, exitWhenIdleMs: options.includes('--forever') ? undefined : 500 });
await consumer.run();
