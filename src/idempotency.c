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

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "orders.h"

/* The longest key taken, in bytes. */
#define IDEMPOTENCY_KEY_MAX 255

/* field4 of the key's advisory lock tag: apart from pg_advisory_lock's 1 and 2 and Citus's */
#define IDEMPOTENCY_LOCK_SPACE 0x4f4b

/*
 * This transaction's keyed calls so far, per key (a transaction may switch
 * keys, and back), in TopTransactionContext: for each call that stayed, the
 * subtransaction it was made in and when.  A subtransaction that aborts
 * takes its calls back, as it takes back their records: the calls made in
 * it and in its children are the key's last ones, and have subtransaction
 * ids from its own on.  So a place counts the calls that stayed, and
 * nothing is kept per savepoint.
 */
typedef struct KeyedCall
{
	SubTransactionId subid;
	uint64		seq;			/* the session's keyed call count when it was made */
} KeyedCall;

typedef struct KeyCalls
{
	char	   *key;
	int			ncalls;
	int			space;
	KeyedCall  *calls;
} KeyCalls;

static KeyCalls *key_calls = NULL;
static int	nkeys = 0;
static uint64 session_calls = 0;

/*
 * The key of the last transaction of this session that committed keyed
 * calls: a later transaction under it, which did not set it itself, is not
 * a retry (a retry follows a lost connection or an abort), but a key left
 * set for the session.  A buffer of its own: it is filled after the commit
 * record, where an error could not be an ERROR.
 */
static char committed_key[IDEMPOTENCY_KEY_MAX + 1] = "";

static void
idempotency_xact_callback(XactEvent event, void *arg)
{
	int			last = -1;
	int			i;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			/* the key whose call that stayed came last: its records committed */
			for (i = 0; i < nkeys; i++)
				if (key_calls[i].ncalls > 0 &&
					(last < 0 || key_calls[i].calls[key_calls[i].ncalls - 1].seq >
					 key_calls[last].calls[key_calls[last].ncalls - 1].seq))
					last = i;
			if (last >= 0)
				strlcpy(committed_key, key_calls[last].key, sizeof(committed_key));
			/* FALLTHROUGH */
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* TopTransactionContext goes with the transaction */
			key_calls = NULL;
			nkeys = 0;
			break;
		default:
			break;
	}
}

static void
idempotency_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
							 SubTransactionId parentSubid, void *arg)
{
	int			i;

	if (event != SUBXACT_EVENT_ABORT_SUB)
		return;
	for (i = 0; i < nkeys; i++)
		while (key_calls[i].ncalls > 0 &&
			   key_calls[i].calls[key_calls[i].ncalls - 1].subid >= mySubid)
			key_calls[i].ncalls--;
}

void
idempotency_init(void)
{
	RegisterXactCallback(idempotency_xact_callback, NULL);
	RegisterSubXactCallback(idempotency_subxact_callback, NULL);
}

/* The key's entry in this transaction, made if new. */
static KeyCalls *
key_entry(const char *key, bool create)
{
	int			i;

	for (i = 0; i < nkeys; i++)
		if (strcmp(key_calls[i].key, key) == 0)
			return &key_calls[i];
	if (!create)
		return NULL;
	if (nkeys == 0)
		key_calls = MemoryContextAlloc(TopTransactionContext, sizeof(KeyCalls) * 4);
	else if ((nkeys & (nkeys - 1)) == 0 && nkeys >= 4)
		key_calls = repalloc(key_calls, sizeof(KeyCalls) * nkeys * 2);
	key_calls[nkeys].key = MemoryContextStrdup(TopTransactionContext, key);
	key_calls[nkeys].ncalls = 0;
	key_calls[nkeys].space = 8;
	key_calls[nkeys].calls = MemoryContextAlloc(TopTransactionContext, sizeof(KeyedCall) * 8);
	return &key_calls[nkeys++];
}

