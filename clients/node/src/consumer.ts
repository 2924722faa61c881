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
// stop() ends the loop after the batch in hand.
import pg from 'pg';
import { OrdersError, translate } from './errors.js';
import { type Event, EVENT_COLUMNS, eventFromRow } from './model.js';
import { extensionSchema } from './repository.js';

export interface ConsumerOptions {
  batch?: number;
  wakeEveryMs?: number;
  fromStart?: boolean;
  schema?: string;
  /** Stop after this long with nothing to read; undefined: never. */
  exitWhenIdleMs?: number;
  handleSigterm?: boolean;
  /** Only events of these types reach the handler; the others are skipped, and acknowledged with the ones after them. */
  types?: readonly string[];
  /** name is a consumer group: run as many consumers as you like, each is handed its share of the orders. */
  group?: boolean;
  /** An event the handler rejects (Reject) is tried this often in all, then parked (default 5). */
  maxAttempts?: number;
  /** The first wait before a rejected event comes again, doubled after each failure (default 10000). */
  retryDelayMs?: number;
}

/**
 * Thrown by a handler that cannot handle this event: it is rejected, with
 * the message as its reason.  The consumer goes on with the other orders'
 * events; this order's later events wait behind it until it is handled,
 * discarded or replayed.
 */
export class Reject extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'Reject';
  }
}

/** A held order: its rejected event, retried or parked, and the positions waiting behind it. */
export interface Hold {
  consumer: string;
  orderId: string;
  position: bigint;
  type: string | null;
  version: number | null;
  attempts: number;
  reason: string | null;
  failedAt: Date | null;
  retryAt: Date | null;
  parkedAt: Date | null;
  heldBack: bigint[];
}

const ident = (name: string) => '"' + name.replace(/"/g, '""') + '"';

export class EventConsumer {
  private stopped = false;
  private wake: (() => void) | null = null;

  constructor(private readonly config: pg.ClientConfig | string, readonly name: string,
              private readonly handler: (event: Event) => unknown | Promise<unknown>,
              private readonly options: ConsumerOptions = {}) {}

  stop(): void {
    this.stopped = true;
    this.wake?.();
  }

  // Errors are left raw here: run() tells a lost connection by its code.
  private async connect(): Promise<[pg.Client, string]> {
    const client = new pg.Client(this.config as pg.ClientConfig);
    client.on('error', () => undefined); // a dropped connection shows in the next query
    try {
      await client.connect();
      const schema = this.options.schema ?? await extensionSchema(client);
      const register = this.options.group ? 'orders_events_register_group' : 'orders_events_register';
      await client.query(`SELECT ${ident(schema)}.${register}($1, $2)`, [this.name, this.options.fromStart ?? false]);
      client.on('notification', () => this.wake?.());
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
    let pause = 100;
    try {
      while (!this.stopped) {
        try {
          if (client === null) {
            [client, schema] = await this.connect();
            pause = 100;
          }
          if (await this.once(client, schema) > 0) {
            idleSince = Date.now();
            continue; // there may be more
          }
          if (this.options.exitWhenIdleMs !== undefined && Date.now() - idleSince > this.options.exitWhenIdleMs) break;
          await this.sleep(this.options.wakeEveryMs ?? 5000);
        } catch (e) {
          if (e instanceof HandlerFailed || !isConnectionError(e)) throw translate(e);
          await client?.end().catch(() => undefined);
          client = null;
          await this.sleep(pause);
          pause = Math.min(pause * 2, 5000);
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
    const rejected = new Set<string>();
    for (const r of rows) {
      if (rejected.has(r.order_id)) continue; // waits behind its order's rejected event, in the hold
      try {
        await this.handler(eventFromRow(r));
      } catch (e) {
        if (e instanceof Reject) {
          rejected.add(r.order_id);
          await client.query(
            `SELECT ${s}.${this.options.group ? 'orders_events_nack_group' : 'orders_events_nack'}` +
            `($1, $2::bigint, $3, $4::integer, $5::double precision * interval '1 millisecond')`,
            [this.name, r.position, e.message || 'rejected', this.options.maxAttempts ?? 5,
             this.options.retryDelayMs ?? 10000]);
          continue;
        }
        // the handler's own failure, whatever it is: not a lost connection to retry
        throw new HandlerFailed(`the handler of consumer ${this.name} failed at position ${r.position}`, { cause: e });
      }
    }
    if (rows.length > 0)
      await client.query(`SELECT ${s}.${this.options.group ? 'orders_events_ack_group' : 'orders_events_ack'}($1, $2::bigint)`,
                         [this.name, rows[rows.length - 1].position]);
    return rows.length;
  }

  /** One statement on a connection of its own; s is the extension's schema, quoted. */
  private async callOnce(sqlText: (s: string) => string, params: unknown[]): Promise<any[]> {
    const client = new pg.Client(this.config as pg.ClientConfig);
    client.on('error', () => undefined);
    try {
      await client.connect();
      const s = ident(this.options.schema ?? await extensionSchema(client));
      return (await client.query(sqlText(s), params)).rows;
    } catch (e) {
      throw translate(e);
    } finally {
      await client.end().catch(() => undefined);
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
    if (hold === undefined) throw new OrdersError(`consumer ${this.name} holds no event at position ${position}`, '22023');
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

/** The handler threw (its error is the cause): the loop ended, and the events from this one on come again. */
export class HandlerFailed extends Error {}

// Worth a new connection: the server went away, is starting or stopping,
// or has no connection slot free; or the socket failed.
const RETRY_STATES = new Set(['57P01', '57P02', '57P03', '53300']);
const SOCKET_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOENT', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH',
                               'EAI_AGAIN', 'ENETUNREACH']);

function isConnectionError(e: unknown): boolean {
  const code = (e as { code?: unknown }).code;
  if (e instanceof pg.DatabaseError) return typeof code === 'string' && (code.startsWith('08') || RETRY_STATES.has(code));
  if (typeof code === 'string') return SOCKET_ERRORS.has(code);
  // node-postgres' own errors for a connection that ended
  return e instanceof Error && /^(Connection terminated|Client has encountered a connection error|Client was closed)/.test(e.message);
}
