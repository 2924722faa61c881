/*
 * api.c: the SQL-callable repository functions.
 *
 * Each write follows the same steps: resolve the extension's objects
 * (catalog.c), check every invariant (invariants.c), write the row
 * (storage.c), emit the events (events.c).  Nothing is written before every
 * check has passed, and whatever is written belongs to the caller's
 * transaction.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_class_d.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/tuplestore.h"

#include "orders.h"


PG_FUNCTION_INFO_V1(orders_add);
PG_FUNCTION_INFO_V1(orders_get);
PG_FUNCTION_INFO_V1(orders_remove);
PG_FUNCTION_INFO_V1(orders_save);
PG_FUNCTION_INFO_V1(orders_add_at);
PG_FUNCTION_INFO_V1(orders_get_at);
PG_FUNCTION_INFO_V1(orders_save_at);
PG_FUNCTION_INFO_V1(orders_remove_at);

/* Locks of a write: the order's table and the outbox. */
static const LOCKMODE write_locks[TABLE_COUNT] = {RowExclusiveLock, RowExclusiveLock, NoLock};
static const LOCKMODE read_locks[TABLE_COUNT] = {AccessShareLock, NoLock, NoLock};

/*
 * What every write checks before it reads or writes anything: a
 * transaction that may write.  The executor refuses writes in read-only
 * transactions, on standbys and in parallel workers; so do we.
 */
static void
prepare_write(const char *what)
{
	PreventCommandIfReadOnly(what);
	PreventCommandIfParallelMode(what);
}

/* An argument that may be NULL: (Datum) 0 then, as the checks expect. */
#define ARG_OR_ZERO(n) (PG_ARGISNULL(n) ? (Datum) 0 : PG_GETARG_DATUM(n))

/*
 * The order a call works on, named in the context of every error raised
 * while the call runs (the invariants', the storage's, the server's), so
 * that no message has to carry it.
 */
static void
order_error_context(void *arg)
{
	char		id_text[UUID_TEXT_SIZE];

	uuid_format((const pg_uuid_t *) arg, id_text);
	errcontext("order %s", id_text);
}

/* Until pop_order_context: id must live as long. */
static void
push_order_context(ErrorContextCallback *callback, const pg_uuid_t *id)
{
	callback->callback = order_error_context;
	callback->arg = (void *) id;
	callback->previous = error_context_stack;
	error_context_stack = callback;
}

static void
pop_order_context(ErrorContextCallback *callback)
{
	error_context_stack = callback->previous;
}

static pg_uuid_t *
required_id(FunctionCallInfo fcinfo, int argno)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("order id must not be null")));
	return PG_GETARG_UUID_P(argno);
}

/*
 * The composite a write returns.  A role that may not read orders gets
 * back what it gave and what the call derived from it, never a value only
 * the stored order held: reveal == false keeps just the columns listed.
 */
static Datum
result_row(const OrdersCatalog *cat, TupleDesc desc, Datum *values, bool *nulls, bool reveal,
		   int nkeep, const int *keep, bool keep_fields)
{
	bool	   *masked;
	int			i;

	if (reveal)
		return heap_copy_tuple_as_datum(heap_form_tuple(desc, values, nulls), desc);
	masked = palloc(sizeof(bool) * desc->natts);
	for (i = 0; i < desc->natts; i++)
		masked[i] = true;
	for (i = 0; i < nkeep; i++)
		masked[keep[i] - 1] = nulls[keep[i] - 1];
	/* the shop's columns the caller gave; a generated one may draw on stored values */
	for (i = 0; keep_fields && i < cat->nfields; i++)
		if (!cat->fields[i].generated)
			masked[cat->fields[i].attnum - 1] = nulls[cat->fields[i].attnum - 1];
	return heap_copy_tuple_as_datum(heap_form_tuple(desc, values, masked), desc);
}

/*
 * Where orders_add's fields are among its arguments: they came with 1.12,
 * a jsonb after the id; before, the routed orders_add_at had its notify
 * text there, and orders_add nothing.  -1: none.  Remembered per call site.
 */