/* The next place under key in this transaction. */
static int
next_place(const char *key)
{
	KeyCalls   *k = key_entry(key, true);

	if (k->ncalls == k->space)
	{
		k->space *= 2;
		k->calls = repalloc(k->calls, sizeof(KeyedCall) * k->space);
	}
	k->calls[k->ncalls].subid = GetCurrentSubTransactionId();
	k->calls[k->ncalls].seq = ++session_calls;
	return ++k->ncalls;
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

/*
 * One value of a call, in its type's binary form, length first: -1 for
 * NULL.  A type without a binary form (a shop's column may be of one) by
 * its text: a column's values always take the same form.
 */
static void
append_value(StringInfo buf, Oid typid, Datum value, bool isnull)
{
	HeapTuple	tup;
	Oid			typsend;
	Oid			typoutput;
	const char *data;
	uint32		size;
	uint32		len;

	if (isnull)
	{
		len = pg_hton32((uint32) -1);
		appendBinaryStringInfo(buf, (char *) &len, sizeof(len));
		return;
	}
	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(typid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for type %u", typid);
	typsend = ((Form_pg_type) GETSTRUCT(tup))->typsend;
	typoutput = ((Form_pg_type) GETSTRUCT(tup))->typoutput;
	ReleaseSysCache(tup);
	if (OidIsValid(typsend))
	{
		bytea	   *bytes = OidSendFunctionCall(typsend, value);

		data = VARDATA(bytes);
		size = VARSIZE(bytes) - VARHDRSZ;
	}
	else
	{
		data = OidOutputFunctionCall(typoutput, value);
		size = strlen(data);
	}
	len = pg_hton32(size);
	appendBinaryStringInfo(buf, (char *) &len, sizeof(len));
	appendBinaryStringInfo(buf, data, size);
}

/*
 * What makes one call this call: its function, then each argument in its
 * binary form (the same whatever the client's TimeZone or DateStyle).  Of
 * the order orders_save takes, only what the save may change and what names
 * the order: a retry that read the order again, and so has its new version
 * and update time, is the same request.
 */
static bytea *
call_request(FunctionCallInfo fcinfo, const OrdersCatalog *cat, const char *function, int nargs)
{
	static const int saved_fields[] = {
		Anum_orders_id, Anum_orders_customer_id, Anum_orders_status, Anum_orders_currency,
		Anum_orders_lines, Anum_orders_shipping_address
	};
	StringInfoData buf;
	Oid		   *argtypes;
	int			declared;
	int			i;

	(void) get_func_signature(fcinfo->flinfo->fn_oid, &argtypes, &declared);
	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, "\0\0\0\0", VARHDRSZ);
	appendStringInfoString(&buf, function);
	appendStringInfoChar(&buf, '\0');
	if (strcmp(function, "orders_save") == 0 && !PG_ARGISNULL(0))
	{
		TupleDesc	desc = lookup_rowtype_tupdesc(cat->orders_rowtype, -1);
		Datum	   *values = palloc(sizeof(Datum) * desc->natts);
		bool	   *nulls = palloc(sizeof(bool) * desc->natts);

		composite_deform(PG_GETARG_DATUM(0), desc, values, nulls);
		for (i = 0; i < (int) lengthof(saved_fields); i++)
		{
			int			att = saved_fields[i] - 1;

			append_value(&buf, TupleDescAttr(desc, att)->atttypid, values[att], nulls[att]);
		}
		/*
		 * The shop's own columns, which a save may change too; not those
		 * the server fills (a generated one may follow the version or the
		 * update time, which a retry reads anew).
		 */
		for (i = 0; i < cat->nfields; i++)
		{
			const OrderField *f = &cat->fields[i];

			if (!f->generated && !f->identity_always)
				append_value(&buf, f->typid, values[f->attnum - 1], nulls[f->attnum - 1]);
		}
		ReleaseTupleDesc(desc);
	}
	else
		for (i = 0; i < nargs && i < declared; i++)
			append_value(&buf, argtypes[i], PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i),
						 PG_ARGISNULL(i));
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
	ResourceOwner saved = CurrentResourceOwner;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (h >> 32), (uint32) h, IDEMPOTENCY_LOCK_SPACE);
	/* the transaction's, not a savepoint's: a rolled-back savepoint keeps it */
	CurrentResourceOwner = TopTransactionResourceOwner;
	PG_TRY();
	{
		(void) LockAcquire(&tag, ExclusiveLock, false, false);
	}
	PG_FINALLY();
	{
		CurrentResourceOwner = saved;
	}
	PG_END_TRY();
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
	(void) orders_private_table(cat, "order_idempotency", "orders.idempotency_key", "1.8", false);
	if (cat->distributed[TABLE_ORDERS])
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("orders.idempotency_key is not supported on a Citus cluster")));

	/* a key that stayed set after its transaction committed: not a retry */
	if (strcmp(committed_key, key) == 0 && orders_idempotency_key_set_in != compat_my_lxid() &&
		key_entry(key, false) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("idempotency key \"%s\" was used by an earlier transaction of this session", key),
				 errdetail("A retry runs after a lost connection or a rolled-back transaction, not after a commit."),
				 errhint("Set a new key for each request, with SET LOCAL.")));
	ic->active = true;
	ic->cat = cat;
	ic->role = GetUserId();
	ic->key = pstrdup(key);
	ic->call = next_place(key);
	ic->function = function;
	ic->request = call_request(fcinfo, cat, function, nargs);
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
			else if (strcmp(recorded, function) != 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("idempotency key \"%s\" was used for another request", ic->key),
						 errdetail("Call %d under this key was %s; this one is %s.",
								   ic->call, recorded, function),
						 errhint("A retry must repeat the same calls in the same order; a new request needs a new key.")));
			else if (!same)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("idempotency key \"%s\" was used for another request", ic->key),
						 errdetail("Call %d under this key was %s with other arguments.",
								   ic->call, recorded),
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
