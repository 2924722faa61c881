// What both consumers share, the extension's (EventConsumer) and the
// twin's (InMemoryEventConsumer): their options, the handler's outcomes
// (Reject, HandlerFailed), a hold's shape, and the loop over one read's
// events, so that a handler behaves the same on either. No database
// driver here: the twin needs none.
import type { Event } from './model.js';

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
  /**
   * Told what the consumer does that an operator should know of (the
   * dedicated LISTEN connection it opens beside a pool, a lost connection
   * and the pause before the next); default: nothing is logged.
   */
  log?: (message: string) => void;
}

/** The handler: may return a promise; throws Reject to reject the event. */
export type Handler = (event: Event) => unknown | Promise<unknown>;

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

/** The handler threw (its error is the cause): the loop ended, and the events from this one on come again. */
export class HandlerFailed extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'HandlerFailed';
  }
}

/** A held order: its rejected event, retried or parked, and the positions waiting behind it. */
export interface Hold {
  /** The consumer the hold is of: the consumer's name, or for a group "<name>/<part>". */
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

/**
 * One read's events through the handler, in order: an event whose order
 * had one rejected earlier in the batch is passed over (it waits in the
 * hold), a Reject is handed to nack, any other error ends the loop as
 * HandlerFailed, before the batch is acknowledged.
 */
export async function handleBatch(name: string, events: readonly Event[], handler: Handler,
                                  nack: (event: Event, reason: string) => Promise<void>): Promise<void> {
  const rejected = new Set<string>();
  for (const event of events) {
    if (rejected.has(event.orderId)) continue;
    try {
      await handler(event);
    } catch (e) {
      if (e instanceof Reject) {
        rejected.add(event.orderId);
        await nack(event, e.message || 'rejected');
        continue;
      }
      // the handler's own failure, whatever it is: not a lost connection to retry
      throw new HandlerFailed(`the handler of consumer ${name} failed at position ${event.position}`, { cause: e });
    }
  }
}

/** The pause before the next try after an error: from 100 ms, doubled, at most 5 s. */
export const FIRST_PAUSE_MS = 100;
export const nextPause = (ms: number) => Math.min(ms * 2, 5000);