static int
add_fields_arg(FunctionCallInfo fcinfo)
{
	if (PG_NARGS() <= 5)
		return -1;
	if (fcinfo->flinfo->fn_extra == NULL)
	{
		Oid		   *types;
		int			nargs;
		int		   *where = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(int));

		(void) get_func_signature(fcinfo->flinfo->fn_oid, &types, &nargs);
		*where = nargs > 5 && types[5] == JSONBOID ? 5 : -1;
		fcinfo->flinfo->fn_extra = where;
	}
	return *(int *) fcinfo->flinfo->fn_extra;
}

/* A row of orders to build: the shop's columns NULL until filled, dropped ones for good. */
static void
new_row_arrays(TupleDesc desc, Datum **values, bool **nulls)
{
	int			i;

	*values = palloc0(sizeof(Datum) * desc->natts);
	*nulls = palloc(sizeof(bool) * desc->natts);
	for (i = 0; i < desc->natts; i++)
		(*nulls)[i] = i >= Natts_orders;
}

/*
 * Sends the call to the node that holds its order (routing.c), as a call
 * of routed_name: the caller's arguments, with the order's id at id_arg
 * (after them when id_arg is past their end), and then, for a write, the
 * caller's orders.notify.  Returns what that call returned.
 */
static Datum
route_call(FunctionCallInfo fcinfo, const OrdersCatalog *cat, const char *routed_name,
		   const pg_uuid_t *id, int id_arg, int max_args, bool write, bool *found)
{
	Oid		   *public_types;
	int			nargs;
	Oid			types[FUNC_MAX_ARGS];
	Datum		values[FUNC_MAX_ARGS];
	bool		nulls[FUNC_MAX_ARGS];
	int			n;
	Datum		result;

	(void) get_func_signature(fcinfo->flinfo->fn_oid, &public_types, &nargs);
	nargs = Min(nargs, max_args);
	for (n = 0; n < nargs; n++)
	{
		types[n] = public_types[n];
		values[n] = PG_GETARG_DATUM(n);
		nulls[n] = PG_ARGISNULL(n);
	}
	if (id_arg >= nargs)
		types[id_arg = n++] = UUIDOID;
	values[id_arg] = UUIDPGetDatum(id);
	nulls[id_arg] = false;
	if (write)
	{
		types[n] = TEXTOID;
		values[n] = CStringGetTextDatum(routing_settings());
		nulls[n++] = false;
	}
	result = routing_send(cat, routed_name, n, types, values, nulls, found);
	/* a write's function always returns its order, or raises an error */
	if (write && !*found)
		elog(ERROR, "%s returned no order", routed_name);
	return result;
}

/*
 * orders_add(customer_id uuid, currency text, lines order_line[],
 *            shipping_address order_address, id uuid, fields jsonb)
 *   RETURNS orders
 *
 * fields: the shop's own columns, as a JSON object (fields.c); the others
 * take their defaults.
 */
