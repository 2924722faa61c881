/*
 * events.c: domain events, in the caller's transaction.
 *
 * Each event is first a row in the outbox table order_events (durable, the
 * truth), then a NOTIFY on channel orders_events (the wake-up: notify.c, or
 * the relay worker's after commit: relay.c).  Both belong to the caller's
 * transaction: a rollback, of the transaction or of a savepoint around the
 * call, takes back the row and the notification.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type_d.h"
#include "commands/sequence.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/arrayaccess.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/xid8.h"

#include "orders.h"

PG_FUNCTION_INFO_V1(orders_event_types);

static const char *const event_type_names[EVENT_TYPE_COUNT] = {
	"order_added",
	"order_lines_changed",
	"order_shipping_address_changed",
	"order_confirmed",
	"order_shipped",
	"order_delivered",
	"order_cancelled",
	"order_removed",
	"order_fields_changed",
};

/* orders_event_types() RETURNS text[]: every event type, in this order */
Datum
orders_event_types(PG_FUNCTION_ARGS)
{
	Datum		names[EVENT_TYPE_COUNT];
	int			i;

	for (i = 0; i < EVENT_TYPE_COUNT; i++)
		names[i] = CStringGetTextDatum(event_type_names[i]);
	PG_RETURN_ARRAYTYPE_P(construct_array(names, EVENT_TYPE_COUNT, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * ---- building jsonb without a text round trip ----
 *
 * Each jb_ function pushes one member of the object being built: its key,
 * then its value; with a NULL key, an element of the array being built.
 */

static void
jb_push_string(JsonbParseState **st, JsonbIteratorToken token, const char *s, int len)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) s;
	v.val.string.len = len;
	pushJsonbValue(st, token, &v);
}

static void
jb_key(JsonbParseState **st, const char *key)
{
	if (key != NULL)
		jb_push_string(st, WJB_KEY, key, strlen(key));
}

static void
jb_text(JsonbParseState **st, const char *key, Datum d)
{
	text	   *t = DatumGetTextPP(d);

	jb_key(st, key);
	jb_push_string(st, WJB_VALUE, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
}

static void
jb_cstring(JsonbParseState **st, const char *key, const char *s)
{
	jb_key(st, key);
	jb_push_string(st, WJB_VALUE, s, strlen(s));
}

/* pushJsonbValue keeps string pointers until the end: no stack buffers */
static void
jb_uuid(JsonbParseState **st, const char *key, Datum d)
{
	char	   *buf = palloc(UUID_TEXT_SIZE);

	uuid_format(DatumGetUUIDP(d), buf);
	jb_key(st, key);
	jb_push_string(st, WJB_VALUE, buf, UUID_TEXT_LEN);
}

static void
jb_int(JsonbParseState **st, const char *key, int64 n)
{
	JsonbValue	v;

	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(n);
	jb_key(st, key);
	pushJsonbValue(st, WJB_VALUE, &v);
}

static void
jb_null(JsonbParseState **st, const char *key)
{
	JsonbValue	v;

	v.type = jbvNull;
	jb_key(st, key);
	pushJsonbValue(st, WJB_VALUE, &v);
}

/* timestamptz as to_jsonb renders it */
static void
jb_timestamptz(JsonbParseState **st, const char *key, Datum d)
{
	jb_cstring(st, key, JsonEncodeDateTime(NULL, d, TIMESTAMPTZOID, NULL));
}

/*
 * A value of a shop's field, as to_jsonb renders it; the common scalar
 * types without a call.
 */
static void
jb_field(JsonbParseState **st, const OrderField *f, Datum value, bool isnull)
{
	Jsonb	   *j;
	JsonbValue	v;

	if (isnull)
	{
		jb_null(st, f->name);
		return;
	}
	switch (f->typid)
	{
		case TEXTOID:
		case VARCHAROID:
			jb_text(st, f->name, value);
			return;
		case INT2OID:
			jb_int(st, f->name, DatumGetInt16(value));
			return;
		case INT4OID:
			jb_int(st, f->name, DatumGetInt32(value));
			return;
		case INT8OID:
			jb_int(st, f->name, DatumGetInt64(value));
			return;
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			/* as to_jsonb renders them */
			jb_cstring(st, f->name, JsonEncodeDateTime(NULL, value, f->typid, NULL));
			return;
		case BOOLOID:
			v.type = jbvBool;
			v.val.boolean = DatumGetBool(value);
			jb_key(st, f->name);
			pushJsonbValue(st, WJB_VALUE, &v);
			return;
		default:
			break;
	}
	j = DatumGetJsonbP(FunctionCall1(unconstify(FmgrInfo *, &f->to_jsonb), value));
	v.type = jbvBinary;
	v.val.binary.data = &j->root;
	v.val.binary.len = VARSIZE(j) - VARHDRSZ;
	jb_key(st, f->name);
	pushJsonbValue(st, WJB_VALUE, &v);
}

/* a composite value as an object of its fields, ours and the shop's, or null */
static void
jb_composite(JsonbParseState **st, const char *key, TupleDesc desc, const CompositeExtras *ex,
			 Datum value, bool isnull)
{
	Datum		values_here[COMPOSITE_FIELDS_HERE];
	bool		nulls_here[COMPOSITE_FIELDS_HERE];
	Datum	   *values;
	bool	   *nulls;
	int			i;

	if (isnull)
	{
		jb_null(st, key);
		return;
	}
	values = COMPOSITE_ARRAY(values_here, desc);
	nulls = COMPOSITE_ARRAY(nulls_here, desc);
	composite_fields(value, desc, values, nulls);

	jb_key(st, key);
	pushJsonbValue(st, WJB_BEGIN_OBJECT, NULL);
	for (i = 0; i < ex->nfixed; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		const char *field = NameStr(att->attname);

		if (nulls[i])
			jb_null(st, field);
		else if (att->atttypid == UUIDOID)
			jb_uuid(st, field, values[i]);
		else if (att->atttypid == INT4OID)
			jb_int(st, field, DatumGetInt32(values[i]));
		else if (att->atttypid == INT8OID)
			jb_int(st, field, DatumGetInt64(values[i]));
		else
			jb_text(st, field, values[i]);
	}
	for (i = 0; i < ex->nextra; i++)
	{
		int			x = ex->extra[i].attnum - 1;

		jb_field(st, &ex->extra[i], values[x], nulls[x]);
	}
	pushJsonbValue(st, WJB_END_OBJECT, NULL);
}

static void
jb_lines(JsonbParseState **st, const char *key, const OrdersCatalog *cat, Datum lines)
{
	ArrayType  *arr = DatumGetArrayTypeP(lines);
	array_iter	it;
	int			n = ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
	int			i;

	jb_key(st, key);
	pushJsonbValue(st, WJB_BEGIN_ARRAY, NULL);
	array_iter_setup(&it, (AnyArrayType *) arr);
	for (i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		line = composite_array_next(&it, &isnull, i);

		/* stored lines are never NULL; the invariants saw to that */
		jb_composite(st, NULL, cat->line_desc, &cat->line_extras, line, false);
	}
	pushJsonbValue(st, WJB_END_ARRAY, NULL);
}

/* begins the object that jb_finish closes */
static JsonbParseState *
jb_begin(void)
{
	JsonbParseState *st = NULL;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	return st;
}

/* closes the object jb_begin began, and makes it a jsonb datum */
static Datum
jb_finish(JsonbParseState **st)
{
	return JsonbPGetDatum(JsonbValueToJsonb(pushJsonbValue(st, WJB_END_OBJECT, NULL)));
}

/*
 * The whole order as a jsonb object, with the keys and value formats of
 * to_jsonb(orders), the shop's own columns included, so a consumer needs
 * nothing else to rebuild it.
 */
Datum
event_payload_order(const OrdersCatalog *cat, Datum *values, bool *nulls)
{
	JsonbParseState *st = jb_begin();
	int			i;
	Oid			status = DatumGetObjectId(values[Anum_orders_status - 1]);

	jb_uuid(&st, "id", values[Anum_orders_id - 1]);
	jb_uuid(&st, "customer_id", values[Anum_orders_customer_id - 1]);
	jb_cstring(&st, "status", order_status_names[order_status_from_oid(cat, status, false)]);
	jb_text(&st, "currency", values[Anum_orders_currency - 1]);
	jb_lines(&st, "lines", cat, values[Anum_orders_lines - 1]);
	jb_composite(&st, "shipping_address", cat->address_desc, &cat->address_extras,
				 values[Anum_orders_shipping_address - 1],
				 nulls[Anum_orders_shipping_address - 1]);
	jb_int(&st, "total", DatumGetInt64(values[Anum_orders_total - 1]));
	jb_int(&st, "version", DatumGetInt32(values[Anum_orders_version - 1]));
	jb_timestamptz(&st, "created_at", values[Anum_orders_created_at - 1]);
	jb_timestamptz(&st, "updated_at", values[Anum_orders_updated_at - 1]);
	for (i = 0; i < cat->nfields; i++)
	{
		int			x = cat->fields[i].attnum - 1;

		jb_field(&st, &cat->fields[i], values[x], nulls[x]);
	}
	return jb_finish(&st);
}

/* order_lines_changed: the new lines and the new total. */
Datum
event_payload_lines(const OrdersCatalog *cat, Datum lines, int64 total)
{
	JsonbParseState *st = jb_begin();

	jb_lines(&st, "lines", cat, lines);
	jb_int(&st, "total", total);
	return jb_finish(&st);
}

/* order_shipping_address_changed: the new address (null when removed). */
Datum
event_payload_address(const OrdersCatalog *cat, Datum address, bool isnull)
{
	JsonbParseState *st = jb_begin();

	jb_composite(&st, "shipping_address", cat->address_desc, &cat->address_extras,
				 address, isnull);
	return jb_finish(&st);
}

/* the status events: where the order came from and where it is now. */
Datum
event_payload_status(OrderStatus from, OrderStatus to)
{
	JsonbParseState *st = jb_begin();

	jb_cstring(&st, "status", order_status_names[to]);
	jb_cstring(&st, "previous_status", order_status_names[from]);
	return jb_finish(&st);
}

/*
 * order_fields_changed: each of the shop's columns a save changed, with
 * its new value, under the column's name, as the other change events name
 * theirs: a consumer applies any of them to its copy of the order the
 * same way.
 */
Datum
event_payload_fields(const OrdersCatalog *cat, const Datum *stored, const bool *stored_null,
					 const Datum *values, const bool *nulls)
{
	JsonbParseState *st = jb_begin();
	int			i;

	for (i = 0; i < cat->nfields; i++)
	{
		const OrderField *f = &cat->fields[i];
		int			x = f->attnum - 1;

		if (!field_value_equal(f, stored[x], stored_null[x], values[x], nulls[x]))
			jb_field(&st, f, values[x], nulls[x]);
	}
	return jb_finish(&st);
}

/*
 * Up to this far behind, the sequence catches up by nextval; further, it
 * jumps by setval, which a concurrent nextval beyond the target (this many
 * of them within the jump) would set back.
 */
#define POSITION_CATCH_UP_LIMIT 10000

/* The sequence's next value at target or above; n was just taken from it. */
static int64
position_sequence_advance(Oid seqid, int64 target, int64 n)
{
	Oid			saved_user;
	int			saved_context;

	if (target - n <= POSITION_CATCH_UP_LIMIT)
	{
		while (n < target)
			n = nextval_internal(seqid, false);
		return n;
	}
	/* as the sequence's owner, the extension's; one jump at a time */
	LockRelationOid(seqid, ShareUpdateExclusiveLock);
	GetUserIdAndSecContext(&saved_user, &saved_context);
	SetUserIdAndSecContext(orders_relation_owner(seqid), saved_context | SECURITY_LOCAL_USERID_CHANGE);
	(void) DirectFunctionCall2(setval_oid, ObjectIdGetDatum(seqid), Int64GetDatum(target - 1));
	SetUserIdAndSecContext(saved_user, saved_context);
	UnlockRelationOid(seqid, ShareUpdateExclusiveLock);
	return nextval_internal(seqid, false);
}

/*
 * The position of an event of order_id on a Citus cluster.  Above the
 * order's last one: after a shard move brought the order from a node whose
 * sequence ran ahead, this node's sequence catches up first, so that an
 * order's events stay in version order in position order.
 */
static int64
cluster_position(OrdersCall *call, OrderEventType type, const pg_uuid_t *order_id)
{
	Oid			seqid = call->cat->events_seqid;
	int32		group = citus_local_group();
	int64		n = nextval_internal(seqid, false);

	if (group < 0 || group >= POSITION_NODES)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("Citus node group %d is beyond the %d groups that event positions tell apart",
						group, POSITION_NODES)));
	/* a new order has no events yet: orders_add made sure */
	if (type != EVENT_ORDER_ADDED && OidIsValid(call->events_order_index))
	{
		if (call->after_position < 0)
			call->after_position = storage_last_position(call->data[TABLE_EVENTS],
														 call->events_order_index,
														 UUIDPGetDatum(order_id));
		if (n * POSITION_NODES + group <= call->after_position)
			n = position_sequence_advance(seqid, call->after_position / POSITION_NODES + 1, n);
	}
	call->after_position = n * POSITION_NODES + group;
	return call->after_position;
}

