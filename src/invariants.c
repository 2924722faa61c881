/*
 * invariants.c: the rules of the Order aggregate.
 *
 * Every rule of the contract is checked here, in C, before anything is
 * written.  A broken rule is SQLSTATE 23514 with the rule's name in the
 * error's constraint field (and the table and, where there is one, the
 * column), a message that names the field, and the offending value in the
 * detail; the order is named by the calling function, in the error's
 * context.  A missing value is 23502 with its column.
 *
 * The detail of every error about one field of the order, whatever its
 * SQLSTATE, begins with the sentence "The field is <path>.", where path is
 * the column (currency), a line's field (lines[2].quantity, lines counted
 * from 1) or the address's (shipping_address.city).  The column error field
 * can only name the table's column (lines); the message wording differs
 * from rule to rule; so clients read the path from this one sentence.
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

/* field: the column, or the path to a field in it, such as lines[2].quantity */
void
not_null_violation(Relation rel, int attnum, const char *field)
{
	ereport(ERROR,
			(errcode(ERRCODE_NOT_NULL_VIOLATION),
			 errmsg("%s must not be null", field),
			 errdetail("The field is %s.", field),
			 errtablecol(rel, attnum)));
}

void
order_check_customer_id(Relation rel, bool isnull)
{
	if (isnull)
		not_null_violation(rel, Anum_orders_customer_id, "customer_id");
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
order_check_currency(Relation rel, Datum currency, bool isnull)
{
	text	   *t;

	if (isnull)
		not_null_violation(rel, Anum_orders_currency, "currency");
	t = DatumGetTextPP(currency);
	if (!is_upper_ascii(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), 3))
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("currency must be three upper-case ASCII letters"),
				 errdetail("The field is currency. The currency is %s.",
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

/*
 * A text field of a line (line > 0: lines[line].field) or of the shipping
 * address (line == 0: shipping_address.field): 1 to max_chars characters,
 * no control character.
 */
static void
check_text_field(Relation rel, const char *rule, int attnum, int line, const char *field,
				 Datum value, int max_chars)
{
	text	   *t = DatumGetTextPP(value);
	const char *s = VARDATA_ANY(t);
	int			len = VARSIZE_ANY_EXHDR(t);
	char	   *path;

	/* more bytes than max_chars characters can take: too long, not measured */
	int			chars = len > max_chars * MAX_MULTIBYTE_CHAR_LEN ? -2 :
		text_chars_without_controls(s, len);

	if (chars >= 1 && chars <= max_chars)
		return;
	path = line > 0 ? psprintf("lines[%d].%s", line, field) :
		psprintf("shipping_address.%s", field);
	ereport(ERROR,
			(errcode(ERRCODE_CHECK_VIOLATION),
			 errmsg("%s must be 1 to %d characters without control characters",
					path, max_chars),
			 chars == -1 ?
			 errdetail("The field is %s. The value %s holds a control character.",
					   path, quote_text(s, len)) :
			 errdetail("The field is %s. The value %s is %d characters long.",
					   path, quote_text(s, len), pg_mbstrlen_with_len(s, len)),
			 errviolation(rel, rule, attnum)));
}

typedef struct LineProduct
{
	const pg_uuid_t *product_id;
	int			line;			/* 1-based */
} LineProduct;

static int
product_id_cmp(const LineProduct *x, const LineProduct *y)
{
	return memcmp(x->product_id->data, y->product_id->data, UUID_LEN);
}

/* by product, then by line: the first line of a product comes first */
static int
line_product_cmp(const void *a, const void *b)
{
	const LineProduct *x = a;
	const LineProduct *y = b;
	int			c = product_id_cmp(x, y);

	if (c != 0)
		return c;
	return x->line - y->line;
}

static void
check_product_unique(Relation rel, LineProduct *products, int n)
{
	int			i;

	if (n < 2)
		return;
	qsort(products, n, sizeof(LineProduct), line_product_cmp);
	for (i = 1; i < n; i++)
	{
		if (product_id_cmp(&products[i - 1], &products[i]) == 0)
		{
			char		pid[UUID_TEXT_SIZE];

			/*
			 * The field is the later line's product_id, as the one to change:
			 * the first line of a product is the one kept, in the order given.
			 */
			uuid_format(products[i].product_id, pid);
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("product %s appears in more than one line", pid),
					 errdetail("The field is lines[%d].product_id. Its value %s is also the product_id of lines[%d].",
							   products[i].line, pid, products[i - 1].line),
					 errhint("Put the whole quantity of a product in one line."),
					 errviolation(rel, "order_line_product_unique", Anum_orders_lines)));
		}
	}
}

/* A number in a line (lines[line].field): min to max, else rule is broken. */
static void
check_line_range(Relation rel, const char *rule, int line, const char *field, int64 value,
				 int64 min, int64 max)
{
	if (value < min || value > max)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("lines[%d].%s is out of range", line, field),
				 errdetail("The field is lines[%d].%s. The value is %lld; it must be between %lld and %lld.",
						   line, field,
						   (long long) value, (long long) min, (long long) max),
				 errviolation(rel, rule, Anum_orders_lines)));
}

