/*
 * refusals.c: the tables the direct writes cannot honour, refused by name.
 *
 * The functions write the tables directly, not through the executor, so a
 * table that carries anything the direct path would skip (a trigger, a
 * rule, a CHECK or foreign-key constraint, a deferrable constraint, child
 * tables, row-level security the caller is subject to) is refused with an
 * error that names it.  NOT NULL is enforced (storage.c), and so is the
 * replica identity a publication needs.  Nor do they read or write a table,
 * a type or the position sequence of a layout other than the one the C
 * code expects: that is refused too, not misread.  The same holds for
 * reads: the executor's privileges and row-level security are not applied
 * to them, so what they need is checked here.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "catalog/pg_am_d.h"
#include "catalog/pg_index.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_sequence.h"
#include "catalog/pg_type_d.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "orders.h"

/* The layouts the C code reads: each table's columns, each composite's fields. */
const ColumnSpec orders_columns[Natts_orders] = {
	{"id", UUIDOID}, {"customer_id", UUIDOID}, {"status", InvalidOid},
	{"currency", TEXTOID}, {"lines", InvalidOid}, {"shipping_address", InvalidOid},
	{"total", INT8OID}, {"version", INT4OID}, {"created_at", TIMESTAMPTZOID},
	{"updated_at", TIMESTAMPTZOID},
};
const ColumnSpec events_columns[Natts_order_events] = {
	{"position", INT8OID}, {"xid", XID8OID}, {"order_id", UUIDOID}, {"type", TEXTOID},
	{"version", INT4OID}, {"payload", JSONBOID}, {"occurred_at", TIMESTAMPTZOID},
	{"relay", BOOLOID}, {"id", UUIDOID}, {"aggregatetype", TEXTOID},
	{"schema_version", INT2OID}, {"metadata", JSONBOID},
};
const ColumnSpec consumers_columns[Natts_consumers] = {
	{"name", TEXTOID}, {"acked_snapshot", PG_SNAPSHOTOID}, {"batch_snapshot", PG_SNAPSHOTOID},
	{"batch_position", INT8OID}, {"registered_at", TIMESTAMPTZOID},
	{"acked_at", TIMESTAMPTZOID}, {"owner", REGROLEOID},
	{"acked_top_position", INT8OID}, {"acked_next_xid", XID8OID},
	{"batch_top_position", INT8OID}, {"batch_next_xid", XID8OID},
	{"acked_cuts", InvalidOid}, {"batch_cuts", InvalidOid},
	{"settled_position", INT8OID}, {"carried_after", INT8OID}, {"carried", INT8ARRAYOID},
};
const ColumnSpec line_fields[Natts_line] = {
	{"product_id", UUIDOID}, {"product_name", TEXTOID}, {"quantity", INT4OID},
	{"unit_price", INT8OID},
};
const ColumnSpec address_fields[Natts_address] = {
	{"street", TEXTOID}, {"city", TEXTOID}, {"postal_code", TEXTOID}, {"country", TEXTOID},
};

/* Refuses a write the table's refusal forbids; REFUSE_NOTHING lets it through. */
void
refuse_direct_write(const char *relname, DirectWriteRefusal refusal, const char *name)
{
	switch (refusal)
	{
		case REFUSE_NOTHING:
			return;
		case REFUSE_DEFERRABLE:
			unsupported_error("extension \"orders\" cannot write table \"%s\": it has deferrable constraint \"%s\"",
							  relname, name);
			break;
		case REFUSE_CONSTRAINT:
			unsupported_error("extension \"orders\" cannot write table \"%s\": it has constraint \"%s\"",
							  relname, name);
			break;
		case REFUSE_TRIGGER:
			unsupported_error("extension \"orders\" cannot write table \"%s\": it has trigger \"%s\"",
							  relname, name);
			break;
		case REFUSE_RULE:
			unsupported_error("extension \"orders\" cannot write table \"%s\": it has a rule",
							  relname);
			break;
		case REFUSE_CHECK:
			unsupported_error("extension \"orders\" cannot write table \"%s\": it has check constraint \"%s\"",
							  relname, name);
			break;
		case REFUSE_CHILDREN:
			unsupported_error("extension \"orders\" cannot write table \"%s\": it has child tables",
							  relname);
			break;
		case REFUSE_COLUMNS:
			unsupported_error("extension \"orders\" cannot write table \"%s\": it has a different number of columns",
							  relname);
			break;
	}
}

/* The operator family of a type's default btree operator class. */
static Oid
default_btree_family(Oid typid)
{
	return get_opclass_family(GetDefaultOpClass(typid, BTREE_AM_OID));
}

