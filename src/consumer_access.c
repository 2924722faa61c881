/*
 * consumer_access.c: who may use a named consumer of the outbox.
 *
 * A consumer's row belongs to the role that registered it: only that role,
 * a role that has its privileges, or a superuser may read its batches,
 * acknowledge them or unregister it; acknowledging another application's
 * consumer would make it skip events silently.  Events carry whole orders,
 * so consuming them needs what reading orders needs.  What is here opens a
 * consumer for a caller it belongs to, for consumers.c and holds.c.
 */
#include "postgres.h"

#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "orders.h"

static const LOCKMODE consumer_locks[TABLE_COUNT] = {NoLock, NoLock, RowExclusiveLock};

static void check_owner(text *name, TupleTableSlot *slot);

/*
 * Opens the consumers' table for a change of a checkpoint.  Checkpoints are
 * written on the primary; a standby gets a message that says so rather
 * than the bare read-only error.  what: the function called, as messages
 * name it.
 */
const OrdersCatalog *
open_consumers(FunctionCallInfo fcinfo, const char *what, OrdersCall *call)
{
	const OrdersCatalog *cat;

	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("%s cannot run on a hot standby", what),
				 errdetail("A consumer's checkpoint is written in the database, on the primary."),
				 errhint("Connect consumers of the outbox to the primary server.")));
	PreventCommandIfReadOnly(what);
	PreventCommandIfParallelMode(what);

	cat = orders_open(fcinfo, consumer_locks, call);
	if (!OidIsValid(cat->consumers_pkey))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s needs extension orders 1.4 or later", what),
				 errhint("Run ALTER EXTENSION orders UPDATE.")));
	/* checkpoints of another cluster are made this one's before any is used */
	origin_ensure(cat);

	/*
	 * On a cluster a checkpoint holds a cut of every node (see "Across the
	 * nodes of a cluster" in consumers.sql): taken from the coordinator,
	 * whose table the checkpoints are in, and read by statements that each
	 * see what was committed before they started, which is READ COMMITTED.
	 */
	if (cat->distributed[TABLE_EVENTS])
	{
		if (!cat->consumers_have_cuts)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("%s needs extension orders 1.7 or later while Citus distributes the outbox", what),
					 errhint("Run ALTER EXTENSION orders UPDATE.")));
		if (citus_local_group() != 0)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("%s runs on the coordinator of a Citus cluster", what),
					 errdetail("Consumers' checkpoints are kept on the coordinator.")));
		if (IsolationUsesXactSnapshot())
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("%s needs isolation level READ COMMITTED while Citus distributes the outbox", what),
					 errdetail("A batch is cut on every node, and only a statement that starts after the cut sees all of it.")));
	}
	return cat;
}

/* A consumer's name as messages show it: quoted, no control character raw. */
char *
quoted_name(text *name)
{
	return quote_text_datum(PointerGetDatum(name));
}

/* The consumer's name, the first argument of every consumer function. */
text *
consumer_required_name(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("consumer name must not be null")));
	return PG_GETARG_TEXT_PP(0);
}

/* Events carry whole orders: consuming them needs what reading orders needs. */
void
check_can_consume(const OrdersCatalog *cat)
{
	AclResult	aclresult;

	orders_check_can_read(cat);
	aclresult = pg_class_aclcheck(cat->relids[TABLE_EVENTS], GetUserId(), ACL_SELECT);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_TABLE, get_rel_name(cat->relids[TABLE_EVENTS]));
}

/*
 * Finds and locks the consumer's row, and checks that the caller may use
 * it.  Returns false when no consumer has that name.
 */
bool
lock_own_consumer(OrdersCall *call, text *name, TupleTableSlot *slot)
{
	Relation	rel = call->rel[TABLE_CONSUMERS];

	if (!storage_lock(rel, call->cat->consumers_pkey, PointerGetDatum(name),
					  Anum_consumers_name, LockTupleNoKeyExclusive, slot))
		return false;
	check_owner(name, slot);
	return true;
}

/* The consumer in slot is the caller's, or an error says whose it is. */
static void
check_owner(text *name, TupleTableSlot *slot)
{
	bool		isnull;
	Oid			owner;

	owner = DatumGetObjectId(slot_getattr(slot, Anum_consumers_owner, &isnull));
	if (!has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("consumer %s belongs to another role", quoted_name(name)),
				 errdetail("Only role \"%s\", its members and superusers may use it.",
						   orders_role_name(owner)),
				 errhint("Register a consumer of your own with orders_events_register().")));
}

void
not_registered(text *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("consumer %s is not registered", quoted_name(name)),
			 errhint("Register it with orders_events_register().")));
}


/*
 * Locks the caller's consumer name until the transaction ends, as
 * orders_events_consumer() does, and leaves call open: for the functions
 * that keep more of a consumer's state (holds.c).  what: the function
 * called, as messages name it.
 */
const OrdersCatalog *
consumer_lock_own(FunctionCallInfo fcinfo, text *name, const char *what, OrdersCall *call)
{
	const OrdersCatalog *cat = open_consumers(fcinfo, what, call);
	TupleTableSlot *slot = table_slot_create(call->rel[TABLE_CONSUMERS], NULL);

	check_can_consume(cat);
	if (!lock_own_consumer(call, name, slot))
		not_registered(name);
	ExecDropSingleTupleTableSlot(slot);
	return cat;
}

/*
 * Checks that the consumer is the caller's without locking it, for what
 * only reads its state (holds.c): a reader holding it does not make that
 * wait, and it works in a read-only transaction and on a standby.  Leaves
 * call open.
 */
const OrdersCatalog *
consumer_check_own(FunctionCallInfo fcinfo, text *name, OrdersCall *call)
{
	static const LOCKMODE read_locks[TABLE_COUNT] = {NoLock, NoLock, AccessShareLock};
	const OrdersCatalog *cat = orders_open(fcinfo, read_locks, call);
	TupleTableSlot *slot;

	if (!OidIsValid(cat->consumers_pkey))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("consumers need extension orders 1.4 or later"),
				 errhint("Run ALTER EXTENSION orders UPDATE.")));
	check_can_consume(cat);
	slot = table_slot_create(call->rel[TABLE_CONSUMERS], NULL);
	if (!storage_fetch(call->rel[TABLE_CONSUMERS], cat->consumers_pkey, PointerGetDatum(name), slot))
		not_registered(name);
	check_owner(name, slot);
	ExecDropSingleTupleTableSlot(slot);
	return cat;
}
