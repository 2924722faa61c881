/*
 * module.c: what happens when the server loads the library.
 *
 * The library is loaded by the first call of one of its functions in a
 * session, or at server start from shared_preload_libraries.  It defines
 * the orders.* settings (settings.c), then lets each file that needs one
 * set up its hooks, callbacks and shared memory; the relay worker only
 * when preloaded.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "orders.h"

PG_MODULE_MAGIC;

void
_PG_init(void)
{
	settings_define();

	notify_init();
	idempotency_init();
	origin_init();
	routing_init();
	if (process_shared_preload_libraries_in_progress)
		relay_init();
}
