import pg from 'pg';

// Every error the extension raises, as an exception a caller can catch by
// meaning rather than by SQLSTATE (README: "Invariants and errors").  The
// extension gives the failing field's path in the first sentence of the
// detail: "The field is lines[2].quantity. The value is 0; ...".

const PATH = /^The field is (\S+)\.(?: |$)/;

/** The path the detail's first sentence gives ("The field is lines[2].quantity."), or undefined. */
export function pathOf(detail?: string): string | undefined {
  const m = PATH.exec(detail ?? '');
  return m === null ? undefined : m[1];
}

/** The first sentence of the detail of an error about the field at path. */
export const fieldDetail = (path: string) => `The field is ${path}.`;

export class OrdersError extends Error {
  /** For addMany: the offending order's index in the array. */
  index?: number;
  /**
   * The failing field's path (lines[2].quantity, shipping_address.city,
   * status, fields.coupon): from the detail's first sentence (the
   * extension puts it first in the detail of a value that a shop's field's
   * type refuses too), else the column error field; undefined for an error
   * about the call rather than a field.
   */
  readonly path?: string;

  constructor(message: string, readonly sqlstate?: string, readonly detail?: string,
              readonly constraint?: string, readonly column?: string, path?: string) {
    super(message);
    this.name = new.target.name;
    this.path = path ?? pathOf(detail) ?? column;
  }
}
/** No order has this id (P0002, or no row from a read). */
export class OrderNotFound extends OrdersError {}
/** Someone saved the order first (40001): read again, reapply, save; retry() loops. */
export class ConcurrencyConflict extends OrdersError {}
/** orders.idempotency_key was used for another request (22023): a retry repeats the same calls; a new request needs a new key. */
export class IdempotencyKeyReused extends OrdersError {}
/** The id is taken, or was used by an order since removed (23505). */
export class DuplicateOrder extends OrdersError {}
/** A write on a standby or in a read-only transaction (25006). */
export class ReadOnly extends OrdersError {}
/** The role lacks a grant (42501). */
export class PermissionDenied extends OrdersError {}
/**
 * A rule of the aggregate: rule is the extension's constraint name, or the
 * name of the shop's own CHECK constraint on orders (path and value then
 * undefined: the server's detail is the failing row), or for
 * the rules without one not_null, array_shape, out_of_range,
 * unknown_status; path the failing field's (lines[2].quantity), as
 * OrdersError reads it; value the offending value when the detail states one.
 */
export class InvariantViolation extends OrdersError {
  constructor(message: string, readonly rule: string, path?: string, readonly value?: string,
              sqlstate?: string, detail?: string, constraint?: string, column?: string) {
    super(message, sqlstate, detail, constraint, column, path);
  }

  /** The path, by its earlier name. */
  get field(): string | undefined { return this.path; }
}

/**
 * The database's orders extension is older than this client needs
 * (REQUIRED_EXTENSION_VERSION): sqlstate undefined, as the client raises it,
 * not the server; hint the statement that updates it.
 */
export class ExtensionTooOld extends OrdersError {
  readonly hint = 'ALTER EXTENSION orders UPDATE';
  constructor(readonly installed: string, readonly required: string, client: string) {
    super(`extension "orders" ${installed} is older than ${required}, which ${client} needs`, undefined,
          'Update it in the database: ALTER EXTENSION orders UPDATE.');
  }
}

/**
 * The error of calls of one unit of work that overlap where they cannot,
 * raised alike by the real repository and the twin.
 */
export const overlappingCalls = () => new OrdersError(
  'the calls in one unit of work must be awaited one by one: a nested unit of work cannot start while another ' +
  'call or nested unit of the same unit is in flight, nor a call be made beside a nested unit in flight');

/** The error of a nested unit that ends after the unit it was in did, raised alike by both repositories. */
export const unitOutlived = () => new OrdersError(
  'the unit of work this one was nested in ended first (it did not await this one), and took this one\'s work ' +
  'until then with it: the calls in one unit of work must be awaited one by one');

const VALUE = /^The (?:value|currency|country|order's status) is "?(.*?)"?(?:;|\.$)/;
const RULE_OF_STATE: Record<string, string> = {
  '23502': 'not_null', '22004': 'not_null', '2202E': 'array_shape', '22003': 'out_of_range',
};

const INDEX = /at index (\d+) of orders_add_many/;

/** The exception for an error the server sent; anything else (a socket's, say) as it was. */
export function translate(e: unknown): unknown {
  if (!(e instanceof pg.DatabaseError) || typeof e.code !== 'string') return e;
  const translated = translateCode(e, e.code);
  const at = INDEX.exec(e.where ?? '');
  if (at !== null && translated instanceof OrdersError) translated.index = Number(at[1]);
  return translated;
}

function translateCode(e: pg.DatabaseError, code: string): unknown {
  const { message, detail, constraint, column } = e;
  if (code === '22023' && message.startsWith('idempotency key'))
    return new IdempotencyKeyReused(message, code, detail, constraint, column);
  if (code === '22023' && message.startsWith('status "'))
    return new InvariantViolation(message, 'unknown_status', undefined, undefined, code, detail, constraint, column);
  switch (code) {
    case 'P0002': return new OrderNotFound(message, code, detail, constraint, column);
    case '40001': return new ConcurrencyConflict(message, code, detail, constraint, column);
    case '23505': return new DuplicateOrder(message, code, detail, constraint, column);
    case '25006': return new ReadOnly(message, code, detail, constraint, column);
    case '42501': return new PermissionDenied(message, code, detail, constraint, column);
  }
  if (code === '23514' || code in RULE_OF_STATE) {
    // the value is stated in the sentence after the path's
    const v = VALUE.exec((detail ?? '').replace(PATH, ''));
    return new InvariantViolation(message, constraint ?? RULE_OF_STATE[code] ?? code, undefined, v ? v[1] : undefined,
                                  code, detail, constraint, column);
  }
  return new OrdersError(message, code, detail, constraint, column, pathOf(detail));
}
