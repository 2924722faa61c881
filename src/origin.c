/*
 * origin.c: which cluster this database's outbox and checkpoints belong to,
 * and making them this cluster's own when they came from another.
 *
 * A checkpoint is a transaction snapshot, and each event carries its
 * writer's transaction id (consumers.sql, "Gap-free reading").  Both mean
 * something only in the cluster whose transactions they number.  A logical
 * copy (pg_dump and restore into another cluster, a logical replica
 * promoted) and pg_upgrade bring them into a cluster that numbers its
 * transactions apart, where the restored ids may be ahead of its counter,
 * or behind it and equal to its own transactions' ids.
 *
 * So order_events_origin records the system identifier of the cluster the
 * data belongs to.  When it is not this cluster's, the first call that
 * would use a checkpoint or write an event adopts the data first, in the
 * caller's transaction and under a lock that makes one backend do it:
 *
 * - every event present is settled: its position is at or below
 *   settled_position, and no transaction id of it is judged again;
 * - each consumer's checkpoint is re-expressed exactly in positions: the
 *   settled events it had not acknowledged (its open batch included, from
 *   its acknowledged position) are carried, those after carried_after and
 *   those listed in carried, and its snapshot becomes one of this cluster
 *   that sees no transaction still able to write (see adopt_bounded);
 * - the position sequence moves past every settled event (a logical
 *   replica's sequence is not replicated).
 *
 * A database with no row has not been used since 1.10: it is this
 * cluster's if it holds no event and no consumer, and is adopted otherwise
 * (a restore of an older version's dump, or a replica whose origin table
 * was not published).  A physical standby promoted, a backup restored, a
 * dump restored into the same cluster: same system identifier, nothing to
 * do, and rightly so, as the transaction ids are the same ones.
 *
 * Nothing is adopted while a subscription replicates order_events into
 * this database, enabled or not: its rows are arriving, or may again.  Nor
 * while a prepared transaction has written events, which would commit
 * below the settled position unseen; a writer still in flight is waited
 * for.  On a Citus cluster each node's events are read by that node's
 * cuts, and the nodes move physically (pg_upgrade, failover), keeping
 * their transaction ids: nothing is recorded there.
 *
 * The statements run as the owner of the extension's tables, with
 * search_path set to pg_catalog alone, and name every relation with its
 * schema: any role's first write may adopt, and nothing it can create may
 * take part.  The answer is kept for the session, and forgotten when the
 * transaction that found it aborts or the origin table is invalidated.
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

#include "orders.h"

PG_FUNCTION_INFO_V1(orders_adopt);

#define ORIGIN_TABLE "order_events_origin"

/*
 * The last position the sequence handed out, read from the sequence (the
 * extension's own, read as its owner): %1$s is the schema.
 */
#define LAST_TAKEN \
	"(SELECT CASE WHEN s.is_called THEN s.last_value ELSE s.last_value - 1 END" \
	" FROM %1$s.order_events_position_seq s)"

/* What this session knows: the origin table it checked, and its answer. */
static Oid	known_relid = InvalidOid;
static int64 known_settled = 0;
/* Found in this (sub)transaction: forgotten if it aborts. */
static SubTransactionId known_in = InvalidSubTransactionId;
/* ... by stamping or adopting, which a prepared transaction may undo. */
static bool known_by_writing = false;

typedef struct Adoption
{
	bool		wrote;			/* stamped or adopted: the lock stays */
	bool		adopted;
	bool		had_origin;
	int64		previous_system;
	int64		settled;
	int64		consumers;
} Adoption;

static void
origin_forget(void)
{
	known_relid = InvalidOid;
	known_settled = 0;
	known_in = InvalidSubTransactionId;
	known_by_writing = false;
}

static void
origin_relcache_callback(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == known_relid)
		origin_forget();
}

static void
origin_xact_callback(XactEvent event, void *arg)
{
	if (known_in == InvalidSubTransactionId)
		return;
	/* a prepared transaction may yet be rolled back, by another session */
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		(event == XACT_EVENT_PREPARE && known_by_writing))
		origin_forget();
	else if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
			 event == XACT_EVENT_PREPARE)
	{
		known_in = InvalidSubTransactionId;
		known_by_writing = false;
	}
}

static void
origin_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && known_in != InvalidSubTransactionId &&
		known_in >= mySubid)
		origin_forget();
	else if (event == SUBXACT_EVENT_COMMIT_SUB && known_in == mySubid)
		known_in = parentSubid;
}

