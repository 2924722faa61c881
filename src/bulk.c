/*
 * bulk.c: orders_add_many, many new orders in one call.
 *
 * The orders come as one jsonb array of objects, the shape every client
 * can build (a list of dicts in psycopg, an array of objects in
 * node-postgres, a literal in psql), with orders_add's arguments as keys.
 * Each order is converted with the server's input functions, as
 * jsonb_populate_record would, and checked by the same invariants as
 * orders_add, before anything of its chunk is written.  Rows and events
 * are then written a chunk at a time through the heap's multi-insert, and
 * their index entries after them, as COPY does.  Any error, with the
 * order's index in the array in its context, rolls back the whole call.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type_d.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/rel.h"

#include "orders.h"

PG_FUNCTION_INFO_V1(orders_add_many);

/* Orders written per multi-insert: COPY's buffer size, which bounds memory. */
#define BULK_CHUNK 1000

/* At most this many orders in one call: past it, a statement of its own each. */
#define BULK_MAX 100000

/* The input functions of the few types the fields have, looked up once a call. */
typedef struct BulkInputs
{
	MemoryContext mcxt;			/* the call's */
	int			n;
	Oid			typids[8];
	FmgrInfo	flinfo[8];
	Oid			ioparams[8];
} BulkInputs;

/* Where in the input an error arose, for its context; and the input functions. */
typedef struct BulkPosition
{
	int			index;			/* the order's, in the array; -1: none */
	const char *field;			/* the field being converted, or NULL */
	int			line;			/* the line's index, when in a line; else -1 */
	const pg_uuid_t *id;		/* the order's id, when the caller gave it */
	/* while a chunk is written: the order at first + *writing, if >= 0 */
	const int  *writing;
	int			first;
	BulkInputs *inputs;
} BulkPosition;

static void
bulk_error_context(void *arg)
{
	const BulkPosition *pos = (const BulkPosition *) arg;
	char		id_text[UUID_TEXT_SIZE];

	if (pos->writing != NULL)
	{
		if (*pos->writing >= 0)
			errcontext("the order at index %d of orders_add_many", pos->first + *pos->writing);
	}
	else if (pos->index < 0)
		return;
	else if (pos->line >= 0 && pos->field != NULL)
		errcontext("field \"%s\" of line %d of the order at index %d of orders_add_many",
				   pos->field, pos->line + 1, pos->index);
	else if (pos->line >= 0)
		errcontext("line %d of the order at index %d of orders_add_many",
				   pos->line + 1, pos->index);
	else if (pos->field != NULL)
		errcontext("field \"%s\" of the order at index %d of orders_add_many",
				   pos->field, pos->index);
	else if (pos->id != NULL)
	{
		uuid_format(pos->id, id_text);
		errcontext("order %s, at index %d of orders_add_many", id_text, pos->index);
	}
	else
		errcontext("the order at index %d of orders_add_many", pos->index);
}

static const char *
jsonb_type_name(const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "a string";
		case jbvNumeric:
			return "a number";
		case jbvBool:
			return "a boolean";
		case jbvBinary:
			return JsonContainerIsArray(v->val.binary.data) ? "an array" : "an object";
		default:
			return "a JSON value";
	}
}


/*
 * A scalar JSON value as a value of typid, through the type's input
 * function: a string as it is, a number as it prints.  *isnull for null.
 */
