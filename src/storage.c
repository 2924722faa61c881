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
 * READ and SERIALIZABLE, as UPDATE and DELETE do.  Triggers and row-level
 * security on these tables are not applied; the outbox is the way to react to
 * a change.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "executor/executor.h"
#include "nodes/execnodes.h"
#include "utils/fmgroids.h"
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
#if PG_VERSION_NUM >= 160000
	ExecInsertIndexTuples(rri, slot, estate, false, false, NULL, NIL, only_summarizing);
#else
	(void) only_summarizing;
	ExecInsertIndexTuples(rri, slot, estate, false, false, NULL, NIL);
#endif
	ExecDropSingleTupleTableSlot(slot);
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
}

/*
 * Inserts tuple into rel and its indexes.  tuple->t_self is set; tuple's
 * header is the heap's afterwards, no longer a composite datum.
 */
void
storage_insert(Relation rel, HeapTuple tuple)
{
	simple_heap_insert(rel, tuple);
	insert_index_entries(rel, tuple, false);
}

/*
 * Replaces the row at otid, which this transaction has locked, by tuple.  A
 * HOT update (no indexed column changed, room on the page) needs no new
 * index entries.
 */
void
storage_update(Relation rel, ItemPointer otid, HeapTuple tuple)
{
#if PG_VERSION_NUM >= 160000
	TU_UpdateIndexes update_indexes;

	simple_heap_update(rel, otid, tuple, &update_indexes);
	if (update_indexes != TU_None)
		insert_index_entries(rel, tuple, update_indexes == TU_Summarizing);
#else
	simple_heap_update(rel, otid, tuple);
	if (!HeapTupleIsHeapOnly(tuple))
		insert_index_entries(rel, tuple, false);
#endif
}

/*
 * Finds the row with the given uuid key through index index_oid, as the
 * active snapshot sees it; stores it in slot.
 */
bool
storage_fetch(Relation rel, Oid index_oid, pg_uuid_t *id, TupleTableSlot *slot)
{
	Relation	index = index_open(index_oid, AccessShareLock);
	IndexScanDesc scan;
	ScanKeyData key;
	bool		found;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_UUID_EQ, UUIDPGetDatum(id));
	scan = index_beginscan(rel, index, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	index_endscan(scan);
	index_close(index, AccessShareLock);
	return found;
}

/*
 * Finds and locks the row with the given key, like SELECT ... FOR UPDATE:
 * waits for a concurrent writer of the row; in READ COMMITTED then takes the
 * newest version (or finds it gone), under a transaction snapshot fails with
 * 40001.  Returns false when there is no such row; slot holds the locked row.
 */
bool
storage_lock(Relation rel, Oid index_oid, pg_uuid_t *id, LockTupleMode mode,
			 TupleTableSlot *slot)
{
	TM_FailureData tmfd;
	TM_Result	result;
	ItemPointerData tid;

	if (!storage_fetch(rel, index_oid, id, slot))
		return false;

	tid = slot->tts_tid;
	result = table_tuple_lock(rel, &tid, GetActiveSnapshot(), slot,
							  GetCurrentCommandId(false), mode, LockWaitBlock,
							  IsolationUsesXactSnapshot() ? 0 : TUPLE_LOCK_FLAG_FIND_LAST_VERSION,
							  &tmfd);
	switch (result)
	{
		case TM_Ok:
			return true;

		case TM_SelfModified:
			/* changed earlier in this same statement */
			if (ItemPointerEquals(&tmfd.ctid, &tid))
				return false;	/* deleted: it is gone */
			ereport(ERROR,
					(errcode(ERRCODE_CARDINALITY_VIOLATION),
					 errmsg("order was already changed by this statement"),
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

		default:
			elog(ERROR, "unexpected table_tuple_lock result %d", (int) result);
	}
	pg_unreachable();
}

/* Deletes a row this transaction has locked. */
void
storage_delete(Relation rel, ItemPointer tid)
{
	simple_heap_delete(rel, tid);
}
