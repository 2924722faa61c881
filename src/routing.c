/*
 * routing.c: on a Citus cluster, a call is sent to the node of its order.
 *
 * orders_distribute() (schema/cluster.sql) makes Citus delegate four
 * internal functions, orders_add_at, orders_get_at, orders_save_at and
 * orders_remove_at, to the node that holds the shard of their id argument.
 * A public call (orders_add ...) that runs on a node without its order's
 * shard, the coordinator or another worker, sends itself there as a call
 * of the _at function with every argument a constant: Citus delegates a
 * call only when its distribution argument is a constant, and the id of a
 * new order is known only once this node has generated it.  The caller's
 * orders.notify travels with the call, so that a transaction that writes
 * on two workers, and commits with two-phase commit, notifies as it asked
 * (off) on every node; so does its orders.event_metadata, which the events
 * written there carry.  A routed call that still finds its order elsewhere
 * (the shard moved, or orders_distribute() was never run) is an error,
 * never a second hop.  The _at functions themselves are api.c's: each
 * runs its public function through run_routed here.
 *
 * Citus 12.1 to 14.0 crash the backend that plans a delegated call whose
 * distribution argument is a NULL constant; the planner hook here refuses
 * such a call of an _at function before Citus sees it.  It is in place in
 * every session only when the library is preloaded, which
 * orders_distribute() requires on every node.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/transam.h"
#include "catalog/pg_language_d.h"
#include "catalog/pg_proc.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "optimizer/planner.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "orders.h"

PG_FUNCTION_INFO_V1(orders_distributed);

/*
 * The internal functions Citus delegates: which public function each one
 * stands for (found by its name alone: orders_add grew a fields argument
 * with 1.12, which its routed calls do not carry), which argument is the
 * order's id, the one Citus places the call by, and whether a write's last
 * argument is the sender's orders.notify.
 */
typedef struct RoutedFunction
{
	const char *name;
	const char *public_name;
	int			id_arg;
	bool		write;			/* false: a read, which notifies nothing */
} RoutedFunction;

static const RoutedFunction routed_functions[] = {
	{"orders_add_at", "orders_add", 4, true},
	{"orders_get_at", "orders_get", 0, false},
	{"orders_save_at", "orders_save", 1, true},
	{"orders_remove_at", "orders_remove", 0, true},
};

/* > 0 while an _at function runs: its order is here, or nowhere */
static int	routed_depth = 0;

static planner_hook_type prev_planner_hook = NULL;

static const RoutedFunction *
routed_function_named(const char *name)
{
	int			i;

	for (i = 0; i < (int) lengthof(routed_functions); i++)
		if (strcmp(routed_functions[i].name, name) == 0)
			return &routed_functions[i];
	return NULL;
}

/*
 * The order is held on another node: unless this call was itself routed,
 * the caller sends it there (routing_send).  Otherwise Citus placed the
 * call by metadata that no longer holds, or nothing delegates it.
 */
static void
routing_check_may_send(void)
{
	if (routed_depth == 0)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("order is held on another node of the Citus cluster"),
			 errdetail("The call was sent to this node, which holds no placement of the order's shard."),
			 errhint("Run orders_distribute() once on the coordinator, so that Citus sends each call to the node of its order.")));
}

/*
 * Points the call at the rows of the order whose id it now knows: for each
 * table of the call that Citus distributes, the shard of that order on this
 * node, locked as the table is, and held to the same rules as the table
 * (the layout the C code relies on; nothing a direct write would skip);
 * and the shard's own indexes.  False when another node holds the order:
 * the caller sends the call there (routing.c).  Elsewhere a table is its
 * own data, and this does nothing.
 */
bool
orders_route(OrdersCall *call, const pg_uuid_t *id)
{
	const OrdersCatalog *cat = call->cat;
	static const OrdersTable tables[] = {TABLE_ORDERS, TABLE_EVENTS};
	int			i;

	for (i = 0; i < (int) lengthof(tables); i++)
	{
		OrdersTable t = tables[i];
		Relation	shard;
		Oid			shard_relid;
		char	   *name;
		DirectWriteRefusal refusal;

		if (call->rel[t] == NULL || !cat->distributed[t])
			continue;
		shard_relid = citus_local_shard(cat->relids[t], UUIDPGetDatum(id), UUIDOID,
										call->locks[t]);
		/* colocated: the first table's shard tells for both */
		if (!OidIsValid(shard_relid))
		{
			routing_check_may_send();
			return false;
		}
		shard = table_open(shard_relid, NoLock);
		call->data[t] = shard;
		name = RelationGetRelationName(shard);
		check_shard_layout(call->rel[t], shard);
		if (t == TABLE_ORDERS)
			call->orders_pkey = check_primary_key(shard, name, Anum_orders_id, UUIDOID);
		else
		{
			call->events_order_index = find_events_order_index(shard);
			if (OidIsValid(cat->events_order_index) && !OidIsValid(call->events_order_index))
				layout_error("extension \"orders\" cannot use \"%s\": it has no index on (order_id, version)",
							 name);
		}
		if (call->locks[t] >= RowExclusiveLock &&
			(refusal = direct_write_refusal(shard, t == TABLE_ORDERS, &name)) != REFUSE_NOTHING)
			refuse_direct_write(RelationGetRelationName(shard), refusal, name);
	}
	return true;
}

