/*
 * changes.c: what a save changed.
 *
 * orders_save derives its events from the difference between the stored
 * order and the one the caller passes: the lines, the shipping address, the
 * status, the shop's own columns.  Values are compared field by field, by
 * content: the same text in a different storage form (compressed, short
 * header) is the same value, and a save that changes nothing is recognised
 * as such.  Lines are a list: the same lines in another order are a change.
 * The shop's fields, of any type, are compared by their stored image.
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "utils/array.h"
#include "utils/arrayaccess.h"
#include "utils/builtins.h"
#include "utils/datum.h"

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

/*
 * Two values of a shop's field, by their stored image: what a save
 * changed, as logical decoding tells an unchanged value.
 */
bool
field_value_equal(const OrderField *f, Datum a, bool a_null, Datum b, bool b_null)
{
	if (a_null || b_null)
		return a_null == b_null;
	return datum_image_eq(a, b, f->typbyval, f->typlen);
}

/* Two values of one of our composite types, compared field by field. */
static bool
composite_equal(TupleDesc desc, const CompositeExtras *ex, Datum a, Datum b)
{
	Datum		va_here[COMPOSITE_FIELDS_HERE];
	Datum		vb_here[COMPOSITE_FIELDS_HERE];
	bool		na_here[COMPOSITE_FIELDS_HERE];
	bool		nb_here[COMPOSITE_FIELDS_HERE];
	Datum	   *va = COMPOSITE_ARRAY(va_here, desc);
	Datum	   *vb = COMPOSITE_ARRAY(vb_here, desc);
	bool	   *na = COMPOSITE_ARRAY(na_here, desc);
	bool	   *nb = COMPOSITE_ARRAY(nb_here, desc);
	int			i;

	composite_fields(a, desc, va, na);
	composite_fields(b, desc, vb, nb);
	for (i = 0; i < ex->nfixed; i++)
	{
		if (na[i] != nb[i])
			return false;
		if (!na[i] && !order_field_equal(TupleDescAttr(desc, i)->atttypid, va[i], vb[i]))
			return false;
	}
	for (i = 0; i < ex->nextra; i++)
	{
		int			x = ex->extra[i].attnum - 1;

		if (!field_value_equal(&ex->extra[i], va[x], na[x], vb[x], nb[x]))
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
		if (!xnull && !composite_equal(cat->line_desc, &cat->line_extras, ex, ey))
			return false;
	}
	return true;
}

bool
order_address_equal(const OrdersCatalog *cat, Datum a, bool a_isnull, Datum b, bool b_isnull)
{
	if (a_isnull || b_isnull)
		return a_isnull == b_isnull;
	return composite_equal(cat->address_desc, &cat->address_extras, a, b);
}

/* Whether any of the shop's columns differs between two rows of orders. */
bool
fields_changed(const OrdersCatalog *cat, const Datum *a, const bool *a_null,
			   const Datum *b, const bool *b_null)
{
	int			i;

	for (i = 0; i < cat->nfields; i++)
	{
		int			x = cat->fields[i].attnum - 1;

		if (!field_value_equal(&cat->fields[i], a[x], a_null[x], b[x], b_null[x]))
			return true;
	}
	return false;
}
