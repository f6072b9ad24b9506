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
        {3, "audit",
         /* The audit log (DESIGN §6, src/audit/): entries in commit order, their leaf
          * tenant sequence number, index and hash once sequenced, the Merkle tree's
          * perfect subtrees above the leaves, and checkpoints. Triggers refuse any change
          * to a sequenced entry and any deletion (an attacker with the database's files
          * can drop them; the tree and the checkpoints then catch the edit). No row-level
          * security here: the sequencer reads every tenant's entries, and every tenant
          * query filters by tenant_id. SQLite commits in id order (one writer), so its
          * sequencer follows ids; PostgreSQL commits out of id order, so it finds
          * unsequenced entries through a partial index. */
         "ALTER TABLE deployment ADD COLUMN audit_origin TEXT;"
         "ALTER TABLE deployment ADD COLUMN audit_public_key BLOB;"
         "CREATE TABLE audit_entries ("
         " id INTEGER PRIMARY KEY AUTOINCREMENT,"
         " tenant_id TEXT NOT NULL,"
         " seq INTEGER,"
         " time_us INTEGER NOT NULL,"
         " action TEXT NOT NULL,"
         " outcome INTEGER NOT NULL,"
         " actor TEXT NOT NULL,"
         " resource TEXT NOT NULL,"
         " body BLOB NOT NULL,"
         " leaf_index INTEGER UNIQUE,"
         " leaf_hash BLOB,"
         " UNIQUE (tenant_id, seq)) STRICT;"
         "CREATE TABLE audit_seq (tenant_id TEXT PRIMARY KEY, next INTEGER NOT NULL) STRICT;"
         "CREATE TRIGGER audit_entries_sealed BEFORE UPDATE ON audit_entries"
         " WHEN OLD.leaf_index IS NOT NULL"
         " BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;"
         "CREATE TRIGGER audit_entries_kept BEFORE DELETE ON audit_entries"
         " BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;"
         "CREATE TABLE audit_nodes ("
         " level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,"
         " PRIMARY KEY (level, idx)) STRICT, WITHOUT ROWID;"
         "CREATE TABLE audit_tree (id INTEGER PRIMARY KEY CHECK (id = 1),"
         " size INTEGER NOT NULL, last_id INTEGER NOT NULL) STRICT;"
         "CREATE TABLE audit_checkpoints (size INTEGER PRIMARY KEY, root BLOB NOT NULL,"
         " note TEXT NOT NULL, created_at INTEGER NOT NULL) STRICT",
         "ALTER TABLE deployment ADD COLUMN audit_origin TEXT;"
         "ALTER TABLE deployment ADD COLUMN audit_public_key BYTEA;"
         "GRANT UPDATE (audit_origin, audit_public_key) ON deployment TO coffre_runtime;"
         "CREATE TABLE audit_entries ("
         " id BIGSERIAL PRIMARY KEY,"
         " tenant_id TEXT NOT NULL,"
         " seq BIGINT,"
         " time_us BIGINT NOT NULL,"
         " action TEXT NOT NULL,"
         " outcome BIGINT NOT NULL,"
         " actor TEXT NOT NULL,"
         " resource TEXT NOT NULL,"
         " body BYTEA NOT NULL,"
         " leaf_index BIGINT UNIQUE,"
         " leaf_hash BYTEA,"
         " UNIQUE (tenant_id, seq));"
         "CREATE INDEX audit_unsequenced ON audit_entries (id) WHERE leaf_index IS NULL;"
         "CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS"
         " $f$ BEGIN RAISE EXCEPTION 'audit entries are append-only'; END $f$;"
         "CREATE TRIGGER audit_entries_sealed BEFORE UPDATE ON audit_entries FOR EACH ROW"
         " WHEN (OLD.leaf_index IS NOT NULL) EXECUTE FUNCTION audit_append_only();"
         "CREATE TRIGGER audit_entries_kept BEFORE DELETE ON audit_entries FOR EACH ROW"
         " EXECUTE FUNCTION audit_append_only();"
         "CREATE TABLE audit_seq (tenant_id TEXT PRIMARY KEY, next BIGINT NOT NULL);"
         "CREATE TABLE audit_nodes (level BIGINT NOT NULL, idx BIGINT NOT NULL,"
         " hash BYTEA NOT NULL, PRIMARY KEY (level, idx));"
         "CREATE TABLE audit_tree (id BIGINT PRIMARY KEY CHECK (id = 1), size BIGINT NOT NULL,"
         " last_id BIGINT NOT NULL);"
         "CREATE TABLE audit_checkpoints (size BIGINT PRIMARY KEY, root BYTEA NOT NULL,"
         " note TEXT NOT NULL, created_at BIGINT NOT NULL);"
         "GRANT SELECT, INSERT ON audit_entries, audit_nodes, audit_checkpoints TO coffre_runtime;"
         "GRANT UPDATE (leaf_index, leaf_hash, seq, body) ON audit_entries TO coffre_runtime;"
         "GRANT USAGE ON SEQUENCE audit_entries_id_seq TO coffre_runtime;"
         "GRANT SELECT, INSERT, UPDATE ON audit_seq, audit_tree TO coffre_runtime"},
        {4, "audit sinks",
         /* Where each audit sink stopped (the syslog sink's resume point). */
         "CREATE TABLE audit_sinks (name TEXT PRIMARY KEY, next_index INTEGER NOT NULL,"
         " last_checkpoint INTEGER NOT NULL) STRICT",
         "CREATE TABLE audit_sinks (name TEXT PRIMARY KEY, next_index BIGINT NOT NULL,"
         " last_checkpoint BIGINT NOT NULL);"
         "GRANT SELECT, INSERT, UPDATE ON audit_sinks TO coffre_runtime"},
        {5, "audit retention",
         /* Pruning (AL1's retention, 2 years by default): entries below audit_pruned.below
          * may be deleted, by the pruning alone; everything else stays append-only. The
          * checkpoints and the tree's subtrees are kept, so the rest still verifies. */
         "CREATE TABLE audit_pruned (id INTEGER PRIMARY KEY CHECK (id = 1),"
         " below INTEGER NOT NULL, pruned_at INTEGER NOT NULL) STRICT;"
         "DROP TRIGGER audit_entries_kept;"
         "CREATE TRIGGER audit_entries_kept BEFORE DELETE ON audit_entries"
         " WHEN OLD.leaf_index IS NULL"
         " OR OLD.leaf_index >= coalesce((SELECT below FROM audit_pruned WHERE id = 1), 0)"
         " BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END",
         "CREATE TABLE audit_pruned (id BIGINT PRIMARY KEY CHECK (id = 1),"
         " below BIGINT NOT NULL, pruned_at BIGINT NOT NULL);"
         "CREATE FUNCTION audit_keep() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN"
         " IF OLD.leaf_index IS NULL OR OLD.leaf_index >="
         " coalesce((SELECT below FROM audit_pruned WHERE id = 1), 0) THEN"
         " RAISE EXCEPTION 'audit entries are append-only'; END IF; RETURN OLD; END $f$;"
         "DROP TRIGGER audit_entries_kept ON audit_entries;"
         "CREATE TRIGGER audit_entries_kept BEFORE DELETE ON audit_entries FOR EACH ROW"
         " EXECUTE FUNCTION audit_keep();"
         "GRANT SELECT, INSERT, UPDATE ON audit_pruned TO coffre_runtime;"
         "GRANT DELETE ON audit_entries TO coffre_runtime"},
        {6, "identity",
         /* Identity (src/auth/, IA1-IA13): a tenant's users, custom roles, the roles
          * granted to users and API clients, login sessions (an HMAC of their id), API
          * clients (an HMAC of their secret), revoked access tokens, and single-use setup
          * and reset links (an HMAC of their token). Every row is a tenant's: on
          * PostgreSQL row-level security hides other tenants' rows (TI1). */
         "CREATE TABLE users (tenant_id TEXT NOT NULL, user_id TEXT NOT NULL, email TEXT NOT NULL, "
         "state TEXT NOT NULL CHECK (state IN ('invited', 'active', 'disabled')), password TEXT, "
         "password_at INTEGER, created_at INTEGER NOT NULL, last_login_at INTEGER, PRIMARY KEY "
         "(tenant_id, user_id), UNIQUE (tenant_id, email)) STRICT;"
         "CREATE TABLE roles (tenant_id TEXT NOT NULL, name TEXT NOT NULL, perms INTEGER NOT NULL, "
         "created_at INTEGER NOT NULL, PRIMARY KEY (tenant_id, name)) STRICT;"
         "CREATE TABLE grants (tenant_id TEXT NOT NULL, kind TEXT NOT NULL CHECK (kind IN ('user', "
         "'client')), principal_id TEXT NOT NULL, role TEXT NOT NULL, PRIMARY KEY (tenant_id, "
         "kind, principal_id, role)) STRICT;"
         "CREATE TABLE sessions (tenant_id TEXT NOT NULL, mac BLOB NOT NULL, user_id TEXT NOT "
         "NULL, created_at INTEGER NOT NULL, seen_at INTEGER NOT NULL, expires_at INTEGER NOT "
         "NULL, auth_at INTEGER NOT NULL, PRIMARY KEY (tenant_id, mac)) STRICT;"
         "CREATE TABLE clients (tenant_id TEXT NOT NULL, client_id TEXT NOT NULL, name TEXT NOT "
         "NULL, secret_mac BLOB NOT NULL, state TEXT NOT NULL CHECK (state IN ('active', "
         "'disabled')), created_at INTEGER NOT NULL, last_used_at INTEGER, PRIMARY KEY (tenant_id, "
         "client_id)) STRICT;"
         "CREATE TABLE tokens_revoked (tenant_id TEXT NOT NULL, jti TEXT NOT NULL, expires_at "
         "INTEGER NOT NULL, PRIMARY KEY (tenant_id, jti)) STRICT;"
         "CREATE TABLE auth_links (tenant_id TEXT NOT NULL, mac BLOB NOT NULL, user_id TEXT NOT "
         "NULL, kind TEXT NOT NULL CHECK (kind IN ('setup', 'reset')), expires_at INTEGER NOT "
         "NULL, used_at INTEGER, PRIMARY KEY (tenant_id, mac)) STRICT;"
         "CREATE INDEX sessions_user ON sessions (tenant_id, user_id)",
         "CREATE TABLE users (tenant_id TEXT NOT NULL, user_id TEXT NOT NULL, email TEXT NOT NULL, "
         "state TEXT NOT NULL CHECK (state IN ('invited', 'active', 'disabled')), password TEXT, "
         "password_at BIGINT, created_at BIGINT NOT NULL, last_login_at BIGINT, PRIMARY KEY "
         "(tenant_id, user_id), UNIQUE (tenant_id, email));"
         "CREATE TABLE roles (tenant_id TEXT NOT NULL, name TEXT NOT NULL, perms BIGINT NOT NULL, "
         "created_at BIGINT NOT NULL, PRIMARY KEY (tenant_id, name));"
         "CREATE TABLE grants (tenant_id TEXT NOT NULL, kind TEXT NOT NULL CHECK (kind IN ('user', "
         "'client')), principal_id TEXT NOT NULL, role TEXT NOT NULL, PRIMARY KEY (tenant_id, "
         "kind, principal_id, role));"
         "CREATE TABLE sessions (tenant_id TEXT NOT NULL, mac BYTEA NOT NULL, user_id TEXT NOT "
         "NULL, created_at BIGINT NOT NULL, seen_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, "
         "auth_at BIGINT NOT NULL, PRIMARY KEY (tenant_id, mac));"
         "CREATE TABLE clients (tenant_id TEXT NOT NULL, client_id TEXT NOT NULL, name TEXT NOT "
         "NULL, secret_mac BYTEA NOT NULL, state TEXT NOT NULL CHECK (state IN ('active', "
         "'disabled')), created_at BIGINT NOT NULL, last_used_at BIGINT, PRIMARY KEY (tenant_id, "
         "client_id));"
         "CREATE TABLE tokens_revoked (tenant_id TEXT NOT NULL, jti TEXT NOT NULL, expires_at "
         "BIGINT NOT NULL, PRIMARY KEY (tenant_id, jti));"
         "CREATE TABLE auth_links (tenant_id TEXT NOT NULL, mac BYTEA NOT NULL, user_id TEXT NOT "
         "NULL, kind TEXT NOT NULL CHECK (kind IN ('setup', 'reset')), expires_at BIGINT NOT NULL, "
         "used_at BIGINT, PRIMARY KEY (tenant_id, mac));"
         "CREATE INDEX sessions_user ON sessions (tenant_id, user_id);"
         "ALTER TABLE users ENABLE ROW LEVEL SECURITY;"
         "ALTER TABLE users FORCE ROW LEVEL SECURITY;"
         "CREATE POLICY tenant_only ON users"
         " USING (tenant_id = current_setting('coffre.tenant', true));"
         "ALTER TABLE roles ENABLE ROW LEVEL SECURITY;"
         "ALTER TABLE roles FORCE ROW LEVEL SECURITY;"
         "CREATE POLICY tenant_only ON roles"
         " USING (tenant_id = current_setting('coffre.tenant', true));"
         "ALTER TABLE grants ENABLE ROW LEVEL SECURITY;"
         "ALTER TABLE grants FORCE ROW LEVEL SECURITY;"
         "CREATE POLICY tenant_only ON grants"
         " USING (tenant_id = current_setting('coffre.tenant', true));"
         "ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;"
         "ALTER TABLE sessions FORCE ROW LEVEL SECURITY;"
         "CREATE POLICY tenant_only ON sessions"
         " USING (tenant_id = current_setting('coffre.tenant', true));"
         "ALTER TABLE clients ENABLE ROW LEVEL SECURITY;"
         "ALTER TABLE clients FORCE ROW LEVEL SECURITY;"
         "CREATE POLICY tenant_only ON clients"
         " USING (tenant_id = current_setting('coffre.tenant', true));"
         "ALTER TABLE tokens_revoked ENABLE ROW LEVEL SECURITY;"
         "ALTER TABLE tokens_revoked FORCE ROW LEVEL SECURITY;"
         "CREATE POLICY tenant_only ON tokens_revoked"
         " USING (tenant_id = current_setting('coffre.tenant', true));"
         "ALTER TABLE auth_links ENABLE ROW LEVEL SECURITY;"
         "ALTER TABLE auth_links FORCE ROW LEVEL SECURITY;"
         "CREATE POLICY tenant_only ON auth_links"
         " USING (tenant_id = current_setting('coffre.tenant', true));"
         "GRANT SELECT, INSERT, UPDATE, DELETE ON users, roles, grants, sessions, clients,"
         " tokens_revoked, auth_links TO coffre_runtime"},
        {7, "mfa",
         /* Two-factor authentication (IA6): each user's TOTP secret sealed under the
          * tenant's keys (with the KEK version, for the rewrap after a rotation), the last
          * time step used (no replay), recovery codes as HMACs, and the tenant's policy. */
         "CREATE TABLE mfa_totp (tenant_id TEXT NOT NULL, user_id TEXT NOT NULL, sealed BLOB NOT "
         "NULL, kek_version INTEGER NOT NULL, confirmed INTEGER NOT NULL, last_step INTEGER NOT "
         "NULL, created_at INTEGER NOT NULL, PRIMARY KEY (tenant_id, user_id)) STRICT;"
         "CREATE TABLE recovery_codes (tenant_id TEXT NOT NULL, user_id TEXT NOT NULL, mac BLOB "
         "NOT NULL, created_at INTEGER NOT NULL, used_at INTEGER, PRIMARY KEY (tenant_id, mac)) "
         "STRICT;"
         "CREATE TABLE tenant_policy (tenant_id TEXT NOT NULL PRIMARY KEY, mfa_required INTEGER "
         "NOT NULL) STRICT",
         "CREATE TABLE mfa_totp (tenant_id TEXT NOT NULL, user_id TEXT NOT NULL, sealed BYTEA NOT "
         "NULL, kek_version BIGINT NOT NULL, confirmed BIGINT NOT NULL, last_step BIGINT NOT NULL, "
         "created_at BIGINT NOT NULL, PRIMARY KEY (tenant_id, user_id));"
         "CREATE TABLE recovery_codes (tenant_id TEXT NOT NULL, user_id TEXT NOT NULL, mac BYTEA "
         "NOT NULL, created_at BIGINT NOT NULL, used_at BIGINT, PRIMARY KEY (tenant_id, mac));"
         "CREATE TABLE tenant_policy (tenant_id TEXT NOT NULL PRIMARY KEY, mfa_required BIGINT NOT "
         "NULL);"
         "ALTER TABLE mfa_totp ENABLE ROW LEVEL SECURITY;"
         "ALTER TABLE mfa_totp FORCE ROW LEVEL SECURITY;"
         "CREATE POLICY tenant_only ON mfa_totp"
         " USING (tenant_id = current_setting('coffre.tenant', true));"
         "ALTER TABLE recovery_codes ENABLE ROW LEVEL SECURITY;"
         "ALTER TABLE recovery_codes FORCE ROW LEVEL SECURITY;"
         "CREATE POLICY tenant_only ON recovery_codes"
         " USING (tenant_id = current_setting('coffre.tenant', true));"
         "ALTER TABLE tenant_policy ENABLE ROW LEVEL SECURITY;"
         "ALTER TABLE tenant_policy FORCE ROW LEVEL SECURITY;"
         "CREATE POLICY tenant_only ON tenant_policy"
         " USING (tenant_id = current_setting('coffre.tenant', true));"
         "GRANT SELECT, INSERT, UPDATE, DELETE ON mfa_totp, recovery_codes, tenant_policy"
         " TO coffre_runtime"},
        {8, "client origins",
         /* IA8: the web origins a browser client may call from (space-separated; empty:
          * not from a browser). */
         "ALTER TABLE clients ADD COLUMN origins TEXT NOT NULL DEFAULT ''",
         "ALTER TABLE clients ADD COLUMN origins TEXT NOT NULL DEFAULT ''"},
        {9, "mfa by role",
         /* IA6: the roles whose holders must use two-factor authentication (space-
          * separated), besides mfa_required for everyone. */
         "ALTER TABLE tenant_policy ADD COLUMN mfa_roles TEXT NOT NULL DEFAULT ''",
         "ALTER TABLE tenant_policy ADD COLUMN mfa_roles TEXT NOT NULL DEFAULT ''"},
        {10, "groups",
         /* IA1: groups of a tenant's users; a group's roles reach each member. */
         "CREATE TABLE user_groups (tenant_id TEXT NOT NULL, name TEXT NOT NULL, created_at "
         "INTEGER NOT NULL, PRIMARY KEY (tenant_id, name)) STRICT;"
         "CREATE TABLE group_members (tenant_id TEXT NOT NULL, group_name TEXT NOT NULL, user_id "
         "TEXT NOT NULL, PRIMARY KEY (tenant_id, group_name, user_id)) STRICT;"
         "CREATE TABLE group_roles (tenant_id TEXT NOT NULL, group_name TEXT NOT NULL, role TEXT "
         "NOT NULL, PRIMARY KEY (tenant_id, group_name, role)) STRICT;"
         "CREATE INDEX group_members_user ON group_members (tenant_id, user_id)",
         "CREATE TABLE user_groups (tenant_id TEXT NOT NULL, name TEXT NOT NULL, created_at BIGINT "
         "NOT NULL, PRIMARY KEY (tenant_id, name));"
         "CREATE TABLE group_members (tenant_id TEXT NOT NULL, group_name TEXT NOT NULL, user_id "
         "TEXT NOT NULL, PRIMARY KEY (tenant_id, group_name, user_id));"
         "CREATE TABLE group_roles (tenant_id TEXT NOT NULL, group_name TEXT NOT NULL, role TEXT "
         "NOT NULL, PRIMARY KEY (tenant_id, group_name, role));"
         "CREATE INDEX group_members_user ON group_members (tenant_id, user_id);"
         "ALTER TABLE user_groups ENABLE ROW LEVEL SECURITY;"
         "ALTER TABLE user_groups FORCE ROW LEVEL SECURITY;"
         "CREATE POLICY tenant_only ON user_groups"
         " USING (tenant_id = current_setting('coffre.tenant', true));"
         "ALTER TABLE group_members ENABLE ROW LEVEL SECURITY;"
         "ALTER TABLE group_members FORCE ROW LEVEL SECURITY;"
         "CREATE POLICY tenant_only ON group_members"
         " USING (tenant_id = current_setting('coffre.tenant', true));"
         "ALTER TABLE group_roles ENABLE ROW LEVEL SECURITY;"
         "ALTER TABLE group_roles FORCE ROW LEVEL SECURITY;"
         "CREATE POLICY tenant_only ON group_roles"
         " USING (tenant_id = current_setting('coffre.tenant', true));"
         "GRANT SELECT, INSERT, UPDATE, DELETE ON user_groups, group_members, group_roles"
         " TO coffre_runtime"},
        {11, "password policy",
         /* IA3: a tenant's minimum password length (12 to 128). */
         "ALTER TABLE tenant_policy ADD COLUMN password_min INTEGER NOT NULL DEFAULT 12",
         "ALTER TABLE tenant_policy ADD COLUMN password_min BIGINT NOT NULL DEFAULT 12"},
        {12, "break-glass",
         /* IA11: operators' emergency access to one tenant. Deployment-wide (operators list
          * every tenant's; each tenant's admins see theirs, by tenant_id). The check is
          * the database's own: the operator who asked never approves. */
         "CREATE TABLE break_glass (grant_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL,"
         " operator_id TEXT NOT NULL, reason TEXT NOT NULL,"
         " access TEXT NOT NULL CHECK (access IN ('read', 'write')),"
         " minutes INTEGER NOT NULL CHECK (minutes BETWEEN 1 AND 480),"
         " requested_at INTEGER NOT NULL, approved_by TEXT,"
         " approver_kind TEXT CHECK (approver_kind IN ('operator', 'owner')),"
         " approved_at INTEGER, expires_at INTEGER, ended_at INTEGER, ended_by TEXT,"
         " CHECK (approved_by IS NULL OR approver_kind = 'owner'"
         " OR approved_by <> operator_id)) STRICT;"
         "CREATE INDEX break_glass_tenant ON break_glass (tenant_id, operator_id)",
         "CREATE TABLE break_glass (grant_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL,"
         " operator_id TEXT NOT NULL, reason TEXT NOT NULL,"
         " access TEXT NOT NULL CHECK (access IN ('read', 'write')),"
         " minutes BIGINT NOT NULL CHECK (minutes BETWEEN 1 AND 480),"
         " requested_at BIGINT NOT NULL, approved_by TEXT,"
         " approver_kind TEXT CHECK (approver_kind IN ('operator', 'owner')),"
         " approved_at BIGINT, expires_at BIGINT, ended_at BIGINT, ended_by TEXT,"
         " CHECK (approved_by IS NULL OR approver_kind = 'owner'"
         " OR approved_by <> operator_id));"
         "CREATE INDEX break_glass_tenant ON break_glass (tenant_id, operator_id);"
         "GRANT SELECT, INSERT, UPDATE, DELETE ON break_glass TO coffre_runtime"},
        {13, "password policy settings",
         /* IA3: character classes, maximum age and history, off by default (NIST SP
          * 800-63B); the history keeps the hashes of a user's last passwords. */
         "ALTER TABLE tenant_policy ADD COLUMN password_classes INTEGER NOT NULL DEFAULT 0;"
         "ALTER TABLE tenant_policy ADD COLUMN password_max_age_days INTEGER NOT NULL"
         " DEFAULT 0;"
         "ALTER TABLE tenant_policy ADD COLUMN password_history INTEGER NOT NULL DEFAULT 0;"
         "CREATE TABLE password_history (tenant_id TEXT NOT NULL, user_id TEXT NOT NULL,"
         " phc TEXT NOT NULL, changed_at INTEGER NOT NULL,"
         " PRIMARY KEY (tenant_id, user_id, phc)) STRICT",
         "ALTER TABLE tenant_policy ADD COLUMN password_classes BIGINT NOT NULL DEFAULT 0;"
         "ALTER TABLE tenant_policy ADD COLUMN password_max_age_days BIGINT NOT NULL"
         " DEFAULT 0;"
         "ALTER TABLE tenant_policy ADD COLUMN password_history BIGINT NOT NULL DEFAULT 0;"
         "CREATE TABLE password_history (tenant_id TEXT NOT NULL, user_id TEXT NOT NULL,"
         " phc TEXT NOT NULL, changed_at BIGINT NOT NULL,"
         " PRIMARY KEY (tenant_id, user_id, phc));"
         "ALTER TABLE password_history ENABLE ROW LEVEL SECURITY;"
         "ALTER TABLE password_history FORCE ROW LEVEL SECURITY;"
         "CREATE POLICY tenant_only ON password_history"
         " USING (tenant_id = current_setting('coffre.tenant', true));"
         "GRANT SELECT, INSERT, UPDATE, DELETE ON password_history TO coffre_runtime"},
        {14, "authorisation versions",
         /* IA1: a tenant's authorisation version, moved by every change of grants, roles
          * and groups: cached permissions hold only while it stays (on every node). */
         "CREATE TABLE authz_versions (tenant_id TEXT PRIMARY KEY, version INTEGER NOT NULL)"
         " STRICT",
         "CREATE TABLE authz_versions (tenant_id TEXT PRIMARY KEY, version BIGINT NOT NULL);"
         "ALTER TABLE authz_versions ENABLE ROW LEVEL SECURITY;"
         "ALTER TABLE authz_versions FORCE ROW LEVEL SECURITY;"
         "CREATE POLICY tenant_only ON authz_versions"
         " USING (tenant_id = current_setting('coffre.tenant', true));"
         "GRANT SELECT, INSERT, UPDATE, DELETE ON authz_versions TO coffre_runtime"},
        {15, "collections and records",
         /* The vault (ER2, PV2, TI1): collections and their schema versions; records, each
          * version one sealed envelope (with the KEK version, for the rewrap after a
          * rotation); the clear values of fields marked filter, public or internal only. */
         "CREATE TABLE collections (tenant_id TEXT NOT NULL, name TEXT NOT NULL,"
         " version INTEGER NOT NULL, schema TEXT NOT NULL, created_at INTEGER NOT NULL,"
         " updated_at INTEGER NOT NULL, PRIMARY KEY (tenant_id, name)) STRICT;"
         "CREATE TABLE collection_versions (tenant_id TEXT NOT NULL, name TEXT NOT NULL,"
         " version INTEGER NOT NULL, schema TEXT NOT NULL, created_at INTEGER NOT NULL,"
         " PRIMARY KEY (tenant_id, name, version)) STRICT;"
         "CREATE TABLE records (tenant_id TEXT NOT NULL, collection TEXT NOT NULL,"
         " record_id TEXT NOT NULL, version INTEGER NOT NULL,"
         " schema_version INTEGER NOT NULL, created_at INTEGER NOT NULL,"
         " updated_at INTEGER NOT NULL, deleted_at INTEGER, PRIMARY KEY (tenant_id,"
         " collection, record_id)) STRICT;"
         "CREATE TABLE record_versions (tenant_id TEXT NOT NULL, collection TEXT NOT NULL,"
         " record_id TEXT NOT NULL, version INTEGER NOT NULL,"
         " schema_version INTEGER NOT NULL, kek_version INTEGER NOT NULL,"
         " sealed BLOB NOT NULL, created_at INTEGER NOT NULL, created_by TEXT NOT NULL,"
         " PRIMARY KEY (tenant_id, collection, record_id, version)) STRICT;"
         "CREATE INDEX record_versions_kek ON record_versions (tenant_id, kek_version);"
         "CREATE TABLE record_index (tenant_id TEXT NOT NULL, collection TEXT NOT NULL,"
         " record_id TEXT NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL,"
         " PRIMARY KEY (tenant_id, collection, record_id, field)) STRICT;"
         "CREATE INDEX record_index_value ON record_index (tenant_id, collection, field,"
         " value)",
         "CREATE TABLE collections (tenant_id TEXT NOT NULL, name TEXT NOT NULL,"
         " version BIGINT NOT NULL, schema TEXT NOT NULL, created_at BIGINT NOT NULL,"
         " updated_at BIGINT NOT NULL, PRIMARY KEY (tenant_id, name));"
         "CREATE TABLE collection_versions (tenant_id TEXT NOT NULL, name TEXT NOT NULL,"
         " version BIGINT NOT NULL, schema TEXT NOT NULL, created_at BIGINT NOT NULL,"
         " PRIMARY KEY (tenant_id, name, version));"
         "CREATE TABLE records (tenant_id TEXT NOT NULL, collection TEXT NOT NULL,"
         " record_id TEXT NOT NULL, version BIGINT NOT NULL,"
         " schema_version BIGINT NOT NULL, created_at BIGINT NOT NULL,"
         " updated_at BIGINT NOT NULL, deleted_at BIGINT, PRIMARY KEY (tenant_id,"
         " collection, record_id));CREATE TABLE record_versions (tenant_id TEXT NOT NULL,"
         " collection TEXT NOT NULL, record_id TEXT NOT NULL, version BIGINT NOT NULL,"
         " schema_version BIGINT NOT NULL, kek_version BIGINT NOT NULL,"
         " sealed BYTEA NOT NULL, created_at BIGINT NOT NULL, created_by TEXT NOT NULL,"
         " PRIMARY KEY (tenant_id, collection, record_id, version));"
         "CREATE INDEX record_versions_kek ON record_versions (tenant_id, kek_version);"
         "CREATE TABLE record_index (tenant_id TEXT NOT NULL, collection TEXT NOT NULL,"
         " record_id TEXT NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL,"
         " PRIMARY KEY (tenant_id, collection, record_id, field));"
         "CREATE INDEX record_index_value ON record_index (tenant_id, collection, field,"
         " value);ALTER TABLE collections ENABLE ROW LEVEL SECURITY;"
         "ALTER TABLE collections FORCE ROW LEVEL SECURITY;"
         "CREATE POLICY tenant_only ON collections USING (tenant_id = "
         "current_setting('coffre.tenant',"
         " true));ALTER TABLE collection_versions ENABLE ROW LEVEL SECURITY;"
         "ALTER TABLE collection_versions FORCE ROW LEVEL SECURITY;"
         "CREATE POLICY tenant_only ON collection_versions USING (tenant_id = "
         "current_setting('coffre.tenant',"
         " true));ALTER TABLE records ENABLE ROW LEVEL SECURITY;"
         "ALTER TABLE records FORCE ROW LEVEL SECURITY;"
         "CREATE POLICY tenant_only ON records USING (tenant_id = current_setting('coffre.tenant',"
         " true));ALTER TABLE record_versions ENABLE ROW LEVEL SECURITY;"
         "ALTER TABLE record_versions FORCE ROW LEVEL SECURITY;"
         "CREATE POLICY tenant_only ON record_versions USING (tenant_id = "
         "current_setting('coffre.tenant',"
         " true));ALTER TABLE record_index ENABLE ROW LEVEL SECURITY;"
         "ALTER TABLE record_index FORCE ROW LEVEL SECURITY;"
         "CREATE POLICY tenant_only ON record_index USING (tenant_id = "
         "current_setting('coffre.tenant',"
         " true));GRANT SELECT, INSERT, UPDATE, DELETE ON collections,"
         " collection_versions, records, record_versions, record_index TO coffre_runtime"},
        {16, "idempotency keys",
         /* DESIGN §8: a write's Idempotency-Key, per caller, with the request's hash and
          * what it made (record ids), kept a day. */
         "CREATE TABLE idempotency (tenant_id TEXT NOT NULL, principal_id TEXT NOT NULL,"
         " idem_key TEXT NOT NULL, request_hash BLOB NOT NULL, result TEXT NOT NULL,"
         " created_at INTEGER NOT NULL, PRIMARY KEY (tenant_id, principal_id, idem_key))"
         " STRICT",
         "CREATE TABLE idempotency (tenant_id TEXT NOT NULL, principal_id TEXT NOT NULL,"
         " idem_key TEXT NOT NULL, request_hash BYTEA NOT NULL, result TEXT NOT NULL,"
         " created_at BIGINT NOT NULL, PRIMARY KEY (tenant_id, principal_id, idem_key));"
         "ALTER TABLE idempotency ENABLE ROW LEVEL SECURITY;"
         "ALTER TABLE idempotency FORCE ROW LEVEL SECURITY;"
         "CREATE POLICY tenant_only ON idempotency"
         " USING (tenant_id = current_setting('coffre.tenant', true));"
         "GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency TO coffre_runtime"},
        {17, "clustered lookups",
         /* SQLite: the small tables read on every request (the tenant, the API client,
          * the authorisation version, a record's row and its index) keyed by their
          * primary key alone (WITHOUT ROWID), so a lookup is one b-tree descent, not an
          * index and then the table: a reader's page cache starts empty after every
          * commit, so each page a request touches is read again. record_versions keeps
          * its rowid: its sealed values are too large for a clustered leaf. PostgreSQL
          * has nothing to change. Each table is rebuilt with its rows, in the
          * migration's one transaction. */
         "CREATE TABLE tenants_k (tenant_id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
         " state TEXT NOT NULL CHECK (state IN ('active', 'suspended', 'deleting')),"
         " created_at INTEGER NOT NULL) STRICT, WITHOUT ROWID;"
         "INSERT INTO tenants_k SELECT tenant_id, name, state, created_at FROM tenants;"
         "DROP TABLE tenants;"
         "ALTER TABLE tenants_k RENAME TO tenants;"
         "CREATE TABLE clients_k (tenant_id TEXT NOT NULL, client_id TEXT NOT NULL,"
         " name TEXT NOT NULL, secret_mac BLOB NOT NULL, state TEXT NOT NULL"
         " CHECK (state IN ('active', 'disabled')), created_at INTEGER NOT NULL,"
         " last_used_at INTEGER, origins TEXT NOT NULL DEFAULT '',"
         " PRIMARY KEY (tenant_id, client_id)) STRICT, WITHOUT ROWID;"
         "INSERT INTO clients_k SELECT tenant_id, client_id, name, secret_mac, state,"
         " created_at, last_used_at, origins FROM clients;"
         "DROP TABLE clients;"
         "ALTER TABLE clients_k RENAME TO clients;"
         "CREATE TABLE authz_versions_k (tenant_id TEXT PRIMARY KEY, version INTEGER NOT NULL)"
         " STRICT, WITHOUT ROWID;"
         "INSERT INTO authz_versions_k SELECT tenant_id, version FROM authz_versions;"
         "DROP TABLE authz_versions;"
         "ALTER TABLE authz_versions_k RENAME TO authz_versions;"
         "CREATE TABLE records_k (tenant_id TEXT NOT NULL, collection TEXT NOT NULL,"
         " record_id TEXT NOT NULL, version INTEGER NOT NULL,"
         " schema_version INTEGER NOT NULL, created_at INTEGER NOT NULL,"
         " updated_at INTEGER NOT NULL, deleted_at INTEGER, PRIMARY KEY (tenant_id,"
         " collection, record_id)) STRICT, WITHOUT ROWID;"
         "INSERT INTO records_k SELECT tenant_id, collection, record_id, version,"
         " schema_version, created_at, updated_at, deleted_at FROM records;"
         "DROP TABLE records;"
         "ALTER TABLE records_k RENAME TO records;"
         "CREATE TABLE record_index_k (tenant_id TEXT NOT NULL, collection TEXT NOT NULL,"
         " record_id TEXT NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL,"
         " PRIMARY KEY (tenant_id, collection, record_id, field)) STRICT, WITHOUT ROWID;"
         "INSERT INTO record_index_k SELECT tenant_id, collection, record_id, field, value"
         " FROM record_index;"
         "DROP TABLE record_index;"
         "ALTER TABLE record_index_k RENAME TO record_index;"
         "CREATE INDEX record_index_value ON record_index (tenant_id, collection, field,"
         " value)",
         "SELECT 1"},
        {18, "audit ids without a counter",
         /* SQLite: AUTOINCREMENT kept its counter in sqlite_sequence, a page more in
          * every commit (one in seven of a read's). The log gives each entry its id
          * itself (cf_audit_append: past its tree index, the largest id kept and the
          * sequencer's last), so that ids still never come back, even once pruning
          * has emptied the table. The table is rebuilt with its rows and its
          * triggers, in the migration's one transaction. PostgreSQL keeps its
          * sequence. */
         "CREATE TABLE audit_entries_n ("
         " id INTEGER PRIMARY KEY,"
         " tenant_id TEXT NOT NULL,"
         " seq INTEGER,"
         " time_us INTEGER NOT NULL,"
         " action TEXT NOT NULL,"
         " outcome INTEGER NOT NULL,"
         " actor TEXT NOT NULL,"
         " resource TEXT NOT NULL,"
         " body BLOB NOT NULL,"
         " leaf_index INTEGER UNIQUE,"
         " leaf_hash BLOB,"
         " UNIQUE (tenant_id, seq)) STRICT;"
         "INSERT INTO audit_entries_n (id, tenant_id, seq, time_us, action, outcome, actor,"
         " resource, body, leaf_index, leaf_hash) SELECT id, tenant_id, seq, time_us,"
         " action, outcome, actor, resource, body, leaf_index, leaf_hash FROM audit_entries;"
         "DROP TABLE audit_entries;"
         "ALTER TABLE audit_entries_n RENAME TO audit_entries;"
         "CREATE TRIGGER audit_entries_sealed BEFORE UPDATE ON audit_entries"
         " WHEN OLD.leaf_index IS NOT NULL"
         " BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;"
         "CREATE TRIGGER audit_entries_kept BEFORE DELETE ON audit_entries"
         " WHEN OLD.leaf_index IS NULL"
         " OR OLD.leaf_index >= coalesce((SELECT below FROM audit_pruned WHERE id = 1), 0)"
         " BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END",
         "SELECT 1"},
};
const size_t cf_store_schema_count = sizeof cf_store_schema / sizeof cf_store_schema[0];

cf_err cf_store_open_coffre(const char *url, const char *migrate_url, bool migrate, unsigned pool,
                            struct cf_store **out)
{
	struct cf_store_opts o = {
	        .url = url,
	        .migrate_url = migrate_url && migrate_url[0] ? migrate_url : NULL,
	        .migrations = cf_store_schema,
	        .nmigrations = cf_store_schema_count,
	        .migrate = migrate,
	        .pool = pool,
	};
	return cf_store_open(&o, out);
}
