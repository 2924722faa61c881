/*
 * catalog.c: finding the extension's own tables and types, and opening them.
 *
 * The functions never resolve a name through the caller's search_path: the
 * schema is the one the called function itself lives in (the extension's
 * schema), found by OID, and every relation and type is looked up there by
 * name, checked against the layout the C code expects, and kept by OID.
 *
 * The lookup is cached per session, and the cache is judged under the locks
 * of the call that uses it: a call first locks the tables it will touch,
 * then processes pending invalidations, and only then asks whether the cache
 * still holds.  A relcache invalidation of any of our relations (ALTER,
 * CREATE INDEX, CREATE TRIGGER, DROP EXTENSION ...) clears it, and the next
 * call rebuilds it while it holds those locks, so no concurrent DDL can slip
 * in between the check and the write.
 *
 * The functions write the tables directly, not through the executor, so a
 * table that carries anything the direct path would skip (a trigger, a
 * rule, a CHECK or foreign-key constraint, a deferrable constraint, child
 * tables, row-level security the caller is subject to) is refused with an
 * error that names it.  NOT NULL is enforced (storage.c), and so is the
 * replica identity a publication needs.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_am_d.h"
#include "catalog/pg_authid_d.h"
#include "catalog/pg_database.h"
#include "catalog/pg_depend.h"
#include "catalog/pg_enum.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_index.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_sequence.h"
#include "catalog/pg_type.h"
#include "catalog/pg_type_d.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "orders.h"

const char *const order_status_names[ORDER_STATUS_COUNT] = {
	"pending", "confirmed", "shipped", "delivered", "cancelled"
};

static const char *const table_names[TABLE_COUNT] = {
	"orders", "order_events", "order_event_consumers"
};

/* The sequence that numbers the outbox's events. */
#define POSITION_SEQUENCE "order_events_position_seq"

/*
 * The cached catalog, in a memory context of its own.  A call keeps a
 * pointer to it while user code may run inside the call (an index
 * expression's function, say, which may itself call us and find the cache
 * stale): a rebuild never touches a catalog in use.  It builds a new one,
 * and the one it replaces is retired, kept until the transaction ends.
 */
static OrdersCatalog *cache = NULL;
static MemoryContext cache_context = NULL;
static MemoryContext retired_context = NULL;
static bool cache_valid = false;
static bool callbacks_registered = false;

/*
 * Calls between orders_open and orders_close.  A call that failed never
 * closes: the count only falls back to zero at the end of the transaction,
 * and until then replaced catalogs are retired rather than freed.
 */
static int	calls_open = 0;

/*
 * Relations whose change invalidates the cache: our tables, the position
 * sequence, two row types.
 */
#define WATCHED_RELIDS (TABLE_COUNT + 3)
static Oid	watched_relids[WATCHED_RELIDS];

/* Bumped by every relevant invalidation, so a lookup can tell it raced one. */
static uint64 invalidation_count = 0;

/* Whether the cache is valid, and for the schema of the function called. */
static inline bool
cache_serves(Oid nsp)
{
	return cache_valid && cache->namespace_id == nsp;
}

/*
 * The private tables (orders_private_table) found to be members of the
 * extension, so that pg_depend is not searched at every call: forgotten at
 * any invalidation of their relcache entries.
 */
#define KNOWN_MEMBERS 4
static Oid	known_members[KNOWN_MEMBERS];

static void
orders_relcache_callback(Datum arg, Oid relid)
{
	int			i;

	for (i = 0; i < KNOWN_MEMBERS; i++)
		if (relid == InvalidOid || known_members[i] == relid)
			known_members[i] = InvalidOid;

	for (i = 0; i < WATCHED_RELIDS; i++)
	{
		if (relid == InvalidOid || watched_relids[i] == relid)
		{
			cache_valid = false;
			invalidation_count++;
			return;
		}
	}
}

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

static void
refuse_direct_write(const char *relname, DirectWriteRefusal refusal, const char *name)
{
	switch (refusal)
	{
		case REFUSE_NOTHING:
			return;
		case REFUSE_DEFERRABLE:
			unsupported_error("extension \"orders\" cannot write table \"%s\": it has deferrable constraint \"%s\"",
							  relname, name);
			break;
		case REFUSE_CONSTRAINT:
			unsupported_error("extension \"orders\" cannot write table \"%s\": it has constraint \"%s\"",
							  relname, name);
			break;
		case REFUSE_TRIGGER:
			unsupported_error("extension \"orders\" cannot write table \"%s\": it has trigger \"%s\"",
							  relname, name);
			break;
		case REFUSE_RULE:
			unsupported_error("extension \"orders\" cannot write table \"%s\": it has a rule",
							  relname);
			break;
		case REFUSE_CHECK:
			unsupported_error("extension \"orders\" cannot write table \"%s\": it has check constraint \"%s\"",
							  relname, name);
			break;
		case REFUSE_CHILDREN:
			unsupported_error("extension \"orders\" cannot write table \"%s\": it has child tables",
							  relname);
			break;
		case REFUSE_COLUMNS:
			unsupported_error("extension \"orders\" cannot write table \"%s\": it has a different number of columns",
							  relname);
			break;
	}
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

/* The operator family of a type's default btree operator class. */
static Oid
default_btree_family(Oid typid)
{
	return get_opclass_family(GetDefaultOpClass(typid, BTREE_AM_OID));
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
	{"relay", BOOLOID}, {"id", UUIDOID}, {"aggregatetype", TEXTOID},
	{"schema_version", INT2OID}, {"metadata", JSONBOID},
};
static const ColumnSpec consumers_columns[Natts_consumers] = {
	{"name", TEXTOID}, {"acked_snapshot", PG_SNAPSHOTOID}, {"batch_snapshot", PG_SNAPSHOTOID},
	{"batch_position", INT8OID}, {"registered_at", TIMESTAMPTZOID},
	{"acked_at", TIMESTAMPTZOID}, {"owner", REGROLEOID},
	{"acked_top_position", INT8OID}, {"acked_next_xid", XID8OID},
	{"batch_top_position", INT8OID}, {"batch_next_xid", XID8OID},
	{"acked_cuts", InvalidOid}, {"batch_cuts", InvalidOid},
	{"settled_position", INT8OID}, {"carried_after", INT8OID}, {"carried", INT8ARRAYOID},
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
		layout_error("extension \"orders\" cannot use \"%s\": it has a different number of columns",
					 relname);
	for (i = 0; i < n; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || strcmp(NameStr(att->attname), columns[i].name) != 0 ||
			(OidIsValid(columns[i].typid) && att->atttypid != columns[i].typid))
			layout_error("extension \"orders\" cannot use \"%s\": column %d is not \"%s\" of the expected type",
						 relname, i + 1, columns[i].name);
		if (att->attgenerated)
			layout_error("extension \"orders\" cannot use \"%s\": column \"%s\" is generated",
						 relname, columns[i].name);
	}
}

