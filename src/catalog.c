/*
 * catalog.c: finding the extension's own tables and types, and opening them.
 *
 * The functions never resolve a name through the caller's search_path: the
 * schema is the install schema of the called function, found by OID (the
 * one it lives in, or for an internal helper the one its extension names),
 * and every relation and type is looked up there by name, checked against
 * the layout the C code expects, and kept by OID.
 *
 * The lookup is cached per session, and the cache is judged under the locks
 * of the call that uses it: a call first locks the tables it will touch,
 * then processes pending invalidations, and only then asks whether the cache
 * still holds.  A relcache invalidation of any of our relations (ALTER,
 * CREATE INDEX, CREATE TRIGGER, DROP EXTENSION ...) clears it, and the next
 * call rebuilds it while it holds those locks, so no concurrent DDL can slip
 * in between the check and the write.
 *
 * What the tables must be for the direct writes is judged in refusals.c,
 * as the catalog is built and as each call opens it.  The columns a shop
 * added to orders, and its CHECK constraints, are described here too, their
 * expressions planned for fields.c.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/pg_depend.h"
#include "catalog/pg_enum.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_namespace.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "rewrite/rewriteHandler.h"
#include "storage/lmgr.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/syscache.h"

#include "orders.h"

const char *const order_status_names[ORDER_STATUS_COUNT] = {
	"pending", "confirmed", "shipped", "delivered", "cancelled"
};

static const char *const table_names[TABLE_COUNT] = {
	"orders", "order_events", "order_event_consumers"
};

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
 * The shop's planned expressions (fields.c) fold what other objects hold:
 * a SQL function's body inlined, an immutable function's result, a domain's
 * default, a domain without constraints taken as its base type.  A type
 * or a function changed anywhere (ALTER DOMAIN sends an invalidation for
 * its type) makes them stale, as it makes the server's cached plans stale.
 * Rare, so any will do.
 */
