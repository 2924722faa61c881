/*
 * trust.c: whether the extension's schema, and the members of the
 * extension, can be trusted with a superuser's calls.
 *
 * The install and update scripts refuse a schema that cannot be
 * (orders_assert_trusted_schema), and the relay worker, which runs as the
 * bootstrap superuser, asks before every pass (relay.c).
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_authid_d.h"
#include "catalog/pg_database.h"
#include "catalog/pg_depend.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "orders.h"

/* The role a grant or an ownership means: pg_database_owner is the database's owner. */
static Oid
role_standing_for(Oid role)
{
	HeapTuple	dbtup;

	if (role != ROLE_PG_DATABASE_OWNER)
		return role;
	dbtup = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(MyDatabaseId));
	if (HeapTupleIsValid(dbtup))
	{
		role = ((Form_pg_database) GETSTRUCT(dbtup))->datdba;
		ReleaseSysCache(dbtup);
	}
	return role;
}

/*
 * Whether acl grants a privilege of mask to PUBLIC or to a role that is
 * not a superuser (pg_database_owner standing for the database's owner);
 * *grantee is that role, or ACL_ID_PUBLIC.
 */
static bool
acl_grants_untrusted(Datum aclDatum, AclMode mask, Oid *grantee)
{
	Acl		   *acl = DatumGetAclP(aclDatum);
	AclItem    *items = ACL_DAT(acl);
	int			i;

	for (i = 0; i < ACL_NUM(acl); i++)
	{
		Oid			role = role_standing_for(items[i].ai_grantee);

		if ((ACLITEM_GET_PRIVS(items[i]) & mask) != 0 &&
			(role == ACL_ID_PUBLIC || !superuser_arg(role)))
		{
			*grantee = role;
			return true;
		}
	}
	return false;
}

/*
 * Why a member of the extension could run a non-superuser's code when a
 * superuser uses it, or NULL: every member relation, function and type
 * must be owned by a superuser, and nobody else may put a trigger on, or a
 * foreign key to, its tables (code that would run inside our writes).
 */
static char *
member_untrusted(Oid ext)
{
	Relation	dep = table_open(DependRelationId, AccessShareLock);
	ScanKeyData key[2];
	SysScanDesc scan;
	HeapTuple	tup;
	char	   *reason = NULL;

	ScanKeyInit(&key[0], Anum_pg_depend_refclassid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(ExtensionRelationId));
	ScanKeyInit(&key[1], Anum_pg_depend_refobjid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(ext));
	scan = systable_beginscan(dep, DependReferenceIndexId, true, NULL, 2, key);
	while (reason == NULL && HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_depend d = (Form_pg_depend) GETSTRUCT(tup);
		Oid			owner = InvalidOid;
		Oid			grantee;
		bool		granted = false;

		if (d->deptype != DEPENDENCY_EXTENSION)
			continue;
		if (d->classid == RelationRelationId)
		{
			HeapTuple	rtup = SearchSysCache1(RELOID, ObjectIdGetDatum(d->objid));
			bool		isnull;
			Datum		acl;

			if (!HeapTupleIsValid(rtup))
				continue;
			owner = ((Form_pg_class) GETSTRUCT(rtup))->relowner;
			acl = SysCacheGetAttr(RELOID, rtup, Anum_pg_class_relacl, &isnull);
			if (!isnull)
				granted = acl_grants_untrusted(acl, ACL_TRIGGER | ACL_REFERENCES, &grantee);
			ReleaseSysCache(rtup);
		}
		else if (d->classid == ProcedureRelationId)
		{
			HeapTuple	ptup = SearchSysCache1(PROCOID, ObjectIdGetDatum(d->objid));

			if (!HeapTupleIsValid(ptup))
				continue;
			owner = ((Form_pg_proc) GETSTRUCT(ptup))->proowner;
			ReleaseSysCache(ptup);
		}
		else if (d->classid == TypeRelationId)
		{
			HeapTuple	ttup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(d->objid));

			Form_pg_type typ;

			if (!HeapTupleIsValid(ttup))
				continue;
			typ = (Form_pg_type) GETSTRUCT(ttup);
			/*
			 * A table's row type and an array type are members too on 17
			 * and 18; their owner is their table's or element's, judged
			 * there.
			 */
			if (!IsTrueArrayType(typ) &&
				!(OidIsValid(typ->typrelid) &&
				  get_rel_relkind(typ->typrelid) != RELKIND_COMPOSITE_TYPE))
				owner = typ->typowner;
			ReleaseSysCache(ttup);
		}
		else
			continue;
		if (OidIsValid(owner) && !superuser_arg(owner))
			reason = psprintf("Its member %s is owned by role \"%s\", not a superuser",
							  getObjectDescriptionOids(d->classid, d->objid),
							  orders_role_name(owner));
		else if (granted)
			reason = psprintf("A role that is not a superuser may create triggers on, or references to, %s",
							  getObjectDescriptionOids(d->classid, d->objid));
	}
	systable_endscan(scan);
	table_close(dep, AccessShareLock);
	return reason;
}

