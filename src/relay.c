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

#include "access/xact.h"
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

#include "orders.h"

#define RELAY_BATCH			1000
#define RELAY_IDLE_MS		1000	/* also catches a wake-up lost in a crash */
#define RELAY_GATHER_MS		2

PGDLLEXPORT void orders_relay_main(Datum arg);

typedef struct RelayShared
{
	/* the worker's latch while it runs, else NULL */
	Latch	   *latch;
	pid_t		pid;
} RelayShared;

static RelayShared *relay_shared = NULL;
static bool relay_preloaded = false;
static char *relay_database = NULL;
static Oid	relay_database_oid = InvalidOid;

/* Set by a write in relay mode; the commit then wakes the worker. */
static bool wake_at_commit = false;

#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
relay_shmem_request(void)
{
#if PG_VERSION_NUM >= 150000
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
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
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);

#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = relay_shmem_request;
#else
	relay_shmem_request();
#endif
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
 * relay marks (1.3 or later), else NULL: then there is nothing to do yet.
 */
static char *
relay_schema(void)
{
	int			ret;

	ret = SPI_execute("SELECT n.nspname"
					  " FROM pg_catalog.pg_extension e"
					  " JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace"
					  " JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = 'order_events'"
					  " JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = 'relay'"
					  "      AND NOT a.attisdropped"
					  " WHERE e.extname = 'orders'",
					  true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not look for the orders extension: %d", ret);
	if (SPI_processed != 1)
		return NULL;
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/*
 * One pass: one transaction that takes up to RELAY_BATCH of the relay events
 * committed after the worker's checkpoint (acknowledging them), and sends
 * their NOTIFYs, which go out at its commit.  Returns how many it sent.
 */
static uint64
relay_pass(void)
{
	static char *schema = NULL;	/* found once; a dropped extension makes the pass fail */
	uint64		n = 0;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "relaying orders events");

	if (schema == NULL)
	{
		char	   *found = relay_schema();

		if (found != NULL)
			schema = MemoryContextStrdup(TopMemoryContext, quote_identifier(found));
	}
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

void
orders_relay_main(Datum arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(relay_database, NULL, 0);

	/*
	 * Its acknowledgement must be durable before its notifications go out,
	 * or a crash would make it send them again, out of order.
	 */
	SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_OVERRIDE);

	before_shmem_exit(relay_detach, (Datum) 0);
	relay_shared->pid = MyProcPid;
	relay_shared->latch = MyLatch;

	ereport(LOG, (errmsg("orders relay worker started for database \"%s\"", relay_database)));

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
						 RELAY_IDLE_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}
