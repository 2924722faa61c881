// EventConsumer: a named, gap-free reader of the outbox.  It registers its
// name (the checkpoint is a row in the database), LISTENs for wake-ups, and
// loops: read the next events after the checkpoint, await the handler for
// each, acknowledge them once it resolved.  A handler that throws ends the
// loop before the acknowledgement, so those events come again on the next
// run: at least once, in position order (each order's events in version
// order); make the handler idempotent ((orderId, version) identifies an
// event).  A handler that throws Reject rejects that one event instead
// (orders_events_nack): it comes again after retryDelayMs, doubling, and is
// parked after maxAttempts failures, while that order's later events wait
// behind it and the others flow on; holds(), parked(), replay() and
// discard() manage them.  A lost connection is opened again; SIGTERM or
// stop() ends the loop after the batch in hand.  Given a pg.Pool, the
// consumer LISTENs on a connection of its own, opened with the pool's
// settings and never taken from the pool: a LISTEN would hold a pool slot
// for the consumer's whole life and stay on the connection for whoever the
// pool hands it to next.  holds(), replay() and discard() use the pool.
import pg from 'pg';
import { isConnectionError, isPool } from './connections.js';
import { OrdersError, translate } from './errors.js';
import { FIRST_PAUSE_MS, type ConsumerOptions, type Handler, HandlerFailed, type Hold, handleBatch, nextPause } from './handling.js';
import { eventFromRow, EVENT_COLUMNS } from './model.js';
import { extensionSchema, onClient } from './repository.js';

export { HandlerFailed, Reject, type ConsumerOptions, type Hold } from './handling.js';

