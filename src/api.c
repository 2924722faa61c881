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
#include "tcop/utility.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"

#include "orders.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(orders_add);
PG_FUNCTION_INFO_V1(orders_get);
PG_FUNCTION_INFO_V1(orders_remove);

/*
 * The functions read the table directly, so the table's privileges and row
 * security are not applied by the executor: reading functions apply them
 * here, as a SELECT would.
 */
static void
check_can_read_orders(const OrdersCatalog *cat)
{
	AclResult	aclresult = pg_class_aclcheck(cat->orders_relid, GetUserId(), ACL_SELECT);

	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_TABLE, get_rel_name(cat->orders_relid));
	if (check_enable_rls(cat->orders_relid, InvalidOid, false) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("orders_get does not apply row-level security"),
				 errdetail("Row-level security is enabled on table \"%s.orders\".",
						   cat->namespace_name),
				 errhint("Read the table with SELECT, which applies its policies.")));
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
 * orders_add(customer_id uuid, currency text, lines order_line[],
 *            shipping_address order_address, id uuid) RETURNS orders
 */
Datum
orders_add(PG_FUNCTION_ARGS)
{
	const OrdersCatalog *cat = orders_catalog(fcinfo);
	pg_uuid_t	id;
	char		id_text[UUID_LEN * 2 + 5];
	Relation	rel;
	TupleDesc	desc;
	Datum		values[Natts_orders];
	bool		nulls[Natts_orders] = {0};
	Datum		lines;
	int64		total;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	HeapTuple	tuple;
	Datum		result;
	Datum		payload;

	/* the executor refuses writes in read-only transactions and on standbys; so do we */
	PreventCommandIfReadOnly("orders_add()");

	if (PG_ARGISNULL(4))
		uuidv7_generate(&id);
	else
		id = *PG_GETARG_UUID_P(4);
	uuid_format(&id, id_text);

	rel = table_open(cat->orders_relid, RowExclusiveLock);
	desc = RelationGetDescr(rel);

	order_check_customer_id(rel, id_text, PG_ARGISNULL(0));
	order_check_currency(rel, id_text, PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1),
						 PG_ARGISNULL(1));
	total = order_check_lines(rel, cat, id_text,
							  PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2),
							  PG_ARGISNULL(2), &lines);
	order_check_address(rel, cat, id_text,
						PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3),
						PG_ARGISNULL(3));

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
	storage_insert(rel, tuple);

	payload = event_payload_order(cat, values, nulls);
	event_emit(cat, EVENT_ORDER_ADDED, &id, 1, payload, now);

	table_close(rel, NoLock);
	PG_RETURN_DATUM(result);
}

/*
 * orders_get(id uuid) RETURNS SETOF orders: the order, or no row.
 */
Datum
orders_get(PG_FUNCTION_ARGS)
{
	FuncCallContext *funcctx;

	if (SRF_IS_FIRSTCALL())
	{
		const OrdersCatalog *cat = orders_catalog(fcinfo);
		MemoryContext oldcontext;
		Relation	rel;
		TupleTableSlot *slot;

		check_can_read_orders(cat);

		funcctx = SRF_FIRSTCALL_INIT();
		oldcontext = MemoryContextSwitchTo(funcctx->multi_call_memory_ctx);

		rel = table_open(cat->orders_relid, AccessShareLock);
		slot = table_slot_create(rel, NULL);
		if (storage_fetch(rel, cat->orders_pkey, PG_GETARG_UUID_P(0), slot))
			funcctx->user_fctx = DatumGetPointer(ExecFetchSlotHeapTupleDatum(slot));
		ExecDropSingleTupleTableSlot(slot);
		table_close(rel, NoLock);

		MemoryContextSwitchTo(oldcontext);
	}

	funcctx = SRF_PERCALL_SETUP();
	if (funcctx->user_fctx != NULL)
	{
		Datum		order = PointerGetDatum(funcctx->user_fctx);

		funcctx->user_fctx = NULL;
		SRF_RETURN_NEXT(funcctx, order);
	}
	SRF_RETURN_DONE(funcctx);
}

/*
 * orders_remove(id uuid, expected_version integer) RETURNS orders: the
 * removed order, as it was stored.
 */
Datum
orders_remove(PG_FUNCTION_ARGS)
{
	const OrdersCatalog *cat = orders_catalog(fcinfo);
	pg_uuid_t  *id;
	char		id_text[UUID_LEN * 2 + 5];
	Relation	rel;
	TupleTableSlot *slot;
	int32		version;
	OrderStatus status;
	Datum		result;
	Datum		payload;

	PreventCommandIfReadOnly("orders_remove()");
	id = required_id(fcinfo, 0);
	uuid_format(id, id_text);
	rel = table_open(cat->orders_relid, RowExclusiveLock);
	slot = table_slot_create(rel, NULL);

	if (!storage_lock(rel, cat->orders_pkey, id, LockTupleExclusive, slot))
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("order %s does not exist", id_text)));

	slot_getallattrs(slot);
	version = DatumGetInt32(slot->tts_values[Anum_orders_version - 1]);
	status = order_status_from_oid(cat, DatumGetObjectId(slot->tts_values[Anum_orders_status - 1]));

	if (!PG_ARGISNULL(1))
		order_check_version(id_text, version, PG_GETARG_INT32(1));
	order_check_removable(rel, id_text, status);

	result = ExecFetchSlotHeapTupleDatum(slot);
	payload = event_payload_order(cat, slot->tts_values, slot->tts_isnull);
	storage_delete(rel, &slot->tts_tid);

	/* versions of an order's events only go up: removal is one more change */
	event_emit(cat, EVENT_ORDER_REMOVED, id, version + 1, payload,
			   GetCurrentTransactionStartTimestamp());

	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, NoLock);
	PG_RETURN_DATUM(result);
}