static void
orders_proc_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	if (cache != NULL && (cache->nfields > 0 || cache->ncheck > 0))
	{
		cache_valid = false;
		invalidation_count++;
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

/* What the catalog keeps of one attribute: its type, how to read it, how to render it. */
static void
field_describe(OrderField *f, Form_pg_attribute att)
{
	FuncExpr   *call;
	Oid			input_func;
	Oid			base = getBaseType(att->atttypid);

	f->attnum = att->attnum;
	f->name = pstrdup(NameStr(att->attname));
	f->typid = att->atttypid;
	f->typmod = att->atttypmod;
	f->typlen = att->attlen;
	f->typbyval = att->attbyval;
	getTypeInputInfo(f->typid, &input_func, &f->input_ioparam);
	fmgr_info_cxt(input_func, &f->input, CurrentMemoryContext);
	f->json_input = base == JSONBOID || base == JSONOID;
	f->is_domain = get_typtype(f->typid) == TYPTYPE_DOMAIN;

	/* to_jsonb finds the type of its argument in the call's expression */
	call = makeFuncExpr(F_TO_JSONB, JSONBOID,
						list_make1(makeNullConst(f->typid, f->typmod, att->attcollation)),
						InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
	fmgr_info_cxt(F_TO_JSONB, &f->to_jsonb, CurrentMemoryContext);
	fmgr_info_set_expr((Node *) call, &f->to_jsonb);
}

/* The attributes of one of our composites past the nfixed ones we read. */
static void
composite_extras_describe(CompositeExtras *ex, TupleDesc desc, int nfixed)
{
	int			i;

	ex->nfixed = nfixed;
	ex->nextra = 0;
	ex->extra = palloc0(sizeof(OrderField) * Max(desc->natts - nfixed, 1));
	for (i = nfixed; i < desc->natts; i++)
		if (!TupleDescAttr(desc, i)->attisdropped)
			field_describe(&ex->extra[ex->nextra++], TupleDescAttr(desc, i));
}

/*
 * Describes orders' columns past ours and its CHECK constraints, in the
 * catalog's memory context, for fields.c: the expressions planned once
 * here, evaluated by each write.  The caller holds a lock on orders.
 */
static void
fields_describe(OrdersCatalog *c, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	TupleConstr *constr = desc->constr;
	int			i;

	refuse_virtual_generated(desc, "orders");
	c->orders_natts = desc->natts;
	c->nfields = 0;
	c->fields = palloc0(sizeof(OrderField) * Max(desc->natts - Natts_orders, 1));
	for (i = Natts_orders; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		OrderField *f;
		Node	   *expr;

		if (att->attisdropped)
			continue;
		f = &c->fields[c->nfields++];
		field_describe(f, att);
		f->generated = att->attgenerated;
		f->identity_always = att->attidentity == ATTRIBUTE_IDENTITY_ALWAYS;

		/* the column's default, its domain's, its identity's, or its generation */
		expr = build_column_default(rel, att->attnum);
		if (expr == NULL)
			continue;
		/* planned as INSERT plans it; what it folds, the callbacks above forget */
		f->default_expr = expression_planner((Expr *) expr);
		if (IsA(f->default_expr, Const) && !f->generated)
		{
			Const	   *k = (Const *) f->default_expr;

			f->default_const = true;
			f->default_isnull = k->constisnull;
			if (!k->constisnull)
				f->default_value = datumCopy(k->constvalue, f->typbyval, f->typlen);
		}
	}

	c->ncheck = constr != NULL ? constr->num_check : 0;
	c->checks = palloc0(sizeof(Expr *) * Max(c->ncheck, 1));
	for (i = 0; i < c->ncheck; i++)
	{
		if (!COMPAT_CHECK_ENFORCED(&constr->check[i]))
			continue;
		c->checks[i] = expression_planner((Expr *) stringToNode(constr->check[i].ccbin));
	}
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
	check_heap_table(rel, "orders", orders_columns, Natts_orders, true, c, TABLE_ORDERS);
	desc = RelationGetDescr(rel);
	c->orders_rowtype = rel->rd_rel->reltype;
	c->status_typid = TupleDescAttr(desc, Anum_orders_status - 1)->atttypid;
	lines_array_typid = TupleDescAttr(desc, Anum_orders_lines - 1)->atttypid;
	c->address_typid = TupleDescAttr(desc, Anum_orders_shipping_address - 1)->atttypid;
	c->orders_pkey = check_primary_key(rel, "orders", Anum_orders_id, UUIDOID);
	c->distributed[TABLE_ORDERS] = citus_distributed(c->relids[TABLE_ORDERS], "orders",
													 Anum_orders_id, &orders_colocation);
	fields_describe(c, rel);
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
					 false, c, TABLE_EVENTS);
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
							 false, c, TABLE_CONSUMERS);
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
	composite_extras_describe(&c->line_extras, c->line_desc, Natts_line);
	composite_extras_describe(&c->address_extras, c->address_desc, Natts_address);
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
		CacheRegisterSyscacheCallback(PROCOID, orders_proc_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(TYPEOID, orders_proc_callback, (Datum) 0);
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
 * The extension's schemas as last seen: the install schema, and the schema
 * of its internal helpers (orders_internal, or before 1.11 the install
 * schema itself; invalid until known).  Forgotten when any schema changes
 * (created by the update to 1.11, renamed, dropped with the extension), so
 * each is seen anew.
 */
static Oid	install_nsp_seen = InvalidOid;
static Oid	internal_nsp_seen = InvalidOid;
static bool namespace_callback_registered = false;

/* Bumped by every schema change, so a lookup can tell it raced one. */
static uint64 namespace_changes = 0;

static void
orders_namespace_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	install_nsp_seen = InvalidOid;
	internal_nsp_seen = InvalidOid;
	namespace_changes++;
}

/* The memo above is kept only while a schema change would reset it. */
static void
remember_namespaces(void)
{
	if (!namespace_callback_registered)
	{
		CacheRegisterSyscacheCallback(NAMESPACEOID, orders_namespace_callback, (Datum) 0);
		namespace_callback_registered = true;
	}
}

static void
function_dropped(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("extension \"orders\" was dropped, re-created or updated during the statement"),
			 errhint("Run the statement again.")));
}

/*
 * A schema of the extension's by name, for a lookup by name; gone, it was
 * dropped with the extension during the statement.
 */
char *
orders_schema_name(Oid nsp)
{
	char	   *name = get_namespace_name(nsp);

	if (name == NULL)
		function_dropped();
	return name;
}

/* The extension's member schema: orders_internal, unless it was renamed. */
Oid
orders_member_schema(Oid ext)
{
	Relation	dep = table_open(DependRelationId, AccessShareLock);
	ScanKeyData key[2];
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			nsp = InvalidOid;

	ScanKeyInit(&key[0], Anum_pg_depend_refclassid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(ExtensionRelationId));
	ScanKeyInit(&key[1], Anum_pg_depend_refobjid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(ext));
	scan = systable_beginscan(dep, DependReferenceIndexId, true, NULL, 2, key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_depend d = (Form_pg_depend) GETSTRUCT(tup);

		if (d->deptype == DEPENDENCY_EXTENSION && d->classid == NamespaceRelationId)
		{
			nsp = d->objid;
			break;
		}
	}
	systable_endscan(scan);
	table_close(dep, AccessShareLock);
	return nsp;
}

