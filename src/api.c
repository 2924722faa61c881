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
result_row(TupleDesc desc, Datum *values, bool *nulls, bool reveal, int nkeep,
		   const int *keep)
{
	bool		masked[Natts_orders];
	int			i;

	if (reveal)
		return heap_copy_tuple_as_datum(heap_form_tuple(desc, values, nulls), desc);
	for (i = 0; i < Natts_orders; i++)
		masked[i] = true;
	for (i = 0; i < nkeep; i++)
		masked[keep[i] - 1] = nulls[keep[i] - 1];
	return heap_copy_tuple_as_datum(heap_form_tuple(desc, values, masked), desc);
}

/*
 * Sends the call to the node that holds its order (routing.c), as a call
 * of routed_name: the caller's arguments, with the order's id at id_arg
 * (after them when id_arg is past their end), and then, for a write, the
 * caller's orders.notify.  Returns what that call returned.
 */
static Datum
route_call(FunctionCallInfo fcinfo, const OrdersCatalog *cat, const char *routed_name,
		   const pg_uuid_t *id, int id_arg, bool write, bool *found)
{
	Oid		   *public_types;
	int			nargs;
	Oid			types[FUNC_MAX_ARGS];
	Datum		values[FUNC_MAX_ARGS];
	bool		nulls[FUNC_MAX_ARGS];
	int			n;
	Datum		result;

	(void) get_func_signature(fcinfo->flinfo->fn_oid, &public_types, &nargs);
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
 *            shipping_address order_address, id uuid) RETURNS orders
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
	Datum		values[Natts_orders];
	bool		nulls[Natts_orders] = {0};
	Datum		lines;
	int64		total;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	HeapTuple	tuple;
	Datum		result;
	Datum		payload;
	IdempotentCall ic;
	bool		replayed_null;

	prepare_write("orders_add()");
	if (idempotency_begin(&ic, fcinfo, cat, "orders_add", 5, &result, &replayed_null))
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

		/* an id generated here goes with the call: the node of its shard */
		result = route_call(fcinfo, cat, "orders_add_at", &id, 4, true, &found);
		pop_order_context(&order_context);
		orders_close(&call);
		PG_RETURN_DATUM(result);
	}

	order_check_customer_id(rel, PG_ARGISNULL(0));
	order_check_currency(rel, ARG_OR_ZERO(1), PG_ARGISNULL(1));
	total = order_check_lines(rel, cat, ARG_OR_ZERO(2), PG_ARGISNULL(2), &lines);
	order_check_address(rel, cat, ARG_OR_ZERO(3), PG_ARGISNULL(3));

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
									   false, &found);

		if (found)
		{
			Datum		values[Natts_orders];
			bool		nulls[Natts_orders];

			composite_deform(order, rsinfo->setDesc, values, nulls);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
		orders_close(&call);
		pop_order_context(&order_context);
		return (Datum) 0;
	}

	slot = table_slot_create(call.data[TABLE_ORDERS], NULL);
	if (storage_fetch(call.data[TABLE_ORDERS], call.orders_pkey, PG_GETARG_DATUM(0), slot))
		tuplestore_puttupleslot(rsinfo->setResult, slot);
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

		result = route_call(fcinfo, cat, "orders_remove_at", id, 0, true, &found);
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

	result = result_row(RelationGetDescr(rel), slot->tts_values, slot->tts_isnull, reveal,
						lengthof(removed_keep), removed_keep);
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
 * the stored status.  Then the row is replaced and one event emitted per kind
 * of change.  A save that
 * changes nothing writes nothing and returns the stored order.
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
	Datum		given[Natts_orders];
	bool		given_null[Natts_orders];
	Datum	   *stored;
	bool	   *stored_null;
	Datum		values[Natts_orders];
	bool		nulls[Natts_orders];
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

		result = route_call(fcinfo, cat, "orders_save_at", id, 1, true, &found);
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

	if (!lines_changed && !address_changed && old_status == new_status)
	{
		/* the stored order; its update time is not the caller's to learn */
		result = result_row(desc, stored, stored_null, reveal,
							lengthof(saved_keep) - 1, saved_keep);
		idempotency_record(&ic, result);
		pop_order_context(&order_context);
		ExecDropSingleTupleTableSlot(slot);
		orders_close(&call);
		PG_RETURN_DATUM(result);
	}
	order_check_next_version(version);

	/* the new row: what may change from the caller, the rest as stored */
	memcpy(values, stored, sizeof(values));
	memcpy(nulls, stored_null, sizeof(nulls));
	values[Anum_orders_status - 1] = given[Anum_orders_status - 1];
	if (lines_changed)			/* else keep the stored, maybe toasted, value */
		values[Anum_orders_lines - 1] = lines;
	values[Anum_orders_shipping_address - 1] = given[Anum_orders_shipping_address - 1];
	nulls[Anum_orders_shipping_address - 1] = given_null[Anum_orders_shipping_address - 1];
	values[Anum_orders_total - 1] = Int64GetDatum(total);
	values[Anum_orders_version - 1] = Int32GetDatum(version + 1);
	values[Anum_orders_updated_at - 1] = TimestampTzGetDatum(now);

	tuple = heap_form_tuple(desc, values, nulls);
	result = result_row(desc, values, nulls, reveal, lengthof(saved_keep), saved_keep);
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
