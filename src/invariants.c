/*
 * invariants.c: the rules of the Order aggregate.
 *
 * Every rule of the contract is checked here, in C, before anything is
 * written.  A broken rule is SQLSTATE 23514 with the rule's name in the
 * error's constraint field (and the table and, where there is one, the
 * column), a message that names the order and the field, and the offending
 * value in the detail.  A missing value is 23502 with its column.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type_d.h"
#include "common/int.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/arrayaccess.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "orders.h"

#define ORDER_LINES_MAX			1000
#define QUANTITY_MIN			1
#define QUANTITY_MAX			1000000
#define UNIT_PRICE_MIN			INT64CONST(0)
#define UNIT_PRICE_MAX			INT64CONST(100000000000)
#define PRODUCT_NAME_MAX		200
#define STREET_MAX				200
#define CITY_MAX				100
#define POSTAL_CODE_MAX			20

/* Longest piece of an offending text value that a detail message quotes. */
#define QUOTE_MAX_CHARS			64

/*
 * Whether the database encoding gives bytes 0x80 to 0x9F the C1 control
 * characters (the ISO 8859 family; Windows code pages print them).
 */
static bool
encoding_has_c1_bytes(void)
{
	int			enc = GetDatabaseEncoding();

	return (enc >= PG_LATIN1 && enc <= PG_LATIN10) ||
		(enc >= PG_ISO_8859_5 && enc <= PG_ISO_8859_8);
}

/*
 * The length in bytes of a control character at p (C0, DEL, and C1: in
 * UTF-8 U+0080 to U+009F, in ISO 8859 the bytes 0x80 to 0x9F), or 0.
 */
static int
control_char_len(const unsigned char *p, int left)
{
	if (p[0] < 0x20 || p[0] == 0x7F)
		return 1;
	if (GetDatabaseEncoding() == PG_UTF8)
		return (p[0] == 0xC2 && left > 1 && p[1] >= 0x80 && p[1] <= 0x9F) ? 2 : 0;
	return (p[0] >= 0x80 && p[0] <= 0x9F && encoding_has_c1_bytes()) ? 1 : 0;
}

/*
 * A text value as a detail shows it: double-quoted, cut after
 * QUOTE_MAX_CHARS, and every control character written as \uXXXX, so that
 * no message or log line carries one raw.
 */
static char *
quote_text(const char *s, int len)
{
	StringInfoData buf;
	int			cut = pg_mbcharcliplen(s, len, QUOTE_MAX_CHARS);
	const unsigned char *p = (const unsigned char *) s;
	int			i = 0;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '"');
	while (i < cut)
	{
		int			n = control_char_len(p + i, cut - i);

		if (n > 0)
		{
			appendStringInfo(&buf, "\\u%04x", n == 2 ? p[i + 1] : p[i]);
			i += n;
			continue;
		}
		if (p[i] == '"' || p[i] == '\\')
			appendStringInfoChar(&buf, '\\');
		appendStringInfoChar(&buf, (char) p[i]);
		i++;
	}
	appendStringInfoChar(&buf, '"');
	if (cut < len)
		appendStringInfoString(&buf, "...");
	return buf.data;
}

/*
 * The rule an order breaks, as the fields of the error: its table, column and
 * constraint name.  errtableconstraint() and errtablecol() would each set the
 * schema and table, and an error's fields are set once.
 */
static int
errviolation(Relation rel, const char *rule, int attnum)
{
	errtablecol(rel, attnum);
	return err_generic_string(PG_DIAG_CONSTRAINT_NAME, rule);
}

char *
quote_text_datum(Datum d)
{
	text	   *t = DatumGetTextPP(d);

	return quote_text(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
}

void
not_null_violation(Relation rel, int attnum, const char *order_id, const char *field)
{
	ereport(ERROR,
			(errcode(ERRCODE_NOT_NULL_VIOLATION),
			 errmsg("order %s: %s must not be null", order_id, field),
			 errtablecol(rel, attnum)));
}

void
order_check_customer_id(Relation rel, const char *order_id, bool isnull)
{
	if (isnull)
		not_null_violation(rel, Anum_orders_customer_id, order_id, "customer_id");
}

static bool
is_upper_ascii(const char *s, int len, int want)
{
	int			i;

	if (len != want)
		return false;
	for (i = 0; i < len; i++)
		if (s[i] < 'A' || s[i] > 'Z')
			return false;
	return true;
}

void
order_check_currency(Relation rel, const char *order_id, Datum currency, bool isnull)
{
	text	   *t;

	if (isnull)
		not_null_violation(rel, Anum_orders_currency, order_id, "currency");
	t = DatumGetTextPP(currency);
	if (!is_upper_ascii(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), 3))
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("order %s: currency must be three upper-case ASCII letters", order_id),
				 errdetail("currency is %s.",
						   quote_text(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t))),
				 errhint("Use an ISO 4217 code, such as \"EUR\" or \"USD\"."),
				 errviolation(rel, "order_currency_format", Anum_orders_currency)));
}