/*
 * What a direct write would skip, and its name where it has one (copied:
 * the catalog outlives the relcache entry).  Indexes are written through
 * the executor's own routine, which checks unique and exclusion constraints
 * at once; a deferrable one would need a recheck at commit that only the
 * executor's triggers do.
 */
static DirectWriteRefusal
direct_write_refusal(Relation rel, char **name)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	List	   *indexes;
	ListCell   *lc;

	*name = NULL;
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);

		if (!index->rd_index->indimmediate)
			*name = pstrdup(RelationGetRelationName(index));
		index_close(index, AccessShareLock);
		if (*name != NULL)
		{
			list_free(indexes);
			return REFUSE_DEFERRABLE;
		}
	}
	list_free(indexes);

	if (rel->trigdesc != NULL)
	{
		Trigger    *trigger = &rel->trigdesc->triggers[0];

		/* a foreign key's triggers are named after its constraint */
		if (OidIsValid(trigger->tgconstraint))
		{
			*name = get_constraint_name(trigger->tgconstraint);
			return REFUSE_CONSTRAINT;
		}
		*name = pstrdup(trigger->tgname);
		return REFUSE_TRIGGER;
	}
	if (rel->rd_rules != NULL)
		return REFUSE_RULE;
	if (constr != NULL && constr->num_check > 0)
	{
		*name = pstrdup(constr->check[0].ccname);
		return REFUSE_CHECK;
	}
	/* relhassubclass stays set after the last child is dropped: ask pg_inherits */
	if (rel->rd_rel->relhassubclass &&
		find_inheritance_children(RelationGetRelid(rel), NoLock) != NIL)
		return REFUSE_CHILDREN;
	return REFUSE_NOTHING;
}

/* The C code reads and writes our tables through the heap and nothing else. */
static void
require_heap_table(Relation rel, const char *relname)
{
	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rel->relam != HEAP_TABLE_AM_OID)
		layout_error("extension \"orders\" cannot use \"%s\": it is not a heap table", relname);
}

/*
 * Checks that a table of ours is a plain heap table of the expected layout,
 * and notes what a direct write of it would skip: that is refused only to
 * the calls that write this table.
 */
static void
check_heap_table(Relation rel, const char *relname, const ColumnSpec *columns, int n,
				 OrdersCatalog *c, OrdersTable t)
{
	require_heap_table(rel, relname);
	expect_columns(RelationGetDescr(rel), relname, columns, n);
	c->refusal[t] = direct_write_refusal(rel, &c->refusal_name[t]);
	c->row_security[t] = rel->rd_rel->relrowsecurity;
}

/*
 * The primary key the C code looks rows up by: a plain, immediate, unique
 * btree index on exactly the one key column, with the type's default
 * operator class, so that an equality probe on it finds the row by that key
 * and nothing else.  Returns its OID.
 */
static Oid
check_primary_key(Relation rel, const char *relname, AttrNumber keyatt, Oid keytype)
{
	Oid			pkey;
	Relation	index;
	bool		ok;

	pkey = compat_primary_key_index(rel);
	if (!OidIsValid(pkey))
		layout_error("extension \"orders\" cannot use \"%s\": it has no primary key", relname);

	index = index_open(pkey, AccessShareLock);
	ok = index->rd_rel->relam == BTREE_AM_OID &&
		index->rd_index->indnatts == 1 &&
		index->rd_index->indnkeyatts == 1 &&
		index->rd_index->indkey.values[0] == keyatt &&
		index->rd_index->indisunique &&
		index->rd_index->indimmediate &&
		index->rd_opfamily[0] == default_btree_family(keytype) &&
		RelationGetIndexExpressions(index) == NIL &&
		RelationGetIndexPredicate(index) == NIL;
	index_close(index, AccessShareLock);
	if (!ok)
		layout_error("extension \"orders\" cannot use \"%s\": its primary key is not on column \"%s\" alone",
					 relname, NameStr(TupleDescAttr(RelationGetDescr(rel), keyatt - 1)->attname));
	return pkey;
}

/*
 * The index on order_events (order_id, version): how orders_add learns
 * that an id was used before.  Found by what it indexes.
 */
static Oid
find_events_order_index(Relation rel)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	Oid			found = InvalidOid;

	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);

		if (index->rd_rel->relam == BTREE_AM_OID &&
			index->rd_index->indnkeyatts >= 1 &&
			index->rd_index->indkey.values[0] == Anum_order_events_order_id &&
			index->rd_opfamily[0] == default_btree_family(UUIDOID) &&
			index->rd_index->indisvalid &&
			RelationGetIndexExpressions(index) == NIL &&
			RelationGetIndexPredicate(index) == NIL)
			found = RelationGetRelid(index);
		index_close(index, AccessShareLock);
		if (OidIsValid(found))
			break;
	}
	list_free(indexes);
	return found;
}

