/*
 * fields.c: the shop's own columns of orders, and its own rules.
 *
 * A shop adds columns to orders with ALTER TABLE, attributes to order_line
 * and order_address with ALTER TYPE, and rules with CHECK constraints.  The
 * extension's first ten columns keep their meaning (refusals.c); what comes
 * after them is the shop's, and the C code treats it as INSERT and UPDATE
 * would: a value the caller gives goes through the column type's input
 * function (a domain's constraints included), a column not given takes its
 * default, a stored generated column is computed from the new row, and
 * every CHECK constraint is evaluated on the row before it is written,
 * failing as the executor fails (23514, the constraint's name).
 *
 * The expressions were planned once, when catalog.c described the columns
 * and built the catalog under the call's locks; a write evaluates them in
 * an executor state of its own, made only when there is an expression to
 * evaluate, so that a table without them costs nothing more.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type_d.h"
#include "executor/executor.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/rel.h"

#include "orders.h"

/* The executor state a write evaluates the shop's expressions in, made once. */
static ExprContext *
fields_context(FieldsWrite *fw, Relation rel)
{
	if (fw->estate == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(fw->mcxt != NULL ? fw->mcxt : CurrentMemoryContext);

		fw->estate = CreateExecutorState();
		fw->rri = makeNode(ResultRelInfo);
		/* in no range table: the server's messages then show the columns by privilege */
		InitResultRelInfo(fw->rri, rel, 0, NULL, 0);
		fw->slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsVirtual);
		fw->states = MemoryContextAllocZero(fw->estate->es_query_cxt,
											sizeof(ExprState *) * Max(RelationGetDescr(rel)->natts, 1));
		MemoryContextSwitchTo(old);
	}
	return GetPerTupleExprContext(fw->estate);
}

/* Evaluates the field's expression, once prepared per write, into the caller's memory. */
static Datum
field_evaluate(FieldsWrite *fw, Relation rel, const OrderField *f, bool *isnull)
{
	ExprContext *econtext = fields_context(fw, rel);
	ExprState **state = &fw->states[f->attnum - 1];
	MemoryContext old;
	Datum		d;

	if (*state == NULL)
	{
		old = MemoryContextSwitchTo(fw->estate->es_query_cxt);
		*state = ExecInitExpr(f->default_expr, NULL);
		MemoryContextSwitchTo(old);
	}
	econtext->ecxt_scantuple = fw->slot;
	d = ExecEvalExprSwitchContext(*state, econtext, isnull);
	return *isnull ? (Datum) 0 : datumCopy(d, f->typbyval, f->typlen);
}

static const OrderField *
field_named(const OrdersCatalog *cat, const char *name, int len)
{
	int			i;

	for (i = 0; i < cat->nfields; i++)
		if ((int) strlen(cat->fields[i].name) == len &&
			memcmp(cat->fields[i].name, name, len) == 0)
			return &cat->fields[i];
	return NULL;
}

/*
 * A JSON value as the column's input function reads it: a string as its
 * text, a number or a boolean as JSON writes it, null as NULL (a domain's
 * NOT NULL applies).  A json or jsonb column, or a domain over one, takes
 * any JSON value as it is.
 */
/* A field's path as a client names it; NULL stands for one of orders_add's fields. */
static const char *
field_path(const OrderField *f, const char *path)
{
	return path != NULL ? path : psprintf("fields.%s", f->name);
}

static Datum
field_input(const OrderField *f, JsonbValue *v, const char *path, bool *isnull)
{
	char	   *text;

	/* JSON null is SQL NULL, as jsonb_populate_record reads it, a json column's too */
	if (v->type == jbvNull)
		text = NULL;
	else if (f->json_input)
		text = JsonbToCString(NULL, &JsonbValueToJsonb(v)->root, 0);
	else
		switch (v->type)
		{
			case jbvNull:
				text = NULL;
				break;
			case jbvString:
				text = pnstrdup(v->val.string.val, v->val.string.len);
				break;
			case jbvNumeric:
				text = DatumGetCString(DirectFunctionCall1(numeric_out,
														   NumericGetDatum(v->val.numeric)));
				break;
			case jbvBool:
				text = v->val.boolean ? "true" : "false";
				break;
			default:
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("%s must be a JSON string, number, boolean or null",
								field_path(f, path)),
						 errdetail("The field is %s. Column \"%s\" is of type %s.",
								   field_path(f, path), f->name, format_type_be(f->typid)),
						 errhint("Give an array or a composite value in its text form, as a JSON string.")));
		}
	*isnull = text == NULL;
	return InputFunctionCall(unconstify(FmgrInfo *, &f->input), text, f->input_ioparam,
							 f->typmod);
}

