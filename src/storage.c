/*
 * storage.c: rows in, rows out, through the heap and its indexes.
 *
 * The extension writes its tables directly, not through SQL: there is no
 * query to parse or plan, no name resolved in the caller's search_path, and no
 * table privilege to hold (the functions are the privilege).  In exchange it
 * does itself what the executor would: the index entries of every index on
 * the table (so a unique index raises 23505 and waits for a concurrent
 * inserter of the same key, as an INSERT does), and row locking that follows
 * the update chain in READ COMMITTED and fails with 40001 under REPEATABLE
 * READ and SERIALIZABLE, as UPDATE and DELETE do; NOT NULL, and the replica
 * identity that a publication of the table needs.  What it cannot do as the
 * executor would (triggers, rules, CHECK and foreign-key constraints,
 * row-level security) catalog.c refuses before anything is written.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "executor/executor.h"
#include "nodes/execnodes.h"
#include "storage/lmgr.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "orders.h"

/*
 * Adds index entries for a heap tuple just written, to every index of rel.
 * Updates too pass update = false to the executor: its "index unchanged by
 * the update" hint needs a range table, which we do not build; the hint only
 * helps btree remove old versions bottom-up, earlier than VACUUM would.
 */
static void
insert_index_entries(Relation rel, HeapTuple tuple, bool only_summarizing)
{
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;

	if (!RelationGetForm(rel)->relhasindex)
		return;

	estate = CreateExecutorState();
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);
	slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsHeapTuple);
	ExecStoreHeapTuple(tuple, slot, false);
	compat_insert_index_tuples(rri, slot, estate, only_summarizing);
	ExecDropSingleTupleTableSlot(slot);
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
}

/*
 * NOT NULL, as ExecConstraints checks it: the owner may have set it on a
 * column the extension leaves nullable.
 */
static void
check_not_null(Relation rel, HeapTuple tuple)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			i;

	if (desc->constr == NULL || !desc->constr->has_not_null)
		return;
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attnotnull && heap_attisnull(tuple, i + 1, desc))
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("null value in column \"%s\" of relation \"%s\" violates not-null constraint",
							NameStr(att->attname), RelationGetRelationName(rel)),
					 errtablecol(rel, i + 1)));
	}
}

/*
 * Inserts tuple into rel and its indexes.  tuple->t_self is set; tuple's
 * header is the heap's afterwards, no longer a composite datum.
 */
void
storage_insert(Relation rel, HeapTuple tuple)
{
	check_not_null(rel, tuple);
	simple_heap_insert(rel, tuple);
	insert_index_entries(rel, tuple, false);
}

/*
 * Inserts ntuples tuples into rel through the heap's multi-insert (a page
 * is filled, and WAL-logged, at a time), then their index entries, as COPY
 * does.  *current is the index of the tuple being checked or indexed, for
 * the caller's error context.
 */
void
storage_insert_many(Relation rel, HeapTuple *tuples, int ntuples, int *current)
{
	TupleTableSlot **slots = palloc(sizeof(TupleTableSlot *) * ntuples);
	int			i;

	for (i = 0; i < ntuples; i++)
	{
		*current = i;
		check_not_null(rel, tuples[i]);
		slots[i] = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsHeapTuple);
		ExecStoreHeapTuple(tuples[i], slots[i], false);
	}
	*current = -1;
	heap_multi_insert(rel, slots, ntuples, GetCurrentCommandId(true), 0, NULL);

	if (RelationGetForm(rel)->relhasindex)
	{
		EState	   *estate = CreateExecutorState();
		ResultRelInfo *rri = makeNode(ResultRelInfo);

		InitResultRelInfo(rri, rel, 1, NULL, 0);
		ExecOpenIndices(rri, false);
		for (i = 0; i < ntuples; i++)
		{
			*current = i;
			compat_insert_index_tuples(rri, slots[i], estate, false);
			ResetPerTupleExprContext(estate);
		}
		*current = -1;
		ExecCloseIndices(rri);
		FreeExecutorState(estate);
	}
	for (i = 0; i < ntuples; i++)
		ExecDropSingleTupleTableSlot(slots[i]);
	pfree(slots);
}