/* names the setting in the context of an error its value causes */
static void
event_metadata_context(void *arg)
{
	errcontext("setting orders.event_metadata");
}

/*
 * The effective orders.event_metadata as jsonb, or NULL for none.  Parsed
 * once for each new value: a transaction that writes many events sets it
 * once.  The cache is in TopMemoryContext, the value is copied into the
 * event's tuple.
 */
static Jsonb *
event_metadata(void)
{
	static char *cached_text = NULL;
	static Jsonb *cached = NULL;
	const char *text = orders_event_metadata_effective();
	size_t		len = text != NULL ? strlen(text) : 0;
	ErrorContextCallback context;
	Jsonb	   *parsed;

	if (len == 0)
		return NULL;
	if (cached_text != NULL && strcmp(cached_text, text) == 0)
		return cached;
	if (len > EVENT_METADATA_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("orders.event_metadata is too long (%zu bytes)", len),
				 errdetail("Every event the transaction writes carries it: at most %d bytes are allowed.",
						   EVENT_METADATA_MAX)));

	context.callback = event_metadata_context;
	context.arg = NULL;
	context.previous = error_context_stack;
	error_context_stack = &context;
	parsed = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
	error_context_stack = context.previous;
	if (!JB_ROOT_IS_OBJECT(parsed) || JB_ROOT_IS_SCALAR(parsed))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("orders.event_metadata must be a JSON object"),
				 errhint("Set it to an object, such as '{\"correlation_id\": \"...\"}', or to '' for none.")));

	{
		/* both copies made before either old one goes: no half-made cache */
		char	   *new_text = MemoryContextStrdup(TopMemoryContext, text);
		Jsonb	   *new_value = MemoryContextAlloc(TopMemoryContext, VARSIZE(parsed));

		memcpy(new_value, parsed, VARSIZE(parsed));
		if (cached_text != NULL)
			pfree(cached_text);
		if (cached != NULL)
			pfree(cached);
		cached_text = new_text;
		cached = new_value;
	}
	return cached;
}