/*
 * The SQL functions name the schema as it was called when they were
 * installed.  If it was renamed since, that name may now be another
 * schema's, one a role that may create schemas made: the functions would
 * run its objects.  The body of orders_installed_schema(), a member of the
 * extension, holds the name they use; it is read, never run.
 */
static char *
schema_renamed(Oid nsp, const char *current, Oid ext, Oid internal)
{
	oidvector  *noargs = buildoidvector(NULL, 0);
	Oid			fn = GetSysCacheOid3(PROCNAMEARGSNSP, Anum_pg_proc_oid,
									 CStringGetDatum("orders_installed_schema"),
									 PointerGetDatum(noargs),
									 ObjectIdGetDatum(OidIsValid(internal) ? internal : nsp));
	HeapTuple	tup;
	bool		isnull;
	Datum		src;
	char	   *expected;
	bool		same;

	if (!OidIsValid(fn))
		return pstrdup("The extension is installed at a version before 1.4, whose SQL functions "
					   "cannot be checked; run ALTER EXTENSION orders UPDATE");
	if (getExtensionOfObject(ProcedureRelationId, fn) != ext)
		return pstrdup("Its function orders_installed_schema() is not the extension's");
	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(tup))
		return NULL;
	src = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_prosrc, &isnull);
	expected = psprintf("SELECT '%s'::pg_catalog.text", quote_identifier(current));
	same = !isnull && strcmp(TextDatumGetCString(src), expected) == 0;
	ReleaseSysCache(tup);
	if (same)
		return NULL;
	return pstrdup("It was renamed after the extension was installed, and the extension's "
				   "SQL functions still name it as it was");
}

/*
 * Whether a role other than a superuser owns schema tup or may create in
 * it.  The install schema is "it" in the reason; the internal schema is
 * named, as "its schema".
 */
static char *
schema_roles_untrusted(HeapTuple tup, bool internal)
{
	Oid			owner = role_standing_for(((Form_pg_namespace) GETSTRUCT(tup))->nspowner);
	Oid			grantee;
	Datum		aclDatum;
	bool		isnull;
	const char *where;

	if (!superuser_arg(owner))
		return internal ?
			psprintf("Its schema \"%s\" is owned by role \"%s\", not a superuser",
					 ORDERS_INTERNAL_SCHEMA, orders_role_name(owner)) :
			psprintf("Its owner, role \"%s\", is not a superuser", orders_role_name(owner));
	aclDatum = SysCacheGetAttr(NAMESPACEOID, tup, Anum_pg_namespace_nspacl, &isnull);
	if (isnull || !acl_grants_untrusted(aclDatum, ACL_CREATE, &grantee))
		return NULL;
	where = internal ? psprintf("its schema \"%s\"", ORDERS_INTERNAL_SCHEMA) : "it";
	if (grantee == ACL_ID_PUBLIC)
		return psprintf("Every role (PUBLIC) may create objects in %s", where);
	return psprintf("Role \"%s\", not a superuser, may create objects in %s",
					orders_role_name(grantee), where);
}