/*
 * Replaces the row at otid, which this transaction has locked, by tuple.  A
 * HOT update (no indexed column changed, room on the page) needs no new
 * index entries.
 */
void
storage_update(Relation rel, ItemPointer otid, HeapTuple tuple)
{
	TU_UpdateIndexes update_indexes;

	check_not_null(rel, tuple);
	CheckCmdReplicaIdentity(rel, CMD_UPDATE);
	compat_simple_heap_update(rel, otid, tuple, &update_indexes);
	if (update_indexes != TU_None)
		insert_index_entries(rel, tuple, update_indexes == TU_Summarizing);
}

/*
 * "first indexed column = value" for a btree index on a uuid or a text
 * column (catalog.c checked which), in the index's collation.
 */
static void
key_equals(ScanKey key, Relation index, Datum value)
{
	ScanKeyEntryInitialize(key, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0],
						   index->rd_opcintype[0] == UUIDOID ? F_UUID_EQ : F_TEXTEQ, value);
}

/*
 * Finds the row with the given key through its primary key index, as the
 * active snapshot sees it; stores it in slot.
 */
bool
storage_fetch(Relation rel, Oid index_oid, Datum value, TupleTableSlot *slot)
{
	Relation	index = index_open(index_oid, AccessShareLock);
	IndexScanDesc scan;
	ScanKeyData key;
	bool		found;

	key_equals(&key, index, value);
	scan = compat_index_beginscan(rel, index, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	index_endscan(scan);
	index_close(index, AccessShareLock);
	return found;
}

/* Whether the row in slot still has the key it was found by. */
static bool
slot_has_key(TupleTableSlot *slot, AttrNumber attnum, Datum key)
{
	bool		isnull;
	Datum		value = slot_getattr(slot, attnum, &isnull);
	Oid			typid = TupleDescAttr(slot->tts_tupleDescriptor, attnum - 1)->atttypid;

	return !isnull && order_field_equal(typid, value, key);
}

/*
 * Finds and locks the row with the given key, like SELECT ... FOR UPDATE:
 * waits for a concurrent writer of the row; in READ COMMITTED then takes the
 * newest version (or finds it gone), under a transaction snapshot fails with
 * 40001.  A newer version whose key was changed meanwhile is no longer the
 * row asked for: as EvalPlanQual would, it counts as gone.  Returns false
 * when there is no such row; slot holds the locked row.
 */
bool
storage_lock(Relation rel, Oid index_oid, Datum key, AttrNumber key_attnum,
			 LockTupleMode mode, TupleTableSlot *slot)
{
	TM_FailureData tmfd;
	TM_Result	result;
	ItemPointerData tid;

	if (!storage_fetch(rel, index_oid, key, slot))
		return false;

	tid = slot->tts_tid;
	result = table_tuple_lock(rel, &tid, GetActiveSnapshot(), slot,
							  GetCurrentCommandId(false), mode, LockWaitBlock,
							  IsolationUsesXactSnapshot() ? 0 : TUPLE_LOCK_FLAG_FIND_LAST_VERSION,
							  &tmfd);
	switch (result)
	{
		case TM_Ok:
			if (tmfd.traversed && !slot_has_key(slot, key_attnum, key))
				return false;
			return true;

		case TM_SelfModified:
			/* changed earlier in this same statement */
			if (ItemPointerEquals(&tmfd.ctid, &tid))
				return false;	/* deleted: it is gone */
			ereport(ERROR,
					(errcode(ERRCODE_CARDINALITY_VIOLATION),
					 errmsg("row was already changed by this statement"),
					 errhint("Change an order at most once per statement.")));
			break;

		case TM_Updated:
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not serialize access due to concurrent update")));
			break;

		case TM_Deleted:
			if (IsolationUsesXactSnapshot())
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("could not serialize access due to concurrent delete")));
			return false;

		case TM_Invisible:

			/*
			 * Changed by this transaction in a command after the statement's
			 * snapshot: a write through SPI (holds.c) counts a command, so a
			 * second call in one statement meets its own earlier change this
			 * way.  Looked for again as of this command, where it is gone or
			 * has its new version.
			 */
			if (GetActiveSnapshot()->curcid != GetCurrentCommandId(false))
			{
				bool		found;

				/* an error on the way leaves the snapshot to the abort's cleanup */
				PushCopiedSnapshot(GetActiveSnapshot());
				UpdateActiveSnapshotCommandId();
				found = storage_lock(rel, index_oid, key, key_attnum, mode, slot);
				PopActiveSnapshot();
				return found;
			}
			elog(ERROR, "tuple to lock is invisible to this command");
			break;

		default:
			elog(ERROR, "unexpected table_tuple_lock result %d", (int) result);
	}
	pg_unreachable();
}

