/*
 * orders.h: what the extension's C files share.
 *
 * One file per job, in layers that only call downward (a file calls the
 * files of the layers below it, and, within its layer, only those listed
 * after it):
 *
 *   module.c          loading the library: the settings, each file's hooks
 *
 *   api.c             the repository's SQL functions: add, get, save, remove
 *   bulk.c            orders_add_many: many orders in one call
 *   consumers.c       named consumers: registered, their checkpoints moved
 *   holds.c           events a consumer rejected: retried, parked, what they hold back
 *   consumer_access.c who may use a consumer: its owner checked, its row locked
 *   idempotency.c     a retried write returns what it returned, writes nothing
 *
 *   routing.c         on a Citus cluster: a call pointed at its order's shard, or sent to its node
 *   events.c          the outbox row of each domain event, and its payload
 *   invariants.c      every rule of the aggregate, checked before anything is written
 *   fields.c          the shop's own columns and CHECK constraints: filled, checked, compared
 *
 *   relay.c           orders.notify = relay: the background worker that sends NOTIFY
 *   origin.c          adopting the events and checkpoints another cluster wrote
 *   storage.c         reading, locking, inserting and deleting rows, through the heap
 *   notify.c          the NOTIFY of each event, sent by writers and the relay worker
 *   changes.c         what a save changed: values compared by content
 *
 *   trust.c           whether the install schema and the extension's members can be trusted
 *   catalog.c         where our tables and types are: found, cached, opened under lock
 *   citus.c           what Citus holds: the shard of an order on this node
 *   refusals.c        tables the direct writes cannot honour, refused by name
 *   settings.c        every orders.* setting, and the value in effect for a call
 *   uuidv7.c          time-ordered ids
 *   compat.h          the differences between PostgreSQL majors
 */
#ifndef ORDERS_H
#define ORDERS_H

#include "postgres.h"

#include "compat.h"

#include "access/htup.h"
#include "access/tupdesc.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "nodes/lockoptions.h"
#include "nodes/primnodes.h"
#include "storage/lockdefs.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

/*
 * Columns of table orders, 1-based, in the order schema/orders.sql creates
 * them.  They have been the first ten since 1.0; the columns a shop adds
 * (ALTER TABLE orders ADD COLUMN) come after them, and the C code carries
 * those as OrderFields.
 */
enum
{
	Anum_orders_id = 1,
	Anum_orders_customer_id,
	Anum_orders_status,
	Anum_orders_currency,
	Anum_orders_lines,
	Anum_orders_shipping_address,
	Anum_orders_total,
	Anum_orders_version,
	Anum_orders_created_at,
	Anum_orders_updated_at,
	Natts_orders = Anum_orders_updated_at
};

/* Columns of table order_events. */
enum
{
	Anum_order_events_position = 1,
	Anum_order_events_xid,
	Anum_order_events_order_id,
	Anum_order_events_type,
	Anum_order_events_version,
	Anum_order_events_payload,
	Anum_order_events_occurred_at,
	Anum_order_events_relay,	/* from 1.3 */
	Anum_order_events_id,		/* from 1.8: the envelope Debezium reads */
	Anum_order_events_aggregatetype,
	Anum_order_events_schema_version,
	Anum_order_events_metadata,
	Natts_order_events = Anum_order_events_metadata
};

/* The version of the payloads' shapes, in every event's schema_version. */
#define EVENT_SCHEMA_VERSION 1

/*
 * The extension's own schema for the functions that are not its API: the
 * SQL functions, the relay worker and Citus name it so (schema/
 * trusted_schema.sql), and the trust check judges it under this name.
 */
#define ORDERS_INTERNAL_SCHEMA "orders_internal"

/* The most orders.event_metadata may hold, in bytes: it goes into every event. */
#define EVENT_METADATA_MAX 8192

