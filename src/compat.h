/*
 * compat.h: every difference between the PostgreSQL majors orders builds
 * against (15, 17 and 18; 16 builds too), in one place.
 *
 * The rest of the code is written against the newest server's API; this
 * header supplies it on older ones.  Where a newer major has something better
 * than our own code, a HAVE_ macro here says so and the code uses it there.
 * No other file tests PG_VERSION_NUM.
 */
#ifndef ORDERS_COMPAT_H
#define ORDERS_COMPAT_H

#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "catalog/pg_proc_d.h"
#include "utils/acl.h"
#include "utils/relcache.h"
#include "storage/proc.h"
#include "utils/wait_event.h"

#if PG_VERSION_NUM < 150000
#error "orders needs PostgreSQL 15 or later"
#endif

/*
 * 16 builds modules with -fvisibility=hidden and makes PGDLLEXPORT mark what
 * a module exports: the SQL-callable functions and their info records, the
 * magic block, _PG_init and background worker entry points.  15's
 * PGDLLEXPORT is empty outside Windows, and its PG_FUNCTION_INFO_V1 does not
 * mark the function itself.  The Makefile hides symbols on 15 too, so here
 * both are as 16 has them, and _PG_init is declared as 16's fmgr.h does.
 */
#if PG_VERSION_NUM < 160000 && defined(__GNUC__) && !defined(WIN32)
#undef PGDLLEXPORT
#define PGDLLEXPORT __attribute__((visibility("default")))
#undef PG_FUNCTION_INFO_V1
#define PG_FUNCTION_INFO_V1(funcname) \
extern PGDLLEXPORT Datum funcname(PG_FUNCTION_ARGS); \
extern PGDLLEXPORT const Pg_finfo_record * CppConcat(pg_finfo_,funcname)(void); \
const Pg_finfo_record * \
CppConcat(pg_finfo_,funcname) (void) \
{ \
	static const Pg_finfo_record my_finfo = { 1 }; \
	return &my_finfo; \
} \
extern int no_such_variable
extern PGDLLEXPORT void _PG_init(void);
#endif

/*
 * InitMaterializedSRF is 15.0's SetSingleFuncCall renamed; later 15.x
 * releases have both names, 16 only the new one.
 */
#if PG_VERSION_NUM < 160000
#define InitMaterializedSRF SetSingleFuncCall
#endif

/*
 * 18 replaced the pg_attribute_noreturn() attribute by pg_noreturn, a C11
 * function specifier written first in the declaration.
 */
#ifndef pg_noreturn
#define pg_noreturn pg_attribute_noreturn()
#endif

/*
 * 18 can return a deferrable primary key too; catalog.c wants what 15 and
 * 17 return, an immediate one or none.
 */
static inline Oid
compat_primary_key_index(Relation rel)
{
#if PG_VERSION_NUM >= 180000
	return RelationGetPrimaryKeyIndex(rel, false);
#else
	return RelationGetPrimaryKeyIndex(rel);
#endif
}

/*
 * 16 has summarizing indexes (BRIN) that a HOT update must still be told
 * about; heap updates say which indexes need new entries, and index
 * insertion is told whether it is for summarizing indexes only.
 */
#if PG_VERSION_NUM < 160000
typedef enum TU_UpdateIndexes
{
	TU_None,
	TU_All,
	TU_Summarizing
} TU_UpdateIndexes;
#endif

static inline void
compat_simple_heap_update(Relation rel, ItemPointer otid, HeapTuple tuple,
						  TU_UpdateIndexes *update_indexes)
{
#if PG_VERSION_NUM >= 160000
	simple_heap_update(rel, otid, tuple, update_indexes);
#else
	simple_heap_update(rel, otid, tuple);
	*update_indexes = HeapTupleIsHeapOnly(tuple) ? TU_None : TU_All;
#endif
}

static inline void
compat_insert_index_tuples(ResultRelInfo *rri, TupleTableSlot *slot, EState *estate,
						   bool only_summarizing)
{
#if PG_VERSION_NUM >= 160000
	(void) ExecInsertIndexTuples(rri, slot, estate, false, false, NULL, NIL,
								 only_summarizing);
#else
	Assert(!only_summarizing);
	(void) ExecInsertIndexTuples(rri, slot, estate, false, false, NULL, NIL);
#endif
}

/*
 * 18 lets an index scan count its searches for EXPLAIN; ours are not
 * explained.
 */
static inline IndexScanDesc
compat_index_beginscan(Relation heap, Relation index, Snapshot snapshot,
					   int nkeys, int norderbys)
{
#if PG_VERSION_NUM >= 180000
	return index_beginscan(heap, index, snapshot, NULL, nkeys, norderbys);
#else
	return index_beginscan(heap, index, snapshot, nkeys, norderbys);
#endif
}

/*
 * 17 lets an extension name its wait events, as pg_stat_activity shows
 * them; before, every one is "Extension".
 */
static inline uint32
compat_wait_event(const char *name)
{
#if PG_VERSION_NUM >= 170000
	return WaitEventExtensionNew(name);
#else
	return PG_WAIT_EXTENSION;
#endif
}

/* 16 folded pg_proc_aclcheck into object_aclcheck */
static inline AclResult
function_aclcheck(Oid function, Oid role, AclMode mode)
{
#if PG_VERSION_NUM >= 160000
	return object_aclcheck(ProcedureRelationId, function, role, mode);
#else
	return pg_proc_aclcheck(function, role, mode);
#endif
}

/* 17 added transaction_timeout, which the relay worker must not inherit */
#define HAVE_TRANSACTION_TIMEOUT (PG_VERSION_NUM >= 170000)

/*
 * 18 generates version 7 UUIDs itself, from a nanosecond clock and
 * monotonic within a backend: orders_next_id() uses it there.
 */
#define HAVE_BUILTIN_UUIDV7 (PG_VERSION_NUM >= 180000)

/* 16 exported get_extension_schema; on 15 it is read from pg_extension. */
#if PG_VERSION_NUM < 160000
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "utils/fmgroids.h"

static inline Oid
get_extension_schema(Oid ext)
{
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			nsp = InvalidOid;

	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(ext));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		nsp = ((Form_pg_extension) GETSTRUCT(tup))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return nsp;
}
#else
#include "commands/extension.h"
#endif

/* 17 moved the backend's local transaction id into MyProc->vxid. */
static inline LocalTransactionId
compat_my_lxid(void)
{
#if PG_VERSION_NUM >= 170000
	return MyProc->vxid.lxid;
#else
	return MyProc->lxid;
#endif
}

/*
 * 18 renamed the executor's array of CHECK expressions, and added NOT
 * ENFORCED constraints, which it skips.
 */
#if PG_VERSION_NUM >= 180000
#define COMPAT_RRI_CHECK_EXPRS(rri) ((rri)->ri_CheckConstraintExprs)
#define COMPAT_CHECK_ENFORCED(check) ((check)->ccenforced)
#else
#define COMPAT_RRI_CHECK_EXPRS(rri) ((rri)->ri_ConstraintExprs)
#define COMPAT_CHECK_ENFORCED(check) true
#endif

/* 18 added virtual generated columns, computed when a query reads them. */
#if PG_VERSION_NUM >= 180000
#define COMPAT_ATTRIBUTE_IS_VIRTUAL(att) ((att)->attgenerated == ATTRIBUTE_GENERATED_VIRTUAL)
#else
#define COMPAT_ATTRIBUTE_IS_VIRTUAL(att) false
#endif

#endif							/* ORDERS_COMPAT_H */
