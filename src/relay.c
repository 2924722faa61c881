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
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "orders.h"

#define RELAY_BATCH			1000
#define RELAY_IDLE_MS		1000	/* also catches a wake-up lost in a crash */
#define RELAY_GATHER_MS		2
#define RELAY_DATABASE_WAIT_MS	10000	/* how often a missing database is looked for */

PGDLLEXPORT void orders_relay_main(Datum arg);

typedef struct RelayShared
{
	/* the worker's latch while it runs, else NULL */
	Latch	   *latch;
	pid_t		pid;
	/* the worker's last start found orders.relay_database: connect to it */
	bool		database_seen;
} RelayShared;

static RelayShared *relay_shared = NULL;
static bool relay_preloaded = false;
static char *relay_database = NULL;
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
		memset(relay_shared, 0, sizeof(RelayShared));
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
		Latch	   *latch = relay_shared ? relay_shared->latch : NULL;

		if (latch != NULL)
			SetLatch(latch);
		wake_at_commit = false;
	}
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
			 event == XACT_EVENT_PREPARE)
		wake_at_commit = false;
}

/* A new orders.relay_database: writers look its OID up again. */
static void
relay_database_assign(const char *newval, void *extra)
{
	relay_database_oid = InvalidOid;
}

bool
relay_available(void)
{
	return relay_preloaded;
}

/*
 * Called by a write in relay mode, in its transaction (the setting cannot
 * be relay unless the library was preloaded): refuses a database the worker
 * does not serve, and arranges the wake-up at commit.
 */
void
relay_note_write(void)
{
	if (!OidIsValid(relay_database_oid))
		relay_database_oid = get_database_oid(relay_database, true);
	if (relay_database_oid != MyDatabaseId)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("orders.notify = relay serves database \"%s\" only", relay_database),
				 errhint("Set orders.relay_database in postgresql.conf to this database, "
						 "or use orders.notify = on or off here.")));
	wake_at_commit = true;
}

void
relay_init(void)
{
	BackgroundWorker worker;

	relay_preloaded = process_shared_preload_libraries_in_progress;

	RegisterXactCallback(relay_xact_callback, NULL);

	/* relay mode exists only with the library preloaded, and so does its setting */
	if (!relay_preloaded)
		return;

	DefineCustomStringVariable("orders.relay_database",
							   "The database whose outbox the relay worker notifies.",
							   "orders.notify = relay works in this database only.",
							   &relay_database,
							   "postgres",
							   PGC_SIGHUP,
							   0,
							   NULL, relay_database_assign, NULL);

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
	if (relay_shared && relay_shared->pid == MyProcPid)
	{
		relay_shared->latch = NULL;
		relay_shared->pid = 0;
	}
}

/*
 * The extension's schema when the extension is installed at a version with
 * relay marks (1.3 or later), else InvalidOid: then there is nothing to do
 * yet.  Read from the catalogs by OID, with no SQL: nothing a database's
 * owner can set (a search_path, an operator) takes part.
 */
static Oid
relay_namespace(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			nsp = InvalidOid;
	Oid			events;

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
	if (!OidIsValid(events) || get_attnum(events, "relay") == InvalidAttrNumber)
		return InvalidOid;
	return nsp;
}

/*
 * The schema to call the relay function in, quoted, or NULL when there is
 * none or it cannot be trusted.  The worker runs as a superuser and calls a
 * function by the schema's name: in a schema that a non-superuser owns or
 * may create in, that role could put its own code under the name.  It is
 * checked before every pass, by OID, in the catalogs alone.
 */
static const char *
relay_trusted_schema(void)
{
	static Oid	nsp = InvalidOid;	/* found once, while it exists */
	static bool warned = false;
	char	   *reason;

	if (OidIsValid(nsp) && !SearchSysCacheExists1(NAMESPACEOID, ObjectIdGetDatum(nsp)))
		nsp = InvalidOid;
	if (!OidIsValid(nsp))
		nsp = relay_namespace();
	if (!OidIsValid(nsp))
		return NULL;

	reason = orders_schema_untrusted(nsp);
	if (reason != NULL)
	{
		if (!warned)
			ereport(WARNING,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("orders relay worker is not relaying: schema \"%s\" cannot be trusted",
							get_namespace_name(nsp)),
					 errdetail("%s.", reason),
					 errhint("Undo what the detail names; the worker checks again before every pass.")));
		warned = true;
		return NULL;
	}
	warned = false;
	return quote_identifier(get_namespace_name(nsp));
}