/*
 * The columns the C code reads, first and in its order.  An extensible
 * table or type may have more after them: a shop's own (fields.c).
 */
static void
expect_columns(TupleDesc desc, const char *relname, const ColumnSpec *columns, int n,
			   bool extensible)
{
	int			i;

	if (extensible ? desc->natts < n : desc->natts != n)
		layout_error("extension \"orders\" cannot use \"%s\": it has a different number of columns",
					 relname);
	for (i = 0; i < n; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || strcmp(NameStr(att->attname), columns[i].name) != 0 ||
			(OidIsValid(columns[i].typid) && att->atttypid != columns[i].typid))
			layout_error("extension \"orders\" cannot use \"%s\": column %d is not \"%s\" of the expected type",
						 relname, i + 1, columns[i].name);
		if (att->attgenerated)
			layout_error("extension \"orders\" cannot use \"%s\": column \"%s\" is generated",
						 relname, columns[i].name);
	}
}

/*
 * A virtual generated column (PostgreSQL 18) is computed by the planner
 * when a query reads it; the direct reads would return NULL in its place.
 */
void
refuse_virtual_generated(TupleDesc desc, const char *relname)
{
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && COMPAT_ATTRIBUTE_IS_VIRTUAL(att))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("extension \"orders\" cannot use table \"%s\": column \"%s\" is a virtual generated column",
							relname, NameStr(att->attname)),
					 errdetail("The extension's functions read the table directly, and would read no value for it."),
					 errhint("Make it a stored generated column: GENERATED ALWAYS AS (...) STORED.")));
	}
}

/*
 * What a direct write would skip, and its name where it has one (copied:
 * the catalog outlives the relcache entry).  Indexes are written through
 * the executor's own routine, which checks unique and exclusion constraints
 * at once; a deferrable one would need a recheck at commit that only the
 * executor's triggers do.
 */
DirectWriteRefusal
direct_write_refusal(Relation rel, bool checks_enforced, char **name)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	List	   *indexes;
	ListCell   *lc;

	*name = NULL;
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);

		if (!index->rd_index->indimmediate)
			*name = pstrdup(RelationGetRelationName(index));
		index_close(index, AccessShareLock);
		if (*name != NULL)
		{
			list_free(indexes);
			return REFUSE_DEFERRABLE;
		}
	}
	list_free(indexes);

	if (rel->trigdesc != NULL)
	{
		Trigger    *trigger = &rel->trigdesc->triggers[0];

		/* a foreign key's triggers are named after its constraint */
		if (OidIsValid(trigger->tgconstraint))
		{
			*name = get_constraint_name(trigger->tgconstraint);
			return REFUSE_CONSTRAINT;
		}
		*name = pstrdup(trigger->tgname);
		return REFUSE_TRIGGER;
	}
	if (rel->rd_rules != NULL)
		return REFUSE_RULE;
	/* orders' CHECK constraints are evaluated (fields.c); no other table's are */
	if (constr != NULL && constr->num_check > 0 && !checks_enforced)
	{
		*name = pstrdup(constr->check[0].ccname);
		return REFUSE_CHECK;
	}
	/* relhassubclass stays set after the last child is dropped: ask pg_inherits */
	if (rel->rd_rel->relhassubclass &&
		find_inheritance_children(RelationGetRelid(rel), NoLock) != NIL)
		return REFUSE_CHILDREN;
	return REFUSE_NOTHING;
}

/* The C code reads and writes our tables through the heap and nothing else. */
void
require_heap_table(Relation rel, const char *relname)
{
	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rel->relam != HEAP_TABLE_AM_OID)
		layout_error("extension \"orders\" cannot use \"%s\": it is not a heap table", relname);
}

/*
 * Checks that a table of ours is a plain heap table of the expected layout,
 * and notes what a direct write of it would skip: that is refused only to
 * the calls that write this table.
 */
void
check_heap_table(Relation rel, const char *relname, const ColumnSpec *columns, int n,
				 bool extensible, OrdersCatalog *c, OrdersTable t)
{
	require_heap_table(rel, relname);
	expect_columns(RelationGetDescr(rel), relname, columns, n, extensible);
	c->refusal[t] = direct_write_refusal(rel, extensible, &c->refusal_name[t]);
	c->row_security[t] = rel->rd_rel->relrowsecurity;
}

/*
 * The primary key the C code looks rows up by: a plain, immediate, unique
 * btree index on exactly the one key column, with the type's default
 * operator class, so that an equality probe on it finds the row by that key
 * and nothing else.  Returns its OID.
 */