/*
 * Whether rel holds a row whose first indexed column of index_oid (a
 * btree on a uuid or text column) equals key, committed or written by this
 * transaction, this very statement included.  A row that another
 * transaction is still writing is waited for, as a unique index waits:
 * what counts is whether that transaction commits.
 */
bool
storage_exists_any(Relation rel, Oid index_oid, Datum key)
{
	Relation	index = index_open(index_oid, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	ScanKeyData skey;
	bool		found;

	key_equals(&skey, index, key);
	for (;;)
	{
		SnapshotData dirty;
		IndexScanDesc scan;
		TransactionId wait_for;

		InitDirtySnapshot(dirty);
		scan = compat_index_beginscan(rel, index, &dirty, 1, 0);
		index_rescan(scan, &skey, 1, NULL, 0);
		found = index_getnext_slot(scan, ForwardScanDirection, slot);
		index_endscan(scan);
		/* the dirty snapshot says who is writing only when it saw a row */
		if (!found)
			break;
		wait_for = TransactionIdIsValid(dirty.xmin) ? dirty.xmin : dirty.xmax;
		if (!TransactionIdIsValid(wait_for))
			break;
		XactLockTableWait(wait_for, rel, &slot->tts_tid, XLTW_InsertIndex);
	}
	index_close(index, AccessShareLock);
	ExecDropSingleTupleTableSlot(slot);
	return found;
}

/*
 * The highest position among the events of the order whose id is key,
 * read backwards through the outbox's (order_id, version) index: the
 * entries of its last version come first.  0 when it has none.  Read with
 * a new snapshot: the caller holds the order's row lock, so every earlier
 * writer of the order has committed.
 */
int64
storage_last_position(Relation rel, Oid index_oid, Datum key)
{
	Relation	index = index_open(index_oid, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	ScanKeyData skey;
	IndexScanDesc scan;
	int64		last = 0;
	int32		last_version = -1;
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());

	key_equals(&skey, index, key);
	scan = compat_index_beginscan(rel, index, snapshot, 1, 0);
	index_rescan(scan, &skey, 1, NULL, 0);
	while (index_getnext_slot(scan, BackwardScanDirection, slot))
	{
		bool		isnull;
		int32		version = DatumGetInt32(slot_getattr(slot, Anum_order_events_version, &isnull));

		if (last_version >= 0 && version != last_version)
			break;
		last_version = version;
		last = Max(last, DatumGetInt64(slot_getattr(slot, Anum_order_events_position, &isnull)));
	}
	index_endscan(scan);
	UnregisterSnapshot(snapshot);
	index_close(index, AccessShareLock);
	ExecDropSingleTupleTableSlot(slot);
	return last;
}

/* Deletes a row this transaction has locked. */
void
storage_delete(Relation rel, ItemPointer tid)
{
	CheckCmdReplicaIdentity(rel, CMD_DELETE);
	simple_heap_delete(rel, tid);
}