/* Columns of table order_event_consumers. */
enum
{
	Anum_consumers_name = 1,
	Anum_consumers_acked_snapshot,
	Anum_consumers_batch_snapshot,
	Anum_consumers_batch_position,
	Anum_consumers_registered_at,
	Anum_consumers_acked_at,
	Anum_consumers_owner,		/* from 1.4 */
	Anum_consumers_acked_top_position,	/* from 1.5: the bounds of each snapshot */
	Anum_consumers_acked_next_xid,
	Anum_consumers_batch_top_position,
	Anum_consumers_batch_next_xid,
	Anum_consumers_acked_cuts,	/* from 1.7: one cut a node of a Citus cluster */
	Anum_consumers_batch_cuts,
	Anum_consumers_settled_position,	/* from 1.10: what another cluster wrote */
	Anum_consumers_carried_after,
	Anum_consumers_carried,
	Natts_consumers = Anum_consumers_carried
};

/* Fields of the composite order_line; a shop's own attributes come after them. */
enum
{
	Anum_line_product_id = 1,
	Anum_line_product_name,
	Anum_line_quantity,
	Anum_line_unit_price,
	Natts_line = Anum_line_unit_price
};

/* Fields of the composite order_address. */
enum
{
	Anum_address_street = 1,
	Anum_address_city,
	Anum_address_postal_code,
	Anum_address_country,
	Natts_address = Anum_address_country
};

/*
 * The next element of an array of one of our composite types, walked with
 * array_iter: composites are varlena, by reference and double-aligned.
 */
#define composite_array_next(it, isnull, i) \
	array_iter_next((it), (isnull), (i), -1, false, TYPALIGN_DOUBLE)


/*
 * Room for the fields of a composite (order_line, order_address) on the
 * stack; one with more of the shop's attributes gets its arrays allocated.
 */
#define COMPOSITE_FIELDS_HERE 16
#define COMPOSITE_ARRAY(here, desc) \
	((desc)->natts <= (int) lengthof(here) ? (here) : \
	 palloc(sizeof((here)[0]) * (desc)->natts))

/*
 * On a Citus cluster every node numbers its events with its own copy of
 * the sequence: a position there is the sequence's value times
 * POSITION_NODES plus the node's group, unique cluster-wide, each node's in
 * the order it handed them out (consumers rely on both: consumers.sql).
 */
#define POSITION_NODES 1024

/* A uuid's text form: 36 characters; the size adds the terminating zero. */
#define UUID_TEXT_LEN (UUID_LEN * 2 + 4)
#define UUID_TEXT_SIZE (UUID_TEXT_LEN + 1)

/* order_status labels, in the enum's order. */
typedef enum OrderStatus
{
	ORDER_PENDING = 0,
	ORDER_CONFIRMED,
	ORDER_SHIPPED,
	ORDER_DELIVERED,
	ORDER_CANCELLED,
	ORDER_STATUS_COUNT
} OrderStatus;

extern const char *const order_status_names[ORDER_STATUS_COUNT];

/* ---- catalog.c ---- */

/* The extension's tables, as a call locks and opens them. */
typedef enum OrdersTable
{
	TABLE_ORDERS = 0,
	TABLE_EVENTS,
	TABLE_CONSUMERS,
	TABLE_COUNT
} OrdersTable;

/* What a table holds that a direct write would skip, refused by refusals.c. */
typedef enum DirectWriteRefusal
{
	REFUSE_NOTHING = 0,
	REFUSE_DEFERRABLE,			/* a deferrable unique or exclusion constraint */
	REFUSE_CONSTRAINT,			/* a foreign key, through its triggers */
	REFUSE_TRIGGER,
	REFUSE_RULE,
	REFUSE_CHECK,
	REFUSE_CHILDREN,
	REFUSE_COLUMNS				/* a layout of no version the C code knows */
} DirectWriteRefusal;

/*
 * A column a shop added to orders, or an attribute it added to order_line
 * or order_address: what the C code needs to fill it, compare it and put it
 * in an event's payload.  Expressions are planned once, when the catalog is
 * built, and kept with it.
 */
typedef struct OrderField
{
	AttrNumber	attnum;
	char	   *name;
	Oid			typid;
	int16		typlen;
	bool		typbyval;
	char		generated;		/* attgenerated: '\0', or stored */
	bool		identity_always;	/* GENERATED ALWAYS AS IDENTITY */
	Expr	   *default_expr;	/* the default or generation expression, or NULL */
	bool		default_const;	/* default_expr is a constant: its value below */
	Datum		default_value;
	bool		default_isnull;
	Oid			input_ioparam;
	FmgrInfo	input;			/* the type's input function, for a JSON scalar */
	bool		json_input;		/* json or jsonb, or a domain over one: any JSON as it is */
	bool		is_domain;		/* NULL too goes through its input function, to be checked */
	int32		typmod;
	FmgrInfo	to_jsonb;		/* to_jsonb(value), as the payloads render it */
} OrderField;