/*
 * Checks one order_line (already known to be not NULL) and returns its
 * quantity times unit_price.  line is 1-based, for messages.
 */
static int64
check_line(Relation rel, const OrdersCatalog *cat, Datum value, int line,
		   LineProduct *product)
{
	Datum		values_here[COMPOSITE_FIELDS_HERE];
	bool		nulls_here[COMPOSITE_FIELDS_HERE];
	Datum	   *values = COMPOSITE_ARRAY(values_here, cat->line_desc);
	bool	   *nulls = COMPOSITE_ARRAY(nulls_here, cat->line_desc);
	static const char *const field_names[Natts_line] = {
		"product_id", "product_name", "quantity", "unit_price"
	};
	int			i;
	int32		quantity;
	int64		unit_price;
	int64		amount;

	/* the shop's own attributes, after ours, are the shop's to check */
	composite_fields(value, cat->line_desc, values, nulls);

	for (i = 0; i < Natts_line; i++)
		if (nulls[i])
			not_null_violation(rel, Anum_orders_lines,
							   psprintf("lines[%d].%s", line, field_names[i]));

	check_text_field(rel, "order_line_product_name", Anum_orders_lines, line, "product_name",
					 values[Anum_line_product_name - 1], PRODUCT_NAME_MAX);

	quantity = DatumGetInt32(values[Anum_line_quantity - 1]);
	check_line_range(rel, "order_line_quantity_range", line, "quantity", quantity,
					 QUANTITY_MIN, QUANTITY_MAX);
	unit_price = DatumGetInt64(values[Anum_line_unit_price - 1]);
	check_line_range(rel, "order_line_unit_price_range", line, "unit_price", unit_price,
					 UNIT_PRICE_MIN, UNIT_PRICE_MAX);

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
order_check_lines(Relation rel, const OrdersCatalog *cat, Datum lines, bool isnull,
				  Datum *checked)
{
	ArrayType  *arr;
	int			n;
	int			i;
	int64		total = 0;
	LineProduct *products;
	array_iter	it;

	if (isnull)
		not_null_violation(rel, Anum_orders_lines, "lines");

	arr = DatumGetArrayTypeP(lines);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("lines must be a one-dimensional array"),
				 errdetail("The field is lines. The array has %d dimensions.", ARR_NDIM(arr)),
				 errtablecol(rel, Anum_orders_lines)));
	if (ARR_NDIM(arr) == 1 && ARR_LBOUND(arr)[0] != 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("lines must be numbered from 1"),
				 errdetail("The field is lines. The array starts at index %d.", ARR_LBOUND(arr)[0]),
				 errtablecol(rel, Anum_orders_lines)));
	if (ARR_ELEMTYPE(arr) != cat->line_typid)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("lines must be an array of order_line"),
				 errdetail("The field is lines.")));

	n = ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
	if (n > ORDER_LINES_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("too many lines"),
				 errdetail("The field is lines. The order has %d lines; at most %d are allowed.",
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
			not_null_violation(rel, Anum_orders_lines, psprintf("lines[%d]", i + 1));

		amount = check_line(rel, cat, elem, i + 1, &products[i]);
		if (pg_add_s64_overflow(total, amount, &total))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("total is out of range for type bigint"),
					 errdetail("The field is total. The sum of quantity times unit_price exceeds %lld at lines[%d].",
							   (long long) PG_INT64_MAX, i + 1),
					 errtablecol(rel, Anum_orders_total)));
	}

	check_product_unique(rel, products, n);
	pfree(products);

	*checked = PointerGetDatum(arr);
	return total;
}

void
order_check_address(Relation rel, const OrdersCatalog *cat, Datum address, bool isnull)
{
	Datum		values_here[COMPOSITE_FIELDS_HERE];
	bool		nulls_here[COMPOSITE_FIELDS_HERE];
	Datum	   *values = COMPOSITE_ARRAY(values_here, cat->address_desc);
	bool	   *nulls = COMPOSITE_ARRAY(nulls_here, cat->address_desc);
	static const char *const field_names[Natts_address] = {
		"street", "city", "postal_code", "country"
	};
	static const int max_chars[Anum_address_country - 1] = {STREET_MAX, CITY_MAX, POSTAL_CODE_MAX};
	int			i;
	text	   *country;

	if (isnull)
		return;

	composite_fields(address, cat->address_desc, values, nulls);

	for (i = 0; i < Natts_address; i++)
		if (nulls[i])
			not_null_violation(rel, Anum_orders_shipping_address,
							   psprintf("shipping_address.%s", field_names[i]));

	/* every field but the country, which is a code */
	for (i = 0; i < Anum_address_country - 1; i++)
		check_text_field(rel, "order_address_fields", Anum_orders_shipping_address, 0,
						 field_names[i], values[i], max_chars[i]);

	country = DatumGetTextPP(values[Anum_address_country - 1]);
	if (!is_upper_ascii(VARDATA_ANY(country), VARSIZE_ANY_EXHDR(country), 2))
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("shipping_address.country must be two upper-case ASCII letters"),
				 errdetail("The field is shipping_address.country. The country is %s.",
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
order_check_removable(Relation rel, OrderStatus status, bool reveal)
{
	if (status == ORDER_CONFIRMED || status == ORDER_SHIPPED)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("order cannot be removed while it is in flight"),
				 reveal ?
				 errdetail("The field is status. The order's status is \"%s\".",
						   order_status_names[status]) :
				 errdetail("The field is status."),
				 errhint("Cancel a confirmed order, or wait until a shipped one is delivered."),
				 errviolation(rel, "order_remove_in_flight", Anum_orders_status)));
}