Datum
orders_add(PG_FUNCTION_ARGS)
{
	OrdersCall	call;
	const OrdersCatalog *cat = orders_open(fcinfo, write_locks, &call);
	Relation	rel = call.rel[TABLE_ORDERS];
	TupleDesc	desc = RelationGetDescr(rel);
	pg_uuid_t	id;
	ErrorContextCallback order_context;
	Datum	   *values;
	bool	   *nulls;
	bool	   *present = NULL;
	int			fields_arg = add_fields_arg(fcinfo);
	FieldsWrite fw = {0};
	Datum		lines;
	int64		total;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	HeapTuple	tuple;
	Datum		result;
	Datum		payload;
	IdempotentCall ic;
	bool		replayed_null;

	prepare_write("orders_add()");
	if (idempotency_begin(&ic, fcinfo, cat, "orders_add", fields_arg >= 0 ? 6 : 5, &result,
						  &replayed_null))
	{
		orders_close(&call);
		if (replayed_null)
			PG_RETURN_NULL();
		PG_RETURN_DATUM(result);
	}

	if (PG_ARGISNULL(4))
		uuidv7_generate(&id);
	else
		id = *PG_GETARG_UUID_P(4);
	push_order_context(&order_context, &id);
	if (!orders_route(&call, &id))
	{
		bool		found;

		/*
		 * The routed call carries orders_add's first five arguments: the
		 * shop's fields wait for their own routing (the node fills in their
		 * defaults).
		 */
		if (fields_arg >= 0 && !PG_ARGISNULL(fields_arg))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("orders_add cannot send fields to a Citus node"),
					 errdetail("The field is fields. On a Citus cluster the order's node gives the shop's columns their defaults."),
					 errhint("Add the order without fields, then set them with orders_save.")));
		/* an id generated here goes with the call: the node of its shard */
		result = route_call(fcinfo, cat, "orders_add_at", &id, 4, 5, true, &found);
		pop_order_context(&order_context);
		orders_close(&call);
		PG_RETURN_DATUM(result);
	}

	order_check_customer_id(rel, PG_ARGISNULL(0));
	order_check_currency(rel, ARG_OR_ZERO(1), PG_ARGISNULL(1));
	total = order_check_lines(rel, cat, ARG_OR_ZERO(2), PG_ARGISNULL(2), &lines);
	order_check_address(rel, cat, ARG_OR_ZERO(3), PG_ARGISNULL(3));

	new_row_arrays(desc, &values, &nulls);
	if (fields_arg >= 0 && !PG_ARGISNULL(fields_arg))
	{
		present = palloc0(sizeof(bool) * desc->natts);
		fields_from_json(cat, rel, &PG_GETARG_JSONB_P(fields_arg)->root, values, nulls, present);
	}
	fields_fill_defaults(cat, rel, &fw, values, nulls, present);

	values[Anum_orders_id - 1] = UUIDPGetDatum(&id);
	values[Anum_orders_customer_id - 1] = PG_GETARG_DATUM(0);
	values[Anum_orders_status - 1] = ObjectIdGetDatum(cat->status_oids[ORDER_PENDING]);
	values[Anum_orders_currency - 1] = PG_GETARG_DATUM(1);
	values[Anum_orders_lines - 1] = lines;
	if (PG_ARGISNULL(3))
		nulls[Anum_orders_shipping_address - 1] = true;
	else
		values[Anum_orders_shipping_address - 1] = PG_GETARG_DATUM(3);
	values[Anum_orders_total - 1] = Int64GetDatum(total);
	values[Anum_orders_version - 1] = Int32GetDatum(1);
	values[Anum_orders_created_at - 1] = TimestampTzGetDatum(now);
	values[Anum_orders_updated_at - 1] = TimestampTzGetDatum(now);
	fields_compute_generated(cat, rel, &fw, values, nulls);

	fields_check_row(cat, rel, &fw, values, nulls);
	fields_write_done(&fw);
	tuple = heap_form_tuple(desc, values, nulls);
	/* the composite to return, before the heap makes the header its own */
	result = heap_copy_tuple_as_datum(tuple, desc);
	storage_insert(call.data[TABLE_ORDERS], tuple);

	/*
	 * An id is never used twice: an order's events are told apart by id and
	 * version, and its versions only go up.  A new time-ordered id has never
	 * been used; one the caller gives may have.  The insertion above has
	 * waited for any transaction that was removing an order of this id; the
	 * outbox holds the events of every order that had it, until purged.
	 */
	if (!PG_ARGISNULL(4) && OidIsValid(call.events_order_index) &&
		storage_exists_any(call.data[TABLE_EVENTS], call.events_order_index,
						   UUIDPGetDatum(&id)))
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("order id was used before"),
				 errdetail("The outbox holds events of an earlier order with this id."),
				 errhint("Add the order with a new id, such as orders_next_id()."),
				 errtableconstraint(rel, "orders_id_not_reused")));

	payload = event_payload_order(cat, values, nulls);
	event_emit(&call, EVENT_ORDER_ADDED, &id, 1, payload, now);
	idempotency_record(&ic, result);

	pop_order_context(&order_context);
	orders_close(&call);
	PG_RETURN_DATUM(result);
}