/*
 * One pass: one transaction that takes up to RELAY_BATCH of the relay events
 * committed after the worker's checkpoint (acknowledging them), and sends
 * their NOTIFYs, which go out at its commit.  Returns how many it sent.
 */
static uint64
relay_pass(void)
{
	const char *schema;
	uint64		n = 0;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "relaying orders events");

	schema = relay_trusted_schema();
	if (schema != NULL)
	{
		int			ret;
		uint64		i;

		ret = SPI_execute(psprintf("SELECT position, type, order_id, version"
								   " FROM %s.orders_events_relay_batch(%d)",
								   schema, RELAY_BATCH),
						  false, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "could not read the outbox: %d", ret);
		n = SPI_processed;
		for (i = 0; i < n; i++)
		{
			HeapTuple	row = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;

			event_notify(DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull)),
						 TextDatumGetCString(SPI_getbinval(row, desc, 2, &isnull)),
						 DatumGetUUIDP(SPI_getbinval(row, desc, 3, &isnull)),
						 DatumGetInt32(SPI_getbinval(row, desc, 4, &isnull)));
		}
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();	/* the notifications go out here */
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
		exists = database_exists(relay_database);
		CommitTransactionCommand();
		if (exists)
		{
			relay_shared->database_seen = true;
			proc_exit(1);		/* the postmaster starts us again, connected to it */
		}
		if (!said)
			ereport(LOG,
					(errmsg("orders relay worker is waiting for database \"%s\", which does not exist",
							relay_database),
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

void
orders_relay_main(Datum arg)
{
	char	   *database;
	uint32		wait_idle;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/*
	 * Connecting to a database that does not exist is a FATAL error, and
	 * the postmaster would start us again every second: only connect to one
	 * that a previous start saw.  Cleared first, so that a failed
	 * connection (the database dropped since) makes the next start look.
	 */
	if (!relay_shared->database_seen)
		relay_wait_for_database();
	relay_shared->database_seen = false;
	BackgroundWorkerInitializeConnection(relay_database, NULL, 0);
	relay_shared->database_seen = true;
	database = pstrdup(relay_database);

	/*
	 * Its acknowledgement must be durable before its notifications go out,
	 * or a crash would make it send them again, out of order.
	 */
	SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * It runs as a superuser, and a database's owner may set options for
	 * every session in it (ALTER DATABASE ... SET): none of those decides
	 * what its SQL means, or stops it.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_read_only", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("lock_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("idle_in_transaction_session_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("session_replication_role", "origin", PGC_SUSET, PGC_S_OVERRIDE);
	/* ... nor whom it runs as (their check hooks read the catalogs) */
	StartTransactionCommand();
	SetConfigOption("session_authorization", GetUserNameFromId(BOOTSTRAP_SUPERUSERID, false),
					PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("role", "none", PGC_SUSET, PGC_S_OVERRIDE);
	CommitTransactionCommand();

	before_shmem_exit(relay_detach, (Datum) 0);
	relay_shared->pid = MyProcPid;
	relay_shared->latch = MyLatch;

	ereport(LOG, (errmsg("orders relay worker started for database \"%s\"", relay_database)));
	wait_idle = compat_wait_event("OrdersRelayIdle");

	for (;;)
	{
		uint64		sent;

		/* drain what has committed, then sleep until a writer's commit wakes us */
		while ((sent = relay_pass()) == RELAY_BATCH)
			CHECK_FOR_INTERRUPTS();

		/*
		 * Under load, let events gather for a moment, so that a pass (and its
		 * commit) carries many of them; after an idle spell, the first event
		 * goes out at once.
		 */
		if (sent > 0)
			pg_usleep(RELAY_GATHER_MS * 1000L);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 RELAY_IDLE_MS, wait_idle);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (strcmp(database, relay_database) != 0)
			{
				ereport(LOG,
						(errmsg("orders relay worker restarts for database \"%s\"", relay_database)));
				relay_shared->database_seen = false;
				proc_exit(1);
			}
		}
	}
}