static Datum
bulk_scalar(BulkInputs *in, const JsonbValue *v, Oid typid, bool *isnull)
{
	char	   *text;
	int			i;

	*isnull = false;
	if (v == NULL || v->type == jbvNull)
	{
		*isnull = true;
		return (Datum) 0;
	}
	if (v->type == jbvString)
	{
		/* text's input function would make the same copy */
		if (typid == TEXTOID)
			return PointerGetDatum(cstring_to_text_with_len(v->val.string.val, v->val.string.len));
		text = pnstrdup(v->val.string.val, v->val.string.len);
	}
	else if (v->type == jbvNumeric)
		text = DatumGetCString(DirectFunctionCall1(numeric_out,
												   NumericGetDatum(v->val.numeric)));
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("expected a string or a number, not %s", jsonb_type_name(v))));

	for (i = 0; i < in->n && in->typids[i] != typid; i++)
		;
	if (i == in->n)
	{
		Oid			typinput;

		if (in->n == lengthof(in->typids))
			elog(ERROR, "orders_add_many: too many field types");
		getTypeInputInfo(typid, &typinput, &in->ioparams[i]);
		/* in the call's memory: the chunks' is reset under a caching input function */
		fmgr_info_cxt(typinput, &in->flinfo[i], in->mcxt);
		in->typids[i] = typid;
		in->n++;
	}
	return InputFunctionCall(&in->flinfo[i], text, in->ioparams[i], -1);
}

/* The container of an object value, or NULL for null; anything else is an error. */
static JsonbContainer *
bulk_object(const JsonbValue *v, bool array)
{
	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type != jbvBinary ||
		(array ? !JsonContainerIsArray(v->val.binary.data) : !JsonContainerIsObject(v->val.binary.data)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("expected %s, not %s", array ? "an array" : "an object", jsonb_type_name(v))));
	return v->val.binary.data;
}

/* Every key of object is one of the names of desc's attributes, or of names. */
static void
bulk_check_keys(JsonbContainer *object, TupleDesc desc, const char *const *names, int nnames,
				BulkPosition *pos)
{
	JsonbIterator *it = JsonbIteratorInit(object);
	JsonbValue	v;
	JsonbIteratorToken token;

	while ((token = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		bool		known = false;
		char	   *key;
		int			i;

		if (token != WJB_KEY)
			continue;
		key = pnstrdup(v.val.string.val, v.val.string.len);
		for (i = 0; desc != NULL && i < desc->natts && !known; i++)
			known = strcmp(NameStr(TupleDescAttr(desc, i)->attname), key) == 0;
		for (i = 0; i < nnames && !known; i++)
			known = strcmp(names[i], key) == 0;
		if (!known)
		{
			pos->field = NULL;
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown field \"%s\"%s", key,
							pos->line >= 0 ? " in a line" : (desc != NULL ? " in the shipping address" : "")),
					 errhint(desc == NULL ?
							 "An order has customer_id, currency, lines, shipping_address, id and fields." :
							 "Use the fields of the composite type, as to_jsonb shows them.")));
		}
	}
}

static JsonbValue *
bulk_key(JsonbContainer *object, const char *key)
{
	return getKeyJsonValueFromContainer(object, key, strlen(key), NULL);
}

/*
 * An object with desc's fields as a composite value of desc's type: ours
 * as scalars, the shop's attributes through their types' input functions
 * (fields.c), NULL when absent.
 */
static Datum
bulk_composite(JsonbContainer *object, TupleDesc desc, const CompositeExtras *ex,
			   BulkPosition *pos)
{
	Datum		values_here[COMPOSITE_FIELDS_HERE];
	bool		nulls_here[COMPOSITE_FIELDS_HERE];
	Datum	   *values = COMPOSITE_ARRAY(values_here, desc);
	bool	   *nulls = COMPOSITE_ARRAY(nulls_here, desc);
	int			i;

	bulk_check_keys(object, desc, NULL, 0, pos);
	for (i = 0; i < desc->natts; i++)
		nulls[i] = true;
	for (i = 0; i < ex->nfixed; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		pos->field = NameStr(att->attname);
		values[i] = bulk_scalar(pos->inputs, bulk_key(object, NameStr(att->attname)), att->atttypid,
								&nulls[i]);
	}
	for (i = 0; i < ex->nextra; i++)
	{
		const OrderField *f = &ex->extra[i];
		JsonbValue *v = bulk_key(object, f->name);
		JsonbValue	null_value;

		if (v == NULL)
		{
			null_value.type = jbvNull;
			v = &null_value;
		}
		pos->field = f->name;
		values[f->attnum - 1] =
			field_value_from_json(f, v, pos->line >= 0 ?
								  psprintf("lines[%d].%s", pos->line + 1, f->name) :
								  psprintf("shipping_address.%s", f->name),
								  &nulls[f->attnum - 1]);
	}
	pos->field = NULL;
	return heap_copy_tuple_as_datum(heap_form_tuple(desc, values, nulls), desc);
}