static TupleDesc
composite_desc(Oid typid, const char *typname, const ColumnSpec *fields, int n)
{
	TupleDesc	tupdesc;

	if (get_typtype(typid) != TYPTYPE_COMPOSITE)
		layout_error("extension \"orders\" cannot use \"%s\": it is not a composite type", typname);
	tupdesc = lookup_rowtype_tupdesc_copy(typid, -1);
	expect_columns(tupdesc, typname, fields, n);
	return tupdesc;
}

/*
 * The position sequence must hand out values one at a time, in the order
 * they are asked for, without cycling: readers rely on "allocated earlier,
 * numbered lower".
 */
static void
check_position_sequence(Oid seqid)
{
	HeapTuple	tup = NULL;
	Form_pg_sequence seq;
	bool		ok;

	if (get_rel_relkind(seqid) != RELKIND_SEQUENCE ||
		!HeapTupleIsValid(tup = SearchSysCache1(SEQRELID, ObjectIdGetDatum(seqid))))
		layout_error("extension \"orders\" cannot use \"%s\": it is not a sequence",
					 POSITION_SEQUENCE);
	seq = (Form_pg_sequence) GETSTRUCT(tup);
	ok = seq->seqcache == 1 && !seq->seqcycle && seq->seqincrement > 0;
	ReleaseSysCache(tup);
	if (!ok)
		layout_error("extension \"orders\" cannot use \"%s\": it must have CACHE 1, NO CYCLE and a positive increment",
					 POSITION_SEQUENCE);
}

/*
 * Builds the catalog.  The caller holds the locks of the call's tables; the
 * others are opened here only long enough to read their definition.
 */
static void
build_catalog(Oid nsp, OrdersCatalog *c)
{
	Relation	rel;
	TupleDesc	desc;
	Oid			lines_array_typid;
	int32		orders_colocation = 0;
	int32		events_colocation = 0;
	int32		consumers_colocation;
	int			events_natts;
	int			i;

	c->namespace_id = nsp;
	c->namespace_name = get_namespace_name(nsp);
	if (c->namespace_name == NULL)
		elog(ERROR, "cache lookup failed for namespace %u", nsp);

	/* the consumers' table came with 1.2 */
	for (i = 0; i < TABLE_COUNT; i++)
	{
		c->relids[i] = i == TABLE_CONSUMERS ? get_relname_relid(table_names[i], nsp) :
			lookup_relid(nsp, c->namespace_name, table_names[i]);
		watched_relids[i] = c->relids[i];
	}
	c->events_seqid = lookup_relid(nsp, c->namespace_name, POSITION_SEQUENCE);
	watched_relids[TABLE_COUNT + 2] = c->events_seqid;
	check_position_sequence(c->events_seqid);

	/* orders: the aggregate's row */
	rel = table_open(c->relids[TABLE_ORDERS], AccessShareLock);
	check_heap_table(rel, "orders", orders_columns, Natts_orders, c, TABLE_ORDERS);
	desc = RelationGetDescr(rel);
	c->orders_rowtype = rel->rd_rel->reltype;
	c->status_typid = TupleDescAttr(desc, Anum_orders_status - 1)->atttypid;
	lines_array_typid = TupleDescAttr(desc, Anum_orders_lines - 1)->atttypid;
	c->address_typid = TupleDescAttr(desc, Anum_orders_shipping_address - 1)->atttypid;
	c->orders_pkey = check_primary_key(rel, "orders", Anum_orders_id, UUIDOID);
	c->distributed[TABLE_ORDERS] = citus_distributed(c->relids[TABLE_ORDERS], "orders",
													 Anum_orders_id, &orders_colocation);
	table_close(rel, AccessShareLock);

	/*
	 * order_events: the outbox; its relay column came with 1.3, its index by
	 * order with 1.4, its envelope (id, aggregatetype, schema_version,
	 * metadata) with 1.8.  A library newer than the installed scripts serves
	 * the older layouts until ALTER EXTENSION orders UPDATE.
	 */
	rel = table_open(c->relids[TABLE_EVENTS], AccessShareLock);
	events_natts = RelationGetDescr(rel)->natts;
	c->events_have_relay = events_natts >= Anum_order_events_relay;
	c->events_have_envelope = events_natts >= Anum_order_events_metadata;
	check_heap_table(rel, "order_events", events_columns,
					 c->events_have_envelope ? Natts_order_events :
					 c->events_have_relay ? Anum_order_events_relay : Anum_order_events_relay - 1,
					 c, TABLE_EVENTS);
	c->events_order_index = find_events_order_index(rel);
	c->distributed[TABLE_EVENTS] = citus_distributed(c->relids[TABLE_EVENTS], "order_events",
													 Anum_order_events_order_id,
													 &events_colocation);
	table_close(rel, AccessShareLock);

	/* an order's row and its events go to one node, or the outbox splits */
	if (c->distributed[TABLE_ORDERS] != c->distributed[TABLE_EVENTS] ||
		(c->distributed[TABLE_ORDERS] && orders_colocation != events_colocation))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("extension \"orders\" cannot use tables \"orders\" and \"order_events\" unless Citus distributes both, colocated"),
				 errhint("Distribute both, colocated: orders by \"id\", order_events by \"order_id\".")));

	/*
	 * order_event_consumers: named checkpoints, written in C from 1.4, each
	 * snapshot with its bounds from 1.5.
	 */
	if (OidIsValid(c->relids[TABLE_CONSUMERS]))
	{
		int			natts;

		rel = table_open(c->relids[TABLE_CONSUMERS], AccessShareLock);
		natts = RelationGetDescr(rel)->natts;
		if (natts == Natts_consumers || natts == Anum_consumers_batch_cuts ||
			natts == Anum_consumers_batch_next_xid || natts == Anum_consumers_owner)
		{
			c->consumers_have_bounds = natts >= Anum_consumers_batch_next_xid;
			c->consumers_have_cuts = natts >= Anum_consumers_batch_cuts;
			c->consumers_have_carried = natts == Natts_consumers;
			check_heap_table(rel, "order_event_consumers", consumers_columns, natts,
							 c, TABLE_CONSUMERS);
			c->consumers_pkey = check_primary_key(rel, "order_event_consumers",
												  Anum_consumers_name, TEXTOID);
			/*
			 * The C code copies the cuts, the batch's over the checkpoint's,
			 * and makes an empty array of them: both columns must be arrays
			 * of one type.
			 */
			if (c->consumers_have_cuts &&
				(TupleDescAttr(RelationGetDescr(rel), Anum_consumers_acked_cuts - 1)->atttypid !=
				 TupleDescAttr(RelationGetDescr(rel), Anum_consumers_batch_cuts - 1)->atttypid ||
				 !OidIsValid(get_element_type(TupleDescAttr(RelationGetDescr(rel),
															Anum_consumers_acked_cuts - 1)->atttypid))))
				layout_error("extension \"orders\" cannot use \"%s\": its columns \"acked_cuts\" and \"batch_cuts\" are not arrays of one type",
							 "order_event_consumers");
		}
		else if (natts != Anum_consumers_owner - 1) /* before 1.4 */
			c->refusal[TABLE_CONSUMERS] = REFUSE_COLUMNS;
		/* each node's checkpoints are its own */
		(void) citus_distributed(c->relids[TABLE_CONSUMERS], "order_event_consumers",
								 InvalidAttrNumber, &consumers_colocation);
		table_close(rel, AccessShareLock);
	}

	/* order_status: the label OIDs, which are what a stored enum value is */
	if (!type_is_enum(c->status_typid))
		layout_error("extension \"orders\" cannot use \"%s\": it is not an enum", "order_status");
	for (i = 0; i < ORDER_STATUS_COUNT; i++)
	{
		HeapTuple	tup = SearchSysCache2(ENUMTYPOIDNAME,
										  ObjectIdGetDatum(c->status_typid),
										  CStringGetDatum(order_status_names[i]));

		if (!HeapTupleIsValid(tup))
			layout_error("extension \"orders\" cannot use \"%s\": label \"%s\" is missing",
						 "order_status", order_status_names[i]);
		c->status_oids[i] = ((Form_pg_enum) GETSTRUCT(tup))->oid;
		ReleaseSysCache(tup);
	}

	/* the composites, kept as private copies of their descriptors */
	c->line_typid = get_element_type(lines_array_typid);
	if (!OidIsValid(c->line_typid))
		layout_error("extension \"orders\" cannot use \"%s\": column \"%s\" is not an array",
					 "orders", "lines");
	watched_relids[TABLE_COUNT] = get_typ_typrelid(c->line_typid);
	watched_relids[TABLE_COUNT + 1] = get_typ_typrelid(c->address_typid);
	c->line_desc = composite_desc(c->line_typid, "order_line", line_fields, Natts_line);
	c->address_desc = composite_desc(c->address_typid, "order_address", address_fields,
									 Natts_address);
}