/*
 * Length in characters of a text value, or -1 when it holds a control
 * character.
 */
static int
text_chars_without_controls(const char *s, int len)
{
	const unsigned char *p = (const unsigned char *) s;
	int			i;

	for (i = 0; i < len; i++)
		if (control_char_len(p + i, len - i) > 0)
			return -1;
	return pg_mbstrlen_with_len(s, len);
}

/* Whether a text value holds a control character (a consumer's name may not). */
bool
text_has_controls(Datum d)
{
	text	   *t = DatumGetTextPP(d);

	return text_chars_without_controls(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)) < 0;
}

typedef struct LineProduct
{
	const pg_uuid_t *product_id;
	int			line;			/* 1-based */
} LineProduct;

static int
line_product_cmp(const void *a, const void *b)
{
	const LineProduct *x = a;
	const LineProduct *y = b;
	int			c = memcmp(x->product_id->data, y->product_id->data, UUID_LEN);

	if (c != 0)
		return c;
	return x->line - y->line;
}

static void
check_product_unique(Relation rel, const char *order_id, LineProduct *products, int n)
{
	int			i;

	if (n < 2)
		return;
	qsort(products, n, sizeof(LineProduct), line_product_cmp);
	for (i = 1; i < n; i++)
	{
		if (memcmp(products[i - 1].product_id->data, products[i].product_id->data,
				   UUID_LEN) == 0)
		{
			char		pid[UUID_TEXT_SIZE];

			uuid_format(products[i].product_id, pid);
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("order %s: product %s appears in more than one line",
							order_id, pid),
					 errdetail("lines[%d] and lines[%d] both have product_id %s.",
							   products[i - 1].line, products[i].line, pid),
					 errhint("Put the whole quantity of a product in one line."),
					 errviolation(rel, "order_line_product_unique", Anum_orders_lines)));
		}
	}
}

/*
 * Checks one order_line (already known to be not NULL) and returns its
 * quantity × unit_price.  line is 1-based, for messages.
 */
static int64
check_line(Relation rel, const OrdersCatalog *cat, const char *order_id,
		   Datum value, int line, LineProduct *product)
{
	Datum		values[Natts_line];
	bool		nulls[Natts_line];
	static const char *const field_names[Natts_line] = {
		"product_id", "product_name", "quantity", "unit_price"
	};
	int			i;
	text	   *name;
	int			name_len;
	int			name_chars;
	int32		quantity;
	int64		unit_price;
	int64		amount;

	composite_deform(value, cat->line_desc, values, nulls);

	for (i = 0; i < Natts_line; i++)
		if (nulls[i])
			not_null_violation(rel, Anum_orders_lines, order_id,
							   psprintf("lines[%d].%s", line, field_names[i]));

	name = DatumGetTextPP(values[Anum_line_product_name - 1]);
	name_len = VARSIZE_ANY_EXHDR(name);
	name_chars = name_len > PRODUCT_NAME_MAX * MAX_MULTIBYTE_CHAR_LEN ? -2 :
		text_chars_without_controls(VARDATA_ANY(name), name_len);
	if (name_chars < 1 || name_chars > PRODUCT_NAME_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("order %s: lines[%d].product_name must be 1 to %d characters without control characters",
						order_id, line, PRODUCT_NAME_MAX),
				 name_chars == -1 ?
				 errdetail("lines[%d].product_name is %s, which holds a control character.",
						   line, quote_text(VARDATA_ANY(name), name_len)) :
				 errdetail("lines[%d].product_name is %s, %d characters long.",
						   line, quote_text(VARDATA_ANY(name), name_len),
						   pg_mbstrlen_with_len(VARDATA_ANY(name), name_len)),
				 errviolation(rel, "order_line_product_name", Anum_orders_lines)));

	quantity = DatumGetInt32(values[Anum_line_quantity - 1]);
	if (quantity < QUANTITY_MIN || quantity > QUANTITY_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("order %s: lines[%d].quantity is out of range", order_id, line),
				 errdetail("lines[%d].quantity is %d; it must be between %d and %d.",
						   line, quantity, QUANTITY_MIN, QUANTITY_MAX),
				 errviolation(rel, "order_line_quantity_range", Anum_orders_lines)));

	unit_price = DatumGetInt64(values[Anum_line_unit_price - 1]);
	if (unit_price < UNIT_PRICE_MIN || unit_price > UNIT_PRICE_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("order %s: lines[%d].unit_price is out of range", order_id, line),
				 errdetail("lines[%d].unit_price is " INT64_FORMAT "; it must be between "
						   INT64_FORMAT " and " INT64_FORMAT " (minor units).",
						   line, unit_price, UNIT_PRICE_MIN, UNIT_PRICE_MAX),
				 errviolation(rel, "order_line_unit_price_range", Anum_orders_lines)));

	product->product_id = DatumGetUUIDP(values[Anum_line_product_id - 1]);
	product->line = line;

	/* cannot overflow: both factors are bounded well below 2^63 / 10^6 */
	amount = (int64) quantity * unit_price;
	return amount;
}

