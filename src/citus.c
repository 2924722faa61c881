/*
 * citus.c: orders on a Citus cluster: the shard that holds an order.
 *
 * When Citus distributes orders and order_events (hash-distributed by the
 * order's id, colocated), the tables the functions find by name are shells:
 * Citus keeps their rows in shards, tables named <table>_<shard id> on the
 * nodes that hold them, and reads and writes through the shards only.  A
 * row written into a shell is never seen again.  So a call first finds the
 * shard of its order as Citus's own executor would (the hash of the id
 * among the shards' ranges), takes the lock that Citus's executor takes
 * before it writes a shard (a shard move takes it exclusively, so a move
 * waits for the call, or the call for the move), and then asks whether
 * this node holds the shard.  It writes that shard through the heap, as
 * anywhere else; an order held on another node is an error, never a write.
 *
 * Everything is read from Citus's own catalog tables in pg_catalog, where
 * only superusers can create; nothing here runs while Citus is absent.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace_d.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "nodes/primnodes.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/typcache.h"

#include "orders.h"

/*
 * Citus's advisory lock classes (src/include/distributed/resource_lock.h,
 * the same in 13.2 and 14.0, the releases tested): the lock on a shard's
 * placement metadata, for a table colocated with others and for one that
 * is not.
 */
#define CITUS_LOCKTAG_SHARD_METADATA		4
#define CITUS_LOCKTAG_COLOCATED_SHARDS_METADATA	8

/* Citus's partition methods: hash is the one that places rows by a key */
#define CITUS_HASH_DISTRIBUTED 'h'
/* Citus's replication models: streaming keeps one placement a shard */
#define CITUS_STREAMING_REPLICATION 's'
/* pg_dist_placement.shardstate of a placement in use (before 11.2, moved ones stayed, as 4) */
#define CITUS_PLACEMENT_ACTIVE 1

/* A row of pg_dist_partition: how Citus distributes a table. */
typedef struct CitusTable
{
	char		method;
	char		replication;
	char	   *key;			/* the distribution column, as a node string */
	int32		colocation_id;
} CitusTable;

/* One of Citus's tables in pg_catalog, or InvalidOid while it has none. */
static Oid
citus_catalog(const char *name)
{
	return get_relname_relid(name, PG_CATALOG_NAMESPACE);
}

/*
 * Scans a Citus catalog table for the rows whose column equals value, by
 * its index when it has that index.  Returns the rows, copied.
 */
static List *
citus_catalog_rows(Oid catalog, const char *index_name, const char *column,
				   RegProcedure eqproc, Datum value, TupleDesc *desc)
{
	Relation	rel = table_open(catalog, AccessShareLock);
	Oid			index = citus_catalog(index_name);
	AttrNumber	attnum = get_attnum(catalog, column);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	List	   *rows = NIL;

	if (attnum == InvalidAttrNumber)
		elog(ERROR, "Citus catalog table %s has no column %s", get_rel_name(catalog), column);
	ScanKeyInit(&key, attnum, BTEqualStrategyNumber, eqproc, value);
	scan = systable_beginscan(rel, index, OidIsValid(index), NULL, 1, &key);
	while ((tup = systable_getnext(scan)) != NULL)
		rows = lappend(rows, heap_copytuple(tup));
	systable_endscan(scan);
	*desc = CreateTupleDescCopy(RelationGetDescr(rel));
	table_close(rel, AccessShareLock);
	return rows;
}

static Datum
citus_column(HeapTuple row, TupleDesc desc, Oid catalog, const char *column, bool *isnull)
{
	return heap_getattr(row, get_attnum(catalog, column), desc, isnull);
}

/* How Citus distributes relid, or false when it does not. */
static bool
citus_table(Oid relid, CitusTable *table)
{
	Oid			catalog;
	TupleDesc	desc;
	List	   *rows;
	HeapTuple	row;
	bool		isnull;
	Datum		d;

	if (!OidIsValid(get_extension_oid("citus", true)) ||
		!OidIsValid(catalog = citus_catalog("pg_dist_partition")))
		return false;
	rows = citus_catalog_rows(catalog, "pg_dist_partition_logical_relid_index", "logicalrelid",
							  F_OIDEQ, ObjectIdGetDatum(relid), &desc);
	if (rows == NIL)
		return false;
	row = linitial(rows);
	table->method = DatumGetChar(citus_column(row, desc, catalog, "partmethod", &isnull));
	table->replication = DatumGetChar(citus_column(row, desc, catalog, "repmodel", &isnull));
	d = citus_column(row, desc, catalog, "partkey", &isnull);
	table->key = isnull ? NULL : TextDatumGetCString(d);
	table->colocation_id = DatumGetInt32(citus_column(row, desc, catalog, "colocationid", &isnull));
	return true;
}