/* At the end of a transaction no call is running: retired catalogs go. */
static void
orders_catalog_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PARALLEL_ABORT)
	{
		calls_open = 0;
		if (retired_context != NULL)
			MemoryContextReset(retired_context);
	}
}

/* Rebuilds the cache for schema nsp; the caller holds its call's locks. */
static void
rebuild_cache(Oid nsp)
{
	if (!callbacks_registered)
	{
		CacheRegisterRelcacheCallback(orders_relcache_callback, (Datum) 0);
		RegisterXactCallback(orders_catalog_xact_callback, NULL);
		retired_context = AllocSetContextCreate(TopMemoryContext, "orders retired catalogs",
												ALLOCSET_SMALL_SIZES);
		callbacks_registered = true;
	}
	for (;;)
	{
		uint64		seen = invalidation_count;
		MemoryContext context = AllocSetContextCreate(TopMemoryContext, "orders catalog",
													  ALLOCSET_SMALL_SIZES);
		MemoryContext old = MemoryContextSwitchTo(context);
		OrdersCatalog *built = palloc0(sizeof(OrdersCatalog));

		cache_valid = false;
		memset(watched_relids, 0, sizeof(watched_relids));
		PG_TRY();
		{
			build_catalog(nsp, built);
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(old);
			MemoryContextDelete(context);
			PG_RE_THROW();
		}
		PG_END_TRY();
		MemoryContextSwitchTo(old);

		if (cache_context != NULL && calls_open > 0)
			MemoryContextSetParent(cache_context, retired_context);
		else if (cache_context != NULL)
			MemoryContextDelete(cache_context);
		cache_context = context;
		cache = built;

		/* An invalidation that arrived while we looked may concern what we saw. */
		if (seen == invalidation_count)
			break;
	}
	cache_valid = true;
}

/*
 * The schema of the called function.  A function that no longer exists
 * was dropped (with the extension) after the statement was planned.
 */
static Oid
called_function_namespace(FunctionCallInfo fcinfo)
{
	Oid			nsp = get_func_namespace(fcinfo->flinfo->fn_oid);

	if (!OidIsValid(nsp))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"orders\" was dropped or re-created during the statement"),
				 errhint("Run the statement again.")));
	return nsp;
}

