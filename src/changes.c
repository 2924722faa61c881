/*
 * changes.c: what a save changed.
 *
 * orders_save derives its events from the difference between the stored
 * order and the one the caller passes: the lines, the shipping address, the
 * status.  Values are compared field by field, by content: the same text in
 * a different storage form (compressed, short header) is the same value, and
 * a save that changes nothing is recognised as such.  Lines are a list: the
 * same lines in another order are a change.
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "utils/array.h"
#include "utils/arrayaccess.h"
#include "utils/builtins.h"

#include "orders.h"

/* Two values of a field of ours: uuid, integer, bigint or text. */
bool
order_field_equal(Oid typid, Datum a, Datum b)
{
	switch (typid)
	{
		case UUIDOID:
			return memcmp(DatumGetUUIDP(a)->data, DatumGetUUIDP(b)->data, UUID_LEN) == 0;
		case INT4OID:
			return DatumGetInt32(a) == DatumGetInt32(b);
		case INT8OID:
			return DatumGetInt64(a) == DatumGetInt64(b);
		case TEXTOID:
			{
				text	   *x = DatumGetTextPP(a);
				text	   *y = DatumGetTextPP(b);

				return VARSIZE_ANY_EXHDR(x) == VARSIZE_ANY_EXHDR(y) &&
					memcmp(VARDATA_ANY(x), VARDATA_ANY(y), VARSIZE_ANY_EXHDR(x)) == 0;
			}
		default:
			elog(ERROR, "unexpected field type %u", typid);
	}
	pg_unreachable();
}

/* Two values of one of our composite types, compared field by field. */
static bool
composite_equal(TupleDesc desc, Datum a, Datum b)
{
	Datum		va[COMPOSITE_MAX_FIELDS];
	Datum		vb[COMPOSITE_MAX_FIELDS];
	bool		na[COMPOSITE_MAX_FIELDS];
	bool		nb[COMPOSITE_MAX_FIELDS];
	int			i;

	Assert(desc->natts <= lengthof(va));
	composite_deform(a, desc, va, na);
	composite_deform(b, desc, vb, nb);
	for (i = 0; i < desc->natts; i++)
	{
		if (na[i] != nb[i])
			return false;
		if (!na[i] && !order_field_equal(TupleDescAttr(desc, i)->atttypid, va[i], vb[i]))
			return false;
	}
	return true;
}

bool
order_lines_equal(const OrdersCatalog *cat, Datum a, Datum b)
{
	ArrayType  *x = DatumGetArrayTypeP(a);
	ArrayType  *y = DatumGetArrayTypeP(b);
	int			n = ArrayGetNItems(ARR_NDIM(x), ARR_DIMS(x));
	array_iter	ix;
	array_iter	iy;
	int			i;

	if (n != ArrayGetNItems(ARR_NDIM(y), ARR_DIMS(y)))
		return false;
	array_iter_setup(&ix, (AnyArrayType *) x);
	array_iter_setup(&iy, (AnyArrayType *) y);
	for (i = 0; i < n; i++)
	{
		bool		xnull;
		bool		ynull;
		Datum		ex = composite_array_next(&ix, &xnull, i);
		Datum		ey = composite_array_next(&iy, &ynull, i);

		if (xnull != ynull)
			return false;
		if (!xnull && !composite_equal(cat->line_desc, ex, ey))
			return false;
	}
	return true;
}

bool
order_address_equal(const OrdersCatalog *cat, Datum a, bool a_isnull, Datum b, bool b_isnull)
{
	if (a_isnull || b_isnull)
		return a_isnull == b_isnull;
	return composite_equal(cat->address_desc, a, b);
}