/* The extra attributes of one of our composites. */
typedef struct CompositeExtras
{
	int			nfixed;			/* ours, first */
	int			nextra;			/* the shop's, after them (dropped ones skipped) */
	OrderField *extra;
} CompositeExtras;

/*
 * Everything the functions need to find by name, resolved from the
 * extension's own schema (never through search_path), kept by OID, and
 * judged valid under the locks of each call.
 */
typedef struct OrdersCatalog
{
	Oid			namespace_id;
	char	   *namespace_name;

	Oid			relids[TABLE_COUNT];
	DirectWriteRefusal refusal[TABLE_COUNT];	/* what a direct write would skip */
	char	   *refusal_name[TABLE_COUNT];	/* the trigger's, constraint's ... name */
	bool		row_security[TABLE_COUNT];	/* enabled: asked per role at each write */
	bool		distributed[TABLE_COUNT];	/* by Citus: the rows are in shards */
	Oid			orders_rowtype;
	Oid			orders_pkey;
	Oid			events_seqid;
	bool		events_have_relay;	/* installed at 1.3 or later */
	bool		events_have_envelope;	/* from 1.8: id ... metadata */
	Oid			events_order_index; /* (order_id, version), from 1.4; else invalid */
	Oid			consumers_pkey;		/* from 1.4, with consumers' owners; else invalid */
	bool		consumers_have_bounds;	/* from 1.5: snapshots with their bounds */
	bool		consumers_have_cuts;	/* from 1.7: a cut a node, on a cluster */
	bool		consumers_have_carried; /* from 1.10: settled and carried positions */

	Oid			status_typid;
	Oid			status_oids[ORDER_STATUS_COUNT];

	Oid			line_typid;
	TupleDesc	line_desc;
	CompositeExtras line_extras;
	Oid			address_typid;
	TupleDesc	address_desc;
	CompositeExtras address_extras;

	/*
	 * The shop's own columns of orders and its CHECK constraints
	 * (fields.c).  orders_natts counts every attribute, dropped ones too.
	 */
	int			orders_natts;
	int			nfields;
	OrderField *fields;
	int			ncheck;
	Expr	  **checks;			/* planned, in the relcache's order; NULL: not enforced */
} OrdersCatalog;

/* What one call has open: the catalog, and its tables (NULL: not used). */
typedef struct OrdersCall
{
	const OrdersCatalog *cat;
	Relation	rel[TABLE_COUNT];
	/*
	 * Where the rows are read and written: rel itself, or, for a table
	 * Citus distributes, the shard of the call's order on this node (set by
	 * orders_route), with that shard's indexes.  rel keeps naming the table
	 * in errors and describing its rows.
	 */
	Relation	data[TABLE_COUNT];
	LOCKMODE	locks[TABLE_COUNT];
	Oid			orders_pkey;
	Oid			events_order_index;
	int64		after_position;	/* on a cluster: the order's last event's, or -1 */
} OrdersCall;

/* The sequence that numbers the outbox's events. */
#define POSITION_SEQUENCE "order_events_position_seq"

extern Oid	called_function_namespace(FunctionCallInfo fcinfo);
extern char *orders_schema_name(Oid nsp);
extern Oid	orders_member_schema(Oid ext);
extern Oid	orders_helpers_namespace(Oid install);
extern const OrdersCatalog *orders_open(FunctionCallInfo fcinfo,
										const LOCKMODE locks[TABLE_COUNT],
										OrdersCall *call);
extern void orders_close(OrdersCall *call);
extern char *orders_role_name(Oid role);
extern Oid	orders_relation_owner(Oid relid);
extern Oid	orders_private_table(const OrdersCatalog *cat, const char *relname,
								 const char *what, const char *version, bool missing_ok);