/*
 * Opens what a call needs: locks[t] is the lock to take on table t, or
 * NoLock for a table the call does not touch.  Every lock is taken first;
 * then pending invalidations are processed, so that any DDL committed
 * before our locks were granted is seen; then the cache is judged, and
 * rebuilt if it is stale.  On return, call->rel[t] is open for each table
 * locked, and the layout the C code relies on holds until the transaction
 * ends.
 */
const OrdersCatalog *
orders_open(FunctionCallInfo fcinfo, const LOCKMODE locks[TABLE_COUNT], OrdersCall *call)
{
	Oid			nsp = called_function_namespace(fcinfo);
	int			t;

	for (;;)
	{
		Oid			relids[TABLE_COUNT];
		Oid			seqid = InvalidOid;
		bool		same = true;

		/* by the cached OIDs if we have them, else by name */
		for (t = 0; t < TABLE_COUNT; t++)
		{
			relids[t] = cache_serves(nsp) ? cache->relids[t] :
				get_relname_relid(table_names[t], nsp);
			if (locks[t] != NoLock && OidIsValid(relids[t]))
				LockRelationOid(relids[t], locks[t]);
		}
		/* a writer of events holds off ALTER SEQUENCE until it commits */
		if (locks[TABLE_EVENTS] >= RowExclusiveLock)
		{
			seqid = cache_serves(nsp) ? cache->events_seqid :
				get_relname_relid(POSITION_SEQUENCE, nsp);
			if (OidIsValid(seqid))
				LockRelationOid(seqid, RowExclusiveLock);
		}
		AcceptInvalidationMessages();

		if (cache_serves(nsp))
			break;

		/*
		 * Stale: the names may now belong to other relations (the extension
		 * dropped and created again while we waited).  Rebuild only when
		 * what we locked is still what the names mean; else lock again.
		 */
		nsp = called_function_namespace(fcinfo);
		for (t = 0; t < TABLE_COUNT; t++)
			if (locks[t] != NoLock && get_relname_relid(table_names[t], nsp) != relids[t])
				same = false;
		if (OidIsValid(seqid) && get_relname_relid(POSITION_SEQUENCE, nsp) != seqid)
			same = false;
		/* a missing table is reported by the rebuild */
		if (same)
		{
			rebuild_cache(nsp);
			break;
		}
		for (t = 0; t < TABLE_COUNT; t++)
			if (locks[t] != NoLock && OidIsValid(relids[t]))
				UnlockRelationOid(relids[t], locks[t]);
		if (OidIsValid(seqid))
			UnlockRelationOid(seqid, RowExclusiveLock);
	}

	/*
	 * What the call will write must hold nothing a direct write would skip;
	 * row-level security depends on the role, so it is asked each time.
	 */
	for (t = 0; t < TABLE_COUNT; t++)
	{
		if (locks[t] < RowExclusiveLock || !OidIsValid(cache->relids[t]))
			continue;
		/* a Citus shell holds no rows; orders_route judges the shard */
		if (!cache->distributed[t])
			refuse_direct_write(table_names[t], cache->refusal[t], cache->refusal_name[t]);
		if (cache->row_security[t] &&
			check_enable_rls(cache->relids[t], InvalidOid, false) == RLS_ENABLED)
			unsupported_error("extension \"orders\" cannot write table \"%s\": it has row-level security that applies to the current role",
							  table_names[t]);
	}

	call->cat = cache;
	calls_open++;
	for (t = 0; t < TABLE_COUNT; t++)
	{
		call->rel[t] = (locks[t] != NoLock && OidIsValid(cache->relids[t])) ?
			table_open(cache->relids[t], NoLock) : NULL;
		call->data[t] = call->rel[t];
		call->locks[t] = locks[t];
	}
	call->orders_pkey = cache->orders_pkey;
	call->events_order_index = cache->events_order_index;
	call->after_position = -1;
	return cache;
}

/*
 * A shard must be its table's twin: rows are formed with the table's
 * descriptor and written into the shard, and read from the shard as the
 * table's row type.  Citus makes it so; a shard changed behind Citus's
 * back is refused, not misread.
 */
static void
check_shard_layout(Relation table, Relation shard)
{
	TupleDesc	td = RelationGetDescr(table);
	TupleDesc	sd = RelationGetDescr(shard);
	const char *name = RelationGetRelationName(shard);
	int			i;

	require_heap_table(shard, name);
	if (shard->rd_rel->relowner != table->rd_rel->relowner)
		layout_error("extension \"orders\" cannot use \"%s\": its owner is not the owner of \"%s\"",
					 name, RelationGetRelationName(table));
	if (sd->natts != td->natts)
		layout_error("extension \"orders\" cannot use \"%s\": it has a different number of columns",
					 name);
	for (i = 0; i < td->natts; i++)
	{
		Form_pg_attribute ta = TupleDescAttr(td, i);
		Form_pg_attribute sa = TupleDescAttr(sd, i);

		if (sa->attisdropped != ta->attisdropped || sa->atttypid != ta->atttypid ||
			sa->atttypmod != ta->atttypmod || sa->attcollation != ta->attcollation ||
			strcmp(NameStr(sa->attname), NameStr(ta->attname)) != 0)
			layout_error("extension \"orders\" cannot use \"%s\": column %d is not \"%s\" of the expected type",
						 name, i + 1, NameStr(ta->attname));
	}
}

/*
 * Points the call at the rows of the order whose id it now knows: for each
 * table of the call that Citus distributes, the shard of that order on this
 * node, locked as the table is, and held to the same rules as the table
 * (the layout the C code relies on; nothing a direct write would skip);
 * and the shard's own indexes.  False when another node holds the order:
 * the caller sends the call there (routing.c).  Elsewhere a table is its
 * own data, and this does nothing.
 */