Oid
check_primary_key(Relation rel, const char *relname, AttrNumber keyatt, Oid keytype)
{
	Oid			pkey;
	Relation	index;
	bool		ok;

	pkey = compat_primary_key_index(rel);
	if (!OidIsValid(pkey))
		layout_error("extension \"orders\" cannot use \"%s\": it has no primary key", relname);

	index = index_open(pkey, AccessShareLock);
	ok = index->rd_rel->relam == BTREE_AM_OID &&
		index->rd_index->indnatts == 1 &&
		index->rd_index->indnkeyatts == 1 &&
		index->rd_index->indkey.values[0] == keyatt &&
		index->rd_index->indisunique &&
		index->rd_index->indimmediate &&
		index->rd_opfamily[0] == default_btree_family(keytype) &&
		RelationGetIndexExpressions(index) == NIL &&
		RelationGetIndexPredicate(index) == NIL;
	index_close(index, AccessShareLock);
	if (!ok)
		layout_error("extension \"orders\" cannot use \"%s\": its primary key is not on column \"%s\" alone",
					 relname, NameStr(TupleDescAttr(RelationGetDescr(rel), keyatt - 1)->attname));
	return pkey;
}

/*
 * The index on order_events (order_id, version): how orders_add learns
 * that an id was used before.  Found by what it indexes.
 */
Oid
find_events_order_index(Relation rel)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	Oid			found = InvalidOid;

	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);

		if (index->rd_rel->relam == BTREE_AM_OID &&
			index->rd_index->indnkeyatts >= 1 &&
			index->rd_index->indkey.values[0] == Anum_order_events_order_id &&
			index->rd_opfamily[0] == default_btree_family(UUIDOID) &&
			index->rd_index->indisvalid &&
			RelationGetIndexExpressions(index) == NIL &&
			RelationGetIndexPredicate(index) == NIL)
			found = RelationGetRelid(index);
		index_close(index, AccessShareLock);
		if (OidIsValid(found))
			break;
	}
	list_free(indexes);
	return found;
}

TupleDesc
composite_desc(Oid typid, const char *typname, const ColumnSpec *fields, int n)
{
	TupleDesc	tupdesc;

	if (get_typtype(typid) != TYPTYPE_COMPOSITE)
		layout_error("extension \"orders\" cannot use \"%s\": it is not a composite type", typname);
	tupdesc = lookup_rowtype_tupdesc_copy(typid, -1);
	expect_columns(tupdesc, typname, fields, n, true);
	return tupdesc;
}

/*
 * The position sequence must hand out values one at a time, in the order
 * they are asked for, without cycling: readers rely on "allocated earlier,
 * numbered lower".
 */
void
check_position_sequence(Oid seqid)
{
	HeapTuple	tup = NULL;
	Form_pg_sequence seq;
	bool		ok;

	if (get_rel_relkind(seqid) != RELKIND_SEQUENCE ||
		!HeapTupleIsValid(tup = SearchSysCache1(SEQRELID, ObjectIdGetDatum(seqid))))
		layout_error("extension \"orders\" cannot use \"%s\": it is not a sequence",
					 POSITION_SEQUENCE);
	seq = (Form_pg_sequence) GETSTRUCT(tup);
	ok = seq->seqcache == 1 && !seq->seqcycle && seq->seqincrement > 0;
	ReleaseSysCache(tup);
	if (!ok)
		layout_error("extension \"orders\" cannot use \"%s\": it must have CACHE 1, NO CYCLE and a positive increment",
					 POSITION_SEQUENCE);
}

/* Whether the current role may read the orders table (SELECT on it). */
bool
orders_may_read(const OrdersCatalog *cat)
{
	return pg_class_aclcheck(cat->relids[TABLE_ORDERS], GetUserId(), ACL_SELECT) == ACLCHECK_OK;
}

/*
 * The functions read the tables directly, so neither the tables' privileges
 * nor their row-level security are applied by the executor.  What returns
 * an order, or an event (whose payload is an order), needs what a SELECT
 * from orders needs, and refuses where policies would filter that SELECT.
 */
void
orders_check_can_read(const OrdersCatalog *cat)
{
	Oid			relid = cat->relids[TABLE_ORDERS];
	AclResult	aclresult = pg_class_aclcheck(relid, GetUserId(), ACL_SELECT);

	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_TABLE, get_rel_name(relid));
	if (check_enable_rls(relid, InvalidOid, false) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("extension \"orders\" does not apply row-level security"),
				 errdetail("Row-level security is enabled on table \"%s.orders\".",
						   cat->namespace_name),
				 errhint("Read the table with SELECT, which applies its policies.")));
}