extern OrderStatus order_status_from_oid(const OrdersCatalog *cat, Oid label, bool given);
extern void composite_deform(Datum value, TupleDesc desc, Datum *values, bool *nulls);
extern void composite_fields(Datum value, TupleDesc desc, Datum *values, bool *nulls);

/* ---- refusals.c ---- */

/*
 * A table or type of ours that does not have the layout the C code reads.
 * The arguments are errmsg's: each caller says what is wrong in a message
 * of its own.
 */
#define layout_error(...) \
	ereport(ERROR, \
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE), \
			 errmsg(__VA_ARGS__), \
			 errhint("The extension's tables and types must keep the layout its install script gave them; " \
					 "reinstall the extension or undo the change.")))

/*
 * What the direct write path cannot honour, refused by name: the server
 * would enforce it on an INSERT, UPDATE or DELETE, and we will not skip it
 * silently.  The arguments are errmsg's.
 */
#define unsupported_error(...) \
	ereport(ERROR, \
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED), \
			 errmsg(__VA_ARGS__), \
			 errdetail("The extension's functions write the table directly and would not honour it."), \
			 errhint("Remove it; react to changes through the outbox, order_events.")))

/* A column, or a composite's field, as the C code expects it. */
typedef struct ColumnSpec
{
	const char *name;
	Oid			typid;			/* InvalidOid: one of our own types, checked apart */
} ColumnSpec;

extern const ColumnSpec orders_columns[Natts_orders];
extern const ColumnSpec events_columns[Natts_order_events];
extern const ColumnSpec consumers_columns[Natts_consumers];
extern const ColumnSpec line_fields[Natts_line];
extern const ColumnSpec address_fields[Natts_address];

extern void refuse_direct_write(const char *relname, DirectWriteRefusal refusal,
								const char *name);
extern DirectWriteRefusal direct_write_refusal(Relation rel, bool checks_enforced, char **name);
extern void require_heap_table(Relation rel, const char *relname);
extern void check_heap_table(Relation rel, const char *relname, const ColumnSpec *columns,
							 int n, bool extensible, OrdersCatalog *c, OrdersTable t);
extern Oid	check_primary_key(Relation rel, const char *relname, AttrNumber keyatt,
							  Oid keytype);
extern Oid	find_events_order_index(Relation rel);
extern TupleDesc composite_desc(Oid typid, const char *typname, const ColumnSpec *fields,
								int n);
extern void refuse_virtual_generated(TupleDesc desc, const char *relname);
extern void check_position_sequence(Oid seqid);
extern bool orders_may_read(const OrdersCatalog *cat);
extern void orders_check_can_read(const OrdersCatalog *cat);

/* ---- trust.c ---- */

extern char *orders_schema_untrusted(Oid nsp);

/* ---- invariants.c ---- */

extern char *quote_text_datum(Datum d);
extern bool text_has_controls(Datum d);
pg_noreturn extern void not_null_violation(Relation rel, int attnum, const char *field);
extern void order_check_customer_id(Relation rel, bool isnull);
extern void order_check_currency(Relation rel, Datum currency, bool isnull);
extern int64 order_check_lines(Relation rel, const OrdersCatalog *cat, Datum lines,
							   bool isnull, Datum *checked);
extern void order_check_address(Relation rel, const OrdersCatalog *cat, Datum address,
								bool isnull);
extern void order_check_removable(Relation rel, OrderStatus status, bool reveal);
extern void order_check_version(int32 stored, int32 expected, bool reveal);
extern void order_check_next_version(int32 version);
extern void order_check_status_transition(Relation rel, OrderStatus from, OrderStatus to,
										  bool reveal);
extern void order_check_ready(Relation rel, OrderStatus status, int nlines,
							  bool address_isnull);
extern void order_check_frozen(Relation rel, OrderStatus stored, bool lines_changed,
							   bool address_changed, bool reveal);
extern void order_check_immutable(Relation rel, int attnum, Datum stored, Datum given,
								  bool reveal);

/* ---- fields.c ---- */

/* A write's evaluation of the shop's expressions: defaults, generated columns, CHECKs. */
typedef struct FieldsWrite
{
	MemoryContext mcxt;			/* where to make it; NULL: the current context */
	struct EState *estate;		/* NULL until an expression needs one */
	struct ResultRelInfo *rri;
	TupleTableSlot *slot;
	struct ExprState **states;	/* by attribute: each expression, prepared once */
} FieldsWrite;