/* A JSON array of line objects as an order_line[]. */
static Datum
bulk_lines(const OrdersCatalog *cat, JsonbContainer *array, BulkPosition *pos)
{
	int			n = JsonContainerSize(array);
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *elem_nulls = palloc(sizeof(bool) * Max(n, 1));
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			i;

	for (i = 0; i < n; i++)
	{
		JsonbValue *v = getIthJsonbValueFromContainer(array, i);
		JsonbContainer *line;

		pos->line = i;
		pos->field = NULL;
		line = bulk_object(v, false);
		elem_nulls[i] = line == NULL;
		elems[i] = line != NULL ? bulk_composite(line, cat->line_desc, &cat->line_extras, pos) : (Datum) 0;
	}
	pos->line = -1;
	get_typlenbyvalalign(cat->line_typid, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(elems, elem_nulls, n > 0 ? 1 : 0, dims, lbs,
											  cat->line_typid, typlen, typbyval, typalign));
}

/* One order to add, converted and checked, with its row and event built. */
typedef struct BulkOrder
{
	pg_uuid_t	id;
	bool		id_given;
	HeapTuple	row;
	HeapTuple	event;
	int64		position;
} BulkOrder;

static const char *const order_keys[] = {
	"customer_id", "currency", "lines", "shipping_address", "id", "fields",
};

/*
 * Converts and checks the order at pos->index, and builds its row and its
 * order_added event, as orders_add would store them.
 */