/*
 * Optimistic concurrency: the caller's expected version must be the stored
 * one.  40001 so that clients which retry serialization failures re-read and
 * retry.
 */
void
order_check_version(int32 stored, int32 expected, bool reveal)
{
	if (stored != expected)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("order was changed by someone else"),
				 reveal ?
				 errdetail("The field is version. Expected version %d, but the stored version is %d.",
						   expected, stored) :
				 errdetail("The field is version. Expected version %d, but the stored version differs.",
						   expected),
				 errhint("Read the order again, reapply the change and retry.")));
}

/* Every change, removal too, gives the order the next version. */
void
order_check_next_version(int32 version)
{
	if (version == PG_INT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("order has reached the highest version"),
				 errdetail("The field is version. Version %d is the largest an integer holds.",
						   PG_INT32_MAX)));
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
order_check_status_transition(Relation rel, OrderStatus from, OrderStatus to, bool reveal)
{
	if (from == to || status_transition_allowed(from, to))
		return;
	if (!reveal)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("status cannot move to \"%s\" from the stored status",
						order_status_names[to]),
				 errdetail("The field is status."),
				 errviolation(rel, "order_status_transition", Anum_orders_status)));
	ereport(ERROR,
			(errcode(ERRCODE_CHECK_VIOLATION),
			 errmsg("status cannot move from \"%s\" to \"%s\"",
					order_status_names[from], order_status_names[to]),
			 errdetail("The field is status."),
			 (from == ORDER_DELIVERED || from == ORDER_CANCELLED) ?
			 errhint("An order with status \"%s\" is final.", order_status_names[from]) :
			 errhint("Status moves pending, confirmed, shipped, delivered, one step at a time; "
					 "a pending or confirmed order can be cancelled."),
			 errviolation(rel, "order_status_transition", Anum_orders_status)));
}

/* Beyond pending (except cancelled), an order needs lines and an address. */
void
order_check_ready(Relation rel, OrderStatus status, int nlines, bool address_isnull)
{
	if (status == ORDER_PENDING || status == ORDER_CANCELLED)
		return;
	if (nlines == 0 || address_isnull)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("an order with status \"%s\" needs lines and a shipping address",
						order_status_names[status]),
				 nlines == 0 ?
				 errdetail("The field is lines. The order has no lines.") :
				 errdetail("The field is shipping_address. The order has no shipping address."),
				 errviolation(rel, "order_ready_to_confirm",
							  nlines == 0 ? Anum_orders_lines : Anum_orders_shipping_address)));
}

/*
 * Lines change only while the stored order is pending; the shipping address
 * only while it is pending or confirmed.  The stored status is the one that
 * counts, so one save may change the lines and confirm.  The rule says as
 * much about the stored status as a role that may not read it learns.
 */
void
order_check_frozen(Relation rel, OrderStatus stored, bool lines_changed,
				   bool address_changed, bool reveal)
{
	bool		lines_frozen = lines_changed && stored != ORDER_PENDING;
	bool		address_frozen = address_changed && stored != ORDER_PENDING &&
		stored != ORDER_CONFIRMED;

	if (lines_frozen || address_frozen)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 lines_frozen ?
				 errmsg("lines can change only while the order is pending") :
				 errmsg("shipping_address can change only while the order is pending or confirmed"),
				 reveal ?
				 errdetail("The field is %s. The order's status is \"%s\".",
						   lines_frozen ? "lines" : "shipping_address",
						   order_status_names[stored]) :
				 errdetail("The field is %s.", lines_frozen ? "lines" : "shipping_address"),
				 errviolation(rel, "order_frozen_after_confirm",
							  lines_frozen ? Anum_orders_lines : Anum_orders_shipping_address)));
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
order_check_immutable(Relation rel, int attnum, Datum stored, Datum given, bool reveal)
{
	Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
	const char *field = NameStr(att->attname);

	if (!order_field_equal(att->atttypid, stored, given))
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("%s cannot change", field),
				 reveal ?
				 errdetail("The field is %s. The stored %s is %s; the save gives %s.",
						   field, field,
						   detail_value(att->atttypid, stored),
						   detail_value(att->atttypid, given)) :
				 errdetail("The field is %s. The save gives %s %s, which is not the stored value.",
						   field, field, detail_value(att->atttypid, given)),
				 errviolation(rel, "order_immutable_fields", attnum)));
}