/*
 * Checks the lines of an order: present, one-dimensional, at most
 * ORDER_LINES_MAX, no NULL line or field, every line valid, no product twice,
 * a total that fits in bigint.  Returns the total, and the array flattened and
 * detoasted in *checked: the value to store.
 */
int64
order_check_lines(Relation rel, const OrdersCatalog *cat, const char *order_id,
				  Datum lines, bool isnull, Datum *checked)
{
	ArrayType  *arr;
	int			n;
	int			i;
	int64		total = 0;
	LineProduct *products;
	array_iter	it;

	if (isnull)
		not_null_violation(rel, Anum_orders_lines, order_id, "lines");

	arr = DatumGetArrayTypeP(lines);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("order %s: lines must be a one-dimensional array", order_id),
				 errdetail("lines has %d dimensions.", ARR_NDIM(arr)),
				 errtablecol(rel, Anum_orders_lines)));
	if (ARR_NDIM(arr) == 1 && ARR_LBOUND(arr)[0] != 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("order %s: lines must be numbered from 1", order_id),
				 errdetail("lines starts at index %d.", ARR_LBOUND(arr)[0]),
				 errtablecol(rel, Anum_orders_lines)));
	if (ARR_ELEMTYPE(arr) != cat->line_typid)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("order %s: lines must be an array of order_line", order_id)));

	n = ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
	if (n > ORDER_LINES_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("order %s: too many lines", order_id),
				 errdetail("lines has %d elements; an order has at most %d.",
						   n, ORDER_LINES_MAX),
				 errviolation(rel, "order_lines_max", Anum_orders_lines)));

	products = palloc(sizeof(LineProduct) * Max(n, 1));

	/* walk the elements in place: no deconstructed copy of the array */
	array_iter_setup(&it, (AnyArrayType *) arr);
	for (i = 0; i < n; i++)
	{
		bool		elem_isnull;
		Datum		elem = composite_array_next(&it, &elem_isnull, i);
		int64		amount;

		if (elem_isnull)
			not_null_violation(rel, Anum_orders_lines, order_id,
							   psprintf("lines[%d]", i + 1));

		amount = check_line(rel, cat, order_id, elem,
							i + 1, &products[i]);
		if (pg_add_s64_overflow(total, amount, &total))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("order %s: total is out of range for type bigint", order_id),
					 errdetail("The sum of quantity × unit_price exceeds " INT64_FORMAT
							   " at lines[%d].", PG_INT64_MAX, i + 1),
					 errtablecol(rel, Anum_orders_total)));
	}

	check_product_unique(rel, order_id, products, n);
	pfree(products);

	*checked = PointerGetDatum(arr);
	return total;
}