static void
bulk_prepare(OrdersCall *call, JsonbValue *v, TimestampTz now, BulkOrder *out,
			 FieldsWrite *fw, BulkPosition *pos)
{
	const OrdersCatalog *cat = call->cat;
	Relation	rel = call->rel[TABLE_ORDERS];
	TupleDesc	desc = RelationGetDescr(rel);
	JsonbContainer *order;
	Datum	   *values = palloc0(sizeof(Datum) * desc->natts);
	bool	   *nulls = palloc(sizeof(bool) * desc->natts);
	bool	   *present = NULL;
	int			i;
	Datum		given_lines = (Datum) 0;
	bool		lines_null;
	Datum		lines;
	bool		isnull;
	Datum		d;
	int64		total;

	pos->id = NULL;
	pos->field = NULL;
	pos->line = -1;
	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("each order must be a JSON object, not %s", jsonb_type_name(v))));
	order = v->val.binary.data;
	bulk_check_keys(order, NULL, order_keys, lengthof(order_keys), pos);
	/* the shop's columns NULL until filled, dropped ones for good */
	for (i = 0; i < desc->natts; i++)
		nulls[i] = i >= Natts_orders;

	pos->field = "id";
	d = bulk_scalar(pos->inputs, bulk_key(order, "id"), UUIDOID, &isnull);
	out->id_given = !isnull;
	if (isnull)
		uuidv7_generate(&out->id);
	else
		out->id = *DatumGetUUIDP(d);

	pos->field = "customer_id";
	values[Anum_orders_customer_id - 1] =
		bulk_scalar(pos->inputs, bulk_key(order, "customer_id"), UUIDOID, &nulls[Anum_orders_customer_id - 1]);
	pos->field = "currency";
	values[Anum_orders_currency - 1] =
		bulk_scalar(pos->inputs, bulk_key(order, "currency"), TEXTOID, &nulls[Anum_orders_currency - 1]);
	pos->field = "lines";
	{
		JsonbValue *lv = bulk_key(order, "lines");
		JsonbContainer *array = NULL;

		/* absent: none, as orders_add's default; null: refused below */
		if (lv == NULL)
			given_lines = PointerGetDatum(construct_empty_array(cat->line_typid));
		else if ((array = bulk_object(lv, true)) != NULL)
		{
			pos->field = NULL;
			given_lines = bulk_lines(cat, array, pos);
		}
		lines_null = lv != NULL && array == NULL;
	}
	pos->field = "shipping_address";
	{
		JsonbContainer *address = bulk_object(bulk_key(order, "shipping_address"), false);

		pos->field = NULL;
		nulls[Anum_orders_shipping_address - 1] = address == NULL;
		if (address != NULL)
		{
			pos->field = NULL;
			values[Anum_orders_shipping_address - 1] =
				bulk_composite(address, cat->address_desc, &cat->address_extras, pos);
		}
	}
	pos->field = NULL;
	/* a generated id would tell the caller nothing: the index does */
	pos->id = out->id_given ? &out->id : NULL;

	/* orders_add's checks, in its order */
	order_check_customer_id(rel, nulls[Anum_orders_customer_id - 1]);
	order_check_currency(rel, values[Anum_orders_currency - 1], nulls[Anum_orders_currency - 1]);
	total = order_check_lines(rel, cat, given_lines, lines_null, &lines);
	order_check_address(rel, cat, values[Anum_orders_shipping_address - 1],
						nulls[Anum_orders_shipping_address - 1]);

	/* the shop's own columns, as orders_add's fields */
	pos->field = "fields";
	{
		JsonbContainer *fields = bulk_object(bulk_key(order, "fields"), false);

		pos->field = NULL;
		if (fields != NULL)
		{
			present = palloc0(sizeof(bool) * desc->natts);
			fields_from_json(cat, rel, fields, values, nulls, present);
		}
	}
	fields_fill_defaults(cat, rel, fw, values, nulls, present);

	values[Anum_orders_id - 1] = UUIDPGetDatum(&out->id);
	values[Anum_orders_status - 1] = ObjectIdGetDatum(cat->status_oids[ORDER_PENDING]);
	values[Anum_orders_lines - 1] = lines;
	values[Anum_orders_total - 1] = Int64GetDatum(total);
	values[Anum_orders_version - 1] = Int32GetDatum(1);
	values[Anum_orders_created_at - 1] = TimestampTzGetDatum(now);
	values[Anum_orders_updated_at - 1] = TimestampTzGetDatum(now);
	fields_compute_generated(cat, rel, fw, values, nulls);

	fields_check_row(cat, rel, fw, values, nulls);
	out->row = heap_form_tuple(desc, values, nulls);
	out->event = event_build(call, EVENT_ORDER_ADDED, &out->id, 1,
							 event_payload_order(cat, values, nulls), now, &out->position);
}

/*
 * Writes a chunk of prepared orders: their rows through one multi-insert;
 * then checks that no given id was used before (after the rows' index
 * entries, which waited for any transaction removing an order of that id,
 * and before their own events, as orders_add does); then their events
 * through another, and their notifications.
 */
static void
bulk_write(OrdersCall *call, BulkOrder *orders, int n, int first, BulkPosition *pos)
{
	HeapTuple  *tuples = palloc(sizeof(HeapTuple) * n);
	int			current = -1;
	int			i;

	pos->id = NULL;
	pos->field = NULL;
	pos->line = -1;
	for (i = 0; i < n; i++)
		tuples[i] = orders[i].row;
	pos->writing = &current;
	pos->first = first;
	storage_insert_many(call->data[TABLE_ORDERS], tuples, n, &current);
	pos->writing = NULL;

	for (i = 0; i < n; i++)
	{
		pos->index = first + i;
		pos->id = &orders[i].id;		/* only given ids are checked */
		if (orders[i].id_given && OidIsValid(call->events_order_index) &&
			storage_exists_any(call->data[TABLE_EVENTS], call->events_order_index,
							   UUIDPGetDatum(&orders[i].id)))
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("order id was used before"),
					 errdetail("The outbox holds events of an earlier order with this id."),
					 errhint("Add the order with a new id, such as orders_next_id()."),
					 errtableconstraint(call->rel[TABLE_ORDERS], "orders_id_not_reused")));
	}
	pos->index = -1;

	for (i = 0; i < n; i++)
		tuples[i] = orders[i].event;
	pos->writing = &current;
	storage_insert_many(call->data[TABLE_EVENTS], tuples, n, &current);
	pos->writing = NULL;
	for (i = 0; i < n; i++)
		event_announce(EVENT_ORDER_ADDED, &orders[i].id, 1, orders[i].position);
	pfree(tuples);
}