bool
orders_route(OrdersCall *call, const pg_uuid_t *id)
{
	const OrdersCatalog *cat = call->cat;
	static const OrdersTable tables[] = {TABLE_ORDERS, TABLE_EVENTS};
	int			i;

	for (i = 0; i < (int) lengthof(tables); i++)
	{
		OrdersTable t = tables[i];
		Relation	shard;
		Oid			shard_relid;
		char	   *name;
		DirectWriteRefusal refusal;

		if (call->rel[t] == NULL || !cat->distributed[t])
			continue;
		shard_relid = citus_local_shard(cat->relids[t], UUIDPGetDatum(id), UUIDOID,
										call->locks[t]);
		/* colocated: the first table's shard tells for both */
		if (!OidIsValid(shard_relid))
		{
			routing_check_may_send();
			return false;
		}
		shard = table_open(shard_relid, NoLock);
		call->data[t] = shard;
		name = RelationGetRelationName(shard);
		check_shard_layout(call->rel[t], shard);
		if (t == TABLE_ORDERS)
			call->orders_pkey = check_primary_key(shard, name, Anum_orders_id, UUIDOID);
		else
		{
			call->events_order_index = find_events_order_index(shard);
			if (OidIsValid(cat->events_order_index) && !OidIsValid(call->events_order_index))
				layout_error("extension \"orders\" cannot use \"%s\": it has no index on (order_id, version)",
							 name);
		}
		if (call->locks[t] >= RowExclusiveLock &&
			(refusal = direct_write_refusal(shard, &name)) != REFUSE_NOTHING)
			refuse_direct_write(RelationGetRelationName(shard), refusal, name);
	}
	return true;
}

/* Closes what orders_open opened; the locks are kept until the transaction ends. */
void
orders_close(OrdersCall *call)
{
	int			t;

	for (t = 0; t < TABLE_COUNT; t++)
	{
		if (call->data[t] != NULL && call->data[t] != call->rel[t])
			table_close(call->data[t], NoLock);
		if (call->rel[t] != NULL)
			table_close(call->rel[t], NoLock);
	}
	if (calls_open > 0)
		calls_open--;
}

/*
 * The fields of a composite value (an order_line, an order_address, an
 * orders row).  The value must be of the type desc describes: a row built
 * for another layout is refused, not misread.
 */
void
composite_deform(Datum value, TupleDesc desc, Datum *values, bool *nulls)
{
	HeapTupleHeader th = DatumGetHeapTupleHeader(value);
	HeapTupleData tuple;

	if (HeapTupleHeaderGetNatts(th) != desc->natts ||
		(OidIsValid(desc->tdtypeid) && desc->tdtypeid != RECORDOID &&
		 HeapTupleHeaderGetTypeId(th) != desc->tdtypeid))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("a composite value does not have the layout of its type"),
				 errdetail("The value has %d fields; the type has %d.",
						   HeapTupleHeaderGetNatts(th), desc->natts),
				 errhint("The type changed while the statement ran; run it again.")));

	tuple.t_len = HeapTupleHeaderGetDatumLength(th);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = th;
	heap_deform_tuple(&tuple, desc, values, nulls);
}

/*
 * The status an enum label stands for.  Only the five labels the
 * extension defines mean anything to the rules; a label added to the type
 * since (ALTER TYPE ... ADD VALUE) is refused.  given: the value comes from
 * the caller, not from the table.
 */
OrderStatus
order_status_from_oid(const OrdersCatalog *cat, Oid label, bool given)
{
	int			i;
	HeapTuple	tup;
	char	   *name;

	for (i = 0; i < ORDER_STATUS_COUNT; i++)
		if (cat->status_oids[i] == label)
			return (OrderStatus) i;

	tup = SearchSysCache1(ENUMOID, ObjectIdGetDatum(label));
	name = HeapTupleIsValid(tup) ?
		pstrdup(NameStr(((Form_pg_enum) GETSTRUCT(tup))->enumlabel)) : psprintf("%u", label);
	if (HeapTupleIsValid(tup))
		ReleaseSysCache(tup);
	ereport(ERROR,
			(errcode(given ? ERRCODE_INVALID_PARAMETER_VALUE : ERRCODE_CHECK_VIOLATION),
			 errmsg("status \"%s\" is not one the extension \"orders\" knows", name),
			 errdetail("The field is status. An order's status is one of pending, confirmed, shipped, delivered and cancelled."),
			 errhint("Labels added to type order_status are not statuses of an order.")));
	pg_unreachable();
}

/* Whether the current role may read the orders table (SELECT on it). */
bool
orders_may_read(const OrdersCatalog *cat)
{
	return pg_class_aclcheck(cat->relids[TABLE_ORDERS], GetUserId(), ACL_SELECT) == ACLCHECK_OK;
}

/*
 * The functions read the tables directly, so neither the tables' privileges
 * nor their row-level security are applied by the executor.  What returns
 * an order, or an event (whose payload is an order), needs what a SELECT
 * from orders needs, and refuses where policies would filter that SELECT.
 */
void
orders_check_can_read(const OrdersCatalog *cat)
{
	Oid			relid = cat->relids[TABLE_ORDERS];
	AclResult	aclresult = pg_class_aclcheck(relid, GetUserId(), ACL_SELECT);

	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_TABLE, get_rel_name(relid));
	if (check_enable_rls(relid, InvalidOid, false) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("extension \"orders\" does not apply row-level security"),
				 errdetail("Row-level security is enabled on table \"%s.orders\".",
						   cat->namespace_name),
				 errhint("Read the table with SELECT, which applies its policies.")));
}