/*
 * field_input, whose errors about the value (a malformed date, a domain's
 * CHECK) say which field they are about, as every field error of ours
 * does: the path first in the detail.  path: as a client names the field,
 * such as lines[2].sku; NULL for one of orders_add's fields (fields.coupon).
 */
Datum
field_value_from_json(const OrderField *f, JsonbValue *v, const char *path, bool *isnull)
{
	MemoryContext mcxt = CurrentMemoryContext;
	Datum		d = (Datum) 0;

	PG_TRY();
	{
		d = field_input(f, v, path, isnull);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		int			class;

		MemoryContextSwitchTo(mcxt);
		edata = CopyErrorData();
		class = ERRCODE_TO_CATEGORY(edata->sqlerrcode);
		if (edata->elevel != ERROR ||
			(class != ERRCODE_DATA_EXCEPTION && class != ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION) ||
			(edata->detail != NULL && strncmp(edata->detail, "The field is ", 13) == 0))
		{
			FreeErrorData(edata);
			PG_RE_THROW();
		}
		FlushErrorState();
		edata->detail = edata->detail == NULL ? psprintf("The field is %s.", field_path(f, path)) :
			psprintf("The field is %s. %s", field_path(f, path), edata->detail);
		ReThrowError(edata);
	}
	PG_END_TRY();
	return d;
}

/*
 * The shop's columns the caller gave, as a JSON object (fields of
 * orders_add, or of an order of orders_add_many) in container: each into
 * values/nulls at its column, and present[] set for it.  A key that is no
 * column of the shop's, or names a column only the server may fill, is
 * refused as INSERT refuses it.
 */
void
fields_from_json(const OrdersCatalog *cat, Relation rel, JsonbContainer *container,
				 Datum *values, bool *nulls, bool *present)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken token;
	const OrderField *f = NULL;

	if (container == NULL)
		return;
	if (!JsonContainerIsObject(container))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("fields must be a JSON object"),
				 errdetail("The field is fields.")));

	it = JsonbIteratorInit(container);
	while ((token = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (token == WJB_KEY)
		{
			char	   *key;
			int			i;

			f = field_named(cat, v.val.string.val, v.val.string.len);
			if (f != NULL && (f->generated || f->identity_always))
				ereport(ERROR,
						(errcode(ERRCODE_GENERATED_ALWAYS),
						 errmsg("cannot insert a non-DEFAULT value into column \"%s\"", f->name),
						 errdetail("The field is fields.%s. Column \"%s\" is %s.", f->name, f->name,
								   f->generated ? "a generated column" : "an identity column defined as GENERATED ALWAYS"),
						 errtablecol(rel, f->attnum)));
			if (f != NULL)
				continue;
			key = pnstrdup(v.val.string.val, v.val.string.len);
			for (i = 0; i < Natts_orders; i++)
				if (strcmp(orders_columns[i].name, key) == 0)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("column \"%s\" is the extension's own, not one of the shop's fields", key),
							 errdetail("The field is fields.%s.", key),
							 errhint("Pass it as an argument of its own, or leave it to the extension.")));
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of relation \"%s\" does not exist",
							key, RelationGetRelationName(rel)),
					 errdetail("The field is fields.%s.", key),
					 errhint("Add the column first: ALTER TABLE orders ADD COLUMN.")));
		}
		if (token != WJB_VALUE || f == NULL)
			continue;
		values[f->attnum - 1] = field_value_from_json(f, &v, NULL, &nulls[f->attnum - 1]);
		present[f->attnum - 1] = true;
	}
}

/*
 * The shop's columns of a new row that the caller did not give: each its
 * default, as INSERT would take it, in column order (a sequence's values
 * come in the order INSERT takes them); NULL without one.  Generated
 * columns are computed later, from the whole row.
 */
void
fields_fill_defaults(const OrdersCatalog *cat, Relation rel, FieldsWrite *fw,
					 Datum *values, bool *nulls, const bool *present)
{
	int			i;

	/* what the last row's expressions left (orders_add_many: one call, many rows) */
	if (fw->estate != NULL)
		ResetPerTupleExprContext(fw->estate);

	for (i = 0; i < cat->nfields; i++)
	{
		const OrderField *f = &cat->fields[i];
		int			a = f->attnum - 1;

		if ((present != NULL && present[a]) || f->generated)
			continue;
		if (f->default_expr == NULL)
		{
			/* NULL, checked by a domain's constraints as INSERT checks it */
			values[a] = f->is_domain ?
				InputFunctionCall(unconstify(FmgrInfo *, &f->input), NULL, f->input_ioparam,
								  f->typmod) : (Datum) 0;
			nulls[a] = true;
		}
		else if (f->default_const)
		{
			values[a] = f->default_value;
			nulls[a] = f->default_isnull;
		}
		else
			values[a] = field_evaluate(fw, rel, f, &nulls[a]);
	}
}

