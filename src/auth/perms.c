/* coffre — permissions and the built-in roles (IA1, IA2). docs/access.md lists them. */
#include <string.h>

#include "auth/auth.h"

static const char *const perm_names[CF_P_COUNT] = {
        [CF_P_RECORDS_READ] = "records.read",     [CF_P_RECORDS_WRITE] = "records.write",
        [CF_P_RECORDS_DELETE] = "records.delete", [CF_P_PII_REVEAL] = "pii.reveal",
        [CF_P_FILES_READ] = "files.read",         [CF_P_FILES_WRITE] = "files.write",
        [CF_P_USERS_MANAGE] = "users.manage",     [CF_P_CLIENTS_MANAGE] = "clients.manage",
        [CF_P_ROLES_MANAGE] = "roles.manage",     [CF_P_KEYS_MANAGE] = "keys.manage",
        [CF_P_AUDIT_READ] = "audit.read",         [CF_P_TENANT_MANAGE] = "tenant.manage",
};

const char *cf_perm_name(enum cf_perm p)
{
	return (unsigned)p < CF_P_COUNT ? perm_names[p] : "?";
}

cf_err cf_perm_parse(const char *name, enum cf_perm *out)
{
	for (unsigned i = 0; i < CF_P_COUNT; i++)
		if (strcmp(name, perm_names[i]) == 0) {
			*out = (enum cf_perm)i;
			return CF_OK;
		}
	return cf_err_fail(CF_E_INVALID, "unknown permission '%s' (docs/access.md lists them)",
	                   name);
}

/* The seeds' vocabulary. The owner holds everything; an admin everything but the
 * tenant itself; an agent works on records and files (sees personal data masked); an
 * end user only reaches their own account. New users hold nothing until given a role. */
static const struct {
	const char *name;
	cf_perms perms;
} builtin[] = {
        {"owner", CF_PERMS_ALL},
        {"admin", CF_PERMS_ALL & ~CF_PERM(CF_P_TENANT_MANAGE)},
        {"agent", CF_PERM(CF_P_RECORDS_READ) | CF_PERM(CF_P_RECORDS_WRITE) |
                          CF_PERM(CF_P_FILES_READ) | CF_PERM(CF_P_FILES_WRITE)},
        {"end_user", 0},
};

bool cf_role_builtin(const char *name, cf_perms *out)
{
	for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++)
		if (strcmp(name, builtin[i].name) == 0) {
			*out = builtin[i].perms;
			return true;
		}
	return false;
}

json_t *cf_perms_json(cf_perms p)
{
	json_t *a = json_array();
	for (unsigned i = 0; a && i < CF_P_COUNT; i++)
		if ((p & CF_PERM(i)) && json_array_append_new(a, json_string(perm_names[i])) != 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}
