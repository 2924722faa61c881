// The Order repository over the orders PostgreSQL extension (node-postgres),
// and an in-memory twin with the same interface for unit tests.
export * from './model.js';
export * from './errors.js';
export * from './specs.js';
export { OrderRepository, unitOfWork, retry, extensionSchema, type Queryable, type RepositoryOptions } from './repository.js';
export { InMemoryOrderRepository } from './memory.js';
export { EventConsumer, HandlerFailed, Reject, type ConsumerOptions, type Hold } from './consumer.js';
