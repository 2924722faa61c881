/*
 * orders.h: what the extension's C files share.
 *
 * One file per concern:
 *   catalog.c     where our tables and types are, looked up once per session
 *   invariants.c  every rule of the aggregate, checked before anything is written
 *   changes.c     what a save changed, from which its events follow
 *   storage.c     reading, locking, inserting and deleting rows, through the heap
 *   events.c      the outbox row and the NOTIFY of each domain event
 *   uuidv7.c      time-ordered ids
 *   api.c         the SQL-callable functions, composing the above
 *   relay.c       orders.notify = relay: the background worker that sends NOTIFY
 *   module.c      loading the library: the orders.* settings
 */
#ifndef ORDERS_H
#define ORDERS_H

#include "postgres.h"

#include "access/htup.h"
#include "access/tupdesc.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "nodes/lockoptions.h"
#include "utils/relcache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

/* Columns of table orders, 1-based, in the order the install script creates them. */
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
	Natts_order_events = Anum_order_events_relay
};

/* Fields of the composite order_line. */
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

/*
 * Everything the functions need to find by name, resolved once per session
 * from the extension's own schema (never through search_path), and thrown
 * away when any of these relations or types changes.
 */
typedef struct OrdersCatalog
{
	Oid			namespace_id;
	char	   *namespace_name;

	Oid			orders_relid;
	Oid			orders_pkey;
	Oid			events_relid;
	Oid			events_seqid;
	bool		events_have_relay;	/* installed at 1.3 or later */

	Oid			status_typid;
	Oid			status_oids[ORDER_STATUS_COUNT];

	Oid			line_typid;
	TupleDesc	line_desc;
	Oid			address_typid;
	TupleDesc	address_desc;
} OrdersCatalog;

extern const OrdersCatalog *orders_catalog(FunctionCallInfo fcinfo);
extern OrderStatus order_status_from_oid(const OrdersCatalog *cat, Oid label);
extern void composite_deform(Datum value, TupleDesc desc, Datum *values, bool *nulls);

/* ---- invariants.c ---- */

extern char *quote_text_datum(Datum d);
pg_attribute_noreturn()
extern void not_null_violation(Relation rel, int attnum, const char *order_id,
							   const char *field);
extern void order_check_customer_id(Relation rel, const char *order_id, bool isnull);
extern void order_check_currency(Relation rel, const char *order_id, Datum currency, bool isnull);
extern int64 order_check_lines(Relation rel, const OrdersCatalog *cat,
							   const char *order_id, Datum lines, bool isnull,
							   Datum *checked);
extern void order_check_address(Relation rel, const OrdersCatalog *cat,
								const char *order_id, Datum address, bool isnull);
extern void order_check_removable(Relation rel, const char *order_id, OrderStatus status);
extern void order_check_version(const char *order_id, int32 stored, int32 expected);
extern void order_check_status_transition(Relation rel, const char *order_id,
										  OrderStatus from, OrderStatus to);
extern void order_check_ready(Relation rel, const char *order_id, OrderStatus status,
							  int nlines, bool address_isnull);
extern void order_check_frozen(Relation rel, const char *order_id, OrderStatus stored,
							   bool lines_changed, bool address_changed);
extern void order_check_immutable(Relation rel, const char *order_id, int attnum,
								  Datum stored, Datum given);

/* ---- changes.c ---- */

extern bool order_field_equal(Oid typid, Datum a, Datum b);
extern bool order_lines_equal(const OrdersCatalog *cat, Datum a, Datum b);
extern bool order_address_equal(const OrdersCatalog *cat, Datum a, bool a_isnull,
								Datum b, bool b_isnull);

/* ---- storage.c ---- */

extern void storage_insert(Relation rel, HeapTuple tuple);
extern bool storage_fetch(Relation rel, Oid index_oid, pg_uuid_t *id,
						  TupleTableSlot *slot);
extern bool storage_lock(Relation rel, Oid index_oid, pg_uuid_t *id,
						 LockTupleMode mode, TupleTableSlot *slot);
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
	EVENT_TYPE_COUNT
} OrderEventType;

extern Datum event_payload_order(const OrdersCatalog *cat, Datum *values, bool *nulls);
extern Datum event_payload_lines(const OrdersCatalog *cat, Datum lines, int64 total);
extern Datum event_payload_address(const OrdersCatalog *cat, Datum address, bool isnull);
extern Datum event_payload_status(OrderStatus from, OrderStatus to);
extern void events_init(void);
extern void event_notify(int64 position, const char *type, const pg_uuid_t *order_id,
						 int32 version);
extern int64 event_emit(const OrdersCatalog *cat, OrderEventType type,
						pg_uuid_t *order_id, int32 version, Datum payload,
						TimestampTz occurred_at);

/* ---- relay.c ---- */

extern void relay_init(void);
extern bool relay_available(void);
extern void relay_note_write(void);

/* ---- uuidv7.c ---- */

extern void uuidv7_generate(pg_uuid_t *out);
extern void uuid_format(const pg_uuid_t *uuid, char *out);	/* 37 bytes */

#endif							/* ORDERS_H */