void
origin_init(void)
{
	CacheRegisterRelcacheCallback(origin_relcache_callback, (Datum) 0);
	RegisterXactCallback(origin_xact_callback, NULL);
	RegisterSubXactCallback(origin_subxact_callback, NULL);
}

/* A statement's single value, copied out of SPI; NULL: *isnull. */
static Datum
spi_value(const char *sql, int nargs, Oid *types, Datum *values, int expected, bool *isnull)
{
	Datum		result = (Datum) 0;

	*isnull = true;
	/* not read-only: each statement sees what committed before it began */
	if (SPI_execute_with_args(sql, nargs, types, values, NULL, false, 0) != expected)
		elog(ERROR, "could not run a statement on table \"%s\": %s", ORIGIN_TABLE, sql);
	if (SPI_tuptable != NULL && SPI_processed > 0)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, isnull);

		if (!*isnull)
		{
			Form_pg_attribute att = TupleDescAttr(SPI_tuptable->tupdesc, 0);

			result = SPI_datumTransfer(d, att->attbyval, att->attlen);
		}
	}
	return result;
}

/*
 * Every consumer's checkpoint, re-expressed in positions ($1: the settled
 * position; $2, $3: the snapshot and next transaction id of the new
 * checkpoints).  An event is one the consumer has not acknowledged when it
 * was settled before and carried (and, in an open batch, after the batch's
 * acknowledged position), or, written since, when the consumer's snapshots
 * say so, judged in the cluster that wrote it.
 *
 * Costs the few transactions running at the checkpoint, not the backlog:
 * every event above a cut's top position is newer than its snapshot, and
 * one at or below it that the snapshot does not see is one of those
 * transactions' (their ids: the snapshot's xip and [xmax, next_xid)),
 * found through the (xid, position) index.  So every event after "a", the
 * checkpoint's top (or the batch's acknowledged position, within the
 * batch's top), is carried, and below it only those transactions' events
 * and the events carried before: the list.  A checkpoint that has read
 * nothing past the last adoption keeps its carried range as a range
 * (keep_range), so that a second adoption does not list what the first
 * left to read.  A checkpoint without bounds (from before 1.5) has every
 * event asked instead: the second statement.
 *
 * The new snapshot is xmin:xmin: with xmin this transaction's (itself
 * included).  Every transaction below it has ended and, as an adoption
 * precedes any write of an event, wrote none; every one from it on is not
 * acknowledged.  Its next transaction id is xmin too: no transaction of it
 * is running, so a batch has no late events to look up below its top
 * position, the settled one.
 */
static const char adopt_bounded[] =
"UPDATE %1$s.order_event_consumers c SET"
"  (carried_after, carried) = ("
"    WITH r AS ("
"      SELECT greatest(c.acked_top_position,"
"                      CASE WHEN c.batch_snapshot IS NOT NULL"
"                           THEN least(c.batch_position, c.batch_top_position) END) AS a),"
"    b AS ("
"      SELECT least($1, r.a) AS a,"
"             c.carried_after IS NOT NULL AND r.a <= c.settled_position AS keep_range,"
"             greatest(c.carried_after,"
"                      CASE WHEN c.batch_snapshot IS NOT NULL THEN c.batch_position END) AS kept_after"
"      FROM r),"
"    u AS ("
"      SELECT e.position FROM b, %1$s.order_events e"
"      WHERE e.position = ANY (c.carried) AND e.position <= least(b.a, c.settled_position)"
"        AND (c.batch_snapshot IS NULL OR e.position > c.batch_position)"
"      UNION ALL"
"      SELECT e.position FROM b, %1$s.order_events e"
"      WHERE NOT b.keep_range"
"        AND e.position > c.carried_after AND e.position <= least(b.a, c.settled_position)"
"        AND (c.batch_snapshot IS NULL OR e.position > c.batch_position)"
"      UNION ALL"
"      SELECT e.position FROM b,"
"        (SELECT x FROM pg_snapshot_xip(c.acked_snapshot) x"
"         UNION ALL"
"         SELECT g::text::xid8 FROM generate_series(pg_snapshot_xmax(c.acked_snapshot)::text::bigint,"
"                                                   c.acked_next_xid::text::bigint - 1) g) l(xid)"
"        CROSS JOIN LATERAL ("
"          SELECT e.position, e.xid FROM %1$s.order_events e"
"          WHERE e.xid = l.xid"
"            AND e.position > c.settled_position AND e.position <= least(b.a, c.acked_top_position)"
"          OFFSET 0) e"
"      WHERE NOT coalesce(pg_visible_in_snapshot(e.xid, c.batch_snapshot)"
"                         AND e.position <= c.batch_position, false)"
"      UNION ALL"
"      SELECT e.position FROM b,"
"        (SELECT x FROM pg_snapshot_xip(c.batch_snapshot) x"
"         UNION ALL"
"         SELECT g::text::xid8 FROM generate_series(pg_snapshot_xmax(c.batch_snapshot)::text::bigint,"
"                                                   c.batch_next_xid::text::bigint - 1) g) l(xid)"
"        CROSS JOIN LATERAL ("
"          SELECT e.position FROM %1$s.order_events e"
"          WHERE e.xid = l.xid"
"            AND e.position > greatest(c.settled_position, c.acked_top_position) AND e.position <= b.a"
"          OFFSET 0) e"
"      WHERE c.batch_snapshot IS NOT NULL)"
"    SELECT CASE WHEN b.keep_range THEN b.kept_after"
"                WHEN b.a < $1 OR EXISTS (SELECT FROM u) THEN b.a END,"
"           nullif(ARRAY(SELECT u.position FROM u ORDER BY u.position), '{}')"
"    FROM b),"
"  %2$s"
" WHERE c.acked_top_position IS NOT NULL"
"   AND (c.batch_snapshot IS NULL OR c.batch_top_position IS NOT NULL)";