/*
 * Whether Citus distributes relid (one of our tables), judged when the
 * catalog is built, and with which other tables it is colocated.  Only
 * hash distribution by the order's id, one placement a shard, can be
 * served: a reference table, one distributed by another column, or one
 * whose shards have copies, keeps an order's row where a write through
 * the heap cannot follow it.  keyatt InvalidAttrNumber: a table that Citus
 * must not distribute at all.
 */
bool
citus_distributed(Oid relid, const char *relname, AttrNumber keyatt, int32 *colocation_id)
{
	CitusTable	table;
	Node	   *key;

	if (!citus_table(relid, &table))
		return false;
	if (keyatt == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("extension \"orders\" cannot use table \"%s\" as Citus distributes it",
						relname),
				 errdetail("Its rows belong to the node that holds them."),
				 errhint("Undo the distribution with undistribute_table('%s').", relname)));
	if (table.replication != CITUS_STREAMING_REPLICATION)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("extension \"orders\" cannot use table \"%s\" as Citus distributes it",
						relname),
				 errdetail("Its shards have copies on several nodes, which a write through one node would leave apart."),
				 errhint("Distribute it with citus.shard_replication_factor = 1.")));
	*colocation_id = table.colocation_id;
	key = table.key != NULL ? stringToNode(table.key) : NULL;
	if (table.method != CITUS_HASH_DISTRIBUTED || key == NULL || !IsA(key, Var) ||
		((Var *) key)->varattno != keyatt)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("extension \"orders\" cannot use table \"%s\" as Citus distributes it",
						relname),
				 errdetail("Citus must distribute it by hash of column \"%s\".",
						   get_attname(relid, keyatt, false)),
				 errhint("Undo the distribution with undistribute_table(), then distribute it with create_distributed_table('%s', '%s').",
						 relname, get_attname(relid, keyatt, false))));
	return true;
}

/*
 * The shards of a distributed table in the order of their hash ranges, as
 * Citus sorts them (its colocated metadata lock is keyed by the position
 * in that order), with its colocation group.  Kept per session for each of
 * our two tables, and forgotten on any relcache invalidation of the table:
 * Citus sends one whenever its rows in pg_dist_partition, pg_dist_shard or
 * pg_dist_placement change.  A shard move changes none of it (shard ids
 * stay); a split does.  Where a shard is placed is never kept.
 */
typedef struct ShardRange
{
	int32		min;
	int32		max;
	int64		shard;
} ShardRange;

typedef struct ShardRanges
{
	Oid			relid;			/* InvalidOid: not (yet) known */
	int32		colocation_id;
	int			count;
	ShardRange *ranges;
} ShardRanges;

static ShardRanges shard_ranges[2];
static uint64 shard_ranges_invalidations = 0;
static bool shard_ranges_callback = false;

static void
citus_relcache_callback(Datum arg, Oid relid)
{
	int			i;

	for (i = 0; i < (int) lengthof(shard_ranges); i++)
		if (!OidIsValid(relid) || shard_ranges[i].relid == relid)
		{
			shard_ranges[i].relid = InvalidOid;
			shard_ranges_invalidations++;
		}
}

static int
shard_range_cmp(const void *a, const void *b)
{
	int32		x = ((const ShardRange *) a)->min;
	int32		y = ((const ShardRange *) b)->min;

	return (x > y) - (x < y);
}

/* Reads the table's shards from Citus's catalogs, sorted by range. */
static void
load_shard_ranges(Oid relid, ShardRanges *entry)
{
	Oid			catalog = citus_catalog("pg_dist_shard");
	CitusTable	table;
	TupleDesc	desc;
	List	   *rows;
	ListCell   *lc;
	int			n = 0;

	if (!citus_table(relid, &table))
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("table \"%s\" is no longer distributed by Citus", get_rel_name(relid)),
				 errhint("Retry the transaction.")));
	rows = citus_catalog_rows(catalog, "pg_dist_shard_logical_relid_index", "logicalrelid",
							  F_OIDEQ, ObjectIdGetDatum(relid), &desc);
	if (entry->ranges != NULL)
		pfree(entry->ranges);
	entry->ranges = MemoryContextAlloc(TopMemoryContext,
									   sizeof(ShardRange) * Max(list_length(rows), 1));
	foreach(lc, rows)
	{
		bool		min_null;
		bool		max_null;
		bool		isnull;
		Datum		min = citus_column(lfirst(lc), desc, catalog, "shardminvalue", &min_null);
		Datum		max = citus_column(lfirst(lc), desc, catalog, "shardmaxvalue", &max_null);

		/* Citus itself refuses a hash table with a shard that has no range */
		if (min_null || max_null)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("a shard of table \"%s\" has no hash range in Citus's metadata",
							get_rel_name(relid))));
		entry->ranges[n].min = pg_strtoint32(TextDatumGetCString(min));
		entry->ranges[n].max = pg_strtoint32(TextDatumGetCString(max));
		entry->ranges[n].shard =
			DatumGetInt64(citus_column(lfirst(lc), desc, catalog, "shardid", &isnull));
		n++;
	}
	qsort(entry->ranges, n, sizeof(ShardRange), shard_range_cmp);
	entry->count = n;
	entry->colocation_id = table.colocation_id;
}

