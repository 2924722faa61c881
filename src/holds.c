/*
 * holds.c: the events a consumer rejected, and what they hold back.
 *
 * A consumer that cannot handle an event rejects it (orders_events_nack,
 * in holds.sql).  The event's order is then held for that consumer: one
 * row of order_event_holds names the event to try again, when, how often
 * it failed and why, and the order's later events, which wait behind it
 * so that the order's events stay in order; the rest of the stream flows
 * on.  The logic is in holds.sql, which runs as the caller; what is here
 * only reads and writes the rows, for a caller that owns the consumer.
 *
 * The table is the extension's own and no role may write it: a hold
 * decides which events a consumer sees again, and which the purge keeps.
 * It is read and written here through SPI, as its owner, by statements
 * whose every name is qualified, once the consumer's row is locked and its
 * owner checked (consumer_lock_own), so that one reader of a name changes
 * its holds at a time.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

#include "orders.h"

PG_FUNCTION_INFO_V1(orders_events_holds_of);
PG_FUNCTION_INFO_V1(orders_events_holds_peek);
PG_FUNCTION_INFO_V1(orders_events_hold_store);
PG_FUNCTION_INFO_V1(orders_events_held_positions);

#define HOLDS_TABLE "order_event_holds"

/* Columns of order_event_holds that are checked here, 1-based. */
enum
{
	Anum_holds_consumer = 1,
	Anum_holds_order_id,
	Anum_holds_position,
	Anum_holds_later
};

/*
 * The statements prepared so far, each kept for the session: a read of
 * events asks for the consumer's holds every time.  A statement is its
 * text, which names the schema, and its parameters' types, among them the
 * holds' row type: a schema renamed or an extension made again makes new
 * ones.  The plan cache replans a kept statement when a table it reads
 * changes.
 */
#define KEPT_STATEMENTS 8

typedef struct KeptStatement
{
	char	   *sql;
	int			nargs;
	Oid			types[2];
	SPIPlanPtr	plan;
} KeptStatement;

static KeptStatement kept[KEPT_STATEMENTS];
static int	nkept = 0;

/* The prepared statement of sql, prepared now if new; inside SPI. */
static SPIPlanPtr
statement(const char *sql, int nargs, Oid *types)
{
	KeptStatement *k;
	int			i;

	Assert(nargs <= (int) lengthof(kept[0].types));
	for (i = 0; i < nkept; i++)
		if (kept[i].nargs == nargs && strcmp(kept[i].sql, sql) == 0 &&
			(nargs == 0 || memcmp(kept[i].types, types, sizeof(Oid) * nargs) == 0))
			return kept[i].plan;
	if (nkept == KEPT_STATEMENTS)
	{
		/* a session that met that many schemas: start again */
		for (i = 0; i < nkept; i++)
		{
			SPI_freeplan(kept[i].plan);
			pfree(kept[i].sql);
		}
		nkept = 0;
	}
	k = &kept[nkept];
	k->plan = SPI_prepare(sql, nargs, types);
	if (k->plan == NULL || SPI_keepplan(k->plan) != 0)
		elog(ERROR, "could not prepare a statement on table \"%s\": %s",
			 HOLDS_TABLE, SPI_result_code_string(SPI_result));
	k->sql = MemoryContextStrdup(TopMemoryContext, sql);
	k->nargs = nargs;
	if (nargs > 0)
		memcpy(k->types, types, sizeof(Oid) * nargs);
	nkept++;
	return k->plan;
}

/*
 * Runs one statement as the owner of the extension's tables, and returns
 * the first column of its first row, copied out of SPI (NULL: *isnull).
 */
static Datum
run_as_owner(const OrdersCatalog *cat, const char *sql, int nargs, Oid *types,
			 Datum *values, int expected, bool *isnull)
{
	Oid			saved_user;
	int			saved_context;
	volatile Datum result = (Datum) 0;

	*isnull = true;
	GetUserIdAndSecContext(&saved_user, &saved_context);
	SetUserIdAndSecContext(orders_relation_owner(cat->relids[TABLE_ORDERS]),
						   saved_context | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		/*
		 * A read sees the latest holds, as the lock on the consumer's row
		 * that the caller took, maybe after waiting, lets it: another
		 * reader's changes committed meanwhile, which the statement's own
		 * snapshot would not show, and which the caller would write over.
		 */
		if (SPI_execute_snapshot(statement(sql, nargs, types), values, NULL,
								 expected == SPI_OK_SELECT ? GetLatestSnapshot() : InvalidSnapshot,
								 InvalidSnapshot, expected == SPI_OK_SELECT, false, 0) != expected)
			elog(ERROR, "could not run a statement on table \"%s\"", HOLDS_TABLE);
		if (SPI_tuptable != NULL && SPI_processed > 0)
		{
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, isnull);

			if (!*isnull)
				result = SPI_datumTransfer(d, TupleDescAttr(SPI_tuptable->tupdesc, 0)->attbyval,
										   TupleDescAttr(SPI_tuptable->tupdesc, 0)->attlen);
		}
		SPI_finish();
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(saved_user, saved_context);
	}
	PG_END_TRY();
	return result;
}