static const char adopt_unbounded[] =
"UPDATE %1$s.order_event_consumers c SET"
"  (carried_after, carried) = ("
"    WITH u AS ("
"      SELECT e.position,"
"             CASE WHEN e.position <= c.settled_position"
"                  THEN coalesce(e.position = ANY (c.carried) OR e.position > c.carried_after, false)"
"                       AND (c.batch_snapshot IS NULL OR e.position > c.batch_position)"
"                  ELSE NOT pg_visible_in_snapshot(e.xid, c.acked_snapshot)"
"                       AND NOT coalesce(pg_visible_in_snapshot(e.xid, c.batch_snapshot)"
"                                        AND e.position <= c.batch_position, false)"
"             END AS pending"
"      FROM %1$s.order_events e WHERE e.position <= $1),"
"    k AS (SELECT coalesce(max(u.position) FILTER (WHERE NOT u.pending), 0) AS after,"
"                 coalesce(bool_or(u.pending), false) AS any FROM u)"
"    SELECT CASE WHEN k.any THEN k.after END,"
"           CASE WHEN k.any THEN nullif(ARRAY(SELECT u.position FROM u"
"                                             WHERE u.pending AND u.position < k.after"
"                                             ORDER BY u.position), '{}') END"
"    FROM k),"
"  %2$s"
" WHERE NOT (c.acked_top_position IS NOT NULL"
"            AND (c.batch_snapshot IS NULL OR c.batch_top_position IS NOT NULL))";

/* What both statements set besides the carried events. */
static const char adopt_checkpoint[] =
"acked_snapshot = $2, acked_top_position = $1, acked_next_xid = $3,"
"  batch_snapshot = NULL, batch_position = 0, batch_top_position = NULL, batch_next_xid = NULL,"
"  acked_cuts = NULL, batch_cuts = NULL, settled_position = $1";

/*
 * Adopts the data, or, with only_stamp, records this cluster as its
 * origin.  Runs inside SPI, as the tables' owner, with the origin table
 * locked; system is this cluster's identifier.
 */
