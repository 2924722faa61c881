/*
 * consumers.c: named consumers of the outbox, and how their checkpoints move.
 *
 * A consumer's row in order_event_consumers is its checkpoint: where it has
 * got to in the outbox (see "Gap-free reading" in the install script).  The
 * row belongs to the role that registered it, and only a role that may use
 * it moves it (consumer_access.c).  The relay worker's consumer belongs to
 * the bootstrap superuser.
 *
 * These functions run as the caller (no SECURITY DEFINER: nothing here
 * trusts a name the caller or a schema's owner could redirect) and write
 * the table directly by OID, as the order writers do; the read functions
 * in the install script read order_events with the caller's own
 * privileges, so reading events needs what reading orders needs.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_authid_d.h"
#include "commands/sequence.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "parser/parse_func.h"
#include "storage/bufmgr.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/xid8.h"

#include "orders.h"

PG_FUNCTION_INFO_V1(orders_events_register);
PG_FUNCTION_INFO_V1(orders_events_unregister);
PG_FUNCTION_INFO_V1(orders_events_consumer);
PG_FUNCTION_INFO_V1(orders_events_checkpoint);
PG_FUNCTION_INFO_V1(orders_events_open_batch);
PG_FUNCTION_INFO_V1(orders_events_advance);
PG_FUNCTION_INFO_V1(orders_events_node_cut);

/* The relay worker's consumer (relay.c); nobody else may register it. */
#define RELAY_CONSUMER "orders_relay"

/*
 * The last position the sequence has handed out, read from its page as
 * nextval() leaves it (CACHE 1: every value is written there as it is
 * taken).  Needs no privilege on the sequence: it is the extension's own.
 */
static int64
last_position_taken(Oid seqid)
{
	Relation	seqrel = relation_open(seqid, AccessShareLock);
	Buffer		buf = ReadBuffer(seqrel, 0);
	Page		page;
	ItemId		lp;
	HeapTupleHeader tuple;
	Form_pg_sequence_data seq;
	int64		last;

	LockBuffer(buf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buf);
	lp = PageGetItemId(page, FirstOffsetNumber);
	Assert(ItemIdIsNormal(lp));
	tuple = (HeapTupleHeader) PageGetItem(page, lp);
	seq = (Form_pg_sequence_data) ((char *) tuple + tuple->t_hoff);
	/* not called yet: nothing taken, and the first value is last_value */
	last = seq->is_called ? seq->last_value : seq->last_value - 1;
	UnlockReleaseBuffer(buf);
	relation_close(seqrel, AccessShareLock);
	return last;
}

/*
 * A snapshot never lists its own transaction, and so calls it visible: a
 * consumer that handles its events by writing orders in the same
 * transaction would count its own new events as acknowledged.  The cut
 * counts this transaction as running.  Rewritten through the type's text
 * form, the one public way to build a pg_snapshot.
 */
static Datum
snapshot_counting_own_xid(Datum snapshot)
{
	FullTransactionId own = GetTopFullTransactionIdIfAny();
	uint64		own_xid;
	uint64		xmin;
	uint64		xmax;
	int			consumed;
	char	   *text;
	char	   *p;
	bool		placed = false;
	StringInfoData buf;

	if (!FullTransactionIdIsValid(own) ||
		!DatumGetBool(DirectFunctionCall2(pg_visible_in_snapshot,
										  FullTransactionIdGetDatum(own), snapshot)))
		return snapshot;

	own_xid = U64FromFullTransactionId(own);
	text = DatumGetCString(DirectFunctionCall1(pg_snapshot_out, snapshot));
	if (sscanf(text, UINT64_FORMAT ":" UINT64_FORMAT ":%n", &xmin, &xmax, &consumed) != 2)
		elog(ERROR, "unexpected snapshot \"%s\"", text);
	initStringInfo(&buf);
	appendStringInfo(&buf, UINT64_FORMAT ":" UINT64_FORMAT ":", Min(xmin, own_xid), xmax);
	/* the xip list is sorted: own_xid goes in its place */
	for (p = text + consumed; *p != '\0';)
	{
		char	   *end;
		uint64		xid = strtou64(p, &end, 10);

		if (!placed && own_xid < xid)
		{
			appendStringInfo(&buf, UINT64_FORMAT ",", own_xid);
			placed = true;
		}
		appendStringInfo(&buf, UINT64_FORMAT, xid);
		p = end;
		if (*p == ',')
		{
			appendStringInfoChar(&buf, ',');
			p++;
		}
	}
	if (!placed)
		appendStringInfo(&buf, "%s" UINT64_FORMAT, buf.data[buf.len - 1] == ':' ? "" : ",", own_xid);
	return DirectFunctionCall1(pg_snapshot_in, CStringGetDatum(buf.data));
}