/* The consumer's holds are per node; a cluster's consumers have none. */
static void
refuse_on_cluster(const OrdersCatalog *cat, const char *what)
{
	if (cat->distributed[TABLE_EVENTS])
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s is not supported while Citus distributes the outbox", what),
				 errdetail("Rejected events are held on a single node only.")));
}

static Datum holds_of(FunctionCallInfo fcinfo, bool lock);

/*
 * orders_events_holds_of(consumer text) RETURNS order_event_holds[]: the
 * consumer's holds, in position order, with its row locked.  None on a
 * cluster, where no event can be held.
 */
Datum
orders_events_holds_of(PG_FUNCTION_ARGS)
{
	return holds_of(fcinfo, true);
}

/*
 * orders_events_holds_peek(consumer text) RETURNS order_event_holds[]: the
 * same, the consumer not locked, for what only shows them.
 */
Datum
orders_events_holds_peek(PG_FUNCTION_ARGS)
{
	return holds_of(fcinfo, false);
}

static Datum
holds_of(FunctionCallInfo fcinfo, bool lock)
{
	text	   *name = consumer_required_name(fcinfo);
	OrdersCall	call;
	const OrdersCatalog *cat = lock ? consumer_lock_own(fcinfo, name, "orders_events_holds_of()", &call)
		: consumer_check_own(fcinfo, name, &call);
	Oid			relid = orders_private_table(cat, HOLDS_TABLE, "orders_events_holds_of()", "1.9", false);
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	Datum		result;
	bool		isnull;

	if (cat->distributed[TABLE_EVENTS])
	{
		orders_close(&call);
		PG_RETURN_DATUM(PointerGetDatum(construct_empty_array(get_rel_type_id(relid))));
	}
	values[0] = PointerGetDatum(name);
	result = run_as_owner(cat, psprintf(
		"SELECT pg_catalog.array_agg(h ORDER BY h.position) FROM %s.%s h"
		" WHERE h.consumer OPERATOR(pg_catalog.=) $1",
		quote_identifier(cat->namespace_name), HOLDS_TABLE),
						  1, types, values, SPI_OK_SELECT, &isnull);
	if (isnull)
		result = PointerGetDatum(construct_empty_array(get_rel_type_id(relid)));
	orders_close(&call);
	PG_RETURN_DATUM(result);
}

/* Names compare as the primary key compares them: byte for byte. */
static bool
same_name(text *a, text *b)
{
	return VARSIZE_ANY_EXHDR(a) == VARSIZE_ANY_EXHDR(b) &&
		memcmp(VARDATA_ANY(a), VARDATA_ANY(b), VARSIZE_ANY_EXHDR(a)) == 0;
}

/*
 * The events waiting behind a held one: after it, in position order, each
 * once, none NULL.  The purge keeps them, so a NULL among them would stop
 * it keeping anything.
 */