/*
 * A table of the extension's that no role may write and its functions
 * read and write as its owner, through SPI (order_idempotency,
 * order_event_holds).  Written as the owner, a table of that name that a
 * role slipped in (into a schema at an older version, say), or one given a
 * trigger, a rule or row-level security, would run what it likes with the
 * owner's rights: so it must be the extension's own ordinary table, owned
 * by the owner of the others, as the extension made it.  Returns its OID;
 * when the extension has no table of that name yet, InvalidOid if
 * missing_ok, otherwise an error that says which version brings it (what:
 * the feature that needs it).
 */
Oid
orders_private_table(const OrdersCatalog *cat, const char *relname, const char *what,
					 const char *version, bool missing_ok)
{
	Oid			relid = get_relname_relid(relname, cat->namespace_id);
	Relation	rel;
	bool		ours;
	bool		member = false;
	int			i;

	for (i = 0; i < KNOWN_MEMBERS && OidIsValid(relid) && !member; i++)
		member = known_members[i] == relid;
	if (!member && OidIsValid(relid) &&
		getExtensionOfObject(RelationRelationId, relid) == get_extension_oid("orders", true))
	{
		member = true;
		for (i = 0; i < KNOWN_MEMBERS; i++)
			if (!OidIsValid(known_members[i]))
			{
				known_members[i] = relid;
				break;
			}
	}
	if (!member)
	{
		if (missing_ok)
			return InvalidOid;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s needs extension orders %s or later", what, version),
				 errhint("Run ALTER EXTENSION orders UPDATE.")));
	}
	/* the relcache, not pg_class's flags, which outlive a dropped trigger */
	rel = table_open(relid, AccessShareLock);
	ours = rel->rd_rel->relkind == RELKIND_RELATION && rel->trigdesc == NULL &&
		rel->rd_rules == NULL && !rel->rd_rel->relrowsecurity &&
		rel->rd_rel->relowner == orders_relation_owner(cat->relids[TABLE_ORDERS]);
	table_close(rel, AccessShareLock);
	if (!ours)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"orders\" cannot use \"%s\": it is not the extension's table as the extension made it",
						relname),
				 errdetail("It must be the extension's own ordinary table, owned by the owner of \"orders\", with no trigger, rule or row-level security.")));
	return relid;
}

/* The owner of one of our relations: the role their private statements run as. */
Oid
orders_relation_owner(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/* A role's name for a message; a dropped role by its OID. */
char *
orders_role_name(Oid role)
{
	char	   *name = GetUserNameFromId(role, true);

	return name != NULL ? name : psprintf("(dropped role %u)", role);
}

/* The role a grant or an ownership means: pg_database_owner is the database's owner. */
static Oid
role_standing_for(Oid role)
{
	HeapTuple	dbtup;

	if (role != ROLE_PG_DATABASE_OWNER)
		return role;
	dbtup = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(MyDatabaseId));
	if (HeapTupleIsValid(dbtup))
	{
		role = ((Form_pg_database) GETSTRUCT(dbtup))->datdba;
		ReleaseSysCache(dbtup);
	}
	return role;
}

/*
 * Whether acl grants a privilege of mask to PUBLIC or to a role that is
 * not a superuser (pg_database_owner standing for the database's owner);
 * *grantee is that role, or ACL_ID_PUBLIC.
 */
static bool
acl_grants_untrusted(Datum aclDatum, AclMode mask, Oid *grantee)
{
	Acl		   *acl = DatumGetAclP(aclDatum);
	AclItem    *items = ACL_DAT(acl);
	int			i;

	for (i = 0; i < ACL_NUM(acl); i++)
	{
		Oid			role = role_standing_for(items[i].ai_grantee);

		if ((ACLITEM_GET_PRIVS(items[i]) & mask) != 0 &&
			(role == ACL_ID_PUBLIC || !superuser_arg(role)))
		{
			*grantee = role;
			return true;
		}
	}
	return false;
}

/*
 * Why a member of the extension could run a non-superuser's code when a
 * superuser uses it, or NULL: every member relation, function and type
 * must be owned by a superuser, and nobody else may put a trigger on, or a
 * foreign key to, its tables (code that would run inside our writes).
 */
static char *
member_untrusted(Oid ext)
{
	Relation	dep = table_open(DependRelationId, AccessShareLock);
	ScanKeyData key[2];
	SysScanDesc scan;
	HeapTuple	tup;
	char	   *reason = NULL;

	ScanKeyInit(&key[0], Anum_pg_depend_refclassid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(ExtensionRelationId));
	ScanKeyInit(&key[1], Anum_pg_depend_refobjid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(ext));
	scan = systable_beginscan(dep, DependReferenceIndexId, true, NULL, 2, key);
	while (reason == NULL && HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_depend d = (Form_pg_depend) GETSTRUCT(tup);
		Oid			owner = InvalidOid;
		Oid			grantee;
		bool		granted = false;

		if (d->deptype != DEPENDENCY_EXTENSION)
			continue;
		if (d->classid == RelationRelationId)
		{
			HeapTuple	rtup = SearchSysCache1(RELOID, ObjectIdGetDatum(d->objid));
			bool		isnull;
			Datum		acl;

			if (!HeapTupleIsValid(rtup))
				continue;
			owner = ((Form_pg_class) GETSTRUCT(rtup))->relowner;
			acl = SysCacheGetAttr(RELOID, rtup, Anum_pg_class_relacl, &isnull);
			if (!isnull)
				granted = acl_grants_untrusted(acl, ACL_TRIGGER | ACL_REFERENCES, &grantee);
			ReleaseSysCache(rtup);
		}
		else if (d->classid == ProcedureRelationId)
		{
			HeapTuple	ptup = SearchSysCache1(PROCOID, ObjectIdGetDatum(d->objid));

			if (!HeapTupleIsValid(ptup))
				continue;
			owner = ((Form_pg_proc) GETSTRUCT(ptup))->proowner;
			ReleaseSysCache(ptup);
		}
		else if (d->classid == TypeRelationId)
		{
			HeapTuple	ttup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(d->objid));

			Form_pg_type typ;

			if (!HeapTupleIsValid(ttup))
				continue;
			typ = (Form_pg_type) GETSTRUCT(ttup);
			/*
			 * A table's row type and an array type are members too on 17
			 * and 18; their owner is their table's or element's, judged
			 * there.
			 */
			if (!IsTrueArrayType(typ) &&
				!(OidIsValid(typ->typrelid) &&
				  get_rel_relkind(typ->typrelid) != RELKIND_COMPOSITE_TYPE))
				owner = typ->typowner;
			ReleaseSysCache(ttup);
		}
		else
			continue;
		if (OidIsValid(owner) && !superuser_arg(owner))
			reason = psprintf("Its member %s is owned by role \"%s\", not a superuser",
							  getObjectDescriptionOids(d->classid, d->objid),
							  orders_role_name(owner));
		else if (granted)
			reason = psprintf("A role that is not a superuser may create triggers on, or references to, %s",
							  getObjectDescriptionOids(d->classid, d->objid));
	}
	systable_endscan(scan);
	table_close(dep, AccessShareLock);
	return reason;
}