static uint64
snapshot_xmax(Datum snapshot)
{
	return U64FromFullTransactionId(DatumGetFullTransactionId(DirectFunctionCall1(pg_snapshot_xmax,
																					snapshot)));
}

/*
 * A consumer's cut of the outbox: a snapshot, and what bounds the events it
 * does not see.  This is what keeps a batch's cost to the batch, whatever
 * the backlog (see "Gap-free reading" in orders--1.4--1.5.sql).
 *
 * The last position taken is read after the snapshot was taken, and the
 * next transaction id after that.  So every event above top_position took
 * its position after the snapshot and is not in it; and an event at or
 * below it that the snapshot does not see belongs to a transaction that had
 * its id before top_position was read (event_emit takes the id first): one
 * the snapshot saw running (its xip) or one at or above its xmax and below
 * next_xid.  Those are a few transactions, found through the (xid,
 * position) index, never a scan of the backlog.
 *
 * In READ COMMITTED the snapshot is taken now, after the caller locked the
 * consumer's row: never older than the checkpoint another reader left, and
 * what the next statement reads sees all of it.  In REPEATABLE READ it is
 * the transaction's, the one its reads see (a checkpoint moved since would
 * have failed the lock with a serialization error).
 */
static void
read_cut(const OrdersCatalog *cat, Datum *snapshot, Datum *top_position, Datum *next_xid)
{
	if (IsolationUsesXactSnapshot())
		*snapshot = OidFunctionCall0Coll(F_PG_CURRENT_SNAPSHOT, InvalidOid);
	else
	{
		PushActiveSnapshot(GetLatestSnapshot());
		*snapshot = OidFunctionCall0Coll(F_PG_CURRENT_SNAPSHOT, InvalidOid);
		PopActiveSnapshot();
	}
	*snapshot = snapshot_counting_own_xid(*snapshot);
	*top_position = Int64GetDatum(last_position_taken(cat->events_seqid));
	*next_xid = FullTransactionIdGetDatum(ReadNextFullTransactionId());
}

/*
 * orders_events_node_cut() RETURNS order_event_cut: this node's cut of its
 * events, for a consumer's checkpoint on a cluster: its group, and its
 * snapshot with the bounds read_cut reads, the last position in the
 * cluster's numbering.  The coordinator asks every node for it, over
 * connections of their own (orders_events_cluster_cut).
 */
Datum
orders_events_node_cut(PG_FUNCTION_ARGS)
{
	static const LOCKMODE locks[TABLE_COUNT] = {NoLock, AccessShareLock, NoLock};
	OrdersCall	call;
	const OrdersCatalog *cat = orders_open(fcinfo, locks, &call);
	TupleDesc	desc;
	Datum		values[4];
	bool		nulls[4] = {0};
	int32		group;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE || desc->natts != 4)
		elog(ERROR, "orders_events_node_cut() must return a composite of four fields");
	check_can_consume(cat);
	group = cat->distributed[TABLE_EVENTS] ? citus_local_group() : 0;
	read_cut(cat, &values[1], &values[2], &values[3]);
	values[0] = Int32GetDatum(group);
	values[2] = Int64GetDatum(DatumGetInt64(values[2]) * POSITION_NODES + group);
	orders_close(&call);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/*
 * The consumer's row with these values, as orders_events_cluster_cut(c)
 * takes it: the cuts of every node of the cluster, taken now, after the
 * ones of its checkpoint.
 */
