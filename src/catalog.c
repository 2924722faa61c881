/*
 * catalog.c: finding the extension's own tables and types.
 *
 * The functions never resolve a name through the caller's search_path: the
 * schema is the one the called function itself lives in (the extension's
 * schema), and every relation and type is looked up there by name once per
 * session, checked against the layout the C code expects, and kept by OID.
 * A relcache invalidation of any of those relations (ALTER, DROP, DROP
 * EXTENSION) throws the whole lookup away; the next call redoes it.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_am_d.h"
#include "catalog/pg_enum.h"
#include "catalog/pg_type_d.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "orders.h"

const char *const order_status_names[ORDER_STATUS_COUNT] = {
	"pending", "confirmed", "shipped", "delivered", "cancelled"
};

static OrdersCatalog cache;
static bool cache_valid = false;
static bool callback_registered = false;
static MemoryContext cache_context = NULL;

/* Relations whose change invalidates the cache (the two tables, two row types). */
static Oid	watched_relids[4];

/* Bumped by every relevant invalidation, so a lookup can tell it raced one. */
static uint64 invalidation_count = 0;

static void
orders_relcache_callback(Datum arg, Oid relid)
{
	int			i;

	(void) arg;
	if (relid == InvalidOid)
	{
		cache_valid = false;
		invalidation_count++;
		return;
	}
	for (i = 0; i < (int) lengthof(watched_relids); i++)
	{
		if (watched_relids[i] == relid)
		{
			cache_valid = false;
			invalidation_count++;
			return;
		}
	}
}

pg_attribute_noreturn()
static void
layout_error(const char *relname, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("extension \"orders\" cannot use %s: %s", relname, what),
			 errhint("The extension's tables and types must keep the layout its install script gave them; "
					 "reinstall the extension or undo the change.")));
}

static Oid
lookup_relid(Oid nsp, const char *nspname, const char *relname)
{
	Oid			relid = get_relname_relid(relname, nsp);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"%s.%s\" of extension \"orders\" does not exist",
						nspname, relname),
				 errhint("Reinstall the extension.")));
	return relid;
}

/* A column, or a composite's field, as the C code expects it. */
typedef struct ColumnSpec
{
	const char *name;
	Oid			typid;			/* InvalidOid: one of our own types, checked apart */
} ColumnSpec;

static const ColumnSpec orders_columns[Natts_orders] = {
	{"id", UUIDOID}, {"customer_id", UUIDOID}, {"status", InvalidOid},
	{"currency", TEXTOID}, {"lines", InvalidOid}, {"shipping_address", InvalidOid},
	{"total", INT8OID}, {"version", INT4OID}, {"created_at", TIMESTAMPTZOID},
	{"updated_at", TIMESTAMPTZOID},
};
static const ColumnSpec events_columns[Natts_order_events] = {
	{"position", INT8OID}, {"xid", XID8OID}, {"order_id", UUIDOID}, {"type", TEXTOID},
	{"version", INT4OID}, {"payload", JSONBOID}, {"occurred_at", TIMESTAMPTZOID},
	{"relay", BOOLOID},
};
static const ColumnSpec line_fields[Natts_line] = {
	{"product_id", UUIDOID}, {"product_name", TEXTOID}, {"quantity", INT4OID},
	{"unit_price", INT8OID},
};
static const ColumnSpec address_fields[Natts_address] = {
	{"street", TEXTOID}, {"city", TEXTOID}, {"postal_code", TEXTOID}, {"country", TEXTOID},
};

static void
expect_columns(TupleDesc desc, const char *relname, const ColumnSpec *columns, int n)
{
	int			i;

	if (desc->natts != n)
		layout_error(relname, "it has a different number of columns");
	for (i = 0; i < n; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || strcmp(NameStr(att->attname), columns[i].name) != 0 ||
			(OidIsValid(columns[i].typid) && att->atttypid != columns[i].typid))
			layout_error(relname, psprintf("column %d is not \"%s\" of the expected type",
										   i + 1, columns[i].name));
	}
}

/* Checks that a table of ours is a heap table of the expected layout. */
static void
check_heap_table(Relation rel, const char *relname, const ColumnSpec *columns, int n)
{
	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rel->relam != HEAP_TABLE_AM_OID)
		layout_error(relname, "it is not a heap table");
	expect_columns(RelationGetDescr(rel), relname, columns, n);
}

static TupleDesc
composite_desc(Oid typid, const char *typname, const ColumnSpec *fields, int n)
{
	TupleDesc	tupdesc;

	if (get_typtype(typid) != TYPTYPE_COMPOSITE)
		layout_error(typname, "it is not a composite type");
	tupdesc = lookup_rowtype_tupdesc_copy(typid, -1);
	expect_columns(tupdesc, typname, fields, n);
	return tupdesc;
}

