/*
 * relay.c: orders.notify = relay, NOTIFY sent by a background worker.
 *
 * A transaction that sends NOTIFY takes a cluster-wide lock just before its
 * commit record is flushed and keeps it until after: notifying commits go
 * one at a time.  In relay mode a writer sends no NOTIFY; it marks its
 * outbox rows, and when it commits it sets the relay worker's latch (no
 * lock, no queue).  The worker is an outbox consumer like any other
 * ("orders_relay", its checkpoint in the database): it reads what has
 * committed, in position order, sends each marked event's NOTIFY with the
 * payload a writer would have sent, acknowledges, and commits, many events a
 * commit.  After a crash or a restart it resumes from its checkpoint, so
 * every committed event is notified at least once.
 *
 * It needs the library in shared_preload_libraries (shared memory for the
 * latch, a worker registered at server start), and it serves the one
 * database named by orders.relay_database.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/genam.h"
#include "catalog/pg_authid_d.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type_d.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "commands/async.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "orders.h"

#define RELAY_BATCH			1000
#define RELAY_GATHER_MS		2
#define RELAY_DATABASE_WAIT_MS	10000	/* how often a missing database is looked for */

/*
 * How often an idle worker looks, read-only, for what no wake-up announced:
 * a prepared transaction committed later, events written with orders.notify
 * on or off (its checkpoint must follow them, or it would hold back
 * orders_events_purge), a wake-up lost in a crash.
 */
#define RELAY_IDLE_MS		1000

PGDLLEXPORT void orders_relay_main(Datum arg);

typedef struct RelayShared
{
	slock_t		mutex;			/* guards the fields below */
	pid_t		pid;			/* the running worker, else 0 */
	Latch	   *latch;			/* its latch, else NULL */
	/* the worker's last start found orders.relay_database: connect to it */
	bool		database_seen;
} RelayShared;

static RelayShared *relay_shared = NULL;

/* The database orders.relay_database named when this backend last looked. */
static char relay_database_name[NAMEDATALEN];
static Oid	relay_database_oid = InvalidOid;

/* Set by a write in relay mode; the commit then wakes the worker. */
static bool wake_at_commit = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
relay_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(RelayShared)));
}

static void
relay_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	relay_shared = ShmemInitStruct("orders relay", sizeof(RelayShared), &found);
	if (!found)
	{
		memset(relay_shared, 0, sizeof(RelayShared));
		SpinLockInit(&relay_shared->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

static void
relay_xact_callback(XactEvent event, void *arg)
{
	if (!wake_at_commit)
		return;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		/* the commit is visible to others by now: the worker will see it */
		Latch	   *latch;

		SpinLockAcquire(&relay_shared->mutex);
		latch = relay_shared->latch;
		SpinLockRelease(&relay_shared->mutex);
		if (latch != NULL)
			SetLatch(latch);
		wake_at_commit = false;
	}
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
			 event == XACT_EVENT_PREPARE)
		wake_at_commit = false;
}

/*
 * Called by a write in relay mode, in its transaction (the setting cannot
 * be relay unless the library was preloaded): refuses a database the worker
 * does not serve, and arranges the wake-up at commit.
 */
void
relay_note_write(void)
{
	if (strcmp(relay_database_name, orders_relay_database) != 0)
	{
		relay_database_oid = get_database_oid(orders_relay_database, true);
		strlcpy(relay_database_name, orders_relay_database, NAMEDATALEN);
	}
	if (relay_database_oid != MyDatabaseId)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("orders.notify = relay serves database \"%s\" only",
						orders_relay_database),
				 errhint("Set orders.relay_database in postgresql.conf to this database, "
						 "or use orders.notify = on or off here.")));
	wake_at_commit = true;
}

/* At load from shared_preload_libraries: shared memory and the worker. */
void
relay_init(void)
{
	BackgroundWorker worker;

	RegisterXactCallback(relay_xact_callback, NULL);

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = relay_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = relay_shmem_startup;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;	/* the postmaster restarts it a second after it dies */
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "orders");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "orders_relay_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "orders relay");
	snprintf(worker.bgw_type, BGW_MAXLEN, "orders relay");
	RegisterBackgroundWorker(&worker);
}

/* ---- the worker ---- */

static void
relay_detach(int code, Datum arg)
{
	SpinLockAcquire(&relay_shared->mutex);
	if (relay_shared->pid == MyProcPid)
	{
		relay_shared->latch = NULL;
		relay_shared->pid = 0;
	}
	SpinLockRelease(&relay_shared->mutex);
}

