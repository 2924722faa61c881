/*
 * notify.c: the NOTIFY of each event on channel orders_events.
 *
 * Writers send it in their own transaction (orders.notify = on) and the
 * relay worker sends it for them after they commit (orders.notify = relay):
 * both go through here, so a listener gets the same payload either way.
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/async.h"

#include "orders.h"

#define EVENTS_CHANNEL "orders_events"

/* the payload's fixed shape: a position, a type name, a uuid, a version */
#define NOTIFY_PAYLOAD_SIZE 256

/*
 * Which open (sub)transaction levels have sent a NOTIFY of ours, one bit a
 * level (deeper levels share the last bit).  PREPARE TRANSACTION refuses a
 * transaction that notified; knowing it first lets us say what to do.
 */
static uint64 notified_levels = 0;

static uint64
level_bit(int level)
{
	return UINT64CONST(1) << (Min(level, 64) - 1);
}

static void
notify_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (notified_levels != 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot prepare a transaction that wrote orders with orders.notify = on"),
						 errdetail("PREPARE TRANSACTION refuses a transaction that has sent NOTIFY."),
						 errhint("SET LOCAL orders.notify = off in transactions you prepare; "
								 "the events are in the outbox all the same.")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			notified_levels = 0;
			break;
		default:
			break;
	}
}

static void
notify_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();

	if (level < 2 || (notified_levels & level_bit(level)) == 0)
		return;
	if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		/* the parent now holds the notification, unless levels share a bit */
		if (level <= 64)
			notified_levels &= ~level_bit(level);
		notified_levels |= level_bit(level - 1);
	}
	else if (event == SUBXACT_EVENT_ABORT_SUB && level <= 64)
		notified_levels &= ~level_bit(level);
}

void
notify_init(void)
{
	RegisterXactCallback(notify_xact_callback, NULL);
	RegisterSubXactCallback(notify_subxact_callback, NULL);
}

/*
 * Sends one event's NOTIFY, at the commit of the current transaction.  Small
 * and fixed-shape, far below NOTIFY's 8000-byte limit: a listener reads the
 * rest from the outbox.
 */
void
notify_event(int64 position, const char *type, const pg_uuid_t *order_id, int32 version)
{
	char		order_id_text[UUID_TEXT_SIZE];
	char		payload[NOTIFY_PAYLOAD_SIZE];

	uuid_format(order_id, order_id_text);
	snprintf(payload, sizeof(payload),
			 "{\"position\": " INT64_FORMAT ", \"type\": \"%s\", \"order_id\": \"%s\", \"version\": %d}",
			 position, type, order_id_text, version);
	Async_Notify(EVENTS_CHANNEL, payload);
	notified_levels |= level_bit(GetCurrentTransactionNestLevel());
}
