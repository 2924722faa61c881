-- A fresh install: the extension, its members and its tables.
CREATE EXTENSION orders;

SELECT extname, extversion, extrelocatable, nspname
FROM pg_extension JOIN pg_namespace n ON n.oid = extnamespace
WHERE extname = 'orders';

-- On 17 and 18, array types and tables' row types are listed as members too;
-- they come with the members below, on every major.
SELECT pg_describe_object(classid, objid, 0) AS member
FROM pg_depend
WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'orders')
  AND NOT EXISTS (SELECT FROM pg_type t LEFT JOIN pg_class c ON c.oid = t.typrelid
                  WHERE classid = 'pg_type'::regclass AND t.oid = objid
                    AND (t.typcategory = 'A' OR c.relkind IN ('r', 'p')))
ORDER BY 1;

\d orders
\d order_events

\i test/regress/cleanup.sql