extern void fields_from_json(const OrdersCatalog *cat, Relation rel,
							 JsonbContainer *container, Datum *values, bool *nulls,
							 bool *present);
extern void fields_fill_defaults(const OrdersCatalog *cat, Relation rel, FieldsWrite *fw,
								 Datum *values, bool *nulls, const bool *present);
extern void fields_from_saved(const OrdersCatalog *cat, Relation rel, const Datum *given,
							  const bool *given_null, const Datum *stored,
							  const bool *stored_null, Datum *values, bool *nulls);
extern void fields_compute_generated(const OrdersCatalog *cat, Relation rel, FieldsWrite *fw,
									 Datum *values, bool *nulls);
extern void fields_check_row(const OrdersCatalog *cat, Relation rel, FieldsWrite *fw,
							 Datum *values, bool *nulls);
extern void fields_write_done(FieldsWrite *fw);
extern Datum field_value_from_json(const OrderField *f, JsonbValue *v, const char *path,
								   bool *isnull);

/* ---- citus.c ---- */

extern bool citus_distributed(Oid relid, const char *relname, AttrNumber keyatt,
							  int32 *colocation_id);
extern Oid	citus_local_shard(Oid relid, Datum key, Oid keytype, LOCKMODE lockmode);
extern int32 citus_local_group(void);
extern bool citus_has_table(Oid relid);
extern void check_shard_layout(Relation table, Relation shard);

/* ---- api.c: the public functions, which its _at functions stand for ---- */