static void
adopt(const OrdersCatalog *cat, int64 system, bool only_stamp, Adoption *a)
{
	const char *nsp = quote_identifier(cat->namespace_name);
	Oid			types[3];
	Datum		values[3];
	bool		isnull;
	int64		settled = a->settled;

	if (!only_stamp)
	{
		Datum		snapshot;
		char	   *xmin_text;
		uint64		xmin;
		FullTransactionId own = GetTopFullTransactionId();
		Datum		last;

		/* past every event present, and every position handed out */
		types[0] = REGCLASSOID;
		values[0] = ObjectIdGetDatum(cat->events_seqid);
		last = spi_value(psprintf(
			"SELECT greatest((SELECT max(e.position) FROM %1$s.order_events e), " LAST_TAKEN ", 0)",
			nsp), 0, NULL, NULL, SPI_OK_SELECT, &isnull);
		settled = DatumGetInt64(last);
		types[1] = INT8OID;
		values[1] = Int64GetDatum(settled);
		/* forward only: a sequence moved on by hand stays where it is */
		(void) spi_value(psprintf("SELECT setval($1, $2) WHERE $2 > " LAST_TAKEN, nsp),
						 2, types, values, SPI_OK_SELECT, &isnull);

		snapshot = spi_value("SELECT pg_current_snapshot()", 0, NULL, NULL, SPI_OK_SELECT, &isnull);
		xmin = U64FromFullTransactionId(DatumGetFullTransactionId(
			DirectFunctionCall1(pg_snapshot_xmin, snapshot)));
		if (U64FromFullTransactionId(own) < xmin)
			xmin = U64FromFullTransactionId(own);
		xmin_text = psprintf(UINT64_FORMAT ":" UINT64_FORMAT ":", xmin, xmin);

		types[0] = INT8OID;
		values[0] = Int64GetDatum(settled);
		types[1] = PG_SNAPSHOTOID;
		values[1] = DirectFunctionCall1(pg_snapshot_in, CStringGetDatum(xmin_text));
		types[2] = XID8OID;
		values[2] = FullTransactionIdGetDatum(FullTransactionIdFromU64(xmin));
		if (SPI_execute_with_args(psprintf(adopt_bounded, nsp, adopt_checkpoint), 3, types, values,
								  NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not adopt the checkpoints of \"order_event_consumers\"");
		a->consumers = (int64) SPI_processed;
		if (SPI_execute_with_args(psprintf(adopt_unbounded, nsp, adopt_checkpoint), 3, types, values,
								  NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not adopt the checkpoints of \"order_event_consumers\"");
		a->consumers += (int64) SPI_processed;
		a->adopted = true;
	}

	types[0] = INT8OID;
	values[0] = Int64GetDatum(system);
	types[1] = INT8OID;
	values[1] = Int64GetDatum(settled);
	types[2] = BOOLOID;
	values[2] = BoolGetDatum(a->adopted);
	a->wrote = true;
	(void) spi_value(psprintf(
		"INSERT INTO %1$s." ORIGIN_TABLE " AS o (system_identifier, settled_position, adopted_at, adopted_from)"
		" VALUES ($1, $2, CASE WHEN $3 THEN now() END, NULL)"
		" ON CONFLICT (one) DO UPDATE SET system_identifier = $1, settled_position = $2,"
		"   adopted_at = CASE WHEN $3 THEN now() ELSE o.adopted_at END,"
		"   adopted_from = CASE WHEN $3 THEN o.system_identifier ELSE o.adopted_from END",
		nsp), 3, types, values, SPI_OK_INSERT, &isnull);
	a->settled = settled;
}

/*
 * The origin check proper: under the origin table's lock when locked,
 * else with none (a first look, which only trusts a match).  Returns true
 * when the data is this cluster's, adopting it first when locked.  Inside
 * SPI, as the owner.
 */
static bool
origin_check(const OrdersCatalog *cat, Oid relid, bool locked, Adoption *a)
{
	const char *nsp = quote_identifier(cat->namespace_name);
	int64		system = (int64) GetSystemIdentifier();
	bool		isnull;
	Datum		d;
	bool		subscribed;
	bool		replicated;
	bool		has_data;
	Oid			types[2] = {OIDOID, OIDOID};
	Datum		values[2];
	SPIPlanPtr	plan;

	/*
	 * The origin row, and two signs that the events are another cluster's
	 * whatever it says: a subscription that replicates them (enabled or
	 * not: it may be enabled again), and an event beyond the position
	 * sequence, which hands out every position written here (a replica's
	 * sequence is not replicated).
	 */
	plan = SPI_prepare(psprintf(
		"SELECT o.system_identifier, o.settled_position,"
		"       EXISTS (SELECT FROM pg_subscription_rel r WHERE r.srrelid = $1),"
		"       coalesce(m.position > " LAST_TAKEN ", false),"
		"       m.position IS NOT NULL OR EXISTS (SELECT FROM %1$s.order_event_consumers)"
		" FROM (SELECT max(e.position) AS position FROM %1$s.order_events e) m"
		" LEFT JOIN %1$s." ORIGIN_TABLE " o ON true", nsp), 1, types);
	values[0] = ObjectIdGetDatum(cat->relids[TABLE_EVENTS]);
	/* the latest row: an adoption the lock waited for is seen done */
	if (plan == NULL ||
		SPI_execute_snapshot(plan, values, NULL, GetLatestSnapshot(), InvalidSnapshot,
							 true, false, 0) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read table \"%s\"", ORIGIN_TABLE);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	a->had_origin = !isnull;
	a->previous_system = isnull ? 0 : DatumGetInt64(d);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	a->settled = isnull ? 0 : DatumGetInt64(d);
	subscribed = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	replicated = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull));
	has_data = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull));

	if (a->had_origin && a->previous_system == system && !subscribed && !replicated)
		return true;
	if (!locked)
		return false;

	/* rows still arriving, or that may again: not ours to settle, nor to add to */
	if (subscribed)
	{
		d = spi_value("SELECT s.subname::text FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid"
					  " WHERE r.srrelid = $1 LIMIT 1",
					  1, types, values, SPI_OK_SELECT, &isnull);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the outbox of extension \"orders\" is replicated into this database by subscription \"%s\"",
						isnull ? "?" : TextDatumGetCString(d)),
				 errdetail("Events and checkpoints are written and used on the publisher until the switchover."),
				 errhint("Once writes have stopped on the publisher and the subscription has caught up, drop the subscription, then run SELECT * FROM orders_adopt().")));
	}
	/* nothing here yet: this cluster's from the start */
	if (!a->had_origin && !has_data)
	{
		adopt(cat, system, true, a);
		return true;
	}
	/* a transaction prepared with events in it: they would land unsettled */
	if (!DatumGetBool(spi_value("SELECT NOT EXISTS (SELECT FROM pg_locks l WHERE l.locktype = 'relation'"
								" AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
								" AND l.relation = $1 AND l.pid IS NULL)",
								1, types, values, SPI_OK_SELECT, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the outbox of extension \"orders\" cannot be adopted while a prepared transaction has written to it"),
				 errhint("COMMIT PREPARED or ROLLBACK PREPARED it (pg_prepared_xacts lists them), then retry.")));
	/*
	 * An adoption settles every position handed out so far, and must see
	 * each of their events committed or gone: a writer that did not pass
	 * this check (a backend still running a library from before 1.10, or a
	 * purge) is waited for; the writers of 1.10 wait for this lock before
	 * they write.  Each statement's snapshot after it must see what they
	 * committed: READ COMMITTED.
	 */
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the outbox of extension \"orders\" must be adopted in a READ COMMITTED transaction"),
				 errdetail("Its events and checkpoints come from another cluster, and are adopted at their first use."),
				 errhint("Run SELECT * FROM orders_adopt() in READ COMMITTED, then retry.")));
	types[1] = OIDOID;
	values[1] = ObjectIdGetDatum(relid);
	for (;;)
	{
		/* 0: none; 1: one to wait for; 2: one that waits for this transaction */
		int32		writers = DatumGetInt32(spi_value(
			"SELECT coalesce(max(CASE WHEN pg_backend_pid() = ANY (pg_blocking_pids(l.pid)) THEN 2 ELSE 1 END), 0)"
			" FROM pg_locks l"
			" WHERE l.locktype = 'relation' AND l.relation = $1 AND l.granted"
			"   AND l.mode = 'RowExclusiveLock' AND l.pid <> pg_backend_pid()"
			"   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
			"   AND NOT EXISTS (SELECT FROM pg_locks w"
			"                   WHERE w.pid = l.pid AND w.locktype = 'relation'"
			"                     AND w.relation = $2 AND NOT w.granted)",
			2, types, values, SPI_OK_SELECT, &isnull));

		if (writers == 0)
			break;
		if (writers == 2)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_DEADLOCK_DETECTED),
					 errmsg("could not adopt the outbox of extension \"orders\": a transaction writing to it waits for this one"),
					 errdetail("The outbox's events and checkpoints come from another cluster, and are adopted at their first use, once no transaction is writing to it."),
					 errhint("Retry the transaction, or run SELECT * FROM orders_adopt() first.")));
		CHECK_FOR_INTERRUPTS();
		pg_usleep(10000L);
	}
	adopt(cat, system, false, a);
	if (a->adopted)
		ereport(LOG,
				(errmsg("extension \"orders\" adopts the outbox of %s: %lld consumers' checkpoints re-expressed in positions, events up to position %lld settled",
						a->had_origin ? psprintf("system " INT64_FORMAT, a->previous_system) : "an unknown system",
						(long long) a->consumers, (long long) a->settled)));
	return true;
}

