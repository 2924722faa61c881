/*
 * idempotency.c: a retried write that was done already returns what it
 * returned, and writes nothing.
 *
 * A client sets orders.idempotency_key for a transaction (SET LOCAL, or
 * set_config(..., true)); each write call of the transaction (orders_add,
 * orders_save, orders_remove) is then recorded under (role, key, n), n its
 * place among the transaction's keyed calls, with a hash of its function
 * and arguments and the row it returned, in the caller's transaction.  A
 * retry of the whole transaction makes the same calls in the same order:
 * the n-th finds the n-th recorded and, the same call, returns its row
 * without writing; a different call under a recorded key is an error.  The
 * record commits with the writes or not at all, so a connection lost at
 * commit leaves either both (the retry replays) or neither (the retry
 * writes).  Two attempts at once take turns on a lock of the key, held to
 * the end of the first's transaction; the second then reads what the first
 * committed.  Records expire after orders.idempotency_ttl, and
 * orders_idempotency_purge() deletes the expired.
 *
 * The record table is the extension's own and no role may write it: it is
 * read and written here through SPI, as its owner, by statements whose
 * every name is qualified.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type_d.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "orders.h"

/* The longest key taken, in bytes. */
#define IDEMPOTENCY_KEY_MAX 255

/* field4 of the key's advisory lock tag: apart from pg_advisory_lock's 1 and 2 and Citus's */
#define IDEMPOTENCY_LOCK_SPACE 0x4f4b

char	   *orders_idempotency_key = NULL;
int			orders_idempotency_ttl = 86400;

/* this transaction's keyed calls so far, under the key last seen */
static int	keyed_calls = 0;
static char *keyed_key = NULL;	/* in TopMemoryContext */

static void
idempotency_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			keyed_calls = 0;
			break;
		default:
			break;
	}
}

void
idempotency_init(void)
{
	RegisterXactCallback(idempotency_xact_callback, NULL);
}

/* The key in effect, or NULL; checked. */
static const char *
current_key(void)
{
	const char *key = orders_idempotency_key;
	size_t		len;

	if (key == NULL || key[0] == '\0')
		return NULL;
	len = strlen(key);
	if (len > IDEMPOTENCY_KEY_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("orders.idempotency_key is too long (%zu bytes)", len),
				 errdetail("At most %d bytes are allowed.", IDEMPOTENCY_KEY_MAX)));
	return key;
}

/* The record table, or an error that says which update brings it. */
static void
check_table(const OrdersCatalog *cat)
{
	if (!OidIsValid(get_relname_relid("order_idempotency", cat->namespace_id)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("orders.idempotency_key needs extension orders 1.8 or later"),
				 errhint("Run ALTER EXTENSION orders UPDATE, or set orders.idempotency_key to ''.")));
}

/* What makes one call this call: its function and every argument, as text. */
static bytea *
call_request(FunctionCallInfo fcinfo, const char *function, int nargs)
{
	StringInfoData buf;
	Oid		   *argtypes;
	int			declared;
	int			i;

	(void) get_func_signature(fcinfo->flinfo->fn_oid, &argtypes, &declared);
	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, "\0\0\0\0", VARHDRSZ);
	appendStringInfoString(&buf, function);
	for (i = 0; i < nargs && i < declared; i++)
	{
		Oid			typoutput;
		bool		varlena;

		appendStringInfoChar(&buf, '\x1f');
		if (PG_ARGISNULL(i))
		{
			appendStringInfoChar(&buf, '\x1e');	/* NULL, unlike any text */
			continue;
		}
		getTypeOutputInfo(argtypes[i], &typoutput, &varlena);
		appendStringInfoString(&buf, OidOutputFunctionCall(typoutput, PG_GETARG_DATUM(i)));
	}
	SET_VARSIZE(buf.data, buf.len);
	return (bytea *) buf.data;
}

/*
 * The lock that makes two attempts of one key take turns: on (role, key),
 * to the end of the transaction.
 */
static void
lock_key(Oid role, const char *key)
{
	LOCKTAG		tag;
	uint64		h = hash_bytes_extended((const unsigned char *) key, strlen(key), role);

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (h >> 32), (uint32) h, IDEMPOTENCY_LOCK_SPACE);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/*
 * Starts a write call: with no key in effect, returns false and ic->active
 * is false.  Otherwise takes the call's place, and returns true with
 * *result the recorded row when the place holds this very call (the caller
 * returns it and writes nothing); a different call there is an error.
 */
