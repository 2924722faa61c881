// The Order repository over the orders PostgreSQL extension (node-postgres),
// and an in-memory twin with the same interface for unit tests.
export * from './model.js';
export * from './errors.js';
export * from './specs.js';
export { CLIENT, REQUIRED_EXTENSION_VERSION } from './version.js';
export { OrderRepository, unitOfWork, retry, extensionSchema, type Queryable, type RepositoryOptions, type Source,
         type UnitOptions } from './repository.js';
export { InMemoryEventConsumer, InMemoryOrderRepository, InMemoryStore, orderEventPart } from './memory.js';
export { EventConsumer } from './consumer.js';
export { HandlerFailed, Reject, type ConsumerOptions, type Handler, type Hold } from './handling.js';