static Datum
cluster_cut(OrdersCall *call, Datum *values, bool *nulls)
{
	Relation	rel = call->rel[TABLE_CONSUMERS];
	Oid			rowtype = RelationGetForm(rel)->reltype;
	Oid			fn = LookupFuncName(list_make2(makeString(orders_schema_name(orders_helpers_namespace(call->cat->namespace_id))),
											   makeString("orders_events_cluster_cut")),
									1, &rowtype, false);
	Datum		row = heap_copy_tuple_as_datum(heap_form_tuple(RelationGetDescr(rel), values, nulls),
											   RelationGetDescr(rel));

	return OidFunctionCall1(fn, row);
}

/*
 * orders_events_register(consumer text, from_start boolean) RETURNS boolean:
 * a new consumer, owned by the current role; false when the name is taken.
 * From now: what is committed now counts as acknowledged.  From the start:
 * nothing does ('1:1:' sees no transaction).
 */
Datum
orders_events_register(PG_FUNCTION_ARGS)
{
	text	   *name = consumer_required_name(fcinfo);
	bool		from_start = !PG_ARGISNULL(1) && PG_GETARG_BOOL(1);
	OrdersCall	call;
	const OrdersCatalog *cat = open_consumers(fcinfo, "orders_events_register()", &call);
	Relation	rel = call.rel[TABLE_CONSUMERS];
	Datum		values[Natts_consumers];
	bool		nulls[Natts_consumers] = {0};
	bool		exists;
	bool		relay;
	char	   *cname = text_to_cstring(name);

	if (cname[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("consumer name must not be empty")));
	if (text_has_controls(PointerGetDatum(name)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("consumer name must not hold control characters"),
				 errdetail("The name is %s.", quoted_name(name))));
	relay = strcmp(cname, RELAY_CONSUMER) == 0;
	if (relay && !superuser())
		ereport(ERROR,
				(errcode(ERRCODE_RESERVED_NAME),
				 errmsg("consumer name \"%s\" is reserved for the relay worker", cname)));
	/* a pass that began before the outbox was distributed ends here */
	if (relay && cat->distributed[TABLE_EVENTS])
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("the relay worker does not serve a distributed outbox")));
	check_can_consume(cat);

	exists = storage_exists_any(rel, cat->consumers_pkey, PointerGetDatum(name));
	if (!exists)
	{
		values[Anum_consumers_name - 1] = PointerGetDatum(name);
		values[Anum_consumers_acked_snapshot - 1] = from_start ?
			DirectFunctionCall1(pg_snapshot_in, CStringGetDatum("1:1:")) :
			OidFunctionCall0Coll(F_PG_CURRENT_SNAPSHOT, InvalidOid);
		nulls[Anum_consumers_batch_snapshot - 1] = true;
		values[Anum_consumers_batch_position - 1] = Int64GetDatum(0);
		values[Anum_consumers_registered_at - 1] =
			TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
		nulls[Anum_consumers_acked_at - 1] = true;
		/* the relay worker's consumer is nobody's but the bootstrap superuser's */
		values[Anum_consumers_owner - 1] = ObjectIdGetDatum(relay ? BOOTSTRAP_SUPERUSERID : GetUserId());
		if (cat->consumers_have_bounds)
		{
			if (from_start)
			{
				/* before every position and every transaction */
				values[Anum_consumers_acked_top_position - 1] = Int64GetDatum(0);
				values[Anum_consumers_acked_next_xid - 1] =
					FullTransactionIdGetDatum(FullTransactionIdFromU64(1));
			}
			else
				read_cut(cat, &values[Anum_consumers_acked_snapshot - 1],
						 &values[Anum_consumers_acked_top_position - 1],
						 &values[Anum_consumers_acked_next_xid - 1]);
			nulls[Anum_consumers_batch_top_position - 1] = true;
			nulls[Anum_consumers_batch_next_xid - 1] = true;
		}
		if (cat->consumers_have_carried)
		{
			int64		settled = origin_settled_position(cat);

			/*
			 * The events another cluster wrote are judged by position: from
			 * the start, all of them are carried to this consumer; from now,
			 * none, as the cut's top position is past them.
			 */
			values[Anum_consumers_settled_position - 1] = Int64GetDatum(settled);
			nulls[Anum_consumers_carried_after - 1] = !(from_start && settled > 0);
			values[Anum_consumers_carried_after - 1] = Int64GetDatum(0);
			nulls[Anum_consumers_carried - 1] = true;
			if (from_start)
				values[Anum_consumers_acked_top_position - 1] = Int64GetDatum(settled);
		}
		if (cat->consumers_have_cuts)
		{
			/*
			 * On a cluster: from the start, no node's event is acknowledged;
			 * from now, what each node has committed now is.
			 */
			nulls[Anum_consumers_acked_cuts - 1] = !cat->distributed[TABLE_EVENTS];
			nulls[Anum_consumers_batch_cuts - 1] = true;
			if (cat->distributed[TABLE_EVENTS])
			{
				values[Anum_consumers_acked_cuts - 1] = PointerGetDatum(
					construct_empty_array(get_element_type(
						TupleDescAttr(RelationGetDescr(rel), Anum_consumers_acked_cuts - 1)->atttypid)));
				if (!from_start)
					values[Anum_consumers_acked_cuts - 1] = cluster_cut(&call, values, nulls);
			}
		}
		storage_insert(rel, heap_form_tuple(RelationGetDescr(rel), values, nulls));
	}
	orders_close(&call);
	PG_RETURN_BOOL(!exists);
}