static void
build_catalog(Oid nsp, OrdersCatalog *c)
{
	Relation	rel;
	TupleDesc	desc;
	Oid			lines_array_typid;
	int			i;

	c->namespace_id = nsp;
	c->namespace_name = get_namespace_name(nsp);
	if (c->namespace_name == NULL)
		elog(ERROR, "cache lookup failed for namespace %u", nsp);

	c->orders_relid = lookup_relid(nsp, c->namespace_name, "orders");
	c->events_relid = lookup_relid(nsp, c->namespace_name, "order_events");
	c->events_seqid = lookup_relid(nsp, c->namespace_name, "order_events_position_seq");
	watched_relids[0] = c->orders_relid;
	watched_relids[1] = c->events_relid;
	if (get_rel_relkind(c->events_seqid) != RELKIND_SEQUENCE)
		layout_error("order_events_position_seq", "it is not a sequence");

	/* orders: the aggregate's row */
	rel = table_open(c->orders_relid, AccessShareLock);
	check_heap_table(rel, "orders", orders_columns, Natts_orders);
	desc = RelationGetDescr(rel);
	c->status_typid = TupleDescAttr(desc, Anum_orders_status - 1)->atttypid;
	lines_array_typid = TupleDescAttr(desc, Anum_orders_lines - 1)->atttypid;
	c->address_typid = TupleDescAttr(desc, Anum_orders_shipping_address - 1)->atttypid;
#if PG_VERSION_NUM >= 170000
	c->orders_pkey = RelationGetPrimaryKeyIndex(rel, false);
#else
	c->orders_pkey = RelationGetPrimaryKeyIndex(rel);
#endif
	if (!OidIsValid(c->orders_pkey))
		layout_error("orders", "it has no primary key");
	table_close(rel, AccessShareLock);

	/* order_events: the outbox; its relay column came with 1.3 */
	rel = table_open(c->events_relid, AccessShareLock);
	c->events_have_relay = RelationGetDescr(rel)->natts >= Anum_order_events_relay;
	check_heap_table(rel, "order_events", events_columns,
					 c->events_have_relay ? Natts_order_events : Natts_order_events - 1);
	table_close(rel, AccessShareLock);

	/* order_status: the label OIDs, which are what a stored enum value is */
	if (!type_is_enum(c->status_typid))
		layout_error("order_status", "it is not an enum");
	for (i = 0; i < ORDER_STATUS_COUNT; i++)
	{
		HeapTuple	tup = SearchSysCache2(ENUMTYPOIDNAME,
										  ObjectIdGetDatum(c->status_typid),
										  CStringGetDatum(order_status_names[i]));

		if (!HeapTupleIsValid(tup))
			layout_error("order_status", psprintf("label \"%s\" is missing",
												  order_status_names[i]));
		c->status_oids[i] = ((Form_pg_enum) GETSTRUCT(tup))->oid;
		ReleaseSysCache(tup);
	}

	/* the composites, kept as private copies of their descriptors */
	c->line_typid = get_element_type(lines_array_typid);
	if (!OidIsValid(c->line_typid))
		layout_error("orders", "column \"lines\" is not an array");
	watched_relids[2] = get_typ_typrelid(c->line_typid);
	watched_relids[3] = get_typ_typrelid(c->address_typid);
	c->line_desc = composite_desc(c->line_typid, "order_line", line_fields, Natts_line);
	c->address_desc = composite_desc(c->address_typid, "order_address", address_fields,
									 Natts_address);
}

/*
 * The catalog of the extension the called function belongs to.  Cheap after
 * the first call of a session: one comparison.
 */
const OrdersCatalog *
orders_catalog(FunctionCallInfo fcinfo)
{
	Oid			nsp;

	if (likely(cache_valid))
		return &cache;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(orders_relcache_callback, (Datum) 0);
		callback_registered = true;
	}
	if (cache_context == NULL)
		cache_context = AllocSetContextCreate(TopMemoryContext, "orders catalog",
											  ALLOCSET_SMALL_SIZES);

	nsp = get_func_namespace(fcinfo->flinfo->fn_oid);

	for (;;)
	{
		uint64		seen = invalidation_count;
		MemoryContext old;

		MemoryContextReset(cache_context);
		memset(&cache, 0, sizeof(cache));
		memset(watched_relids, 0, sizeof(watched_relids));
		old = MemoryContextSwitchTo(cache_context);
		PG_TRY();
		{
			build_catalog(nsp, &cache);
		}
		PG_FINALLY();
		{
			MemoryContextSwitchTo(old);
		}
		PG_END_TRY();

		/* An invalidation that arrived while we looked may concern what we saw. */
		if (seen == invalidation_count)
			break;
	}
	cache_valid = true;
	return &cache;
}

/* The fields of a composite value (an order_line, an order_address). */
void
composite_deform(Datum value, TupleDesc desc, Datum *values, bool *nulls)
{
	HeapTupleHeader th = DatumGetHeapTupleHeader(value);
	HeapTupleData tuple;

	tuple.t_len = HeapTupleHeaderGetDatumLength(th);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = th;
	heap_deform_tuple(&tuple, desc, values, nulls);
}

OrderStatus
order_status_from_oid(const OrdersCatalog *cat, Oid label)
{
	int			i;

	for (i = 0; i < ORDER_STATUS_COUNT; i++)
		if (cat->status_oids[i] == label)
			return (OrderStatus) i;
	elog(ERROR, "unknown order_status label %u", label);
	pg_unreachable();
}
