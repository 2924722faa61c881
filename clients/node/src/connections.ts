// What the repository and the consumer need to know about node-postgres
// connections: a pool from a client, and an error that means the
// connection is gone rather than that the statement was refused.
import pg from 'pg';
import { OrdersError } from './errors.js';

/** A client, or a pool's client, that statements run on. */
export type Queryable = pg.Client | pg.PoolClient;

/** What the repository, unitOfWork and the consumer's administrative calls accept. */
export type Source = Queryable | pg.Pool;

// By shape, not instanceof: an application may hold a pg.Pool of another
// copy of pg than ours (two versions in node_modules), which works the same.
export function isPool(source: object): source is pg.Pool {
  return 'totalCount' in source && 'idleCount' in source && typeof (source as pg.Pool).connect === 'function';
}

// Worth a new connection: the server went away, is starting or stopping,
// or has no connection slot free; or the socket failed.
const RETRY_STATES = new Set(['57P01', '57P02', '57P03', '53300']);
const SOCKET_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOENT', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH',
                               'EAI_AGAIN', 'ENETUNREACH']);

/** The error says the connection is lost (raw from pg, or as translate made it). */
export function isConnectionError(e: unknown): boolean {
  if (e instanceof OrdersError)
    return e.sqlstate !== undefined && (e.sqlstate.startsWith('08') || RETRY_STATES.has(e.sqlstate));
  const code = (e as { code?: unknown } | null)?.code;
  if (e instanceof pg.DatabaseError) return typeof code === 'string' && (code.startsWith('08') || RETRY_STATES.has(code));
  if (typeof code === 'string') return SOCKET_ERRORS.has(code);
  // node-postgres' own errors for a connection that ended
  return e instanceof Error && /^(Connection terminated|Client has encountered a connection error|Client was closed)/.test(e.message);
}