extern PGDLLEXPORT Datum orders_add(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum orders_get(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum orders_save(PG_FUNCTION_ARGS);
extern PGDLLEXPORT Datum orders_remove(PG_FUNCTION_ARGS);

/* ---- routing.c ---- */

extern bool orders_route(OrdersCall *call, const pg_uuid_t *id);
extern Datum run_routed(FunctionCallInfo fcinfo, PGFunction body);
extern Datum routing_send(const OrdersCatalog *cat, const char *function, int nargs,
						  const Oid *types, const Datum *values, const bool *nulls,
						  bool *found);
extern char *routing_settings(void);
extern void routing_init(void);

/* ---- consumer_access.c ---- */

extern const OrdersCatalog *open_consumers(FunctionCallInfo fcinfo, const char *what,
										   OrdersCall *call);
extern char *quoted_name(text *name);
extern void check_can_consume(const OrdersCatalog *cat);
extern bool lock_own_consumer(OrdersCall *call, text *name, TupleTableSlot *slot);
extern void not_registered(text *name);
extern text *consumer_required_name(FunctionCallInfo fcinfo);
extern const OrdersCatalog *consumer_lock_own(FunctionCallInfo fcinfo, text *name,
											  const char *what, OrdersCall *call);
extern const OrdersCatalog *consumer_check_own(FunctionCallInfo fcinfo, text *name,
											   OrdersCall *call);

/* ---- origin.c ---- */

extern void origin_init(void);
extern void origin_ensure(const OrdersCatalog *cat);
extern int64 origin_settled_position(const OrdersCatalog *cat);

/* ---- holds.c ---- */

extern void holds_forget(const OrdersCatalog *cat, text *consumer);

/* ---- idempotency.c ---- */

/* A write call under orders.idempotency_key: its place, and what makes it this call. */
typedef struct IdempotentCall
{
	bool		active;			/* to be recorded when it returns */
	const OrdersCatalog *cat;
	Oid			role;
	char	   *key;
	int			call;			/* its place among the transaction's keyed calls */
	const char *function;
	bytea	   *request;
} IdempotentCall;

extern void idempotency_init(void);
extern bool idempotency_begin(IdempotentCall *ic, FunctionCallInfo fcinfo,
							  const OrdersCatalog *cat, const char *function, int nargs,
							  Datum *result, bool *isnull);
extern void idempotency_record(IdempotentCall *ic, Datum result);

/* ---- changes.c ---- */

extern bool order_field_equal(Oid typid, Datum a, Datum b);
extern bool field_value_equal(const OrderField *f, Datum a, bool a_null, Datum b, bool b_null);
extern bool fields_changed(const OrdersCatalog *cat, const Datum *a, const bool *a_null,
						   const Datum *b, const bool *b_null);
extern bool order_lines_equal(const OrdersCatalog *cat, Datum a, Datum b);
extern bool order_address_equal(const OrdersCatalog *cat, Datum a, bool a_isnull,
								Datum b, bool b_isnull);

/* ---- storage.c ---- */

extern void storage_insert(Relation rel, HeapTuple tuple);
extern void storage_insert_many(Relation rel, HeapTuple *tuples, int ntuples, int *current);
extern bool storage_fetch(Relation rel, Oid index_oid, Datum key, TupleTableSlot *slot);
extern bool storage_lock(Relation rel, Oid index_oid, Datum key, AttrNumber key_attnum,
						 LockTupleMode mode, TupleTableSlot *slot);
extern bool storage_exists_any(Relation rel, Oid index_oid, Datum key);
extern int64 storage_last_position(Relation rel, Oid index_oid, Datum key);
extern void storage_update(Relation rel, ItemPointer otid, HeapTuple tuple);
extern void storage_delete(Relation rel, ItemPointer tid);

/* ---- events.c ---- */

typedef enum OrderEventType
{
	EVENT_ORDER_ADDED = 0,
	EVENT_ORDER_LINES_CHANGED,
	EVENT_ORDER_SHIPPING_ADDRESS_CHANGED,
	EVENT_ORDER_CONFIRMED,
	EVENT_ORDER_SHIPPED,
	EVENT_ORDER_DELIVERED,
	EVENT_ORDER_CANCELLED,
	EVENT_ORDER_REMOVED,
	EVENT_ORDER_FIELDS_CHANGED, /* from 1.12: the shop's own columns */
	EVENT_TYPE_COUNT
} OrderEventType;

extern Datum event_payload_order(const OrdersCatalog *cat, Datum *values, bool *nulls);
extern Datum event_payload_lines(const OrdersCatalog *cat, Datum lines, int64 total);
extern Datum event_payload_address(const OrdersCatalog *cat, Datum address, bool isnull);
extern Datum event_payload_status(OrderStatus from, OrderStatus to);
extern Datum event_payload_fields(const OrdersCatalog *cat, const Datum *stored,
								  const bool *stored_null, const Datum *values,
								  const bool *nulls);
extern HeapTuple event_build(OrdersCall *call, OrderEventType type, pg_uuid_t *order_id,
							 int32 version, Datum payload, TimestampTz occurred_at,
							 int64 *position_out);
extern void event_announce(OrderEventType type, const pg_uuid_t *order_id, int32 version,
						   int64 position);
extern int64 event_emit(OrdersCall *call, OrderEventType type,
						pg_uuid_t *order_id, int32 version, Datum payload,
						TimestampTz occurred_at);

/* ---- notify.c ---- */

extern void notify_init(void);
extern void notify_event(int64 position, const char *type, const pg_uuid_t *order_id,
						 int32 version);

/* ---- relay.c ---- */

extern void relay_init(void);
extern void relay_note_write(void);

/* ---- settings.c ---- */

/* orders.notify: whether a write also sends NOTIFY, and who sends it */
typedef enum NotifyMode
{
	NOTIFY_OFF = 0,
	NOTIFY_ON,					/* the writer, in its transaction */
	NOTIFY_RELAY				/* the relay worker, after the writer commits */
} NotifyMode;

extern int	orders_notify_mode;
extern char *orders_relay_database;
extern char *orders_event_metadata;
extern char *orders_idempotency_key;
extern int	orders_idempotency_ttl;
extern LocalTransactionId orders_idempotency_key_set_in;
/* what the node that routed the running call sent (routing.c), or -1 and NULL */
extern int	orders_routed_notify;
extern char *orders_routed_metadata;
/* orders.notify, or what the node that routed the running call sent */
extern NotifyMode orders_notify_effective(void);
extern const char *orders_event_metadata_effective(void);
extern void settings_define(void);

/* ---- uuidv7.c ---- */

extern void uuidv7_generate(pg_uuid_t *out);
extern void uuid_format(const pg_uuid_t *uuid, char *out);	/* UUID_TEXT_SIZE bytes */

#endif							/* ORDERS_H */