/* The table's shard ranges, read again when Citus changed them. */
static ShardRanges *
citus_shard_ranges(Oid relid)
{
	ShardRanges *entry = NULL;
	ShardRanges *free_entry = NULL;
	int			i;

	if (!shard_ranges_callback)
	{
		CacheRegisterRelcacheCallback(citus_relcache_callback, (Datum) 0);
		shard_ranges_callback = true;
	}
	for (i = 0; i < (int) lengthof(shard_ranges); i++)
	{
		if (shard_ranges[i].relid == relid)
			return &shard_ranges[i];
		if (!OidIsValid(shard_ranges[i].relid) && free_entry == NULL)
			free_entry = &shard_ranges[i];
	}
	entry = free_entry != NULL ? free_entry : &shard_ranges[0];

	/* an invalidation that arrives while we read leaves it unknown */
	for (;;)
	{
		uint64		seen = shard_ranges_invalidations;

		entry->relid = InvalidOid;
		load_shard_ranges(relid, entry);
		if (seen == shard_ranges_invalidations)
			break;
	}
	entry->relid = relid;
	return entry;
}

/*
 * The shard whose hash range holds key, and its position in the ranges'
 * order.  Hashed as Citus hashes a distribution value: the type's standard
 * hash function.
 */
static int64
citus_shard_of(const ShardRanges *ranges, Datum key, Oid keytype, int *index)
{
	TypeCacheEntry *type = lookup_type_cache(keytype, TYPECACHE_HASH_PROC_FINFO);
	int32		hash;
	int			i;

	if (!OidIsValid(type->hash_proc_finfo.fn_oid))
		elog(ERROR, "type %s has no default hash function", format_type_be(keytype));
	hash = DatumGetInt32(FunctionCall1Coll(&type->hash_proc_finfo, InvalidOid, key));
	for (i = 0; i < ranges->count; i++)
		if (ranges->ranges[i].min <= hash && hash <= ranges->ranges[i].max)
		{
			*index = i;
			return ranges->ranges[i].shard;
		}
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("Citus has no shard of table \"%s\" for this order",
					get_rel_name(ranges->relid))));
	return 0;					/* keep the compiler quiet */
}

/* Whether Citus distributes relid, in any way. */
bool
citus_has_table(Oid relid)
{
	CitusTable	table;

	return citus_table(relid, &table);
}

/*
 * This node's group in the Citus cluster (pg_dist_local_group): 0 on the
 * coordinator, the group Citus gave each worker when it was added.
 */
int32
citus_local_group(void)
{
	Oid			groups = citus_catalog("pg_dist_local_group");
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	bool		isnull;
	int32		local_group = -1;

	if (!OidIsValid(groups))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("Citus is not installed in this database")));
	rel = table_open(groups, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	if ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
		local_group = DatumGetInt32(heap_getattr(tup, get_attnum(groups, "groupid"),
												  RelationGetDescr(rel), &isnull));
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	return local_group;
}

/* Whether this node holds a placement of the shard. */
static bool
citus_shard_is_local(int64 shard)
{
	Oid			placements = citus_catalog("pg_dist_placement");
	TupleDesc	desc;
	List	   *rows;
	ListCell   *lc;
	bool		isnull;
	int32		local_group = citus_local_group();

	rows = citus_catalog_rows(placements, "pg_dist_placement_shardid_index", "shardid",
							  F_INT8EQ, Int64GetDatum(shard), &desc);
	foreach(lc, rows)
		if (DatumGetInt32(citus_column(lfirst(lc), desc, placements, "groupid", &isnull)) ==
			local_group &&
			DatumGetInt32(citus_column(lfirst(lc), desc, placements, "shardstate", &isnull)) ==
			CITUS_PLACEMENT_ACTIVE)
			return true;
	return false;
}