/*
 * The SQL functions name the schema as it was called when they were
 * installed.  If it was renamed since, that name may now be another
 * schema's, one a role that may create schemas made: the functions would
 * run its objects.  The body of orders_installed_schema(), a member of the
 * extension, holds the name they use; it is read, never run.
 */
static char *
schema_renamed(Oid nsp, const char *current, Oid ext)
{
	oidvector  *noargs = buildoidvector(NULL, 0);
	Oid			fn = GetSysCacheOid3(PROCNAMEARGSNSP, Anum_pg_proc_oid,
									 CStringGetDatum("orders_installed_schema"),
									 PointerGetDatum(noargs), ObjectIdGetDatum(nsp));
	HeapTuple	tup;
	bool		isnull;
	Datum		src;
	char	   *expected;
	bool		same;

	if (!OidIsValid(fn))
		return pstrdup("The extension is installed at a version before 1.4, whose SQL functions "
					   "cannot be checked; run ALTER EXTENSION orders UPDATE");
	if (getExtensionOfObject(ProcedureRelationId, fn) != ext)
		return pstrdup("Its function orders_installed_schema() is not the extension's");
	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(tup))
		return NULL;
	src = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_prosrc, &isnull);
	expected = psprintf("SELECT '%s'::pg_catalog.text", quote_identifier(current));
	same = !isnull && strcmp(TextDatumGetCString(src), expected) == 0;
	ReleaseSysCache(tup);
	if (same)
		return NULL;
	return pstrdup("It was renamed after the extension was installed, and the extension's "
				   "SQL functions still name it as it was");
}

/*
 * Why schema nsp cannot be trusted with the extension's SQL functions, or
 * NULL when it can.  Those functions name their helpers and tables by the
 * schema's name, fixed at install: whoever owns the schema can rename it
 * and put look-alikes under the old name, and whoever may create in it can
 * add objects beside ours.  Only superusers may do either.  Then the name
 * must still be the one the functions use, and no member of the extension
 * may let another role's code run inside a superuser's call.
 *
 * The reason is one sentence, whole but for its final period, which the
 * message that quotes it adds: errdetail("%s.", reason).
 */
char *
orders_schema_untrusted(Oid nsp)
{
	HeapTuple	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));
	Form_pg_namespace form;
	Oid			owner;
	Oid			grantee;
	Oid			ext;
	Datum		aclDatum;
	bool		isnull;
	char	   *reason = NULL;

	if (!HeapTupleIsValid(tup))
		return psprintf("Schema %u does not exist", nsp);
	form = (Form_pg_namespace) GETSTRUCT(tup);
	owner = role_standing_for(form->nspowner);
	if (!superuser_arg(owner))
		reason = psprintf("Its owner, role \"%s\", is not a superuser",
						  orders_role_name(owner));

	aclDatum = SysCacheGetAttr(NAMESPACEOID, tup, Anum_pg_namespace_nspacl, &isnull);
	if (reason == NULL && !isnull && acl_grants_untrusted(aclDatum, ACL_CREATE, &grantee))
		reason = grantee == ACL_ID_PUBLIC ?
			pstrdup("Every role (PUBLIC) may create objects in it") :
			psprintf("Role \"%s\", not a superuser, may create objects in it",
					 orders_role_name(grantee));
	ext = get_extension_oid("orders", true);
	if (reason == NULL && OidIsValid(ext))
		reason = schema_renamed(nsp, NameStr(form->nspname), ext);
	if (reason == NULL && OidIsValid(ext))
		reason = member_untrusted(ext);
	ReleaseSysCache(tup);
	return reason;
}

/*
 * orders_assert_trusted_schema(): refuses the extension's schema when it
 * cannot be trusted; the install and update scripts call it first.
 */
PG_FUNCTION_INFO_V1(orders_assert_trusted_schema);

Datum
orders_assert_trusted_schema(PG_FUNCTION_ARGS)
{
	Oid			nsp = called_function_namespace(fcinfo);
	char	   *reason = orders_schema_untrusted(nsp);

	if (reason != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("extension \"orders\" cannot be installed in schema \"%s\"",
						get_namespace_name(nsp)),
				 errdetail("%s. Whoever owns the schema or may create in it "
						   "could make the extension's functions run code of theirs.",
						   reason),
				 errhint("Give the schema to a superuser and revoke CREATE on it from other roles; "
						 "or install the extension in a schema of its own: "
						 "CREATE SCHEMA orders; CREATE EXTENSION orders SCHEMA orders;")));
	PG_RETURN_VOID();
}