/* orders_events_unregister(consumer text) RETURNS boolean: false if none. */
Datum
orders_events_unregister(PG_FUNCTION_ARGS)
{
	text	   *name = consumer_required_name(fcinfo);
	OrdersCall	call;

	open_consumers(fcinfo, "orders_events_unregister()", &call);
	{
		TupleTableSlot *slot = table_slot_create(call.rel[TABLE_CONSUMERS], NULL);
		bool		found = lock_own_consumer(&call, name, slot);

		if (found)
		{
			storage_delete(call.rel[TABLE_CONSUMERS], &slot->tts_tid);
			holds_forget(call.cat, name);
		}
		ExecDropSingleTupleTableSlot(slot);
		orders_close(&call);
		PG_RETURN_BOOL(found);
	}
}

/*
 * orders_events_consumer(consumer text) RETURNS order_event_consumers: the
 * consumer's row, locked until the transaction ends, so that one reader or
 * acknowledger of a name works at a time.
 */
Datum
orders_events_consumer(PG_FUNCTION_ARGS)
{
	text	   *name = consumer_required_name(fcinfo);
	OrdersCall	call;
	const OrdersCatalog *cat = open_consumers(fcinfo, "orders_events_consumer()", &call);
	TupleTableSlot *slot = table_slot_create(call.rel[TABLE_CONSUMERS], NULL);
	Datum		result;

	check_can_consume(cat);
	if (!lock_own_consumer(&call, name, slot))
		not_registered(name);
	result = ExecFetchSlotHeapTupleDatum(slot);
	ExecDropSingleTupleTableSlot(slot);
	orders_close(&call);
	PG_RETURN_DATUM(result);
}

/*
 * Writes the consumer's changed row over the locked one in slot; an
 * acknowledgement stamps acked_at.  Returns the row written.
 */
static HeapTuple
store_checkpoint(OrdersCall *call, TupleTableSlot *slot, Datum *values, bool *nulls,
				 bool acked)
{
	Relation	rel = call->rel[TABLE_CONSUMERS];
	HeapTuple	tuple;

	if (acked)
	{
		values[Anum_consumers_acked_at - 1] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
		nulls[Anum_consumers_acked_at - 1] = false;
	}
	tuple = heap_form_tuple(RelationGetDescr(rel), values, nulls);
	storage_update(rel, &slot->tts_tid, tuple);
	ExecDropSingleTupleTableSlot(slot);
	return tuple;
}