/*
 * Runs "SELECT r FROM orders_internal.<function>(<constants>) r" in the caller's
 * transaction, as the caller, and returns r of its row (copied into the
 * caller's memory), or found = false when there is none.  Every argument
 * is a literal cast to its type by OID, so Citus sees constants, and no
 * name in the text is resolved through the caller's search_path.
 */
Datum
routing_send(const OrdersCatalog *cat, const char *function, int nargs,
			 const Oid *types, const Datum *values, const bool *nulls, bool *found)
{
	StringInfoData sql;
	int			i;
	int			ret;
	Datum		result = (Datum) 0;
	Oid			any_types[1] = {InvalidOid};	/* nargs -1: any signature */
	char	   *helpers = orders_schema_name(orders_helpers_namespace(cat->namespace_id));

	/* tables distributed by hand, under a version without the _at functions */
	if (!OidIsValid(LookupFuncName(list_make2(makeString(helpers),
											  makeString(unconstify(char *, function))),
								   -1, any_types, true)))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("order is held on another node of the Citus cluster"),
				 errhint("Update the extension (ALTER EXTENSION orders UPDATE) and run orders_distribute(), so that each call is sent to the node of its order.")));

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT r FROM %s.%s(",
					 quote_identifier(helpers), quote_identifier(function));
	for (i = 0; i < nargs; i++)
	{
		if (i > 0)
			appendStringInfoString(&sql, ", ");
		if (nulls[i])
			appendStringInfoString(&sql, "NULL");
		else
		{
			Oid			output;
			bool		varlena;

			getTypeOutputInfo(types[i], &output, &varlena);
			appendStringInfoString(&sql,
								   quote_literal_cstr(OidOutputFunctionCall(output, values[i])));
		}
		appendStringInfo(&sql, "::%s", format_type_be_qualified(types[i]));
	}
	appendStringInfoString(&sql, ") r");

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute(sql.data, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "routed call %s returned %s", function, SPI_result_code_string(ret));
	*found = SPI_processed > 0;
	if (*found)
	{
		bool		isnull;
		Datum		r = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (isnull)
			*found = false;
		else
			result = SPI_datumTransfer(r, false, -1);
	}
	SPI_finish();
	pfree(sql.data);
	return result;
}

/*
 * An _at function: may the caller call the public function it stands for?
 * Then runs it with the sending node's orders.notify, as a routed call.
 */
Datum
run_routed(FunctionCallInfo fcinfo, PGFunction body)
{
	Oid			fn_oid = fcinfo->flinfo->fn_oid;
	char	   *name = get_func_name(fn_oid);
	const RoutedFunction *routed = name != NULL ? routed_function_named(name) : NULL;
	Oid		   *argtypes;
	int			nargs;
	Oid			public_oid;
	AclResult	acl;
	int			saved_notify = orders_routed_notify;
	char	   *saved_metadata = orders_routed_metadata;
	int			notify = -1;
	char	   *metadata = NULL;
	volatile Datum result = (Datum) 0;

	if (routed == NULL)
		elog(ERROR, "function %u is not one of orders' routed functions", fn_oid);
	(void) get_func_signature(fn_oid, &argtypes, &nargs);
	public_oid = LookupFuncName(list_make2(makeString(orders_schema_name(called_function_namespace(fcinfo))),
										   makeString(unconstify(char *, routed->public_name))),
								-1, argtypes, false);
	acl = function_aclcheck(public_oid, GetUserId(), ACL_EXECUTE);
	if (acl != ACLCHECK_OK)
		aclcheck_error(acl, OBJECT_FUNCTION, routed->public_name);
	if (PG_ARGISNULL(routed->id_arg))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("order id must not be null")));

	/* the sender's settings: "mode" or "mode metadata" (routing_settings) */
	if (routed->write)
	{
		char	   *mode = text_to_cstring(PG_GETARG_TEXT_PP(nargs - 1));
		char	   *space = strchr(mode, ' ');

		metadata = "";
		if (space != NULL)
		{
			*space = '\0';
			metadata = space + 1;
		}
		if (strcmp(mode, "off") == 0)
			notify = NOTIFY_OFF;
		else if (strcmp(mode, "on") == 0)
			notify = NOTIFY_ON;
		else if (strcmp(mode, "relay") == 0)
			notify = NOTIFY_RELAY;
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid value for orders.notify: \"%s\"", mode)));
	}
	routed_depth++;
	PG_TRY();
	{
		/* set here, so that the PG_FINALLY below restores them whatever happens */
		if (routed->write)
		{
			orders_routed_notify = notify;
			orders_routed_metadata = metadata;
		}
		result = body(fcinfo);
	}
	PG_FINALLY();
	{
		routed_depth--;
		orders_routed_notify = saved_notify;
		orders_routed_metadata = saved_metadata;
	}
	PG_END_TRY();
	return result;
}

