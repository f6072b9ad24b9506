/* coffre — the database schema: every migration coffre applies, in order. Each part that
 * keeps state adds its tables here, at the end, never editing a shipped migration.
 * PostgreSQL: tables are owned by the migrating role; the runtime role gets rights
 * through the NOLOGIN group role coffre_runtime (docs/storage.md); tables holding tenant
 * data also get FORCE ROW LEVEL SECURITY with a policy on coffre.tenant. */
#include "store/store.h"

const struct cf_migration cf_store_schema[] = {
        {1, "deployment",
         /* One row: this deployment's identity (the audit log's origin names it). */
         "CREATE TABLE deployment ("
         " id INTEGER PRIMARY KEY CHECK (id = 1),"
         " deployment_id TEXT NOT NULL,"
         " created_at INTEGER NOT NULL) STRICT;"
         "INSERT INTO deployment VALUES (1, lower(hex(randomblob(16))),"
         " CAST(strftime('%s','now') AS INTEGER))",
         "CREATE TABLE deployment ("
         " id INTEGER PRIMARY KEY CHECK (id = 1),"
         " deployment_id TEXT NOT NULL,"
         " created_at BIGINT NOT NULL);"
         "INSERT INTO deployment VALUES (1, replace(gen_random_uuid()::text, '-', ''),"
         " extract(epoch from now())::bigint);"
         "GRANT SELECT ON deployment TO coffre_runtime"},
        {2, "tenants",
         /* ER7: the data store remembers which keystore (and environment) it belongs to.
          * Tenants: deployment-wide rows (an operator lists them); their data rows carry
          * tenant_id. 'deleting' marks a deletion that must finish (crypto-shredding). */
         "ALTER TABLE deployment ADD COLUMN keystore_id TEXT;"
         "ALTER TABLE deployment ADD COLUMN environment TEXT;"
         "CREATE TABLE tenants ("
         " tenant_id TEXT PRIMARY KEY,"
         " name TEXT NOT NULL UNIQUE,"
         " state TEXT NOT NULL CHECK (state IN ('active', 'suspended', 'deleting')),"
         " created_at INTEGER NOT NULL) STRICT",
         "ALTER TABLE deployment ADD COLUMN keystore_id TEXT;"
         "ALTER TABLE deployment ADD COLUMN environment TEXT;"
         "GRANT UPDATE (keystore_id, environment) ON deployment TO coffre_runtime;"
         "CREATE TABLE tenants ("
         " tenant_id TEXT PRIMARY KEY,"
         " name TEXT NOT NULL UNIQUE,"
         " state TEXT NOT NULL CHECK (state IN ('active', 'suspended', 'deleting')),"
         " created_at BIGINT NOT NULL);"
         "GRANT SELECT, INSERT, UPDATE, DELETE ON tenants TO coffre_runtime"},
};
const size_t cf_store_schema_count = sizeof cf_store_schema / sizeof cf_store_schema[0];

cf_err cf_store_open_coffre(const char *url, const char *migrate_url, bool migrate,
                            struct cf_store **out)
{
	struct cf_store_opts o = {
	        .url = url,
	        .migrate_url = migrate_url && migrate_url[0] ? migrate_url : NULL,
	        .migrations = cf_store_schema,
	        .nmigrations = cf_store_schema_count,
	        .migrate = migrate,
	};
	return cf_store_open(&o, out);
}