/*
 * The extension's schema when the extension is installed at a version with
 * relay marks (1.3 or later), else InvalidOid: then there is nothing to do
 * yet; and whether its checkpoint has the bounds that let an idle pass stay
 * read-only (1.5).  Read from the catalogs by OID, with no SQL: nothing a
 * database's owner can set (a search_path, an operator) takes part.
 *
 * Looked up at every pass, never kept: a DROP and CREATE EXTENSION, in any
 * schema, or an update, is seen at the next pass, and no invalidation that
 * arrives halfway through a pass can change what it uses.  It costs a few
 * catalog cache lookups, less than the trust check that follows.
 */
static Oid
relay_find_schema(bool *can_probe)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			nsp = InvalidOid;
	Oid			events;
	Oid			consumers;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("orders"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		nsp = ((Form_pg_extension) GETSTRUCT(tup))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	if (!OidIsValid(nsp))
		return InvalidOid;
	events = get_relname_relid("order_events", nsp);
	consumers = get_relname_relid("order_event_consumers", nsp);
	if (!OidIsValid(events) || !OidIsValid(consumers) ||
		get_attnum(events, "relay") == InvalidAttrNumber)
		return InvalidOid;
	/* a distributed outbox is no node's alone: relay is refused there */
	if (citus_has_table(events))
		return InvalidOid;
	*can_probe = get_attnum(consumers, "acked_top_position") != InvalidAttrNumber;
	return nsp;
}

/*
 * The extension's schema, quoted, or NULL when there is none or it cannot
 * be trusted; *helpers is the schema to call the relay function in (the
 * internal schema, or before 1.11 the same), quoted.  The worker runs as a superuser and calls a
 * function by the schema's name: in a schema that a non-superuser owns or
 * may create in, that role could put its own code under the name.  It is
 * checked before every pass, by OID, in the catalogs alone.
 */
static const char *
relay_trusted_schema(bool *can_probe, const char **helpers)
{
	static bool warned = false;
	Oid			nsp = relay_find_schema(can_probe);
	char	   *name;
	char	   *checked;
	char	   *reason;

	if (!OidIsValid(nsp) || (name = get_namespace_name(nsp)) == NULL)
		return NULL;

	reason = orders_schema_untrusted(nsp);
	if (reason != NULL)
	{
		if (!warned)
			ereport(WARNING,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("orders relay worker is not relaying: schema \"%s\" cannot be trusted",
							name),
					 errdetail("%s.", reason),
					 errhint("Undo what the detail names; the worker checks again before every pass.")));
		warned = true;
		return NULL;
	}
	warned = false;

	/* renamed while it was being checked: the next pass checks the new name */
	checked = get_namespace_name(nsp);
	if (checked == NULL || strcmp(checked, name) != 0)
		return NULL;
	checked = get_namespace_name(orders_helpers_namespace(nsp));
	if (checked == NULL)
		return NULL;
	*helpers = quote_identifier(checked);
	return quote_identifier(name);
}

/*
 * Whether the worker's checkpoint is behind, read-only: an event committed
 * above its top position, or a late one of a transaction it saw running;
 * or a batch left open.  Any of these, relay or not, needs a pass: the
 * checkpoint must follow every event, or purging would stop at it.  The
 * same cut as orders_events_batch, as a yes or no.  The checkpoint's bounds
 * go in as values, so that each probe is planned as one index range.
 */