/*
 * Runs the check as the owner of the extension's tables, with search_path
 * pg_catalog alone; locked: under the origin table's lock, adopting.
 */
static bool
origin_check_as_owner(const OrdersCatalog *cat, Oid relid, bool locked, Adoption *a)
{
	Oid			saved_user;
	int			saved_context;
	int			nest;
	volatile bool ours = false;

	GetUserIdAndSecContext(&saved_user, &saved_context);
	SetUserIdAndSecContext(orders_relation_owner(cat->relids[TABLE_ORDERS]),
						   saved_context | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	nest = NewGUCNestLevel();
	PG_TRY();
	{
		(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		/* a few index probes a consumer: never worth compiling */
		(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		ours = origin_check(cat, relid, locked, a);
		SPI_finish();
	}
	PG_FINALLY();
	{
		AtEOXact_GUC(false, nest);
		SetUserIdAndSecContext(saved_user, saved_context);
	}
	PG_END_TRY();
	return ours;
}

/* Checks, and adopts if need be; fills a. */
static void
origin_settle(const OrdersCatalog *cat, Oid relid, Adoption *a)
{
	memset(a, 0, sizeof(*a));
	/*
	 * On a cluster each node's events are read by that node's cuts, and
	 * the nodes move physically (pg_upgrade, failover), keeping their
	 * transaction ids: nothing to record, nor to wait for.
	 */
	if (cat->distributed[TABLE_EVENTS])
		;
	else if (!origin_check_as_owner(cat, relid, false, a))
	{
		/* one backend adopts; the others wait, then find it done */
		LockRelationOid(relid, ShareRowExclusiveLock);
		memset(a, 0, sizeof(*a));
		(void) origin_check_as_owner(cat, relid, true, a);
		/* done by another meanwhile: nothing of ours to keep it for */
		if (!a->wrote)
			UnlockRelationOid(relid, ShareRowExclusiveLock);
	}
	known_relid = relid;
	known_settled = a->settled;
	known_in = GetCurrentSubTransactionId();
	known_by_writing = a->wrote;
}

/*
 * Makes sure the outbox and the checkpoints are this cluster's before a
 * call uses a checkpoint or writes an event.  Costs nothing once a session
 * has checked.
 */
void
origin_ensure(const OrdersCatalog *cat)
{
	Oid			relid;
	Adoption	a;

	if (OidIsValid(known_relid))
		return;
	relid = orders_private_table(cat, ORIGIN_TABLE, "orders_adopt()", "1.10", true);
	if (!OidIsValid(relid))
		return;					/* before 1.10: nothing recorded, nothing to adopt */
	origin_settle(cat, relid, &a);
}

/*
 * The position up to which the events were settled by an adoption: a new
 * consumer's checkpoint starts above it.
 */
int64
origin_settled_position(const OrdersCatalog *cat)
{
	origin_ensure(cat);
	return known_settled;
}

/*
 * orders_adopt() RETURNS TABLE (adopted boolean, previous_system_identifier
 * bigint, settled_position bigint, consumers bigint): makes the outbox and
 * the checkpoints this cluster's, as the first write or read would.
 */
Datum
orders_adopt(PG_FUNCTION_ARGS)
{
	static const LOCKMODE locks[TABLE_COUNT] = {NoLock, AccessShareLock, RowExclusiveLock};
	OrdersCall	call;
	const OrdersCatalog *cat;
	Oid			relid;
	TupleDesc	desc;
	Datum		values[4];
	bool		nulls[4] = {0};
	Adoption	a;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE || desc->natts != 4)
		elog(ERROR, "orders_adopt() must return a composite of four fields");
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("orders_adopt() cannot run on a hot standby"),
				 errhint("Run it on the primary, or on the standby once it is promoted.")));
	PreventCommandIfReadOnly("orders_adopt()");
	cat = orders_open(fcinfo, locks, &call);
	relid = orders_private_table(cat, ORIGIN_TABLE, "orders_adopt()", "1.10", false);
	/* asked for: checked again, whatever this session knew */
	origin_forget();
	origin_settle(cat, relid, &a);
	orders_close(&call);

	values[0] = BoolGetDatum(a.adopted);
	values[1] = Int64GetDatum(a.previous_system);
	nulls[1] = !a.adopted || !a.had_origin;
	values[2] = Int64GetDatum(a.settled);
	values[3] = Int64GetDatum(a.consumers);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