/*
 * orders_get(id uuid) RETURNS SETOF orders: the order, or no row.
 *
 * In materialize mode: the stored row goes from the heap buffer into the
 * executor's tuplestore in one copy, in one call, without a composite datum
 * or a per-call memory context in between.
 */
Datum
orders_get(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	OrdersCall	call;
	const OrdersCatalog *cat;
	ErrorContextCallback order_context;
	TupleTableSlot *slot;

	/* refuses a caller that cannot take a set before anything is locked */
	InitMaterializedSRF(fcinfo, 0);
	push_order_context(&order_context, PG_GETARG_UUID_P(0));

	cat = orders_open(fcinfo, read_locks, &call);
	orders_check_can_read(cat);
	if (!orders_route(&call, PG_GETARG_UUID_P(0)))
	{
		bool		found;
		Datum		order = route_call(fcinfo, cat, "orders_get_at", PG_GETARG_UUID_P(0), 0,
									   FUNC_MAX_ARGS, false, &found);

		if (found)
		{
			Datum	   *values = palloc(sizeof(Datum) * rsinfo->setDesc->natts);
			bool	   *nulls = palloc(sizeof(bool) * rsinfo->setDesc->natts);

			composite_deform(order, rsinfo->setDesc, values, nulls);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
		orders_close(&call);
		pop_order_context(&order_context);
		return (Datum) 0;
	}

	slot = table_slot_create(call.data[TABLE_ORDERS], NULL);
	if (storage_fetch(call.data[TABLE_ORDERS], call.orders_pkey, PG_GETARG_DATUM(0), slot))
	{
		HeapTuple	stored;

		Assert(TTS_IS_BUFFERTUPLE(slot));
		stored = ((BufferHeapTupleTableSlot *) slot)->base.tuple;

		/*
		 * A row stored before the shop added a column has fewer attributes:
		 * the table's descriptor knows the added column's value for it
		 * (ADD COLUMN ... DEFAULT), the result's does not.  Such a row goes
		 * through its values.
		 */
		if (HeapTupleHeaderGetNatts(stored->t_data) < rsinfo->setDesc->natts)
		{
			slot_getallattrs(slot);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, slot->tts_values,
								 slot->tts_isnull);
		}
		else
			tuplestore_puttupleslot(rsinfo->setResult, slot);
	}
	ExecDropSingleTupleTableSlot(slot);
	orders_close(&call);
	pop_order_context(&order_context);

	return (Datum) 0;
}

/*
 * orders_remove(id uuid, expected_version integer) RETURNS orders: the
 * removed order, as it was stored.
 */