static bool
relay_checkpoint_behind(const char *schema)
{
	Oid			argtypes[5] = {INT8OID, XID8ARRAYOID, XID8OID, XID8OID, INT8OID};
	Datum		args[5];
	char		argnulls[5];
	bool		isnull;
	int			i;

	/*
	 * Settled events (from another cluster, 1.10) that the checkpoint
	 * carries are behind it too; no settled event is judged by its
	 * transaction id.  Read through the row's jsonb: the columns are not
	 * there before the update to 1.10.
	 */
	if (SPI_execute(psprintf("SELECT c.batch_snapshot IS NOT NULL"
							 "        OR (to_jsonb(c) ->> 'carried_after') IS NOT NULL,"
							 " coalesce(c.acked_top_position, 0),"
							 " ARRAY(SELECT pg_snapshot_xip(c.acked_snapshot)),"
							 " pg_snapshot_xmax(c.acked_snapshot), c.acked_next_xid,"
							 " coalesce((to_jsonb(c) ->> 'settled_position')::bigint, 0)"
							 " FROM %s.order_event_consumers c WHERE c.name = 'orders_relay'",
							 schema),
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the relay worker's checkpoint");
	/* no checkpoint yet (the pass registers it), or a batch left open */
	if (SPI_processed == 0 ||
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
		return true;
	for (i = 0; i < (int) lengthof(args); i++)
	{
		args[i] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 2, &isnull);
		argnulls[i] = isnull ? 'n' : ' ';
	}

	if (SPI_execute_with_args(psprintf("SELECT EXISTS (SELECT FROM %1$s.order_events"
									   "               WHERE position > $1)"
									   " OR EXISTS (SELECT FROM %1$s.order_events"
									   "            WHERE xid = ANY ($2) AND position > $5)"
									   " OR EXISTS (SELECT FROM %1$s.order_events"
									   "            WHERE xid >= $3 AND xid < $4 AND position > $5)",
									   schema),
							  lengthof(args), argtypes, args, argnulls, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the outbox");
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * One pass: one transaction that takes up to RELAY_BATCH of the relay events
 * committed after the worker's checkpoint (acknowledging them), and sends
 * their NOTIFYs, which go out at its commit.  It first asks, read-only,
 * whether there is anything to take; when there is not, it writes nothing
 * and takes no transaction id.  Returns how many it sent.
 */
static uint64
relay_pass(void)
{
	const char *schema;
	const char *helpers = NULL;
	bool		can_probe = false;
	uint64		n = 0;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "relaying orders events");

	schema = relay_trusted_schema(&can_probe, &helpers);
	if (schema != NULL && (!can_probe || relay_checkpoint_behind(schema)))
	{
		int			ret;
		uint64		i;

		ret = SPI_execute(psprintf("SELECT position, type, order_id, version"
								   " FROM %s.orders_events_relay_batch(%d)",
								   helpers, RELAY_BATCH),
						  false, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "could not read the outbox: %d", ret);
		n = SPI_processed;
		for (i = 0; i < n; i++)
		{
			HeapTuple	row = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;

			notify_event(DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull)),
						 TextDatumGetCString(SPI_getbinval(row, desc, 2, &isnull)),
						 DatumGetUUIDP(SPI_getbinval(row, desc, 3, &isnull)),
						 DatumGetInt32(SPI_getbinval(row, desc, 4, &isnull)));
		}
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();	/* the notifications go out here */
	/* what it wrote, for autovacuum and pg_stat_user_tables */
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return n;
}

/*
 * Whether a database of that name exists, read from pg_database with a
 * plain scan: a process connected to no database cannot open its indexes.
 */
static bool
database_exists(const char *name)
{
	Relation	rel = table_open(DatabaseRelationId, AccessShareLock);
	TableScanDesc scan = table_beginscan_catalog(rel, 0, NULL);
	HeapTuple	tup;
	bool		found = false;

	while (!found && (tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
		found = strcmp(NameStr(((Form_pg_database) GETSTRUCT(tup))->datname), name) == 0;
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

static void
relay_set_database_seen(bool seen)
{
	SpinLockAcquire(&relay_shared->mutex);
	relay_shared->database_seen = seen;
	SpinLockRelease(&relay_shared->mutex);
}

/*
 * Connected to no database, waits until orders.relay_database exists, then
 * exits to be started again (a process connects to one database, once).
 * A missing database is said once, not with a FATAL error a second.
 */
pg_noreturn static void
relay_wait_for_database(void)
{
	bool		said = false;
	uint32		wait_database;

	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	wait_database = compat_wait_event("OrdersRelayDatabase");
	for (;;)
	{
		bool		exists;

		StartTransactionCommand();
		exists = database_exists(orders_relay_database);
		CommitTransactionCommand();
		if (exists)
		{
			relay_set_database_seen(true);
			proc_exit(1);		/* the postmaster starts us again, connected to it */
		}
		if (!said)
			ereport(LOG,
					(errmsg("orders relay worker is waiting for database \"%s\", which does not exist",
							orders_relay_database),
					 errhint("Create the database, or set orders.relay_database and reload.")));
		said = true;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 RELAY_DATABASE_WAIT_MS, wait_database);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			said = false;
		}
	}
}

/*
 * Claims the worker's place in shared memory, or says who holds it: there
 * is one relay worker a server.  Another would send every NOTIFY twice, and
 * the two would wait on each other's checkpoint row.
 */
static bool
relay_claim(void)
{
	pid_t		holder;

	before_shmem_exit(relay_detach, (Datum) 0);
	SpinLockAcquire(&relay_shared->mutex);
	holder = relay_shared->pid;
	if (holder == 0)
	{
		relay_shared->pid = MyProcPid;
		relay_shared->latch = MyLatch;
	}
	SpinLockRelease(&relay_shared->mutex);
	if (holder != 0)
		ereport(LOG,
				(errmsg("orders relay worker is already running"),
				 errdetail("The worker with PID %d relays; this one exits.", (int) holder)));
	return holder == 0;
}

/* The settings the worker takes as its own, whatever its database sets. */
static const struct
{
	const char *name;
	const char *value;
}			relay_pinned_settings[] =
{
	{"search_path", "pg_catalog, pg_temp"},
	{"default_transaction_read_only", "off"},
	{"default_transaction_isolation", "read committed"},
	{"statement_timeout", "0"},
	{"lock_timeout", "0"},
	{"idle_in_transaction_session_timeout", "0"},
#if HAVE_TRANSACTION_TIMEOUT
	{"transaction_timeout", "0"},
#endif
	{"session_replication_role", "origin"},
	{"jit", "off"},
	{"enable_indexscan", "on"},
	{"enable_indexonlyscan", "on"},
	{"enable_bitmapscan", "on"},
	{"enable_seqscan", "on"},
};

void
orders_relay_main(Datum arg)
{
	char	   *database;
	bool		database_seen;
	uint32		wait_idle;
	uint32		wait_gather;
	int			i;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* exit code 0: the postmaster does not start this one again */
	if (relay_shared == NULL)
	{
		ereport(LOG,
				(errmsg("orders relay worker cannot start: the orders library was not preloaded")));
		proc_exit(0);
	}
	if (!relay_claim())
		proc_exit(0);

	/*
	 * Connecting to a database that does not exist is a FATAL error, and
	 * the postmaster would start us again every second: only connect to one
	 * that a previous start saw.  Cleared first, so that a failed
	 * connection (the database dropped since) makes the next start look.
	 */
	SpinLockAcquire(&relay_shared->mutex);
	database_seen = relay_shared->database_seen;
	relay_shared->database_seen = false;
	SpinLockRelease(&relay_shared->mutex);
	if (!database_seen)
		relay_wait_for_database();
	BackgroundWorkerInitializeConnection(orders_relay_database, NULL, 0);
	relay_set_database_seen(true);
	database = pstrdup(orders_relay_database);

	/*
	 * Its acknowledgement must be durable before its notifications go out,
	 * or a crash would make it send them again, out of order.
	 */
	SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * It runs as a superuser, and a database's owner may set options for
	 * every session in it (ALTER DATABASE ... SET): none of those decides
	 * what its SQL means, stops it, or makes its few index probes compile
	 * code or scan whole tables.
	 */
	for (i = 0; i < (int) lengthof(relay_pinned_settings); i++)
		SetConfigOption(relay_pinned_settings[i].name, relay_pinned_settings[i].value,
						PGC_SUSET, PGC_S_OVERRIDE);
	/* ... nor whom it runs as (their check hooks read the catalogs) */
	StartTransactionCommand();
	SetConfigOption("session_authorization", GetUserNameFromId(BOOTSTRAP_SUPERUSERID, false),
					PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("role", "none", PGC_SUSET, PGC_S_OVERRIDE);
	CommitTransactionCommand();

	ereport(LOG, (errmsg("orders relay worker started for database \"%s\"", database)));
	wait_idle = compat_wait_event("OrdersRelayIdle");
	wait_gather = compat_wait_event("OrdersRelayGather");

	for (;;)
	{
		uint64		sent;

		/*
		 * Woken by a writer's commit, by a signal, or by the timeout: the
		 * pass looks before it writes.  Then drain.
		 */
		while ((sent = relay_pass()) == RELAY_BATCH)
			CHECK_FOR_INTERRUPTS();

		/*
		 * Under load, let events gather for a moment, so that a pass (and its
		 * commit) carries many of them; after an idle spell, the first event
		 * goes out at once.  Wake-ups that come meanwhile leave the latch set.
		 */
		if (sent > 0)
			(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 RELAY_GATHER_MS, wait_gather);
		else
			pgstat_report_stat(true);	/* before a long sleep: nothing pending */

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 RELAY_IDLE_MS, wait_idle);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (strcmp(database, orders_relay_database) != 0)
			{
				ereport(LOG,
						(errmsg("orders relay worker restarts for database \"%s\"",
								orders_relay_database)));
				relay_set_database_seen(false);
				proc_exit(1);
			}
		}
	}
}
