// Specifications: what find() selects, composed with and/or/not.  Each
// compiles to a SQL condition over the orders table, its values appended to
// params as $n (one statement, planned on the table's indexes), and also
// answers isSatisfiedBy(order) for the in-memory repository.
import type { Order, Status } from './model.js';

export abstract class Spec {
  abstract sql(params: unknown[]): string;
  abstract isSatisfiedBy(order: Order): boolean;
  and(other: Spec): Spec { return new And(this, other); }
  or(other: Spec): Spec { return new Or(this, other); }
  not(): Spec { return new Not(this); }
}

class Compare extends Spec {
  constructor(private readonly column: string, private readonly op: string, private readonly value: unknown,
              private readonly test: (o: Order) => boolean) { super(); }
  sql(params: unknown[]) {
    params.push(this.value);
    return `o.${this.column} OPERATOR(pg_catalog.${this.op}) $${params.length}`;
  }
  isSatisfiedBy(o: Order) { return this.test(o); }
}

export const customer = (id: string) =>
  new Compare('customer_id', '=', id, (o) => o.customerId === id.toLowerCase());
// compared as text: no need to know the enum type's schema
export const hasStatus = (s: Status) => new Compare('status::text', '=', s, (o) => o.status === s);
export const totalAtLeast = (cents: bigint) =>
  new Compare('total', '>=', cents.toString(), (o) => o.total >= cents);
export const totalAtMost = (cents: bigint) =>
  new Compare('total', '<=', cents.toString(), (o) => o.total <= cents);
export const createdFrom = (t: Date) => new Compare('created_at', '>=', t, (o) => o.createdAt >= t);
export const createdBefore = (t: Date) => new Compare('created_at', '<', t, (o) => o.createdAt < t);

export class Anything extends Spec {
  sql() { return 'true'; }
  isSatisfiedBy() { return true; }
}
export const anything = () => new Anything();

class And extends Spec {
  constructor(private readonly a: Spec, private readonly b: Spec) { super(); }
  sql(p: unknown[]) { return `(${this.a.sql(p)}) AND (${this.b.sql(p)})`; }
  isSatisfiedBy(o: Order) { return this.a.isSatisfiedBy(o) && this.b.isSatisfiedBy(o); }
}
class Or extends Spec {
  constructor(private readonly a: Spec, private readonly b: Spec) { super(); }
  sql(p: unknown[]) { return `(${this.a.sql(p)}) OR (${this.b.sql(p)})`; }
  isSatisfiedBy(o: Order) { return this.a.isSatisfiedBy(o) || this.b.isSatisfiedBy(o); }
}
class Not extends Spec {
  constructor(private readonly a: Spec) { super(); }
  sql(p: unknown[]) { return `(${this.a.sql(p)}) IS NOT TRUE`; }
  isSatisfiedBy(o: Order) { return !this.a.isSatisfiedBy(o); }
}