/*
 * The shop's columns of a saved order: as the caller gives them, but
 * those only the server may fill (generated, identity GENERATED ALWAYS)
 * must come back as they were read; generated ones are then computed anew.
 * A dropped column is NULL in the new row, as UPDATE writes it: the bytes
 * a row stored before the drop still holds are not carried into the next
 * version.
 */
void
fields_from_saved(const OrdersCatalog *cat, Relation rel, const Datum *given,
				  const bool *given_null, const Datum *stored, const bool *stored_null,
				  Datum *values, bool *nulls)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			i;

	for (i = Natts_orders; i < desc->natts; i++)
		if (TupleDescAttr(desc, i)->attisdropped)
		{
			values[i] = (Datum) 0;
			nulls[i] = true;
		}

	for (i = 0; i < cat->nfields; i++)
	{
		const OrderField *f = &cat->fields[i];
		int			a = f->attnum - 1;

		if (f->generated || f->identity_always)
		{
			if (!field_value_equal(f, given[a], given_null[a], stored[a], stored_null[a]))
				ereport(ERROR,
						(errcode(ERRCODE_GENERATED_ALWAYS),
						 errmsg("column \"%s\" can only be updated to DEFAULT", f->name),
						 errdetail("The field is %s. Column \"%s\" is %s; save it as it was read.",
								   f->name, f->name,
								   f->generated ? "a generated column" : "an identity column defined as GENERATED ALWAYS"),
						 errtablecol(rel, f->attnum)));
			values[a] = stored[a];
			nulls[a] = stored_null[a];
		}
		else
		{
			values[a] = given[a];
			nulls[a] = given_null[a];
		}
	}
}

/* The row's values into the write's slot, where the expressions read them. */
static void
fields_load_row(FieldsWrite *fw, Relation rel, const Datum *values, const bool *nulls)
{
	int			natts = RelationGetDescr(rel)->natts;

	(void) fields_context(fw, rel);
	ExecClearTuple(fw->slot);
	memcpy(fw->slot->tts_values, values, sizeof(Datum) * natts);
	memcpy(fw->slot->tts_isnull, nulls, sizeof(bool) * natts);
	ExecStoreVirtualTuple(fw->slot);
}

/* The stored generated columns of a new row, from the rest of it. */
void
fields_compute_generated(const OrdersCatalog *cat, Relation rel, FieldsWrite *fw,
						 Datum *values, bool *nulls)
{
	bool		loaded = false;
	int			i;

	for (i = 0; i < cat->nfields; i++)
	{
		const OrderField *f = &cat->fields[i];

		if (!f->generated)
			continue;
		if (!loaded)
			fields_load_row(fw, rel, values, nulls);
		loaded = true;
		values[f->attnum - 1] = field_evaluate(fw, rel, f, &nulls[f->attnum - 1]);
	}
}

/*
 * The table's CHECK constraints (and NOT NULL) on the row about to be
 * written, by the executor's own routine: a violation fails with 23514,
 * the constraint's name and the row, as INSERT and UPDATE fail.
 */
void
fields_check_row(const OrdersCatalog *cat, Relation rel, FieldsWrite *fw, Datum *values,
				 bool *nulls)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;

	if (cat->ncheck == 0)
		return;
	/* the catalog was built from this descriptor, under the lock the call holds */
	if (constr == NULL || constr->num_check != cat->ncheck)
		elog(ERROR, "check constraints of \"%s\" changed under a lock",
			 RelationGetRelationName(rel));
	(void) fields_context(fw, rel);
	if (COMPAT_RRI_CHECK_EXPRS(fw->rri) == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(fw->estate->es_query_cxt);
		ExprState **states = palloc0(sizeof(ExprState *) * cat->ncheck);
		int			i;

		for (i = 0; i < cat->ncheck; i++)
			if (cat->checks[i] != NULL)
				states[i] = ExecInitExpr(cat->checks[i], NULL);
		COMPAT_RRI_CHECK_EXPRS(fw->rri) = states;
		MemoryContextSwitchTo(old);
	}
	/* the row's values as they are, without forming and deforming a tuple */
	fields_load_row(fw, rel, values, nulls);
	ExecConstraints(fw->rri, fw->slot, fw->estate);
	ResetPerTupleExprContext(fw->estate);
}

void
fields_write_done(FieldsWrite *fw)
{
	if (fw->estate == NULL)
		return;
	ExecDropSingleTupleTableSlot(fw->slot);
	FreeExecutorState(fw->estate);
	fw->estate = NULL;
}