/*
 * The shard of relid (distributed, as citus_distributed judged) that holds
 * the order whose id is key, on this node: its OID, locked in lockmode;
 * InvalidOid when another node holds it.
 * Before it asks where the shard is, it takes the lock Citus's executor
 * takes before writing a shard, in the same mode (share): a shard move
 * holds it exclusively while it switches the placement over.
 */
Oid
citus_local_shard(Oid relid, Datum key, Oid keytype, LOCKMODE lockmode)
{
	ShardRanges *ranges;
	int32		colocation_id;
	int			index;
	int64		shard;
	LOCKTAG		tag;
	bool		local_before;
	bool		local_after;
	char	   *relname = get_rel_name(relid);
	char	   *shard_name;
	Oid			shard_relid;

	ranges = citus_shard_ranges(relid);
	colocation_id = ranges->colocation_id;
	shard = citus_shard_of(ranges, key, keytype, &index);
	local_before = citus_shard_is_local(shard);

	if (colocation_id != 0)
		SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) index, (uint32) colocation_id,
							 CITUS_LOCKTAG_COLOCATED_SHARDS_METADATA);
	else
		SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (shard >> 32), (uint32) shard,
							 CITUS_LOCKTAG_SHARD_METADATA);
	(void) LockAcquire(&tag, ShareLock, false, false);
	/* what committed while we waited: a move's placement, a split's shards */
	AcceptInvalidationMessages();

	/* a split while we waited: the order's shard is another one now */
	ranges = citus_shard_ranges(relid);
	if (citus_shard_of(ranges, key, keytype, &index) != shard)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("order's shard changed while the call waited for it"),
				 errdetail("Citus replaced shard " INT64_FORMAT " of table \"%s\".",
						   shard, relname),
				 errhint("Retry the transaction: the call goes to the shard's node.")));
	local_after = citus_shard_is_local(shard);

	/* never here: the caller sends the call to the node of its shard */
	if (!local_before && !local_after)
		return InvalidOid;

	/*
	 * Here before the wait and not after (a move took the shard away), or
	 * the other way round (this node's snapshot predates the rows a move
	 * brought): a retry finds the shard where it is now.
	 */
	if (local_before && !local_after)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("order's shard moved while the call waited for it"),
				 errdetail("Shard " INT64_FORMAT " of table \"%s\" moved off this node.",
						   shard, relname),
				 errhint("Retry the transaction: the call goes to the shard's node.")));
	if (!local_before && local_after)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("order's shard moved while the call waited for it"),
				 errdetail("Shard " INT64_FORMAT " of table \"%s\" moved onto this node.",
						   shard, relname),
				 errhint("Retry the transaction: the call goes to the shard's node.")));

	shard_name = psprintf("%s_" INT64_FORMAT, relname, shard);
	shard_relid = strlen(shard_name) < NAMEDATALEN ?
		get_relname_relid(shard_name, get_rel_namespace(relid)) : InvalidOid;
	if (!OidIsValid(shard_relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("shard \"%s\" of table \"%s\" does not exist on this node",
						shard_name, relname)));
	LockRelationOid(shard_relid, lockmode);
	return shard_relid;
}

/*
 * A shard must be its table's twin: rows are formed with the table's
 * descriptor and written into the shard, and read from the shard as the
 * table's row type.  Citus makes it so; a shard changed behind Citus's
 * back is refused, not misread.
 */
void
check_shard_layout(Relation table, Relation shard)
{
	TupleDesc	td = RelationGetDescr(table);
	TupleDesc	sd = RelationGetDescr(shard);
	const char *name = RelationGetRelationName(shard);
	int			i;

	require_heap_table(shard, name);
	if (shard->rd_rel->relowner != table->rd_rel->relowner)
		layout_error("extension \"orders\" cannot use \"%s\": its owner is not the owner of \"%s\"",
					 name, RelationGetRelationName(table));
	if (sd->natts != td->natts)
		layout_error("extension \"orders\" cannot use \"%s\": it has a different number of columns",
					 name);
	for (i = 0; i < td->natts; i++)
	{
		Form_pg_attribute ta = TupleDescAttr(td, i);
		Form_pg_attribute sa = TupleDescAttr(sd, i);

		if (sa->attisdropped != ta->attisdropped || sa->atttypid != ta->atttypid ||
			sa->atttypmod != ta->atttypmod || sa->attcollation != ta->attcollation ||
			strcmp(NameStr(sa->attname), NameStr(ta->attname)) != 0)
			layout_error("extension \"orders\" cannot use \"%s\": column %d is not \"%s\" of the expected type",
						 name, i + 1, NameStr(ta->attname));
	}
}