bool
idempotency_begin(IdempotentCall *ic, FunctionCallInfo fcinfo, const OrdersCatalog *cat,
				  const char *function, int nargs, Datum *result, bool *isnull)
{
	const char *key = current_key();
	Oid			saved_user;
	int			saved_context;
	bool		found = false;

	memset(ic, 0, sizeof(*ic));
	if (key == NULL)
		return false;
	check_table(cat);
	if (cat->distributed[TABLE_ORDERS])
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("orders.idempotency_key is not supported on a Citus cluster")));

	if (keyed_key == NULL || strcmp(keyed_key, key) != 0)
	{
		if (keyed_key != NULL)
			pfree(keyed_key);
		keyed_key = MemoryContextStrdup(TopMemoryContext, key);
		keyed_calls = 0;
	}
	ic->active = true;
	ic->cat = cat;
	ic->role = GetUserId();
	ic->key = pstrdup(key);
	ic->call = ++keyed_calls;
	ic->function = function;
	ic->request = call_request(fcinfo, function, nargs);
	lock_key(ic->role, key);

	/* as the table's owner: no role holds a privilege on it */
	GetUserIdAndSecContext(&saved_user, &saved_context);
	SetUserIdAndSecContext(orders_relation_owner(cat->relids[TABLE_ORDERS]),
						   saved_context | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		Oid			types[4] = {OIDOID, TEXTOID, INT4OID, BYTEAOID};
		Datum		values[4];
		const char *q = quote_identifier(cat->namespace_name);

		values[0] = ObjectIdGetDatum(ic->role);
		values[1] = CStringGetTextDatum(ic->key);
		values[2] = Int32GetDatum(ic->call);
		values[3] = PointerGetDatum(ic->request);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		/* the latest snapshot: what a concurrent attempt committed while we waited */
		if (SPI_execute_snapshot(SPI_prepare(psprintf(
			"SELECT r.function, r.request OPERATOR(pg_catalog.=) pg_catalog.sha256($4),"
			"       pg_catalog.jsonb_populate_record(NULL::%1$s.orders, r.result),"
			"       r.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now()"
			"  FROM %1$s.order_idempotency r"
			" WHERE r.owner OPERATOR(pg_catalog.=) $1::pg_catalog.regrole"
			"   AND r.key OPERATOR(pg_catalog.=) $2 AND r.call OPERATOR(pg_catalog.=) $3", q),
												 4, types),
								 values, NULL, GetLatestSnapshot(), InvalidSnapshot,
								 false, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read the idempotency record");
		if (SPI_processed == 1)
		{
			HeapTuple	row = SPI_tuptable->vals[0];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		n;
			char	   *recorded = SPI_getvalue(row, desc, 1);
			bool		same = DatumGetBool(SPI_getbinval(row, desc, 2, &n));
			bool		expired = DatumGetBool(SPI_getbinval(row, desc, 4, &n));

			if (expired)
			{
				/* forgotten: this call is new, in its place */
				if (SPI_execute_with_args(psprintf(
					"DELETE FROM %s.order_idempotency r"
					" WHERE r.owner OPERATOR(pg_catalog.=) $1::pg_catalog.regrole"
					"   AND r.key OPERATOR(pg_catalog.=) $2 AND r.call OPERATOR(pg_catalog.=) $3", q),
										  3, types, values, NULL, false, 0) != SPI_OK_DELETE)
					elog(ERROR, "could not delete an expired idempotency record");
			}
			else if (!same || strcmp(recorded, function) != 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("idempotency key \"%s\" was used for another request", ic->key),
						 errdetail("Call %d under this key was %s with other arguments; this one is %s.",
								   ic->call, recorded, function),
						 errhint("A retry must repeat the same calls in the same order; a new request needs a new key.")));
			else
			{
				Datum		d = SPI_getbinval(row, desc, 3, isnull);

				found = true;
				*result = *isnull ? (Datum) 0 : SPI_datumTransfer(d, false, -1);
			}
		}
		SPI_finish();
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(saved_user, saved_context);
	}
	PG_END_TRY();

	ic->active = !found;
	return found;
}

/* Records the row a keyed call returns, in its place. */
void
idempotency_record(IdempotentCall *ic, Datum result)
{
	Oid			saved_user;
	int			saved_context;

	if (!ic->active)
		return;
	GetUserIdAndSecContext(&saved_user, &saved_context);
	SetUserIdAndSecContext(orders_relation_owner(ic->cat->relids[TABLE_ORDERS]),
						   saved_context | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		Oid			types[7] = {OIDOID, TEXTOID, INT4OID, TEXTOID, BYTEAOID,
		ic->cat->orders_rowtype, INT4OID};
		Datum		values[7];

		values[0] = ObjectIdGetDatum(ic->role);
		values[1] = CStringGetTextDatum(ic->key);
		values[2] = Int32GetDatum(ic->call);
		values[3] = CStringGetTextDatum(ic->function);
		values[4] = PointerGetDatum(ic->request);
		values[5] = result;
		values[6] = Int32GetDatum(orders_idempotency_ttl);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (SPI_execute_with_args(psprintf(
			"INSERT INTO %s.order_idempotency"
			" (owner, key, call, function, request, result, recorded_at, expires_at)"
			" VALUES ($1::pg_catalog.regrole, $2, $3, $4, pg_catalog.sha256($5), pg_catalog.to_jsonb($6),"
			"         pg_catalog.now(),"
			"         pg_catalog.now() OPERATOR(pg_catalog.+)"
			"         pg_catalog.make_interval(secs => $7::pg_catalog.float8))",
			quote_identifier(ic->cat->namespace_name)),
								  7, types, values, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not record the idempotent call");
		SPI_finish();
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(saved_user, saved_context);
	}
	PG_END_TRY();
}