/*
 * Why the extension's internal schema cannot be trusted, or NULL; *internal
 * is set to it when it exists.  The SQL functions name it as they name the
 * install schema, so it is judged the same way, and it must still be the
 * extension's member under that name: after ours was renamed, a schema of
 * that name made by any role that may create schemas would have the
 * functions run its objects.  A member schema cannot be dropped without
 * its extension, so none means a version before 1.11, whose SQL functions
 * name no such schema: there is nothing to judge.
 */
static char *
internal_schema_untrusted(Oid ext, Oid *internal)
{
	Oid			nsp = orders_member_schema(ext);
	char	   *name;
	HeapTuple	tup;
	char	   *reason;

	*internal = InvalidOid;
	if (!OidIsValid(nsp))
		return NULL;
	name = get_namespace_name(nsp);
	if (name == NULL || strcmp(name, ORDERS_INTERNAL_SCHEMA) != 0)
		return name == NULL ?
			psprintf("Its schema \"%s\" was dropped", ORDERS_INTERNAL_SCHEMA) :
			psprintf("Its schema \"%s\" was renamed to \"%s\", and the extension's SQL "
					 "functions still name it as it was", ORDERS_INTERNAL_SCHEMA, name);
	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));
	if (!HeapTupleIsValid(tup))
		return psprintf("Schema %u does not exist", nsp);
	reason = schema_roles_untrusted(tup, true);
	ReleaseSysCache(tup);
	*internal = nsp;
	return reason;
}

/*
 * Why schema nsp cannot be trusted with the extension's SQL functions, or
 * NULL when it can.  Those functions name their helpers and tables by the
 * schema's name, fixed at install: whoever owns the schema can rename it
 * and put look-alikes under the old name, and whoever may create in it can
 * add objects beside ours.  Only superusers may do either.  Then the name
 * must still be the one the functions use, and no member of the extension
 * may let another role's code run inside a superuser's call.
 *
 * The reason is one sentence, whole but for its final period, which the
 * message that quotes it adds: errdetail("%s.", reason).
 */
char *
orders_schema_untrusted(Oid nsp)
{
	HeapTuple	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));
	Form_pg_namespace form;
	Oid			ext;
	Oid			internal = InvalidOid;
	char	   *reason;

	if (!HeapTupleIsValid(tup))
		return psprintf("Schema %u does not exist", nsp);
	form = (Form_pg_namespace) GETSTRUCT(tup);
	reason = schema_roles_untrusted(tup, false);
	ext = get_extension_oid("orders", true);
	if (reason == NULL && OidIsValid(ext))
		reason = internal_schema_untrusted(ext, &internal);
	if (reason == NULL && OidIsValid(ext))
		reason = schema_renamed(nsp, NameStr(form->nspname), ext, internal);
	if (reason == NULL && OidIsValid(ext))
		reason = member_untrusted(ext);
	ReleaseSysCache(tup);
	return reason;
}

/*
 * orders_assert_trusted_schema(): refuses the extension's schema when it,
 * or the internal schema, cannot be trusted; the install and update
 * scripts call it first.  Called in the internal schema, it judges the
 * install schema (called_function_namespace).
 */
PG_FUNCTION_INFO_V1(orders_assert_trusted_schema);

Datum
orders_assert_trusted_schema(PG_FUNCTION_ARGS)
{
	Oid			nsp = called_function_namespace(fcinfo);
	char	   *reason = orders_schema_untrusted(nsp);

	if (reason != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("extension \"orders\" cannot be installed in schema \"%s\"",
						get_namespace_name(nsp)),
				 errdetail("%s. Whoever owns the schema or may create in it "
						   "could make the extension's functions run code of theirs.",
						   reason),
				 errhint("Give the schema to a superuser and revoke CREATE on it from other roles; "
						 "or install the extension in a schema of its own: "
						 "CREATE SCHEMA orders; CREATE EXTENSION orders SCHEMA orders;")));
	PG_RETURN_VOID();
}