/* orders_distributed() RETURNS boolean: whether Citus distributes the outbox */
Datum
orders_distributed(PG_FUNCTION_ARGS)
{
	static const LOCKMODE no_locks[TABLE_COUNT] = {NoLock, NoLock, NoLock};
	OrdersCall	call;
	const OrdersCatalog *cat = orders_open(fcinfo, no_locks, &call);
	bool		distributed = cat->distributed[TABLE_EVENTS];

	orders_close(&call);
	PG_RETURN_BOOL(distributed);
}

/*
 * The settings that a routed write carries to the node of its order:
 * orders.notify, then, after a space, orders.event_metadata when it is set.
 * One text argument of the _at functions, so that 1.7's serve.
 */
char *
routing_settings(void)
{
	const char *mode;
	const char *metadata = orders_event_metadata_effective();

	switch (orders_notify_effective())
	{
		case NOTIFY_OFF:
			mode = "off";
			break;
		case NOTIFY_RELAY:
			mode = "relay";
			break;
		default:
			mode = "on";
			break;
	}
	if (metadata == NULL || metadata[0] == '\0')
		return pstrdup(mode);
	return psprintf("%s %s", mode, metadata);
}

/* Whether funcid is one of the _at functions of this library, and which. */
static const RoutedFunction *
routed_function(Oid funcid)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	const RoutedFunction *routed = NULL;

	if (!HeapTupleIsValid(tup))
		return NULL;
	if (((Form_pg_proc) GETSTRUCT(tup))->prolang == ClanguageId)
	{
		routed = routed_function_named(NameStr(((Form_pg_proc) GETSTRUCT(tup))->proname));
		if (routed != NULL)
		{
			bool		isnull;
			Datum		probin = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_probin, &isnull);

			if (isnull || strcmp(TextDatumGetCString(probin), "$libdir/orders") != 0)
				routed = NULL;
		}
	}
	ReleaseSysCache(tup);
	return routed;
}

/*
 * Refuses a call of an _at function whose id is NULL once the planner has
 * folded it: Citus looks at the call after standard_planner has folded
 * constants and substituted the values of parameters that are constants
 * (a PL/pgSQL EXECUTE ... USING), so NULL::text::uuid or USING NULL is a
 * NULL constant by then.  Folded here the same way, more eagerly if
 * anything: a NULL id is an error wherever the call would run.
 */
static void
refuse_null_id(Node *node, ParamListInfo boundParams)
{
	FuncExpr   *call;
	const RoutedFunction *routed;
	Node	   *id = NULL;
	ListCell   *lc;
	int			position = 0;
	PlannerInfo *root;

	if (node == NULL || !IsA(node, FuncExpr))
		return;
	call = (FuncExpr *) node;
	routed = routed_function(call->funcid);
	if (routed == NULL)
		return;
	foreach(lc, call->args)
	{
		Node	   *arg = lfirst(lc);
		int			argno = position++;

		if (IsA(arg, NamedArgExpr))
		{
			argno = ((NamedArgExpr *) arg)->argnumber;
			arg = (Node *) ((NamedArgExpr *) arg)->arg;
		}
		if (argno == routed->id_arg)
			id = arg;
	}
	if (id == NULL)
		return;
	root = makeNode(PlannerInfo);
	root->glob = makeNode(PlannerGlobal);
	root->glob->boundParams = boundParams;
	id = strip_implicit_coercions(estimate_expression_value(root, copyObject(id)));
	if (IsA(id, Const) && ((Const *) id)->constisnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("order id must not be null")));
}

/*
 * Every call of an _at function anywhere in the query: the planner may
 * pull a subquery or a CTE up into the single call Citus delegates.  The
 * library's functions have OIDs above the built-in ones, so the calls of
 * built-in functions, most of any query's, cost one comparison.
 */
static bool
refuse_null_ids_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, FuncExpr) && ((FuncExpr *) node)->funcid >= FirstNormalObjectId)
		refuse_null_id(node, (ParamListInfo) context);
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, refuse_null_ids_walker, context, 0);
	return expression_tree_walker(node, refuse_null_ids_walker, context);
}

/* Before Citus plans a query. */
static PlannedStmt *
routing_planner(Query *parse, const char *query_string, int cursorOptions,
				ParamListInfo boundParams)
{
	if (parse->commandType == CMD_SELECT)
		(void) query_tree_walker(parse, refuse_null_ids_walker, boundParams, 0);
	if (prev_planner_hook != NULL)
		return prev_planner_hook(parse, query_string, cursorOptions, boundParams);
	return standard_planner(parse, query_string, cursorOptions, boundParams);
}

void
routing_init(void)
{
	prev_planner_hook = planner_hook;
	planner_hook = routing_planner;
}
