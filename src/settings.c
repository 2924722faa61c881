/*
 * settings.c: every orders.* setting: its value, its definition, and the
 * value in effect for the running call.
 *
 * A call that another node of a Citus cluster sent here (routing.c) writes
 * with the sender's orders.notify and orders.event_metadata, not this
 * session's: the *_effective functions say which applies.  A value SET
 * before the library was loaded is kept.  Only a preloaded library has the
 * shared memory and the background worker that orders.notify = relay
 * needs, so that value is refused otherwise.
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "orders.h"

int			orders_notify_mode = NOTIFY_ON;
char	   *orders_relay_database = NULL;
char	   *orders_event_metadata = NULL;
char	   *orders_idempotency_key = NULL;
int			orders_idempotency_ttl = 86400;

/* the orders.notify of the node that sent the running call, or -1 */
int			orders_routed_notify = -1;

/* its orders.event_metadata, while a routed write runs */
char	   *orders_routed_metadata = NULL;

/* the transaction that last set orders.idempotency_key, if any */
LocalTransactionId orders_idempotency_key_set_in = InvalidLocalTransactionId;

/* loaded from shared_preload_libraries: the relay worker exists */
static bool preloaded = false;

static const struct config_enum_entry notify_mode_options[] = {
	{"on", NOTIFY_ON, false},
	{"off", NOTIFY_OFF, false},
	{"relay", NOTIFY_RELAY, false},
	{"true", NOTIFY_ON, true},
	{"false", NOTIFY_OFF, true},
	{"yes", NOTIFY_ON, true},
	{"no", NOTIFY_OFF, true},
	{"1", NOTIFY_ON, true},
	{"0", NOTIFY_OFF, true},
	{NULL, 0, false}
};

static bool
notify_mode_check(int *newval, void **extra, GucSource source)
{
	if (*newval == NOTIFY_RELAY && !preloaded)
	{
		GUC_check_errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE);
		GUC_check_errmsg("orders.notify = relay needs the orders library preloaded");
		GUC_check_errhint("Add orders to shared_preload_libraries in postgresql.conf and restart the server.");
		return false;
	}
	return true;
}

/* Notes the transaction that sets the key: that one may use a key its session committed. */
static void
idempotency_key_assign(const char *newval, void *extra)
{
	if (IsTransactionState())
		orders_idempotency_key_set_in = compat_my_lxid();
}

NotifyMode
orders_notify_effective(void)
{
	return orders_routed_notify >= 0 ? (NotifyMode) orders_routed_notify : (NotifyMode) orders_notify_mode;
}

const char *
orders_event_metadata_effective(void)
{
	return orders_routed_notify >= 0 ? orders_routed_metadata : orders_event_metadata;
}

/* Defines the settings; called once, as the library is loaded. */
void
settings_define(void)
{
	preloaded = process_shared_preload_libraries_in_progress;

	DefineCustomEnumVariable("orders.notify",
							 "Whether orders' writes send NOTIFY on channel orders_events.",
							 "on: in the writer's transaction; relay: by the relay worker after "
							 "the writer commits (needs shared_preload_libraries); off: the "
							 "outbox row only (two-phase commit, or consumers that poll).",
							 &orders_notify_mode,
							 NOTIFY_ON,
							 notify_mode_options,
							 PGC_USERSET,
							 0,
							 notify_mode_check, NULL, NULL);

	/*
	 * Defined whether preloaded or not, so that a session that loads the
	 * library later finds the server's value, not a placeholder to remove.
	 */
	DefineCustomStringVariable("orders.relay_database",
							   "The database whose outbox the relay worker notifies.",
							   "orders.notify = relay works in this database only.",
							   &orders_relay_database,
							   "postgres",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	/*
	 * Checked where it is used, as every event is written (events.c), not
	 * here: a value SET before the library was loaded would otherwise be
	 * dropped with a warning when it loads, and its events written without
	 * it.
	 */
	DefineCustomStringVariable("orders.event_metadata",
							   "Metadata that every event the transaction writes carries.",
							   "A JSON object, such as correlation and causation ids, the actor "
							   "and W3C trace context; empty for none.  Set it with SET LOCAL.",
							   &orders_event_metadata,
							   "",
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("orders.idempotency_key",
							   "Makes the transaction's writes idempotent under this key.",
							   "Each write call of the transaction is recorded under the key and its "
							   "place; a retry of the transaction gets the recorded results and "
							   "writes nothing.  Empty for none.  Set it with SET LOCAL.",
							   &orders_idempotency_key,
							   "",
							   PGC_USERSET,
							   0,
							   NULL, idempotency_key_assign, NULL);

	DefineCustomIntVariable("orders.idempotency_ttl",
							"How long an idempotent call's record is kept.",
							"A retry after it writes again.",
							&orders_idempotency_ttl,
							86400,
							1,
							INT_MAX,
							PGC_USERSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("orders");
}