/*
 * The schema of the extension's internal helpers, for the C code that
 * calls them by name (routing.c, consumers.c, relay.c): the extension's
 * own schema from 1.11 on, the install schema before, so that a library
 * newer than the installed scripts serves them until the update.  Asked
 * on every routed call, so remembered.
 */
Oid
orders_helpers_namespace(Oid install)
{
	uint64		changes = namespace_changes;
	Oid			ext;
	Oid			helpers;

	if (install == install_nsp_seen && OidIsValid(internal_nsp_seen))
		return internal_nsp_seen;
	remember_namespaces();
	ext = get_extension_oid("orders", true);
	helpers = OidIsValid(ext) ? orders_member_schema(ext) : InvalidOid;
	if (!OidIsValid(helpers))
		helpers = install;
	if (changes == namespace_changes)
	{
		install_nsp_seen = install;
		internal_nsp_seen = helpers;
	}
	return helpers;
}

/*
 * The install schema of the called function, where the extension's tables
 * are.  The API's functions live in it; the internal helpers live in the
 * extension's member schema (ORDERS_INTERNAL_SCHEMA), which stands for the
 * install schema here.  The install schema is no member of orders (it may
 * be another extension's, which is not followed): the extension only names
 * it.  A function that no longer exists was dropped (with the extension)
 * after the statement was planned.
 */
Oid
called_function_namespace(FunctionCallInfo fcinfo)
{
	Oid			nsp = get_func_namespace(fcinfo->flinfo->fn_oid);
	Oid			internal = InvalidOid;
	uint64		changes = namespace_changes;
	Oid			ext;

	if (!OidIsValid(nsp))
		function_dropped();
	if (nsp == install_nsp_seen)
		return nsp;
	if (nsp == internal_nsp_seen && OidIsValid(install_nsp_seen))
		return install_nsp_seen;
	remember_namespaces();
	ext = getExtensionOfObject(NamespaceRelationId, nsp);
	if (OidIsValid(ext) && ext == get_extension_oid("orders", true))
	{
		Oid			install = get_extension_schema(ext);

		if (!OidIsValid(install))
			function_dropped();
		internal = nsp;
		nsp = install;
	}
	/* a schema changed while we looked: answer, but remember nothing */
	if (changes == namespace_changes)
	{
		if (nsp != install_nsp_seen || OidIsValid(internal))
			internal_nsp_seen = internal;
		install_nsp_seen = nsp;
	}
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

static void
composite_deform_natts(Datum value, TupleDesc desc, bool fewer_ok, Datum *values, bool *nulls)
{
	HeapTupleHeader th = DatumGetHeapTupleHeader(value);
	HeapTupleData tuple;
	int			natts = HeapTupleHeaderGetNatts(th);

	if ((fewer_ok ? natts > desc->natts : natts != desc->natts) ||
		(OidIsValid(desc->tdtypeid) && desc->tdtypeid != RECORDOID &&
		 HeapTupleHeaderGetTypeId(th) != desc->tdtypeid))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("a composite value does not have the layout of its type"),
				 errdetail("The value has %d fields; the type has %d.", natts, desc->natts),
				 errhint("The type changed while the statement ran; run it again.")));

	tuple.t_len = HeapTupleHeaderGetDatumLength(th);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = th;
	heap_deform_tuple(&tuple, desc, values, nulls);
}

/*
 * The fields of an orders row.  The value must be of the type desc
 * describes: a row built for another layout (before a column was added,
 * say) is refused, not misread.
 */
void
composite_deform(Datum value, TupleDesc desc, Datum *values, bool *nulls)
{
	composite_deform_natts(value, desc, false, values, nulls);
}

/*
 * The fields of an order_line or an order_address, into arrays of
 * desc->natts.  A value stored before the shop added an attribute (ALTER
 * TYPE ... ADD ATTRIBUTE) has fewer: the new ones read as NULL, as the
 * server reads them.
 */
void
composite_fields(Datum value, TupleDesc desc, Datum *values, bool *nulls)
{
	composite_deform_natts(value, desc, true, values, nulls);
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
