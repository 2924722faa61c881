// EventConsumer: a named, gap-free reader of the outbox.  It registers its
// name (the checkpoint is a row in the database), LISTENs for wake-ups, and
// loops: read the next events after the checkpoint, await the handler for
// each, acknowledge them once it resolved.  A handler that throws ends the
// loop before the acknowledgement, so those events come again on the next
// run: at least once, in position order (each order's events in version
// order); make the handler idempotent ((orderId, version) identifies an
// event).  A lost connection is opened again; SIGTERM or stop() ends the
// loop after the batch in hand.
import pg from 'pg';
import { translate } from './errors.js';
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
    for (const r of rows) {
      try {
        await this.handler(eventFromRow(r));
      } catch (e) {
        // the handler's own failure, whatever it is: not a lost connection to retry
        throw new HandlerFailed(`the handler of consumer ${this.name} failed at position ${r.position}`, { cause: e });
      }
    }
    if (rows.length > 0)
      await client.query(`SELECT ${s}.${this.options.group ? 'orders_events_ack_group' : 'orders_events_ack'}($1, $2::bigint)`,
                         [this.name, rows[rows.length - 1].position]);
    return rows.length;
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
