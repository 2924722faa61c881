// What this client needs of the database, in a module of its own so that
// the twin, which needs no database, imports no driver for it.
import { ExtensionTooOld } from './errors.js';

/** This package's name and version, as an error about the extension names them. */
export const CLIENT = 'orders-repository 0.2.0';

/**
 * The oldest orders extension this client works with: 1.12 brought the
 * shop's own fields (orders_add's fields, order_fields_changed), which
 * every write here sends or reads.
 */
export const REQUIRED_EXTENSION_VERSION = '1.12';

// Extension versions are dotted numbers: 1.9 is older than 1.12.
function older(a: string, b: string): boolean {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++)
    if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) < (y[i] ?? 0);
  return false;
}

/** ExtensionTooOld when installed is older than REQUIRED_EXTENSION_VERSION. */
export function checkExtensionVersion(installed: string): void {
  if (older(installed, REQUIRED_EXTENSION_VERSION))
    throw new ExtensionTooOld(installed, REQUIRED_EXTENSION_VERSION, CLIENT);
}