static void
check_address_text(Relation rel, const char *order_id, const char *field,
				   Datum value, int max_chars)
{
	text	   *t = DatumGetTextPP(value);
	int			len = VARSIZE_ANY_EXHDR(t);
	int			chars = len > max_chars * MAX_MULTIBYTE_CHAR_LEN ? -2 :
		text_chars_without_controls(VARDATA_ANY(t), len);

	if (chars < 1 || chars > max_chars)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("order %s: shipping_address.%s must be 1 to %d characters without control characters",
						order_id, field, max_chars),
				 chars == -1 ?
				 errdetail("shipping_address.%s is %s, which holds a control character.",
						   field, quote_text(VARDATA_ANY(t), len)) :
				 errdetail("shipping_address.%s is %s, %d characters long.",
						   field, quote_text(VARDATA_ANY(t), len),
						   pg_mbstrlen_with_len(VARDATA_ANY(t), len)),
				 errviolation(rel, "order_address_fields", Anum_orders_shipping_address)));
}

void
order_check_address(Relation rel, const OrdersCatalog *cat, const char *order_id,
					Datum address, bool isnull)
{
	Datum		values[Natts_address];
	bool		nulls[Natts_address];
	static const char *const field_names[Natts_address] = {
		"street", "city", "postal_code", "country"
	};
	int			i;
	text	   *country;

	if (isnull)
		return;

	composite_deform(address, cat->address_desc, values, nulls);

	for (i = 0; i < Natts_address; i++)
		if (nulls[i])
			not_null_violation(rel, Anum_orders_shipping_address, order_id,
							   psprintf("shipping_address.%s", field_names[i]));

	check_address_text(rel, order_id, "street", values[Anum_address_street - 1], STREET_MAX);
	check_address_text(rel, order_id, "city", values[Anum_address_city - 1], CITY_MAX);
	check_address_text(rel, order_id, "postal_code", values[Anum_address_postal_code - 1],
					   POSTAL_CODE_MAX);

	country = DatumGetTextPP(values[Anum_address_country - 1]);
	if (!is_upper_ascii(VARDATA_ANY(country), VARSIZE_ANY_EXHDR(country), 2))
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("order %s: shipping_address.country must be two upper-case ASCII letters",
						order_id),
				 errdetail("shipping_address.country is %s.",
						   quote_text_datum(values[Anum_address_country - 1])),
				 errhint("Use an ISO 3166-1 alpha-2 code, such as \"DE\" or \"US\"."),
				 errviolation(rel, "order_address_fields", Anum_orders_shipping_address)));
}

/*
 * reveal: whether the caller may read orders.  The messages of a role that
 * may write but not read quote nothing that only the stored order holds, as
 * PostgreSQL leaves out of its own messages the row values a role may not
 * select.
 */
void
order_check_removable(Relation rel, const char *order_id, OrderStatus status, bool reveal)
{
	if (status == ORDER_CONFIRMED || status == ORDER_SHIPPED)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("order %s cannot be removed while it is in flight", order_id),
				 reveal ? errdetail("status is \"%s\".", order_status_names[status]) : 0,
				 errhint("Cancel a confirmed order, or wait until a shipped one is delivered."),
				 errviolation(rel, "order_remove_in_flight", Anum_orders_status)));
}

/*
 * Optimistic concurrency: the caller's expected version must be the stored
 * one.  40001 so that clients which retry serialization failures re-read and
 * retry.
 */
void
order_check_version(const char *order_id, int32 stored, int32 expected, bool reveal)
{
	if (stored != expected)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("order %s was changed by someone else", order_id),
				 reveal ?
				 errdetail("Expected version %d, but the stored version is %d.",
						   expected, stored) :
				 errdetail("Expected version %d, but the stored version differs.", expected),
				 errhint("Read the order again, reapply the change and retry.")));
}

/* Every change, removal too, gives the order the next version. */
void
order_check_next_version(const char *order_id, int32 version)
{
	if (version == PG_INT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("order %s has reached the highest version", order_id),
				 errdetail("Version %d is the largest an integer holds.", PG_INT32_MAX)));
}

/*
 * Status moves only along pending -> confirmed -> shipped -> delivered, and
 * from pending or confirmed to cancelled; delivered and cancelled are final.
 */
static bool
status_transition_allowed(OrderStatus from, OrderStatus to)
{
	switch (from)
	{
		case ORDER_PENDING:
			return to == ORDER_CONFIRMED || to == ORDER_CANCELLED;
		case ORDER_CONFIRMED:
			return to == ORDER_SHIPPED || to == ORDER_CANCELLED;
		case ORDER_SHIPPED:
			return to == ORDER_DELIVERED;
		default:
			return false;
	}
}