/*
 * orders_add_many(orders jsonb) RETURNS SETOF orders: each order added, in
 * the array's order.
 */
Datum
orders_add_many(PG_FUNCTION_ARGS)
{
	static const LOCKMODE locks[TABLE_COUNT] = {RowExclusiveLock, RowExclusiveLock, NoLock};
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	OrdersCall	call;
	const OrdersCatalog *cat;
	Jsonb	   *input;
	int			n;
	int			first;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	BulkPosition pos = {-1, NULL, -1, NULL, NULL, 0, NULL};
	ErrorContextCallback context;
	MemoryContext chunk_context;
	MemoryContext old;
	FieldsWrite fw = {0};

	InitMaterializedSRF(fcinfo, 0);
	pos.inputs = palloc0(sizeof(BulkInputs));
	pos.inputs->mcxt = CurrentMemoryContext;
	cat = orders_open(fcinfo, locks, &call);
	PreventCommandIfReadOnly("orders_add_many()");
	PreventCommandIfParallelMode("orders_add_many()");

	if (cat->distributed[TABLE_ORDERS])
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("orders_add_many is not supported on a Citus cluster"),
				 errdetail("Its orders belong to the shards of many nodes."),
				 errhint("Add each order with orders_add, in one transaction if they go together.")));
	if (orders_idempotency_key != NULL && orders_idempotency_key[0] != '\0')
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("orders_add_many does not take orders.idempotency_key"),
				 errhint("Give the orders ids of their own: a retry with the same ids is refused (23505) if the first attempt committed.")));
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("orders must not be null")));
	input = PG_GETARG_JSONB_P(0);
	if (!JB_ROOT_IS_ARRAY(input) || JB_ROOT_IS_SCALAR(input))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("orders must be a JSON array of orders"),
				 errhint("Pass '[{\"customer_id\": ..., \"currency\": ..., \"lines\": [...]}, ...]'.")));
	n = JB_ROOT_COUNT(input);
	if (n > BULK_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many orders for one call of orders_add_many"),
				 errdetail("The array has %d orders; at most %d are allowed.", n, BULK_MAX),
				 errhint("Split them over several calls, in one transaction if they go together.")));

	context.callback = bulk_error_context;
	context.arg = &pos;
	context.previous = error_context_stack;
	error_context_stack = &context;

	/* the shop's expressions, prepared once for the whole call */
	fw.mcxt = CurrentMemoryContext;
	chunk_context = AllocSetContextCreate(CurrentMemoryContext, "orders_add_many chunk",
										  ALLOCSET_DEFAULT_SIZES);
	for (first = 0; first < n; first += BULK_CHUNK)
	{
		int			count = Min(BULK_CHUNK, n - first);
		BulkOrder  *orders;
		int			i;

		CHECK_FOR_INTERRUPTS();
		old = MemoryContextSwitchTo(chunk_context);
		orders = palloc(sizeof(BulkOrder) * count);
		for (i = 0; i < count; i++)
		{
			pos.index = first + i;
			bulk_prepare(&call, getIthJsonbValueFromContainer(&input->root, first + i), now,
						 &orders[i], &fw, &pos);
		}
		bulk_write(&call, orders, count, first, &pos);
		MemoryContextSwitchTo(old);
		for (i = 0; i < count; i++)
			tuplestore_puttuple(rsinfo->setResult, orders[i].row);
		MemoryContextReset(chunk_context);
	}
	MemoryContextDelete(chunk_context);
	fields_write_done(&fw);

	error_context_stack = context.previous;
	orders_close(&call);
	return (Datum) 0;
}
