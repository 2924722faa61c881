/*
 * module.c: what happens when the server loads the library.
 *
 * The library is loaded by the first call of one of its functions in a
 * session (or at server start, from shared_preload_libraries).  It defines
 * the orders.* settings then; a value SET before that is kept.
 */
#include "postgres.h"

#include "fmgr.h"

#include "orders.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	relay_init();				/* first: whether relay mode is possible */
	events_init();
}