/*
 * The caller's consumer row, locked, its first natts columns copied into
 * values and nulls to be changed and stored.  Returns the slot holding it.
 */
static TupleTableSlot *
lock_consumer_row(OrdersCall *call, text *name, Datum *values, bool *nulls, int natts)
{
	TupleTableSlot *slot = table_slot_create(call->rel[TABLE_CONSUMERS], NULL);

	if (!lock_own_consumer(call, name, slot))
		not_registered(name);
	slot_getallattrs(slot);
	memcpy(values, slot->tts_values, sizeof(Datum) * natts);
	memcpy(nulls, slot->tts_isnull, sizeof(bool) * natts);
	return slot;
}

/*
 * orders_events_checkpoint(consumer text, acked_snapshot pg_snapshot,
 *     batch_snapshot pg_snapshot, batch_position bigint, acked boolean):
 * moves the consumer's checkpoint; acked: an acknowledgement (stamps
 * acked_at), not the opening of a batch.
 */
Datum
orders_events_checkpoint(PG_FUNCTION_ARGS)
{
	text	   *name = consumer_required_name(fcinfo);
	OrdersCall	call;
	TupleTableSlot *slot;
	Datum		values[Natts_consumers];
	bool		nulls[Natts_consumers];

	open_consumers(fcinfo, "orders_events_checkpoint()", &call);
	if (PG_ARGISNULL(1) || PG_ARGISNULL(3) || PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("a checkpoint needs an acknowledged snapshot and a batch position")));

	/* the 1.4 row: its columns up to the owner */
	slot = lock_consumer_row(&call, name, values, nulls, Anum_consumers_owner);
	if (call.cat->consumers_have_bounds)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("orders_events_checkpoint() serves extension orders 1.4 only"),
				 errdetail("From 1.5 on, orders_events_open_batch() and orders_events_advance() move checkpoints.")));
	values[Anum_consumers_acked_snapshot - 1] = PG_GETARG_DATUM(1);
	nulls[Anum_consumers_batch_snapshot - 1] = PG_ARGISNULL(2);
	values[Anum_consumers_batch_snapshot - 1] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	values[Anum_consumers_batch_position - 1] = PG_GETARG_DATUM(3);
	store_checkpoint(&call, slot, values, nulls, PG_GETARG_BOOL(4));
	orders_close(&call);
	PG_RETURN_VOID();
}

/* The consumer's row, locked, for a change on a 1.5 table or later. */
static TupleTableSlot *
lock_checkpoint(FunctionCallInfo fcinfo, text *name, const char *what, OrdersCall *call,
				Datum *values, bool *nulls)
{
	const OrdersCatalog *cat = open_consumers(fcinfo, what, call);

	if (!cat->consumers_have_bounds)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s needs extension orders 1.5 or later", what),
				 errhint("Run ALTER EXTENSION orders UPDATE.")));
	return lock_consumer_row(call, name, values, nulls,
							 RelationGetDescr(call->rel[TABLE_CONSUMERS])->natts);
}

/*
 * orders_events_open_batch(consumer text) RETURNS order_event_consumers:
 * opens the consumer's next batch, everything committed after its
 * checkpoint up to now: the batch's cut is taken now.  Returns the row.
 */
