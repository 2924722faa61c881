/*
 * uuidv7.c: time-ordered ids (RFC 9562, version 7).
 *
 * 48 bits of Unix milliseconds, then 12 bits of sub-millisecond time, then 62
 * random bits.  The sub-millisecond field makes ids from one backend strictly
 * increasing even within a millisecond (RFC 9562 section 6.2, method 3), so an
 * order's id sorts with its creation time and keyset pagination by id follows
 * creation order.
 *
 * PostgreSQL 18 makes the same kind of id itself, from a nanosecond clock;
 * there we use its generator rather than ours.
 */
#include "postgres.h"

#include "utils/fmgrprotos.h"
#include "utils/timestamp.h"

#include "orders.h"

PG_FUNCTION_INFO_V1(orders_next_id);

#if HAVE_BUILTIN_UUIDV7

void
uuidv7_generate(pg_uuid_t *out)
{
	LOCAL_FCINFO(fcinfo, 0);
	pg_uuid_t  *made;

	InitFunctionCallInfoData(*fcinfo, NULL, 0, InvalidOid, NULL, NULL);
	made = DatumGetUUIDP(uuidv7(fcinfo));
	memcpy(out, made, sizeof(pg_uuid_t));
	pfree(made);
}

#else

/* Microseconds between the Unix epoch and PostgreSQL's (2000-01-01). */
#define UNIX_TO_PG_EPOCH_USEC \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * USECS_PER_SEC)

/* Last (milliseconds << 12 | sub-millisecond) handed out by this backend. */
static uint64 last_tick = 0;

/*
 * Random bytes from pg_strong_random, taken a pool at a time: each call of
 * it costs OpenSSL's fork check and locking, which a bulk add would pay
 * twice an order (its id and its event's).
 */
static uint8 random_pool[512];
static int	random_used = sizeof(random_pool);

static void
random_bytes(uint8 *out, int n)
{
	if (random_used + n > (int) sizeof(random_pool))
	{
		if (!pg_strong_random(random_pool, sizeof(random_pool)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate random bytes for a UUID")));
		random_used = 0;
	}
	memcpy(out, random_pool + random_used, n);
	/* handed out once: never again, not even after an error */
	memset(random_pool + random_used, 0, n);
	random_used += n;
}

void
uuidv7_generate(pg_uuid_t *out)
{
	int64		unix_usec = GetCurrentTimestamp() + UNIX_TO_PG_EPOCH_USEC;
	uint64		ms = (uint64) (unix_usec / 1000);
	uint64		sub = (uint64) (unix_usec % 1000) * 4096 / 1000;
	uint64		tick = (ms << 12) | sub;
	int			i;

	/* A clock that stands still or steps back must not break the order. */
	if (tick <= last_tick)
		tick = last_tick + 1;
	last_tick = tick;

	random_bytes(out->data + 8, 8);

	/* bytes 0-5: milliseconds; 6-7: version 7 and the 12-bit sub-ms field */
	ms = tick >> 12;
	for (i = 0; i < 6; i++)
		out->data[i] = (uint8) (ms >> (40 - 8 * i));
	out->data[6] = 0x70 | (uint8) ((tick >> 8) & 0x0F);
	out->data[7] = (uint8) (tick & 0xFF);
	/* byte 8: the RFC 4122 variant */
	out->data[8] = (out->data[8] & 0x3F) | 0x80;
}

#endif							/* HAVE_BUILTIN_UUIDV7 */

void
uuid_format(const pg_uuid_t *uuid, char *out)
{
	static const char hex[] = "0123456789abcdef";
	int			i;
	char	   *p = out;

	for (i = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[uuid->data[i] >> 4];
		*p++ = hex[uuid->data[i] & 0x0F];
	}
	*p = '\0';
}

Datum
orders_next_id(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));

	uuidv7_generate(uuid);
	PG_RETURN_UUID_P(uuid);
}