Datum
orders_remove(PG_FUNCTION_ARGS)
{
	static const int removed_keep[] = {Anum_orders_id};
	OrdersCall	call;
	const OrdersCatalog *cat = orders_open(fcinfo, write_locks, &call);
	Relation	rel = call.rel[TABLE_ORDERS];
	pg_uuid_t  *id;
	ErrorContextCallback order_context;
	TupleTableSlot *slot;
	int32		version;
	OrderStatus status;
	Datum		result;
	Datum		payload;
	bool		reveal;
	IdempotentCall ic;
	bool		replayed_null;

	/* whether the caller may read orders decides what it is shown of the stored one */
	prepare_write("orders_remove()");
	if (idempotency_begin(&ic, fcinfo, cat, "orders_remove", 2, &result, &replayed_null))
	{
		orders_close(&call);
		if (replayed_null)
			PG_RETURN_NULL();
		PG_RETURN_DATUM(result);
	}
	reveal = orders_may_read(cat);
	id = required_id(fcinfo, 0);
	push_order_context(&order_context, id);
	if (!orders_route(&call, id))
	{
		bool		found;

		result = route_call(fcinfo, cat, "orders_remove_at", id, 0, FUNC_MAX_ARGS, true, &found);
		pop_order_context(&order_context);
		orders_close(&call);
		PG_RETURN_DATUM(result);
	}
	slot = table_slot_create(call.data[TABLE_ORDERS], NULL);

	if (!storage_lock(call.data[TABLE_ORDERS], call.orders_pkey, UUIDPGetDatum(id),
					  Anum_orders_id, LockTupleExclusive, slot))
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("order does not exist")));

	slot_getallattrs(slot);
	version = DatumGetInt32(slot->tts_values[Anum_orders_version - 1]);
	status = order_status_from_oid(cat, DatumGetObjectId(slot->tts_values[Anum_orders_status - 1]),
								   false);

	if (!PG_ARGISNULL(1))
		order_check_version(version, PG_GETARG_INT32(1), reveal);
	order_check_removable(rel, status, reveal);
	/* versions of an order's events only go up: removal is one more change */
	order_check_next_version(version);

	result = result_row(cat, RelationGetDescr(rel), slot->tts_values, slot->tts_isnull, reveal,
						lengthof(removed_keep), removed_keep, false);
	payload = event_payload_order(cat, slot->tts_values, slot->tts_isnull);
	storage_delete(call.data[TABLE_ORDERS], &slot->tts_tid);

	event_emit(&call, EVENT_ORDER_REMOVED, id, version + 1, payload,
			   GetCurrentTransactionStartTimestamp());
	idempotency_record(&ic, result);

	pop_order_context(&order_context);
	ExecDropSingleTupleTableSlot(slot);
	orders_close(&call);
	PG_RETURN_DATUM(result);
}

static OrderEventType
status_event(OrderStatus to)
{
	switch (to)
	{
		case ORDER_CONFIRMED:
			return EVENT_ORDER_CONFIRMED;
		case ORDER_SHIPPED:
			return EVENT_ORDER_SHIPPED;
		case ORDER_DELIVERED:
			return EVENT_ORDER_DELIVERED;
		case ORDER_CANCELLED:
			return EVENT_ORDER_CANCELLED;
		default:
			elog(ERROR, "no event moves an order to status %d", (int) to);
	}
	pg_unreachable();
}

/*
 * orders_save(o orders) RETURNS orders: stores a changed order.  o.version is
 * the version the caller read.  The new state is checked on its own first,
 * then against the stored order, locked: version, fields that never change,
 * status transition, readiness for the new status, what may still change in
 * the stored status; then the shop's CHECK constraints on the new row.  Then
 * the row is replaced and one event emitted per kind of change, the shop's
 * own columns being one kind.  A save that changes nothing writes nothing
 * and returns the stored order.
 */