const ident = (name: string) => '"' + name.replace(/"/g, '""') + '"';

export class EventConsumer {
  private stopped = false;
  private wake: (() => void) | null = null;
  // a notification came since the last read began: read again, not sleep
  // (one that comes during a read or its acknowledgement finds no sleep to end)
  private pending = false;

  /**
   * config: node-postgres connection settings (an object, or a connection
   * string), or a pg.Pool. With a pool, run() opens one dedicated
   * connection with the pool's settings for its LISTEN (and says so to
   * options.log); the administrative calls take pool connections.
   */
  constructor(private readonly config: pg.ClientConfig | string | pg.Pool, readonly name: string,
              private readonly handler: Handler, private readonly options: ConsumerOptions = {}) {}

  stop(): void {
    this.stopped = true;
    this.wake?.();
  }

  // A connection of the consumer's own: from the pool's settings, as the
  // pool would open one, but never the pool's.
  private newClient(): pg.Client {
    const config = this.config;
    return new pg.Client(typeof config === 'object' && isPool(config) ? config.options : config);
  }

  // Errors are left raw here: run() tells a lost connection by its code.
  private async connect(): Promise<[pg.Client, string]> {
    const client = this.newClient();
    client.on('error', () => undefined); // a dropped connection shows in the next query
    try {
      await client.connect();
      if (typeof this.config === 'object' && isPool(this.config))
        this.options.log?.(`consumer ${this.name}: LISTEN on a dedicated connection, not one of the pool's`);
      const schema = this.options.schema ?? await extensionSchema(client);
      const register = this.options.group ? 'orders_events_register_group' : 'orders_events_register';
      await client.query(`SELECT ${ident(schema)}.${register}($1, $2)`, [this.name, this.options.fromStart ?? false]);
      client.on('notification', () => {
        this.pending = true;
        this.wake?.();
      });
      await client.query('LISTEN orders_events'); // before the first read: no wake-up missed
      return [client, schema];
    } catch (e) {
      await client.end().catch(() => undefined);
      throw e;
    }
  }

  async run(): Promise<void> {
    const onTerm = () => this.stop();
    if (this.options.handleSigterm ?? true) process.once('SIGTERM', onTerm);
    let client: pg.Client | null = null;
    let schema = '';
    let idleSince = Date.now();
    let pause = FIRST_PAUSE_MS;
    try {
      while (!this.stopped) {
        try {
          if (client === null) [client, schema] = await this.connect();
          this.pending = false;
          const read = await this.once(client, schema);
          // only a read proves the connection works: an error that recurs
          // right after each connect keeps doubling the pause
          pause = FIRST_PAUSE_MS;
          if (read > 0) {
            idleSince = Date.now();
            continue; // there may be more
          }
          let wait = this.options.wakeEveryMs ?? 5000;
          if (this.options.exitWhenIdleMs !== undefined) {
            const left = this.options.exitWhenIdleMs - (Date.now() - idleSince);
            if (left < 0) break;
            wait = Math.min(wait, left); // not a whole wakeEveryMs past the idle time
          }
          if (this.pending) continue; // a commit since the read began: no sleep for it to end
          await this.sleep(wait);
        } catch (e) {
          if (e instanceof HandlerFailed || !isConnectionError(e)) throw translate(e);
          this.options.log?.(`consumer ${this.name}: connection lost (${e instanceof Error ? e.message : String(e)}); ` +
                             `connecting again in ${pause} ms`);
          await client?.end().catch(() => undefined);
          client = null;
          await this.sleep(pause);
          pause = nextPause(pause);
        }
      }
    } finally {
      process.removeListener('SIGTERM', onTerm);
      await client?.end().catch(() => undefined);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() { clearTimeout(timer); resolve(); }
      this.wake = () => { this.wake = null; done(); };
    });
  }

  private async once(client: pg.Client, schema: string): Promise<number> {
    const s = ident(schema);
    const types = this.options.types;
    const { rows } = this.options.group
      ? await client.query(`SELECT ${EVENT_COLUMNS} FROM ${s}.orders_events_read_group($1, $2, $3::text[]) e`,
                           [this.name, this.options.batch ?? 100, types ?? null])
      : types === undefined
      ? await client.query(`SELECT ${EVENT_COLUMNS} FROM ${s}.orders_events_read($1, $2) e`,
                           [this.name, this.options.batch ?? 100])
      : await client.query(`SELECT ${EVENT_COLUMNS} FROM ${s}.orders_events_read($1, $2, $3::text[]) e`,
                           [this.name, this.options.batch ?? 100, types]);
    const group = this.options.group ? '_group' : '';
    await handleBatch(this.name, rows.map(eventFromRow), this.handler, async (event, reason) => {
      await client.query(`SELECT ${s}.orders_events_nack${group}` +
                         `($1, $2::bigint, $3, $4::integer, $5::double precision * interval '1 millisecond')`,
                         [this.name, event.position.toString(), reason, this.options.maxAttempts ?? 5,
                          this.options.retryDelayMs ?? 10000]);
    });
    if (rows.length > 0)
      await client.query(`SELECT ${s}.${this.options.group ? 'orders_events_ack_group' : 'orders_events_ack'}($1, $2::bigint)`,
                         [this.name, rows[rows.length - 1].position]);
    return rows.length;
  }

  /** One statement on a pool connection, or on a connection of its own; s is the extension's schema, quoted. */
  private async callOnce(sqlText: (s: string) => string, params: unknown[]): Promise<any[]> {
    const config = this.config;
    const call = async (client: pg.Client | pg.PoolClient) => {
      const s = ident(this.options.schema ?? await extensionSchema(client));
      return (await client.query(sqlText(s), params)).rows;
    };
    try {
      if (typeof config === 'object' && isPool(config)) return await onClient(config, call);
      const client = this.newClient();
      client.on('error', () => undefined);
      try {
        await client.connect();
        return await call(client);
      } finally {
        await client.end().catch(() => undefined);
      }
    } catch (e) {
      throw translate(e);
    }
  }

  /** The held orders: each one's rejected event, retried or parked, in position order. */
  async holds(): Promise<Hold[]> {
    const held: Hold[] = [];
    // a group's holds are its 16 parts'
    const consumers = this.options.group ? Array.from({ length: 16 }, (_, p) => `${this.name}/${p}`) : [this.name];
    for (const consumer of consumers) {
      const rows = await this.callOnce(
        (s) => `SELECT order_id, event_position::text AS position, type, version, attempts, reason, failed_at,
                       retry_at, parked_at, held_back::text[] AS held_back FROM ${s}.orders_events_holds($1)`,
        [consumer]);
      for (const r of rows)
        held.push({ consumer, orderId: r.order_id, position: BigInt(r.position), type: r.type, version: r.version,
                    attempts: r.attempts, reason: r.reason, failedAt: r.failed_at, retryAt: r.retry_at,
                    parkedAt: r.parked_at, heldBack: (r.held_back as string[]).map((p) => BigInt(p)) });
    }
    return held.sort((a, b) => (a.position < b.position ? -1 : a.position > b.position ? 1 : 0));
  }

  /** The dead-letter list: the events rejected maxAttempts times. */
  async parked(): Promise<Hold[]> {
    return (await this.holds()).filter((h) => h.parkedAt !== null);
  }

  private async holdAt(position: bigint): Promise<Hold> {
    const hold = (await this.holds()).find((h) => h.position === position);
    if (hold === undefined) throw new OrdersError(`consumer "${this.name}" holds no event at position ${position}`, '22023');
    return hold;
  }

  /** The held event at position comes again at the next read, its failures counted from zero. */
  async replay(position: bigint): Promise<void> {
    const hold = await this.holdAt(position);
    await this.callOnce((s) => `SELECT ${s}.orders_events_replay($1, $2::bigint)`, [hold.consumer, position.toString()]);
  }

  /** Gives up on the held event at position, as if handled: its order's waiting events follow. */
  async discard(position: bigint): Promise<void> {
    const hold = await this.holdAt(position);
    await this.callOnce((s) => `SELECT ${s}.orders_events_discard($1, $2::bigint)`, [hold.consumer, position.toString()]);
  }
}