void
order_check_status_transition(Relation rel, const char *order_id, OrderStatus from,
							  OrderStatus to, bool reveal)
{
	if (from != to && !status_transition_allowed(from, to) && !reveal)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("order %s: status cannot move to %s from the stored status",
						order_id, order_status_names[to]),
				 errviolation(rel, "order_status_transition", Anum_orders_status)));
	if (from != to && !status_transition_allowed(from, to))
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("order %s: status cannot move from %s to %s",
						order_id, order_status_names[from], order_status_names[to]),
				 errdetail("status is \"%s\"; the new status is \"%s\".",
						   order_status_names[from], order_status_names[to]),
				 (from == ORDER_DELIVERED || from == ORDER_CANCELLED) ?
				 errhint("A %s order is final.", order_status_names[from]) :
				 errhint("Status moves pending, confirmed, shipped, delivered, one step at a time; "
						 "a pending or confirmed order can be cancelled."),
				 errviolation(rel, "order_status_transition", Anum_orders_status)));
}

/* Beyond pending (except cancelled), an order needs lines and an address. */
void
order_check_ready(Relation rel, const char *order_id, OrderStatus status, int nlines,
				  bool address_isnull)
{
	if (status == ORDER_PENDING || status == ORDER_CANCELLED)
		return;
	if (nlines == 0 || address_isnull)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("order %s cannot be %s without %s", order_id,
						order_status_names[status],
						nlines == 0 ? "lines" : "a shipping address"),
				 nlines == 0 ?
				 errdetail("lines is empty.") :
				 errdetail("shipping_address is null."),
				 errviolation(rel, "order_ready_to_confirm", nlines == 0 ? Anum_orders_lines : Anum_orders_shipping_address)));
}

/*
 * Lines change only while the stored order is pending; the shipping address
 * only while it is pending or confirmed.  The stored status is the one that
 * counts, so one save may change the lines and confirm.
 */
void
order_check_frozen(Relation rel, const char *order_id, OrderStatus stored,
				   bool lines_changed, bool address_changed, bool reveal)
{
	bool		lines_frozen = lines_changed && stored != ORDER_PENDING;
	bool		address_frozen = address_changed && stored != ORDER_PENDING &&
		stored != ORDER_CONFIRMED;

	if (!reveal && (lines_frozen || address_frozen))
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("order %s: %s cannot change in the stored status", order_id,
						lines_frozen ? "lines" : "shipping_address"),
				 errviolation(rel, "order_frozen_after_confirm", lines_frozen ? Anum_orders_lines : Anum_orders_shipping_address)));
	if (lines_frozen)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("order %s: lines cannot change once the order is %s",
						order_id, order_status_names[stored]),
				 errdetail("status is \"%s\"; lines change only while it is \"pending\".",
						   order_status_names[stored]),
				 errviolation(rel, "order_frozen_after_confirm", Anum_orders_lines)));
	if (address_frozen)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("order %s: shipping_address cannot change once the order is %s",
						order_id, order_status_names[stored]),
				 errdetail("status is \"%s\"; the address changes only while it is \"pending\" or \"confirmed\".",
						   order_status_names[stored]),
				 errviolation(rel, "order_frozen_after_confirm", Anum_orders_shipping_address)));
}

/* A uuid or text column's value, as a detail message shows it. */
static char *
detail_value(Oid typid, Datum value)
{
	char	   *buf;

	if (typid != UUIDOID)
		return quote_text_datum(value);
	buf = palloc(UUID_TEXT_SIZE);
	uuid_format(DatumGetUUIDP(value), buf);
	return buf;
}

/*
 * customer_id and currency are the order's for ever (id is how it is found).
 * attnum names the column, of type uuid or text.
 */
void
order_check_immutable(Relation rel, const char *order_id, int attnum,
					  Datum stored, Datum given, bool reveal)
{
	Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
	const char *field = NameStr(att->attname);

	if (!order_field_equal(att->atttypid, stored, given))
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("order %s: %s cannot change", order_id, field),
				 reveal ?
				 errdetail("%s is %s; the save gives %s.", field,
						   detail_value(att->atttypid, stored),
						   detail_value(att->atttypid, given)) :
				 errdetail("The save gives %s %s, which is not the stored value.", field,
						   detail_value(att->atttypid, given)),
				 errviolation(rel, "order_immutable_fields", attnum)));
}