Datum
orders_events_open_batch(PG_FUNCTION_ARGS)
{
	text	   *name = consumer_required_name(fcinfo);
	OrdersCall	call;
	Datum		values[Natts_consumers];
	bool		nulls[Natts_consumers];
	TupleTableSlot *slot = lock_checkpoint(fcinfo, name, "orders_events_open_batch()", &call, values, nulls);
	HeapTuple	tuple;
	Datum		result;

	if (!nulls[Anum_consumers_batch_snapshot - 1])
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("consumer %s has a batch open", quoted_name(name)),
				 errhint("Acknowledge it with orders_events_ack(), or read on with orders_events_read().")));
	read_cut(call.cat, &values[Anum_consumers_batch_snapshot - 1],
			 &values[Anum_consumers_batch_top_position - 1],
			 &values[Anum_consumers_batch_next_xid - 1]);
	/* a batch that ends before the checkpoint would move it back */
	if (snapshot_xmax(values[Anum_consumers_batch_snapshot - 1]) <
		snapshot_xmax(values[Anum_consumers_acked_snapshot - 1]))
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not open a batch of consumer %s: its checkpoint is newer than this transaction's snapshot",
						quoted_name(name)),
				 errhint("Retry the transaction.")));
	nulls[Anum_consumers_batch_snapshot - 1] = false;
	nulls[Anum_consumers_batch_top_position - 1] = false;
	nulls[Anum_consumers_batch_next_xid - 1] = false;
	values[Anum_consumers_batch_position - 1] = Int64GetDatum(0);
	/* on a cluster the batch is what the nodes' cuts say; this node's marks it open */
	if (call.cat->consumers_have_cuts)
	{
		nulls[Anum_consumers_batch_cuts - 1] = true;
		if (call.cat->distributed[TABLE_EVENTS])
		{
			values[Anum_consumers_batch_cuts - 1] = cluster_cut(&call, values, nulls);
			nulls[Anum_consumers_batch_cuts - 1] = false;
		}
	}
	tuple = store_checkpoint(&call, slot, values, nulls, false);
	result = heap_copy_tuple_as_datum(tuple, RelationGetDescr(call.rel[TABLE_CONSUMERS]));
	orders_close(&call);
	PG_RETURN_DATUM(result);
}

/*
 * orders_events_advance(consumer text, batch_position bigint,
 *     batch_done boolean): acknowledges the open batch up to batch_position,
 * or, when batch_done, all of it: its cut becomes the checkpoint.
 */
Datum
orders_events_advance(PG_FUNCTION_ARGS)
{
	text	   *name = consumer_required_name(fcinfo);
	OrdersCall	call;
	Datum		values[Natts_consumers];
	bool		nulls[Natts_consumers];
	TupleTableSlot *slot;

	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("acknowledging needs a batch position and whether the batch is done")));
	slot = lock_checkpoint(fcinfo, name, "orders_events_advance()", &call, values, nulls);
	if (nulls[Anum_consumers_batch_snapshot - 1])
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("consumer %s has no batch open", quoted_name(name))));
	if (PG_GETARG_BOOL(2))
	{
		/* the batch's cut becomes the checkpoint; no batch is open */
		values[Anum_consumers_acked_snapshot - 1] = values[Anum_consumers_batch_snapshot - 1];
		values[Anum_consumers_acked_top_position - 1] = values[Anum_consumers_batch_top_position - 1];
		values[Anum_consumers_acked_next_xid - 1] = values[Anum_consumers_batch_next_xid - 1];
		nulls[Anum_consumers_acked_top_position - 1] = nulls[Anum_consumers_batch_top_position - 1];
		nulls[Anum_consumers_acked_next_xid - 1] = nulls[Anum_consumers_batch_next_xid - 1];
		nulls[Anum_consumers_batch_snapshot - 1] = true;
		nulls[Anum_consumers_batch_top_position - 1] = true;
		nulls[Anum_consumers_batch_next_xid - 1] = true;
		values[Anum_consumers_batch_position - 1] = Int64GetDatum(0);
		/* the carried events were the batch's first: all acknowledged now */
		if (call.cat->consumers_have_carried)
		{
			nulls[Anum_consumers_carried_after - 1] = true;
			nulls[Anum_consumers_carried - 1] = true;
		}
		if (call.cat->consumers_have_cuts)
		{
			values[Anum_consumers_acked_cuts - 1] = values[Anum_consumers_batch_cuts - 1];
			nulls[Anum_consumers_acked_cuts - 1] = nulls[Anum_consumers_batch_cuts - 1];
			nulls[Anum_consumers_batch_cuts - 1] = true;
		}
	}
	else
		values[Anum_consumers_batch_position - 1] = PG_GETARG_DATUM(1);
	store_checkpoint(&call, slot, values, nulls, true);
	orders_close(&call);
	PG_RETURN_VOID();
}