static void
check_waiting(int64 position, Datum later, bool isnull)
{
	ArrayType  *array;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	int64		prev = position;

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("a hold's waiting events must not be null")));
	array = DatumGetArrayTypeP(later);
	/* read as later[1], later[2:] ...: one dimension from 1, or none */
	if (ARR_NDIM(array) > 1 || (ARR_NDIM(array) == 1 && ARR_LBOUND(array)[0] != 1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a hold's waiting events must be a one-dimensional array from 1")));
	deconstruct_array(array, INT8OID, sizeof(int64), FLOAT8PASSBYVAL,
					  TYPALIGN_DOUBLE, &elems, &nulls, &n);
	for (i = 0; i < n; i++)
	{
		if (nulls[i] || DatumGetInt64(elems[i]) <= prev)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a hold's waiting events must follow its held event, in position order, none null")));
		prev = DatumGetInt64(elems[i]);
	}
}

/*
 * orders_events_hold_store(consumer text, hold order_event_holds): writes
 * the hold of one of the consumer's orders, or, when hold.position is
 * NULL, ends it (the order's events flow again).
 */
Datum
orders_events_hold_store(PG_FUNCTION_ARGS)
{
	text	   *name = consumer_required_name(fcinfo);
	OrdersCall	call;
	const OrdersCatalog *cat = consumer_lock_own(fcinfo, name, "orders_events_hold_store()", &call);
	Oid			relid = orders_private_table(cat, HOLDS_TABLE, "orders_events_hold_store()", "1.9", false);
	const char *q = quote_identifier(cat->namespace_name);
	HeapTupleHeader hold;
	Datum		consumer;
	Datum		position;
	bool		isnull;
	Oid			types[2] = {TEXTOID, get_rel_type_id(relid)};
	Datum		values[2];

	refuse_on_cluster(cat, "orders_events_hold_store()");
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("hold must not be null")));
	hold = PG_GETARG_HEAPTUPLEHEADER(1);
	consumer = GetAttributeByNum(hold, Anum_holds_consumer, &isnull);
	if (isnull || !same_name(DatumGetTextPP(consumer), name))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a hold of consumer %s must name it", quote_literal_cstr(text_to_cstring(name)))));
	(void) GetAttributeByNum(hold, Anum_holds_order_id, &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("a hold must name its order")));

	values[0] = PointerGetDatum(name);
	values[1] = PointerGetDatum(hold);
	position = GetAttributeByNum(hold, Anum_holds_position, &isnull);
	if (!isnull)
	{
		bool		later_isnull;
		Datum		later = GetAttributeByNum(hold, Anum_holds_later, &later_isnull);

		check_waiting(DatumGetInt64(position), later, later_isnull);
	}
	if (isnull)
		(void) run_as_owner(cat, psprintf(
			"DELETE FROM %1$s.%2$s h WHERE h.consumer OPERATOR(pg_catalog.=) $1"
			" AND h.order_id OPERATOR(pg_catalog.=) ($2::%1$s.%2$s).order_id", q, HOLDS_TABLE),
							2, types, values, SPI_OK_DELETE, &isnull);
	else
		(void) run_as_owner(cat, psprintf(
			"INSERT INTO %1$s.%2$s SELECT ($2::%1$s.%2$s).*"
			" ON CONFLICT (consumer, order_id) DO UPDATE SET"
			" position = excluded.position, later = excluded.later,"
			" attempts = excluded.attempts, reason = excluded.reason,"
			" failed_at = excluded.failed_at, retry_at = excluded.retry_at,"
			" parked_at = excluded.parked_at, delivered = excluded.delivered", q, HOLDS_TABLE),
							2, types, values, SPI_OK_INSERT, &isnull);
	orders_close(&call);
	PG_RETURN_VOID();
}

/*
 * orders_events_held_positions() RETURNS bigint[]: every event some hold
 * keeps, which the purge must leave.  Needs what the purge needs of the
 * consumers: SELECT on order_event_consumers.
 */
Datum
orders_events_held_positions(PG_FUNCTION_ARGS)
{
	static const LOCKMODE locks[TABLE_COUNT] = {NoLock, NoLock, AccessShareLock};
	OrdersCall	call;
	const OrdersCatalog *cat = orders_open(fcinfo, locks, &call);
	AclResult	aclresult = pg_class_aclcheck(cat->relids[TABLE_CONSUMERS], GetUserId(), ACL_SELECT);
	Datum		result;
	bool		isnull;

	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_TABLE, get_rel_name(cat->relids[TABLE_CONSUMERS]));
	(void) orders_private_table(cat, HOLDS_TABLE, "orders_events_held_positions()", "1.9", false);
	result = run_as_owner(cat, psprintf(
		"SELECT pg_catalog.array_agg(p) FROM"
		" (SELECT h.position FROM %1$s.%2$s h UNION ALL"
		"  SELECT pg_catalog.unnest(h.later) FROM %1$s.%2$s h) w(p) WHERE p IS NOT NULL",
		quote_identifier(cat->namespace_name), HOLDS_TABLE),
						  0, NULL, NULL, SPI_OK_SELECT, &isnull);
	orders_close(&call);
	if (isnull)
		PG_RETURN_DATUM(PointerGetDatum(construct_empty_array(INT8OID)));
	PG_RETURN_DATUM(result);
}

/*
 * Ends every hold of a consumer that is being unregistered: a consumer
 * registered later under its name starts with none.  Nothing to do in a
 * database at a version without holds.
 */
void
holds_forget(const OrdersCatalog *cat, text *consumer)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;

	if (!OidIsValid(orders_private_table(cat, HOLDS_TABLE, "orders_events_unregister()", "1.9", true)))
		return;
	values[0] = PointerGetDatum(consumer);
	(void) run_as_owner(cat, psprintf(
		"DELETE FROM %s.%s h WHERE h.consumer OPERATOR(pg_catalog.=) $1",
		quote_identifier(cat->namespace_name), HOLDS_TABLE),
						1, types, values, SPI_OK_DELETE, &isnull);
}