/*
 * One event's outbox row, with its position taken, not yet stored; the
 * relay worker's wake-up at commit is asked for as orders.notify says.
 */
HeapTuple
event_build(OrdersCall *call, OrderEventType type, pg_uuid_t *order_id,
			int32 version, Datum payload, TimestampTz occurred_at, int64 *position_out)
{
	const OrdersCatalog *cat = call->cat;
	Relation	rel = call->rel[TABLE_EVENTS];
	Datum		values[Natts_order_events];
	bool		nulls[Natts_order_events] = {0};
	HeapTuple	tuple;
	FullTransactionId xid;
	int64		position;
	NotifyMode	notify = orders_notify_effective();
	Jsonb	   *metadata = event_metadata();
	pg_uuid_t  *event_id = palloc(sizeof(pg_uuid_t));

	Assert(type >= 0 && type < EVENT_TYPE_COUNT);

	/* an outbox of another cluster is made this one's before it grows */
	origin_ensure(cat);

	/*
	 * The transaction id first, the position after: a reader relies on an
	 * event's transaction having its id before the event had its position.
	 */
	xid = GetTopFullTransactionId();
	/* the sequence is the extension's own: no privilege on it is needed */
	if (cat->distributed[TABLE_EVENTS])
		position = cluster_position(call, type, order_id);
	else
		position = nextval_internal(cat->events_seqid, false);

	values[Anum_order_events_position - 1] = Int64GetDatum(position);
	values[Anum_order_events_xid - 1] = FullTransactionIdGetDatum(xid);
	values[Anum_order_events_order_id - 1] = UUIDPGetDatum(order_id);
	values[Anum_order_events_type - 1] = CStringGetTextDatum(event_type_names[type]);
	values[Anum_order_events_version - 1] = Int32GetDatum(version);
	values[Anum_order_events_payload - 1] = payload;
	values[Anum_order_events_occurred_at - 1] = TimestampTzGetDatum(occurred_at);
	if (cat->events_have_relay)
		values[Anum_order_events_relay - 1] = BoolGetDatum(notify == NOTIFY_RELAY);
	else if (notify == NOTIFY_RELAY)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("orders.notify = relay needs extension orders 1.3 or later"),
				 errhint("Run ALTER EXTENSION orders UPDATE.")));
	/* the relay worker reads this node's outbox, not a cluster's */
	if (notify == NOTIFY_RELAY && cat->distributed[TABLE_EVENTS])
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("orders.notify = relay is not supported on a Citus cluster"),
				 errhint("Set orders.notify to on, or to off where consumers read the outbox.")));
	if (notify == NOTIFY_RELAY)
		relay_note_write();
	if (cat->events_have_envelope)
	{
		uuidv7_generate(event_id);
		values[Anum_order_events_id - 1] = UUIDPGetDatum(event_id);
		values[Anum_order_events_aggregatetype - 1] = CStringGetTextDatum("order");
		values[Anum_order_events_schema_version - 1] = Int16GetDatum(EVENT_SCHEMA_VERSION);
		if (metadata != NULL)
			values[Anum_order_events_metadata - 1] = JsonbPGetDatum(metadata);
		else
			nulls[Anum_order_events_metadata - 1] = true;
	}
	else if (metadata != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("orders.event_metadata needs extension orders 1.8 or later"),
				 errhint("Run ALTER EXTENSION orders UPDATE, or set orders.event_metadata to ''.")));

	tuple = heap_form_tuple(RelationGetDescr(rel), values, nulls);
	*position_out = position;
	return tuple;
}

/* The NOTIFY of an event stored, now, when orders.notify is on. */
void
event_announce(OrderEventType type, const pg_uuid_t *order_id, int32 version, int64 position)
{
	if (orders_notify_effective() == NOTIFY_ON)
		notify_event(position, event_type_names[type], order_id, version);
}

/*
 * Emits one event: the outbox row, then, as orders.notify says, the NOTIFY
 * now, or the relay worker's wake-up at commit, or nothing.  Returns its position.
 */
int64
event_emit(OrdersCall *call, OrderEventType type, pg_uuid_t *order_id,
		   int32 version, Datum payload, TimestampTz occurred_at)
{
	int64		position;
	HeapTuple	tuple = event_build(call, type, order_id, version, payload, occurred_at,
									&position);

	storage_insert(call->data[TABLE_EVENTS], tuple);
	heap_freetuple(tuple);
	event_announce(type, order_id, version, position);
	return position;
}