Datum
orders_save(PG_FUNCTION_ARGS)
{
	/* what a save gives back to a role that may not read orders */
	static const int saved_keep[] = {
		Anum_orders_id, Anum_orders_customer_id, Anum_orders_status, Anum_orders_currency,
		Anum_orders_lines, Anum_orders_shipping_address, Anum_orders_total,
		Anum_orders_version, Anum_orders_updated_at
	};
	OrdersCall	call;
	const OrdersCatalog *cat = orders_open(fcinfo, write_locks, &call);
	Relation	rel = call.rel[TABLE_ORDERS];
	TupleDesc	desc = RelationGetDescr(rel);
	Datum	   *given = palloc(sizeof(Datum) * desc->natts);
	bool	   *given_null = palloc(sizeof(bool) * desc->natts);
	Datum	   *stored;
	bool	   *stored_null;
	Datum	   *values;
	bool	   *nulls;
	bool		fields_differ;
	FieldsWrite fw = {0};
	pg_uuid_t  *id;
	ErrorContextCallback order_context;
	Datum		lines;
	ArrayType  *lines_array;
	int64		total;
	int			nlines;
	OrderStatus new_status;
	OrderStatus old_status;
	int32		version;
	bool		lines_changed;
	bool		address_changed;
	TupleTableSlot *slot;
	HeapTuple	tuple;
	Datum		result;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	bool		reveal;
	IdempotentCall ic;
	bool		replayed_null;

	prepare_write("orders_save()");
	if (idempotency_begin(&ic, fcinfo, cat, "orders_save", 1, &result, &replayed_null))
	{
		orders_close(&call);
		if (replayed_null)
			PG_RETURN_NULL();
		PG_RETURN_DATUM(result);
	}
	reveal = orders_may_read(cat);
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("order to save must not be null")));

	composite_deform(PG_GETARG_DATUM(0), desc, given, given_null);

	if (given_null[Anum_orders_id - 1])
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("order id must not be null"),
				 errhint("Save an order read with orders_get; add a new one with orders_add.")));
	id = DatumGetUUIDP(given[Anum_orders_id - 1]);
	push_order_context(&order_context, id);
	if (!orders_route(&call, id))
	{
		bool		found;

		result = route_call(fcinfo, cat, "orders_save_at", id, 1, FUNC_MAX_ARGS, true, &found);
		pop_order_context(&order_context);
		orders_close(&call);
		PG_RETURN_DATUM(result);
	}

	/* the new state, on its own */
	if (given_null[Anum_orders_version - 1])
		not_null_violation(rel, Anum_orders_version, "version");
	if (given_null[Anum_orders_status - 1])
		not_null_violation(rel, Anum_orders_status, "status");
	order_check_customer_id(rel, given_null[Anum_orders_customer_id - 1]);
	order_check_currency(rel, given[Anum_orders_currency - 1],
						 given_null[Anum_orders_currency - 1]);
	total = order_check_lines(rel, cat, given[Anum_orders_lines - 1],
							  given_null[Anum_orders_lines - 1], &lines);
	order_check_address(rel, cat, given[Anum_orders_shipping_address - 1],
						given_null[Anum_orders_shipping_address - 1]);
	new_status = order_status_from_oid(cat, DatumGetObjectId(given[Anum_orders_status - 1]), true);
	lines_array = DatumGetArrayTypeP(lines);	/* already detoasted: a cast */
	nlines = ArrayGetNItems(ARR_NDIM(lines_array), ARR_DIMS(lines_array));

	/* against the stored order, locked until the end of the transaction */
	slot = table_slot_create(call.data[TABLE_ORDERS], NULL);
	if (!storage_lock(call.data[TABLE_ORDERS], call.orders_pkey, UUIDPGetDatum(id),
					  Anum_orders_id, LockTupleNoKeyExclusive, slot))
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("order does not exist"),
				 errhint("It may have been removed; add a new order with orders_add.")));
	slot_getallattrs(slot);
	stored = slot->tts_values;
	stored_null = slot->tts_isnull;

	version = DatumGetInt32(stored[Anum_orders_version - 1]);
	order_check_version(version, DatumGetInt32(given[Anum_orders_version - 1]), reveal);
	order_check_immutable(rel, Anum_orders_customer_id,
						  stored[Anum_orders_customer_id - 1], given[Anum_orders_customer_id - 1],
						  reveal);
	order_check_immutable(rel, Anum_orders_currency,
						  stored[Anum_orders_currency - 1], given[Anum_orders_currency - 1],
						  reveal);
	old_status = order_status_from_oid(cat, DatumGetObjectId(stored[Anum_orders_status - 1]),
									   false);
	order_check_status_transition(rel, old_status, new_status, reveal);
	order_check_ready(rel, new_status, nlines, given_null[Anum_orders_shipping_address - 1]);
	lines_changed = !order_lines_equal(cat, stored[Anum_orders_lines - 1], lines);
	address_changed = !order_address_equal(cat,
										   stored[Anum_orders_shipping_address - 1],
										   stored_null[Anum_orders_shipping_address - 1],
										   given[Anum_orders_shipping_address - 1],
										   given_null[Anum_orders_shipping_address - 1]);
	order_check_frozen(rel, old_status, lines_changed, address_changed, reveal);

	/* the new row: what may change from the caller, the rest as stored */
	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	memcpy(values, stored, sizeof(Datum) * desc->natts);
	memcpy(nulls, stored_null, sizeof(bool) * desc->natts);
	fields_from_saved(cat, rel, given, given_null, stored, stored_null, values, nulls);
	fields_differ = fields_changed(cat, stored, stored_null, values, nulls);

	if (!lines_changed && !address_changed && old_status == new_status && !fields_differ)
	{
		/* the stored order; its update time is not the caller's to learn */
		result = result_row(cat, desc, stored, stored_null, reveal,
							lengthof(saved_keep) - 1, saved_keep, true);
		idempotency_record(&ic, result);
		pop_order_context(&order_context);
		ExecDropSingleTupleTableSlot(slot);
		orders_close(&call);
		PG_RETURN_DATUM(result);
	}
	order_check_next_version(version);

	values[Anum_orders_status - 1] = given[Anum_orders_status - 1];
	if (lines_changed)			/* else keep the stored, maybe toasted, value */
		values[Anum_orders_lines - 1] = lines;
	values[Anum_orders_shipping_address - 1] = given[Anum_orders_shipping_address - 1];
	nulls[Anum_orders_shipping_address - 1] = given_null[Anum_orders_shipping_address - 1];
	values[Anum_orders_total - 1] = Int64GetDatum(total);
	values[Anum_orders_version - 1] = Int32GetDatum(version + 1);
	values[Anum_orders_updated_at - 1] = TimestampTzGetDatum(now);
	fields_compute_generated(cat, rel, &fw, values, nulls);

	fields_check_row(cat, rel, &fw, values, nulls);
	fields_write_done(&fw);
	tuple = heap_form_tuple(desc, values, nulls);
	result = result_row(cat, desc, values, nulls, reveal, lengthof(saved_keep), saved_keep, true);
	storage_update(call.data[TABLE_ORDERS], &slot->tts_tid, tuple);

	/* the events, in the contract's order */
	if (lines_changed)
		event_emit(&call, EVENT_ORDER_LINES_CHANGED, id, version + 1,
				   event_payload_lines(cat, lines, total), now);
	if (address_changed)
		event_emit(&call, EVENT_ORDER_SHIPPING_ADDRESS_CHANGED, id, version + 1,
				   event_payload_address(cat, given[Anum_orders_shipping_address - 1],
										 given_null[Anum_orders_shipping_address - 1]),
				   now);
	/* the shop's columns, generated ones included, that the save changed */
	if (cat->nfields > 0 && fields_changed(cat, stored, stored_null, values, nulls))
		event_emit(&call, EVENT_ORDER_FIELDS_CHANGED, id, version + 1,
				   event_payload_fields(cat, stored, stored_null, values, nulls), now);
	if (old_status != new_status)
		event_emit(&call, status_event(new_status), id, version + 1,
				   event_payload_status(old_status, new_status), now);

	idempotency_record(&ic, result);
	pop_order_context(&order_context);
	ExecDropSingleTupleTableSlot(slot);
	orders_close(&call);
	PG_RETURN_DATUM(result);
}

/*
 * The functions Citus delegates to the node of their order (routing.c):
 * each stands for the public function above, run there as a routed call.
 */

/* orders_add_at(customer_id, currency, lines, shipping_address, id, notify) */
Datum
orders_add_at(PG_FUNCTION_ARGS)
{
	return run_routed(fcinfo, orders_add);
}

/* orders_get_at(id) */
Datum
orders_get_at(PG_FUNCTION_ARGS)
{
	return run_routed(fcinfo, orders_get);
}

/* orders_save_at(o, id, notify): id is o.id, for Citus to place the call by */
Datum
orders_save_at(PG_FUNCTION_ARGS)
{
	return run_routed(fcinfo, orders_save);
}

/* orders_remove_at(id, expected_version, notify) */
Datum
orders_remove_at(PG_FUNCTION_ARGS)
{
	return run_routed(fcinfo, orders_remove);
}
