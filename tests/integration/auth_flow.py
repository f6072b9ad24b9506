#!/usr/bin/python3
# coffre — identity end to end over HTTPS (IA1–IA13, TI1, TR3), driven by t_auth.sh.
# Run with Debian's python3 (python3-jwt: PyJWT checks coffre's tokens).
# Arguments: URL CA DATA_DIR ADMIN_EMAIL ADMIN_PASSWORD OTHER_TENANT ROUTES_C
# Prints "ok - NAME" or "not ok - NAME -- DETAIL" lines, then "flows complete"; t_auth.sh
# counts them.
import base64
import glob
import hashlib
import hmac
import http.client
import json
import os
import re
import ssl
import subprocess
import sys
import time
import urllib.parse

import jwt
from jwt.algorithms import OKPAlgorithm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flowlib import code, make_call, report  # noqa: E402

URL, CA, DATA, ADMIN, ADMIN_PW, OTHER, ROUTES_C = sys.argv[1:8]
U = urllib.parse.urlparse(URL)
CTX = ssl.create_default_context(cafile=CA)
TENANT = "dev"


call = make_call(URL, CA)


def login(email, pw, tenant=TENANT):
    st, js, sc, _ = call("POST", "/v1/t/%s/auth/login" % tenant, {"email": email, "password": pw})
    if st != 200:
        return None, None, st, js
    cookie = re.match(r"__Host-coffre_session=([^;]*)", sc).group(1)
    return cookie, js["csrf_token"], st, js


def outbox_token(email):
    # The file notifier: the newest message to this address.
    best = None
    for f in sorted(glob.glob(os.path.join(DATA, "outbox", "*.json"))):
        m = json.load(open(f))
        if m["to"] == email:
            best = m
    return best["token"] if best else None


GOOD_PW = "violet-tractor-harbour-42"

# --- logins ---------------------------------------------------------------------------
st, js, _, _ = call("POST", "/v1/t/dev/auth/login", {"email": ADMIN, "password": "wrong password 123"})
wrong = (st, code(js), js["error"]["message"])
st, js, _, _ = call("POST", "/v1/t/dev/auth/login", {"email": "nobody@dev.example", "password": "wrong password 123"})
unknown = (st, code(js), js["error"]["message"])
report(wrong[0] == 401 and wrong == unknown,
       "a wrong password and an unknown email get the same 401 invalid_credentials", (wrong, unknown))
st, js, _, _ = call("POST", "/v1/t/dev/auth/login", {"email": ADMIN})
report(st == 422 and code(js) == "missing_field", "login without a password: 422 missing_field", (st, js))
st, js, _, _ = call("POST", "/v1/t/dev/auth/login", raw=b'{"email": "a@b.c", "password": ')
report(st == 400 and code(js) == "malformed_json", "malformed JSON: 400 malformed_json", (st, js))
st, js, _, _ = call("POST", "/v1/t/dev/auth/login", {"email": ADMIN, "password": "x", "admin": True})
report(st == 422 and code(js) == "unknown_field", "an unknown field: 422 unknown_field", (st, js))
st, js, _, _ = call("POST", "/v1/t/nosuch/auth/login", {"email": ADMIN, "password": ADMIN_PW})
report(st == 404, "login to a tenant that does not exist: 404", (st, js))

st, js, sc, _ = call("POST", "/v1/t/dev/auth/login", {"email": ADMIN.upper(), "password": ADMIN_PW})
attrs = [a.strip() for a in (sc or "").split(";")]
report(st == 200 and sc.startswith("__Host-coffre_session=") and "Secure" in attrs and "HttpOnly" in attrs
       and "SameSite=Strict" in attrs and "Path=/" in attrs and not any(a.startswith("Domain") for a in attrs),
       "login sets __Host-coffre_session; Secure; HttpOnly; SameSite=Strict; Path=/ (TR3)", sc)
owner_cookie, owner_csrf, _, _ = login(ADMIN, ADMIN_PW)
st, js, _, _ = call("GET", "/v1/auth/me", cookie=owner_cookie)
report(st == 200 and js["roles"] == ["owner"] and "users.manage" in js["permissions"], "GET /v1/auth/me with the session", js)
owner_id = js["id"]
st, js, _, _ = call("PATCH", "/v1/t/dev/users/" + owner_id, {"state": "disabled"}, cookie=owner_cookie, csrf=owner_csrf)
st2, js2, _, _ = call("PATCH", "/v1/t/dev/users/" + owner_id, {"roles": ["admin"]}, cookie=owner_cookie, csrf=owner_csrf)
st3, js3, _, _ = call("GET", "/v1/auth/me", cookie=owner_cookie)
report(st == 409 and "active owner" in js["error"]["message"] and st2 == 409 and st3 == 200 and js3["roles"] == ["owner"],
       "the tenant's only active owner can neither disable nor demote themselves (409): a tenant keeps an owner (IA2)",
       (st, js, st2, js2, st3, js3))
st, js, _, hd = call("GET", "/v1/auth/me")
report(st == 401 and code(js) == "unauthenticated" and "WWW-Authenticate" in hd, "no credentials: 401 unauthenticated with WWW-Authenticate", (st, js))
st, js, _, _ = call("GET", "/v1/auth/me", cookie=owner_cookie[:-4] + "AAAA")
report(st == 401, "a forged session cookie: 401", (st, js))
st, js, _, _ = call("GET", "/v1/auth/me", cookie="tnotatenant." + "A" * 43)
report(st == 401, "a cookie naming another tenant id: 401", (st, js))

# --- CSRF -------------------------------------------------------------------------------
st, js, _, _ = call("POST", "/v1/t/dev/users", {"email": "x@dev.example"}, cookie=owner_cookie)
report(st == 403 and code(js) == "csrf_failed", "a cookie write without X-CSRF-Token: 403 csrf_failed", (st, js))
st, js, _, _ = call("POST", "/v1/t/dev/users", {"email": "x@dev.example"}, cookie=owner_cookie, csrf="A" * 32)
report(st == 403 and code(js) == "csrf_failed", "a cookie write with a wrong X-CSRF-Token: 403", (st, js))


# --- users: invitation, setup, roles ----------------------------------------------------
def invite(email, roles):
    st, js, _, _ = call("POST", "/v1/t/dev/users", {"email": email, "roles": roles}, cookie=owner_cookie, csrf=owner_csrf)
    return st, js


users = {}
for role in ("admin", "agent", "end_user"):
    email = {"admin": "ada@dev.example", "agent": "agnes@dev.example", "end_user": "eddie@dev.example"}[role]
    st, js = invite(email, [role])
    tok = outbox_token(email)
    users[role] = {"email": email, "id": (js or {}).get("id")}
    report(st == 201 and js["state"] == "invited" and js["roles"] == [role] and tok,
           "invite a user with role %s: 201, a setup link in the outbox" % role, (st, js))
    if role == "admin":
        st, js, _, _ = call("POST", "/v1/t/dev/auth/setup", {"token": tok, "password": "password12345678"})
        report(st == 422 and code(js) == "weak_password" and "password12345678" not in js["error"]["message"],
               "a common password is refused with the rule, never echoed (IA3)", (st, js))
        st, js, _, _ = call("POST", "/v1/t/dev/auth/setup", {"token": tok, "password": "short"})
        report(st == 422 and "12 characters" in js["error"]["message"], "a short password: 422 naming the length rule", (st, js))
        st, js, _, _ = call("POST", "/v1/t/dev/auth/setup", {"token": tok, "password": email})
        report(st == 422 and code(js) == "weak_password", "the email as password is refused", (st, js))
        long_pw = "a long passphrase is welcome here " * 4
        st, js, _, _ = call("POST", "/v1/t/dev/auth/setup", {"token": tok, "password": long_pw[:128]})
        report(st == 200, "a 128-character passphrase is accepted", (st, js))
        st, js, _, _ = call("POST", "/v1/t/dev/auth/setup", {"token": tok, "password": GOOD_PW})
        report(st == 401 and code(js) == "invalid_credentials", "a setup link works once only", (st, js))
        users[role]["pw"] = long_pw[:128]
    else:
        st, js, _, _ = call("POST", "/v1/t/dev/auth/setup", {"token": tok, "password": GOOD_PW})
        report(st == 200, "the %s sets a password through the link" % role, (st, js))
        users[role]["pw"] = GOOD_PW
    c, x, st, js = login(users[role]["email"], users[role]["pw"])
    users[role]["cookie"], users[role]["csrf"] = c, x
    report(c is not None, "the %s logs in" % role, (st, js))
st, js = invite("admin@dev.example", ["agent"])
report(st == 409 and code(js) == "conflict", "inviting an email twice: 409", (st, js))
st, js = invite("not-an-email", ["agent"])
report(st == 422 and code(js) == "invalid_value" and js["error"].get("field") == "email" and js["error"].get("rule") == "email",
       "an invalid email: 422 naming the field and the rule", (st, js))
st, js = invite("new@dev.example", ["superuser"])
report(st == 422 and "superuser" in js["error"]["message"] and js["error"].get("field") == "roles[0]" and js["error"].get("rule") == "role",
       "an unknown role: 422 naming it, its field and the rule", (st, js))
st, js = invite("new@dev.example", ["agent", "agent"])
report(st == 422 and js["error"].get("field") == "roles" and js["error"].get("rule") == "unique", "a role named twice: 422 (rule unique)", (st, js))
st, js, _, _ = call("GET", "/v1/t/dev/users/" + users["agent"]["id"], cookie=owner_cookie)
report(st == 200 and js["state"] == "active" and js["email"] == "agnes@dev.example", "GET a user", (st, js))

adm = users["admin"]
st, js, _, _ = call("POST", "/v1/t/dev/users", {"email": "boss@dev.example", "roles": ["owner"]}, cookie=adm["cookie"], csrf=adm["csrf"])
report(st == 403 and "owner" in js["error"]["message"], "an admin cannot grant owner (nobody grants more than they hold)", (st, js))
st, js, _, _ = call("PATCH", "/v1/t/dev/users/" + users["agent"]["id"], {"roles": ["owner"]}, cookie=adm["cookie"], csrf=adm["csrf"])
report(st == 403, "an admin cannot promote an agent to owner", (st, js))
st, js, _, _ = call("GET", "/v1/t/dev/users", cookie=users["agent"]["cookie"])
report(st == 403 and code(js) == "forbidden" and "users.manage" in js["error"]["message"], "an agent cannot list users: 403 naming users.manage", (st, js))

# --- a tenant's own roles (IA1, IA2) --------------------------------------------------------
st, js, _, _ = call("POST", "/v1/t/dev/roles", {"name": "auditor", "permissions": ["audit.read"]}, cookie=owner_cookie, csrf=owner_csrf)
report(st == 201 and js["permissions"] == ["audit.read"], "an owner defines a role from the permission list", (st, js))
st, js, _, _ = call("POST", "/v1/t/dev/roles", {"name": "boss", "permissions": ["tenant.manage"]}, cookie=users["admin"]["cookie"], csrf=users["admin"]["csrf"])
report(st == 403, "an admin cannot define a role beyond their own permissions", (st, js))
st, js, _, _ = call("POST", "/v1/t/dev/roles", {"name": "x", "permissions": ["records.*"]}, cookie=owner_cookie, csrf=owner_csrf)
report(st == 422 and "records.*" in js["error"]["message"] and js["error"].get("field") == "permissions[0]" and js["error"].get("rule") == "permission",
       "an unknown permission: 422 naming it and its field", (st, js))
st, js, _, _ = call("POST", "/v1/t/dev/roles", {"name": "admin", "permissions": []}, cookie=owner_cookie, csrf=owner_csrf)
report(st == 409, "a built-in role's name: 409", (st, js))
st, js, _, _ = call("GET", "/v1/t/dev/audit?limit=1", cookie=users["agent"]["cookie"])
st1 = st
st, js, _, _ = call("PATCH", "/v1/t/dev/users/" + users["agent"]["id"], {"roles": ["agent", "auditor"]}, cookie=owner_cookie, csrf=owner_csrf)
st2, js2, _, _ = call("GET", "/v1/t/dev/audit?limit=1", cookie=users["agent"]["cookie"])
report(st1 == 403 and st == 200 and st2 == 200, "granting it takes effect on the next request (roles are read per request)", (st1, st, st2))
st, js, _, _ = call("DELETE", "/v1/t/dev/roles/auditor", cookie=owner_cookie, csrf=owner_csrf)
report(st == 409, "a role still granted cannot be deleted", (st, js))
st, js, _, _ = call("PATCH", "/v1/t/dev/users/" + users["agent"]["id"], {"roles": ["agent"]}, cookie=owner_cookie, csrf=owner_csrf)
st, js, _, _ = call("DELETE", "/v1/t/dev/roles/auditor", cookie=owner_cookie, csrf=owner_csrf)
st2, js2, _, _ = call("GET", "/v1/t/dev/roles", cookie=owner_cookie)
names = [r["name"] for r in (js2 or {}).get("roles", [])]
report(st == 200 and names == ["owner", "admin", "agent", "end_user"], "once ungranted it is deleted; the list shows the built-in roles", (st, names))

# --- groups (IA1): a group's roles reach its members -----------------------------------------------
eu0 = users["end_user"]
st, js, _, _ = call("POST", "/v1/t/dev/groups", {"name": "readers", "roles": ["agent"], "members": [eu0["id"]]}, cookie=owner_cookie, csrf=owner_csrf)
report(st == 201 and js["members"] == [eu0["id"]] and js["roles"] == ["agent"], "a group with a role and a member", (st, js))
st, js, _, _ = call("GET", "/v1/auth/me", cookie=eu0["cookie"])
report(st == 200 and "records.read" in js["permissions"] and "agent" in js["roles"], "its member holds the group's role at once", (st, js))
st, js, _, _ = call("PATCH", "/v1/t/dev/groups/readers", {"remove": [eu0["id"]]}, cookie=owner_cookie, csrf=owner_csrf)
st2, js2, _, _ = call("GET", "/v1/auth/me", cookie=eu0["cookie"])
report(st == 200 and js["members"] == [] and js2["permissions"] == [], "removed from the group, the role is gone", (st, js2))
st, js, _, _ = call("PATCH", "/v1/t/dev/groups/readers", {"add": ["u0000000000000000"]}, cookie=owner_cookie, csrf=owner_csrf)
report(st == 422 and js["error"].get("field") == "add[0]" and js["error"].get("rule") == "user", "a member who is not a user of the tenant: 422 naming add[0]", (st, js))
st, js, _, _ = call("POST", "/v1/t/dev/groups", {"name": "Not A Name", "roles": ["agent"]}, cookie=owner_cookie, csrf=owner_csrf)
st2, js2, _, _ = call("PATCH", "/v1/t/dev/groups/Not%20A%20Name", {"roles": ["agent"]}, cookie=owner_cookie, csrf=owner_csrf)
report(st == 422 and js["error"].get("field") == "name" and js["error"].get("rule") == "name" and st2 == 404,
       "a new group's name out of its pattern: 422 naming it; the same in a path: 404", (st, js, st2, js2))
st, js, _, _ = call("POST", "/v1/t/dev/groups", {"name": "bosses", "roles": ["owner"]}, cookie=users["admin"]["cookie"], csrf=users["admin"]["csrf"])
report(st == 403, "an admin cannot make a group of owners", (st, js))
st, js, _, _ = call("DELETE", "/v1/t/dev/groups/readers", cookie=owner_cookie, csrf=owner_csrf)
st2, _, _, _ = call("DELETE", "/v1/t/dev/groups/readers", cookie=owner_cookie, csrf=owner_csrf)
report(st == 200 and st2 == 404, "a group is deleted once", (st, st2))

# --- password change --------------------------------------------------------------------
ag = users["agent"]
second, _, _, _ = login(ag["email"], ag["pw"])
st, js, _, _ = call("POST", "/v1/auth/password", {"current_password": "not it at all", "new_password": "another-good-pass-77"}, cookie=ag["cookie"], csrf=ag["csrf"])
report(st == 401 and code(js) == "invalid_credentials", "a password change needs the current password", (st, js))
st, js, _, _ = call("POST", "/v1/auth/password", {"current_password": ag["pw"], "new_password": "another-good-pass-77"}, cookie=ag["cookie"], csrf=ag["csrf"])
report(st == 200, "the agent changes their password", (st, js))
st, _, _, _ = call("GET", "/v1/auth/me", cookie=second)
st2, _, _, _ = call("GET", "/v1/auth/me", cookie=ag["cookie"])
report(st == 401 and st2 == 200, "the change ends the other sessions, keeps this one", (st, st2))
ag["pw"] = "another-good-pass-77"
c, _, st, _ = login(ag["email"], GOOD_PW)
report(c is None and st == 401, "the old password no longer logs in", st)
st, js, _, _ = call("GET", "/v1/auth/sessions", cookie=ag["cookie"])
report(st == 200 and len(js["sessions"]) == 1, "a user lists their sessions", (st, js))

# --- password reset (IA5) ------------------------------------------------------------------
def reset_token(email, after):
    for _ in range(40):  # delivered from the notifier's own thread
        for f in sorted(glob.glob(os.path.join(DATA, "outbox", "*.json"))):
            m = json.load(open(f))
            if m["to"] == email and m["kind"] == "reset" and os.path.getmtime(f) >= after:
                return m["token"]
        time.sleep(0.05)
    return None


t0 = time.time() - 1
st, js, _, _ = call("POST", "/v1/t/dev/auth/reset", {"email": ag["email"]})
st2, js2, _, _ = call("POST", "/v1/t/dev/auth/reset", {"email": "nobody-at-all@dev.example"})
report(st == 202 and (st2, js2) == (st, js), "a reset request gets the same 202 whether or not the account exists", (st, js, st2, js2))
rt = reset_token(ag["email"], t0)
report(rt is not None and reset_token("nobody-at-all@dev.example", t0) is None, "a reset link reaches the user (and nobody else)", rt)
st, js, _, _ = call("POST", "/v1/t/dev/auth/setup", {"token": rt, "password": "a-brand-new-passphrase-9"})
report(st == 200, "the reset link sets a new password", (st, js))
st, js, _, _ = call("POST", "/v1/t/dev/auth/setup", {"token": rt, "password": "yet-another-passphrase-10"})
report(st == 401, "...once", (st, js))
c, _, _, _ = login(ag["email"], ag["pw"])
c2, x2, _, _ = login(ag["email"], "a-brand-new-passphrase-9")
report(c is None and c2 is not None, "the old password is refused, the new one works", (c is None, c2 is not None))
ag["pw"], ag["cookie"], ag["csrf"] = "a-brand-new-passphrase-9", c2, x2  # the reset ended its sessions

# --- growing delays (IA5, MD4) ------------------------------------------------------------
eu = users["end_user"]
for i in range(3):
    st, js, _, hd = call("POST", "/v1/t/dev/auth/login", {"email": eu["email"], "password": "not the password %d" % i})
report(st == 401, "three wrong passwords: 401 each", (st, js))
st, js, _, hd = call("POST", "/v1/t/dev/auth/login", {"email": eu["email"], "password": eu["pw"]})
report(st == 429 and code(js) == "rate_limited" and int(hd.get("Retry-After", "0")) >= 1,
       "then even the right password waits: 429 with Retry-After (IA5)", (st, js, hd.get("Retry-After")))
st2, js2, _, hd2 = call("POST", "/v1/t/dev/auth/login", {"email": "nobody-here@dev.example", "password": "x" * 12})
for i in range(3):
    st2, js2, _, hd2 = call("POST", "/v1/t/dev/auth/login", {"email": "nobody-here@dev.example", "password": "x" * 12})
report(st2 == 429 and js2["error"]["message"] == js["error"]["message"].replace(hd.get("Retry-After", ""), hd2.get("Retry-After", "")),
       "an account that does not exist gets the same delays and answer", (st2, js2))
time.sleep(int(hd.get("Retry-After", "1")) + 0.2)
c, x, st, js = login(eu["email"], eu["pw"])
report(c is not None, "after the delay the right password logs in (and clears the count)", (st, js))

# --- API clients and tokens (IA8, IA9) ------------------------------------------------------
st, js, _, _ = call("POST", "/v1/t/dev/clients", {"name": "backend", "roles": ["agent"]}, cookie=owner_cookie, csrf=owner_csrf)
report(st == 201 and js["client_secret"].startswith("cs_"), "create an API client: its secret shown once", (st, js))
cid, csec = js["client_id"], js["client_secret"]
st, js, _, _ = call("GET", "/v1/t/dev/clients", cookie=owner_cookie)
report(st == 200 and "client_secret" not in json.dumps(js) and csec not in json.dumps(js), "listing clients never shows a secret", js)
st, js, _, _ = call("POST", "/v1/t/dev/auth/token", {"grant_type": "client_credentials", "client_id": cid, "client_secret": csec[:-2] + "xx"})
report(st == 401 and code(js) == "invalid_credentials", "a wrong client secret: 401", (st, js))
st, js, _, _ = call("POST", "/v1/t/dev/auth/token", {"grant_type": "client_credentials", "client_id": cid, "client_secret": csec})
report(st == 200 and js["token_type"] == "Bearer" and js["expires_in"] == 900, "client credentials give a 15-minute Bearer token", (st, js))
tok = js["access_token"]
# RFC 6749 §4.4: a standard OAuth 2.0 client (requests-oauthlib) asks as the RFC has it: a
# form body, the credentials as HTTP Basic (client_secret_basic), a scope coffre ignores
from oauthlib.oauth2 import BackendApplicationClient  # noqa: E402
from requests_oauthlib import OAuth2Session  # noqa: E402
try:
    oa = OAuth2Session(client=BackendApplicationClient(client_id=cid))
    otok = oa.fetch_token(URL + "/v1/t/dev/auth/token", client_id=cid, client_secret=csec, scope=["records"], verify=CA)
    ome = oa.get(URL + "/v1/auth/me", verify=CA).json()
    report(otok.get("token_type") == "Bearer" and otok.get("expires_in") == 900 and ome.get("id") == cid,
           "a standard OAuth 2.0 client (requests-oauthlib: form body, HTTP Basic) gets a token, and calls with it", (otok, ome))
except Exception as e:  # noqa: BLE001
    report(False, "a standard OAuth 2.0 client (requests-oauthlib: form body, HTTP Basic) gets a token, and calls with it", repr(e))
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
basic = "Basic " + base64.b64encode((urllib.parse.quote_plus(cid) + ":" + urllib.parse.quote_plus(csec)).encode()).decode()
creds = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": cid, "client_secret": csec})
st, js, _, _ = call("POST", "/v1/t/dev/auth/token", raw=creds, headers=FORM)
st2, js2, _, _ = call("POST", "/v1/t/dev/auth/token", raw=creds, headers=dict(FORM, Authorization=basic))
st3, js3, _, _ = call("POST", "/v1/t/dev/auth/token", raw=creds + "&client_id=x", headers=FORM)
st4, js4, _, hd4 = call("POST", "/v1/t/dev/auth/token", raw="grant_type=client_credentials",
                        headers=dict(FORM, Authorization="Basic " + base64.b64encode((cid + ":wrong").encode()).decode()))
st5, js5, _, _ = call("POST", "/v1/t/dev/auth/login", raw="email=a", headers=FORM)
st6, js6, _, hd6 = call("GET", "/v1/t/dev/collections", headers={"Authorization": basic})
report(st == 200 and js["token_type"] == "Bearer" and st2 == 400 and "one way" in js2["error"]["message"]
       and st3 == 400 and code(js3) == "duplicate_key" and st4 == 401 and hd4.get("WWW-Authenticate", "").startswith("Basic")
       and st5 == 415 and st6 == 401 and hd6.get("WWW-Authenticate", "").startswith("Bearer"),
       "the token request as a form; refused: credentials both in Basic and the body, a parameter twice (RFC 6749 §2.3, §3.2); "
       "a wrong Basic secret: 401 with WWW-Authenticate: Basic; other routes take no form, nor Basic (401 Bearer)",
       (st, js, st2, js2, st3, js3, st4, js4, hd4, st5, js5, st6, js6, hd6))
st, js, _, _ = call("POST", "/v1/t/dev/auth/token", raw="", headers=FORM)
st2, js2, _, _ = call("POST", "/v1/t/dev/auth/token", raw=creds.replace("client_id=", "client_id=%ZZ"), headers=FORM)
report(st == 422 and code(js) == "missing_field" and js["error"].get("field") == "client_id"
       and st2 == 400 and "escape" in js2["error"]["message"],
       "an empty form: 422 naming client_id (not 'the JSON document is empty'); a '%' that is no escape: 400", (st, js, st2, js2))
st, jwks, _, _ = call("GET", "/v1/auth/jwks")
key = OKPAlgorithm.from_jwk(json.dumps(jwks["keys"][0]))
hdr = jwt.get_unverified_header(tok)
try:
    claims = jwt.decode(tok, key, algorithms=["EdDSA"], audience=URL + "/v1", issuer=URL,
                        options={"require": ["iss", "aud", "sub", "iat", "exp", "jti"]})
    good = hdr == {"alg": "EdDSA", "typ": "at+jwt", "kid": jwks["keys"][0]["kid"]} and claims["sub"] == cid and claims["exp"] - claims["iat"] == 900
    report(good, "PyJWT verifies coffre's token against its JWKS (EdDSA, at+jwt, kid; RFC 8037)", (hdr, claims))
except Exception as e:  # noqa: BLE001
    report(False, "PyJWT verifies coffre's token", repr(e))
st, js, _, _ = call("GET", "/v1/auth/me", token=tok)
report(st == 200 and js["kind"] == "client" and js["roles"] == ["agent"], "the token authenticates the client", (st, js))
st, js, _, _ = call("POST", "/v1/t/dev/clients", {"name": "x"}, token=tok)
report(st == 403, "a client with role agent cannot create clients", (st, js))


# Browser clients (IA8): only from their allowed origins; CORS for those.
st, js, _, _ = call("POST", "/v1/t/dev/clients", {"name": "web", "roles": ["agent"], "allowed_origins": ["https://app.example"]}, cookie=owner_cookie, csrf=owner_csrf)
report(st == 201 and js["allowed_origins"] == ["https://app.example"], "a browser client with its allowed origins", (st, js))
wid, wsec = js["client_id"], js["client_secret"]
st, js, _, _ = call("POST", "/v1/t/dev/clients", {"name": "bad", "allowed_origins": ["http://app.example/path"]}, cookie=owner_cookie, csrf=owner_csrf)
report(st == 422 and js["error"].get("field") == "allowed_origins[0]" and js["error"].get("rule") == "origin",
       "an origin that is not https://host[:port]: 422 naming allowed_origins[0]", (st, js))
st, js, _, _ = call("POST", "/v1/t/dev/clients", {"name": "tab\there"}, cookie=owner_cookie, csrf=owner_csrf)
report(st == 422 and code(js) == "invalid_value" and js["error"].get("field") == "name" and js["error"].get("rule") == "name",
       "a client name with a control character: 422 naming the field", (st, js))
st, js, _, _ = call("POST", "/v1/t/dev/roles", {"name": "Bad Name", "permissions": []}, cookie=owner_cookie, csrf=owner_csrf)
report(st == 422 and js["error"].get("field") == "name" and js["error"].get("rule") == "name", "a role name out of its pattern: 422 naming the field", (st, js))
st, js, _, _ = call("POST", "/v1/t/dev/roles", {"name": "odd", "permissions": [7]}, cookie=owner_cookie, csrf=owner_csrf)
report(st == 422 and code(js) == "wrong_type" and js["error"].get("field") == "permissions[0]", "a permission that is not a string: 422 naming permissions[0]", (st, js))
st, js, _, hd = call("POST", "/v1/t/dev/auth/token", {"client_id": wid, "client_secret": wsec}, headers={"Origin": "https://evil.example"})
report(st == 403 and "Access-Control-Allow-Origin" not in hd, "a token asked from another origin: 403, no CORS header", (st, js))
st, js, _, hd = call("POST", "/v1/t/dev/auth/token", {"client_id": wid, "client_secret": wsec}, headers={"Origin": "https://app.example"})
report(st == 200 and hd.get("Access-Control-Allow-Origin") == "https://app.example", "from its origin: the token, readable by that page (CORS)", (st, hd.get("Access-Control-Allow-Origin")))
wtok = (js or {}).get("access_token", "")
st, js, _, hd = call("GET", "/v1/auth/me", token=wtok, headers={"Origin": "https://evil.example"})
st2, js2, _, hd2 = call("GET", "/v1/auth/me", token=wtok, headers={"Origin": "https://app.example"})
report(st == 403 and st2 == 200 and hd2.get("Access-Control-Allow-Origin") == "https://app.example",
       "its token works from its origin only", (st, st2))
st, js, _, hd = call("GET", "/v1/auth/me", token=tok, headers={"Origin": "https://app.example"})
report(st == 403, "a server client (no origins) is refused from any browser", (st, js))
st, js, _, hd = call("OPTIONS", "/v1/auth/me", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"})
report(st == 204 and {"Authorization", "Content-Type", "If-Match", "Idempotency-Key"} <= {h.strip() for h in hd.get("Access-Control-Allow-Headers", "").split(",")},
       "a CORS preflight: 204 with the methods and the headers a browser client sends (If-Match, Idempotency-Key too)", (st, hd))
st, js, _, _ = call("GET", "/v1/auth/me", cookie=owner_cookie, headers={"Origin": "https://evil.example"})
st2, js2, _, _ = call("GET", "/v1/auth/me", cookie=owner_cookie, headers={"Origin": URL})
report(st == 403 and st2 == 200, "a session cookie works from coffre's own origin only", (st, st2))


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


parts = tok.split(".")
payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=="))
none_tok = b64u(json.dumps({"alg": "none", "typ": "at+jwt"}).encode()) + "." + parts[1] + "."
st, js, _, _ = call("GET", "/v1/auth/me", token=none_tok)
report(st == 401 and code(js) == "invalid_token", "alg none: 401 invalid_token", (st, js))
pub = base64.urlsafe_b64decode(jwks["keys"][0]["x"] + "==")
h = b64u(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": hdr["kid"]}).encode())
sig = hmac.new(pub, (h + "." + parts[1]).encode(), hashlib.sha256).digest()
st, js, _, _ = call("GET", "/v1/auth/me", token=h + "." + parts[1] + "." + b64u(sig))
report(st == 401 and code(js) == "invalid_token", "HS256 signed with the public key: 401", (st, js))
for what, mod in (("expired", {"exp": int(time.time()) - 10, "iat": int(time.time()) - 100}),
                  ("another audience", {"aud": "https://elsewhere.example/v1"}),
                  ("another tenant", {"tenant": "tdeadbeefdeadbeef"})):
    p2 = dict(payload, **mod)
    forged = parts[0] + "." + b64u(json.dumps(p2).encode()) + "." + parts[2]
    st, js, _, _ = call("GET", "/v1/auth/me", token=forged)
    report(st == 401 and code(js) == "invalid_token", "a token edited to %s: 401 (signature)" % what, (st, js))
jku = b64u(json.dumps({"alg": "EdDSA", "typ": "at+jwt", "kid": hdr["kid"], "jku": "https://evil.example/k"}).encode())
st, js, _, _ = call("GET", "/v1/auth/me", token=jku + "." + parts[1] + "." + parts[2])
report(st == 401 and code(js) == "invalid_token", "a jku header is refused", (st, js))
st, js, _, _ = call("GET", "/v1/auth/me", token=tok + "=")
report(st == 401, "non-canonical base64url is refused", (st, js))
st, js, _, _ = call("GET", "/v1/t/%s/users" % OTHER, token=tok)
report(st == 404, "the token on another tenant's path: 404", (st, js))

# --- the route x role x tenant matrix (IA1, TI1) ---------------------------------------------
AGENT = {"records.read", "records.write", "files.read", "files.write"}
ALL = {"records.read", "records.write", "records.delete", "pii.reveal", "files.read", "files.write", "users.manage",
       "clients.manage", "roles.manage", "keys.manage", "audit.read", "tenant.manage", "collections.manage"}
HOLDS = {"owner": ALL, "admin": ALL - {"tenant.manage"}, "agent": AGENT, "end_user": set(), "client": AGENT}
PERM_C = {"CF_P_%s" % p.upper().replace(".", "_"): p for p in ALL}
routes = []
BODY_ROUTES = set()  # the routes that take a body: the matrix sends {} to those
src = open(ROUTES_C).read()
for m in re.finditer(r'\{"(GET|POST|PUT|PATCH|DELETE)",\s*"([^"]+)",\s*\w+,\s*([^,]+),\s*(\w+),\s*"([^"]+)",\s*(?:NULL|"[^"]*")\}', src):
    method, path, flags, perm, name = m.groups()
    if "P" in [f.strip() for f in flags.split("|")]:
        continue
    routes.append((method, path, name, None if perm == "ANY" else "operator" if perm == "OP" else PERM_C[perm]))
    if "B" in [f.strip() for f in flags.split("|")]:
        BODY_ROUTES.add((method, path))
report(len(routes) >= 12, "the matrix reads %d authenticated routes from routes.c" % len(routes), routes)
# Logging out ends the session: last.
routes.sort(key=lambda r: r[2] == "auth.logout")
principals = {r: (users[r]["cookie"] if r != "owner" else owner_cookie, users[r]["csrf"] if r != "owner" else owner_csrf, None) for r in ("admin", "agent", "end_user")}
principals["owner"] = (owner_cookie, owner_csrf, None)
principals["client"] = (None, None, tok)
bad = []
count = 0
for who, (ck, xs, tk) in principals.items():
    for method, path, name, perm in routes:
        for own in (True, False):
            if "{tenant}" not in path and not own:
                continue
            p = path.replace("{tenant}", TENANT if own else OTHER).replace("{id}", "u0000000000000000").replace("{rid}", "r0000000000000000")
            body = {} if (method, path) in BODY_ROUTES else None
            st, js, _, _ = call(method, p, body, cookie=ck, csrf=xs, token=tk)
            count += 1
            # Two-factor enrollment is for people: an API client has no second factor.
            allowed = own and (perm is None or perm in HOLDS[who]) and not (who == "client" and name.startswith("mfa."))
            msg = (js or {}).get("error", {}).get("message", "")
            if allowed:
                if st in (401, 403) or msg == "no such tenant":
                    bad.append(("refused", who, method, p, st, msg))
            elif not (st == 403 or (st == 404 and msg == "no such tenant")):
                bad.append(("UNEXPECTED SUCCESS", who, method, p, st, msg))
report(not bad and count > 50, "route x role x own/other tenant: %d calls, no unexpected success, no wrong refusal" % count, bad)

# --- disabling, logout, audit ----------------------------------------------------------------
# The matrix logged everyone out (auth.logout is a route like the others): in again.
owner_cookie, owner_csrf, _, _ = login(ADMIN, ADMIN_PW)

# --- TOTP (IA6): enrollment, codes from oathtool, no replay, recovery codes, policy -------------
def oathtool(secret, when="now"):
    return subprocess.run(["oathtool", "--totp", "-b", "-N", when, secret], check=True,
                          capture_output=True, text=True).stdout.strip()


st, js, _, _ = call("POST", "/v1/auth/mfa/totp", cookie=owner_cookie, csrf=owner_csrf)
report(st == 200 and js["otpauth_uri"].startswith("otpauth://totp/coffre:") and "secret=" + js["secret"] in js["otpauth_uri"]
       and js["qr_svg"].startswith("<svg") and js["digits"] == 6 and js["period"] == 30,
       "TOTP enrollment gives an otpauth:// URI and an SVG QR code", (st, js and {k: v for k, v in js.items() if k != "qr_svg"}))
secret = js["secret"]
st, js, _, _ = call("POST", "/v1/auth/mfa/totp/confirm", {"code": "12345"}, cookie=owner_cookie, csrf=owner_csrf)
report(st == 401, "a malformed code does not confirm", (st, js))
confirmed = oathtool(secret)
st, js, _, _ = call("POST", "/v1/auth/mfa/totp/confirm", {"code": confirmed}, cookie=owner_cookie, csrf=owner_csrf)
recovery = (js or {}).get("recovery_codes", [])
report(st == 200 and len(recovery) == 10 and len(set(recovery)) == 10, "an oathtool code confirms it: ten recovery codes", (st, js))
st, js, _, _ = call("POST", "/v1/auth/mfa/totp", cookie=owner_cookie, csrf=owner_csrf)
report(st == 409, "enrolling again once confirmed: 409", (st, js))
st, js, _, _ = call("POST", "/v1/t/dev/auth/login", {"email": ADMIN, "password": ADMIN_PW})
report(st == 401 and code(js) == "mfa_required", "the password alone no longer logs in: 401 mfa_required", (st, js))
# the very code that confirmed (a fresh oathtool call may fall in the next 30 s step)
st, js, _, _ = call("POST", "/v1/t/dev/auth/login", {"email": ADMIN, "password": ADMIN_PW, "code": confirmed})
report(st == 401 and code(js) == "invalid_credentials", "the code that confirmed cannot log in again (replay)", (st, js))
nxt = oathtool(secret, "now + 30 seconds")
st, js, sc, _ = call("POST", "/v1/t/dev/auth/login", {"email": ADMIN, "password": ADMIN_PW, "code": nxt})
report(st == 200 and sc, "password and a fresh oathtool code log in", (st, js))
st, js, _, _ = call("POST", "/v1/t/dev/auth/login", {"email": ADMIN, "password": ADMIN_PW, "code": nxt})
report(st == 401, "the same code twice: refused", (st, js))
st, js, _, _ = call("POST", "/v1/t/dev/auth/login", {"email": ADMIN, "password": "wrong password 123", "code": oathtool(secret, "now + 60 seconds")})
report(st == 401 and code(js) == "invalid_credentials", "a right code with a wrong password: 401", (st, js))
st, js, _, _ = call("POST", "/v1/t/dev/auth/login", {"email": ADMIN, "password": ADMIN_PW, "recovery_code": recovery[0]})
report(st == 200, "a recovery code logs in", (st, js))
st, js, _, _ = call("POST", "/v1/t/dev/auth/login", {"email": ADMIN, "password": ADMIN_PW, "recovery_code": recovery[0]})
report(st == 401, "a recovery code works once", (st, js))
st, js, _, _ = call("GET", "/v1/auth/me", cookie=owner_cookie)
report(st == 200 and js["mfa"] is True, "me says mfa: true", (st, js))
# For t_auth.sh's check after a key rotation: the secret and the last step used.
print("totp %s %d" % (secret, (int(time.time()) + 30) // 30), flush=True)

# The tenant requires MFA: a user without it may only enroll.
st, js, _, _ = call("PUT", "/v1/t/dev/auth/policy", {"mfa_required": True}, cookie=owner_cookie, csrf=owner_csrf)
report(st == 200 and js["mfa_required"] is True, "an admin requires MFA for the tenant", (st, js))
c, x, _, _ = login(ag["email"], ag["pw"])
st, js, _, _ = call("GET", "/v1/auth/sessions", cookie=c)
st2, js2, _, _ = call("GET", "/v1/auth/me", cookie=c)
report(st == 403 and code(js) == "mfa_enrollment_required" and st2 == 200 and js2["mfa_enrollment_required"] is True,
       "until they enroll, a user's session can do nothing but enroll", (st, js, st2))
st, js, _, _ = call("POST", "/v1/auth/mfa/totp", cookie=c, csrf=x)
report(st == 200, "...and enrolling is allowed", (st, js and js.get("otpauth_uri")))
st, js, _, _ = call("DELETE", "/v1/t/dev/users/%s/mfa" % ag["id"], cookie=owner_cookie, csrf=owner_csrf)
report(st == 200, "an admin resets a user's TOTP", (st, js))
st, js, _, _ = call("DELETE", "/v1/t/dev/users/%s/mfa" % ag["id"], cookie=owner_cookie, csrf=owner_csrf)
report(st == 404, "...once", (st, js))
st, js, _, _ = call("PUT", "/v1/t/dev/auth/policy", {"mfa_required": "yes"}, cookie=owner_cookie, csrf=owner_csrf)
report(st == 422, "a policy of the wrong type: 422", (st, js))
st, js, _, _ = call("PUT", "/v1/t/dev/auth/policy", {"mfa_required": False}, cookie=owner_cookie, csrf=owner_csrf)
report(st == 200 and js["mfa_required"] is False, "the requirement lifted", (st, js))
st, js, _, _ = call("PUT", "/v1/t/dev/auth/policy", {"mfa_required": False, "mfa_required_roles": ["agent"]}, cookie=owner_cookie, csrf=owner_csrf)
c, x, _, _ = login(ag["email"], ag["pw"])
ca, xa, _, _ = login(adm["email"], adm["pw"])
st2, js2, _, _ = call("GET", "/v1/auth/sessions", cookie=c)
st3, _, _, _ = call("GET", "/v1/auth/sessions", cookie=ca)
report(st == 200 and js["mfa_required_roles"] == ["agent"] and st2 == 403 and code(js2) == "mfa_enrollment_required" and st3 == 200,
       "MFA required for a role: its holders must enroll, others not", (st, js, st2, st3))
st, js, _, _ = call("PUT", "/v1/t/dev/auth/policy", {"mfa_required": False, "mfa_required_roles": []}, cookie=owner_cookie, csrf=owner_csrf)
st2, _, _, _ = call("GET", "/v1/auth/sessions", cookie=c)
report(st == 200 and st2 == 200, "...and lifted again", (st, st2))
# IA3: the tenant's minimum length.
st, js, _, _ = call("PUT", "/v1/t/dev/auth/policy", {"mfa_required": False, "password_min_length": 20}, cookie=owner_cookie, csrf=owner_csrf)
c, x, _, _ = login(ag["email"], ag["pw"])
st2, js2, _, _ = call("POST", "/v1/auth/password", {"current_password": ag["pw"], "new_password": "violet-tram-77xq"}, cookie=c, csrf=x)
st3, js3, _, _ = call("PUT", "/v1/t/dev/auth/policy", {"mfa_required": False, "password_min_length": 8}, cookie=owner_cookie, csrf=owner_csrf)
report(st == 200 and js["password_min_length"] == 20 and st2 == 422 and "at least 20 characters" in js2["error"]["message"] and st3 == 422
       and js3["error"].get("field") == "password_min_length" and js3["error"].get("rule") == "range",
       "a tenant raises its minimum password length (12 to 128) and it applies", (st, js, st2, js2, st3, js3))
st, js, _, _ = call("PUT", "/v1/t/dev/auth/policy", {"mfa_required": False}, cookie=owner_cookie, csrf=owner_csrf)
report(st == 200 and js["password_min_length"] == 12, "...back to the default", (st, js))

# --- sessions one by one (IA13), an admin's revocation and the access review (IA10) --------------
s1, x1, _, _ = login(adm["email"], adm["pw"])
s2, x2, _, _ = login(adm["email"], adm["pw"])
st, js, _, _ = call("GET", "/v1/auth/sessions", cookie=s1)
cur = [x for x in (js or {}).get("sessions", []) if x["current"]]
other = [x for x in (js or {}).get("sessions", []) if not x["current"]]
report(st == 200 and len(cur) == 1 and len(other) >= 1, "a user sees their sessions, the current one marked", (st, js))
st2 = st3 = None
for o in other:
    st, js, _, _ = call("DELETE", "/v1/auth/sessions/" + o["id"], cookie=s1, csrf=x1)
st2, _, _, _ = call("GET", "/v1/auth/me", cookie=s2)
st3, _, _, _ = call("GET", "/v1/auth/me", cookie=s1)
report(st == 200 and st2 == 401 and st3 == 200, "...and revokes the others one by one (IA13)", (st, st2, st3))
st, js, _, _ = call("DELETE", "/v1/auth/sessions/0123456789abcdef", cookie=s1, csrf=x1)
report(st == 404, "revoking a session that is not theirs: 404", (st, js))
c, x, _, _ = login(ag["email"], ag["pw"])
st, js, _, _ = call("DELETE", "/v1/t/dev/users/%s/sessions" % ag["id"], cookie=s1, csrf=x1)
st2, _, _, _ = call("GET", "/v1/auth/me", cookie=c)
report(st == 200 and st2 == 401, "an admin ends every session of a user", (st, js, st2))

st, js, _, _ = call("POST", "/v1/t/dev/clients", {"name": "=HYPERLINK(\"http://evil\")", "roles": []}, cookie=owner_cookie, csrf=owner_csrf)
st, js, _, _ = call("GET", "/v1/t/dev/access-review", cookie=s1)
us = {u["email"]: u for u in (js or {}).get("users", [])}
report(st == 200 and us[ADMIN]["mfa"] is True and us["ada@dev.example"]["mfa"] is False and us[ADMIN]["dormant"] is False
       and len(js["clients"]) >= 2 and js["dormant_days"] == 90,
       "the access review lists every user and client with roles, MFA and dormancy (IA10)", (st, js))
st, js, _, _ = call("GET", "/v1/t/dev/access-review?dormant_days=1&format=json", cookie=s1)
report(st == 200 and js["dormant_days"] == 1, "dormant_days is a parameter", (st, js and js.get("dormant_days")))
c = http.client.HTTPSConnection(U.hostname, U.port, context=CTX, timeout=20)
c.request("GET", "/v1/t/dev/access-review?format=csv", headers={"Cookie": "__Host-coffre_session=" + s1})
r = c.getresponse()
csv_text = r.read().decode()
ctype = r.getheader("Content-Type")
c.close()
lines = csv_text.split("\r\n")
report(r.status == 200 and ctype.startswith("text/csv") and lines[0] == "kind,id,email_or_name,state,roles,mfa,last_used_at,dormant"
       and any(ADMIN in ln and '"owner"' in ln and '"yes"' in ln for ln in lines)
       and any(ln.startswith('"client"') and '"\'=HYPERLINK(""http://evil"")"' in ln for ln in lines),
       "the access review as CSV (a name that looks like a formula is quoted as text)", (r.status, ctype, csv_text[:600]))
st, js, _, _ = call("GET", "/v1/t/dev/access-review?format=xml", cookie=s1)
report(st == 400, "an unknown format: 400", (st, js))

st, js, _, _ = call("POST", "/v1/t/dev/auth/token", {"client_id": cid, "client_secret": csec})
tok = js["access_token"]
st, _, _, _ = call("GET", "/v1/auth/me", token=tok)
report(st == 200, "a fresh token works (before its client is disabled)", st)
c, x, _, _ = login(users["end_user"]["email"], users["end_user"]["pw"])
st, js, _, _ = call("PATCH", "/v1/t/dev/users/" + users["end_user"]["id"], {"state": "disabled"}, cookie=owner_cookie, csrf=owner_csrf)
report(st == 200 and js["state"] == "disabled", "an admin disables a user", (st, js))
st, _, _, _ = call("GET", "/v1/auth/me", cookie=c)
report(st == 401, "disabling ends the user's sessions at once (IA10)", st)
c2, _, st, _ = login(users["end_user"]["email"], users["end_user"]["pw"])
report(c2 is None and st == 401, "a disabled user cannot log in", st)
st, js, _, _ = call("DELETE", "/v1/t/dev/clients/" + cid, cookie=owner_cookie, csrf=owner_csrf)
st2, js2, _, _ = call("GET", "/v1/auth/me", token=tok)
report(st == 200 and st2 == 401 and code(js2) == "invalid_token", "a valid token stops working once its client is disabled", (st, st2, js2))
c, x, _, _ = login(adm["email"], adm["pw"])
st, js, sc, _ = call("POST", "/v1/auth/logout", cookie=c, csrf=x)
st2, _, _, _ = call("GET", "/v1/auth/me", cookie=c)
report(st == 200 and "Max-Age=0" in (sc or "") and st2 == 401, "logout ends the session and clears the cookie", (st, sc, st2))

time.sleep(1.5)  # entries are listed once sequenced (within a second)
st, js, _, _ = call("GET", "/v1/t/dev/audit?action=auth.login&outcome=denied&limit=100", cookie=owner_cookie)
report(st == 200 and len(js["entries"]) >= 3 and all(e["action"] == "auth.login" and e["outcome"] == "denied" for e in js["entries"]),
       "the tenant's audit log lists refused logins (audit.read)", (st, js))
st, js, _, _ = call("GET", "/v1/t/dev/audit?actor=" + users["agent"]["id"] + "&limit=1000", cookie=owner_cookie)
acts = {e["action"] for e in (js or {}).get("entries", [])}
report(st == 200 and {"auth.login", "user.password", "users.list"} <= acts,
       "searching by the actor's clear id finds their entries (HMAC computed by coffre)", (st, acts))
st, js, _, _ = call("GET", "/v1/t/dev/audit?resource=" + users["end_user"]["id"] + "&action=user.disable", cookie=owner_cookie)
report(st == 200 and len(js["entries"]) == 1 and js["entries"][0]["privilege"] == "owner",
       "disabling a user is audited with the privilege used (AL5)", (st, js))
st, js, _, _ = call("GET", "/v1/t/dev/audit?outcome=maybe", cookie=owner_cookie)
report(st == 400, "a bad audit filter: 400", (st, js))
st, js, _, _ = call("GET", "/v1/t/dev/audit?since_us=1&until_us=0", cookie=owner_cookie)
st2, js2, _, _ = call("GET", "/v1/t/dev/audit?since_us=5&until_us=5", cookie=owner_cookie)
st3, js3, _, _ = call("GET", "/v1/t/dev/audit?since_us=5&until_us=6", cookie=owner_cookie)
report(st == 400 and "until_us" in js["error"]["message"] and st2 == 400 and st3 == 200 and js3["entries"] == [],
       "an audit range whose end is not after its start: 400 (until_us=0 had listed the whole log)", (st, js, st2, js2, st3, js3))

# --- operators and break-glass (IA11) ----------------------------------------------------------
# The first operator was made over the admin socket (t_auth.sh: `coffre operator
# create-first`); its setup token comes in COFFRE_TEST_OP_TOKEN.
OP_PW = "lantern-quarry-meadow-77"


def op_login(email, pw, code_=None):
    body = {"email": email, "password": pw}
    if code_:
        body["code"] = code_
    st, js, sc, _ = call("POST", "/v1/operator/login", body)
    if st != 200:
        return None, None, st, js
    return re.match(r"__Host-coffre_session=([^;]*)", sc).group(1), js["csrf_token"], st, js


def op_enroll(ck, xs):
    st, js, _, _ = call("POST", "/v1/auth/mfa/totp", cookie=ck, csrf=xs)
    secret = (js or {}).get("secret")
    if not secret:
        report(False, "an operator starts TOTP enrollment", (st, js))
        return st, None, None
    st2, js2, _, _ = call("POST", "/v1/auth/mfa/totp/confirm", {"code": oathtool(secret)}, cookie=ck, csrf=xs)
    return st, st2, secret


st, js, _, _ = call("POST", "/v1/operator/setup", {"token": os.environ["COFFRE_TEST_OP_TOKEN"], "password": OP_PW})
report(st == 200, "the first operator sets a password with the token create-first printed", (st, js))
op1, op1x, st, js = op_login("op1@ops.example", OP_PW)
st2, me, _, _ = call("GET", "/v1/auth/me", cookie=op1)
report(op1 and me and me["kind"] == "operator" and me["mfa_enrollment_required"] and me["permissions"] == [],
       "an operator logs in: kind operator, no permission, two factors to enroll", (st, js, me))
st, js, _, _ = call("GET", "/v1/operator/tenants", cookie=op1)
report(st == 403 and code(js) == "mfa_enrollment_required", "until enrolled, an operator can do nothing but enroll (MFA is mandatory)", (st, js))
st, st2, op1_secret = op_enroll(op1, op1x)
st3, js, _, _ = call("GET", "/v1/operator/tenants", cookie=op1)
names = {t["name"] for t in (js or {}).get("tenants", [])}
report(st == 200 and st2 == 200 and st3 == 200 and {"dev", OTHER} <= names and "_ops" not in names,
       "once enrolled (oathtool code), operators list tenants; their own realm is none of them", (st, st2, st3, js))
_, _, st, js = op_login("op1@ops.example", OP_PW)
report(st == 401 and code(js) == "mfa_required", "an operator's login without a code: 401 mfa_required", (st, js))
st, js, _, _ = call("POST", "/v1/t/_ops/auth/login", {"email": "op1@ops.example", "password": OP_PW})
report(st == 404, "no tenant path reaches the operators' realm", (st, js))
st, js, _, _ = call("GET", "/v1/t/dev/users", cookie=op1)
report(st == 403 and "break-glass" in js["error"]["message"], "an operator has no access to a tenant's data: 403", (st, js))
st, js, _, _ = call("GET", "/v1/operator/tenants", cookie=owner_cookie)
report(st == 403, "a tenant's owner is not an operator: 403 on operators' routes", (st, js))

# The matrix for an operator: operators' routes and their own account, nothing of a tenant.
op_bad, n = [], 0
for method, path, name, perm in routes:
    if name in ("auth.logout", "keys.rotate_token"):  # (the token key's rotation is tested below)
        continue
    p = path.replace("{tenant}", TENANT).replace("{id}", "u0000000000000000").replace("{rid}", "r0000000000000000")
    st, js, _, _ = call(method, p, {} if (method, path) in BODY_ROUTES else None, cookie=op1, csrf=op1x)
    n += 1
    tenant_route = "{tenant}" in path
    if tenant_route and st != 403:
        op_bad.append(("UNEXPECTED", method, p, st, js))
    elif not tenant_route and st in (401, 403):
        op_bad.append(("refused", method, p, st, js))
report(not op_bad and n > 40, "operator x every route: %d calls, tenants' routes refused, operators' served" % n, op_bad)

# A second operator, added by the first.
st, js, _, _ = call("POST", "/v1/operator/operators", {"email": "op2@ops.example"}, cookie=op1, csrf=op1x)
op2_id = (js or {}).get("id")
st2, js2, _, _ = call("POST", "/v1/operator/setup", {"token": (js or {}).get("setup_token", ""), "password": OP_PW + "x"})
op2, op2x, _, _ = op_login("op2@ops.example", OP_PW + "x")
_, st3, _ = op_enroll(op2, op2x)
report(st == 201 and st2 == 200 and op2 and st3 == 200, "an operator adds another (setup token once), who enrolls TOTP", (st, js, st2, st3))
st, js, _, _ = call("GET", "/v1/operator/operators", cookie=op1)
report(st == 200 and len(js["operators"]) == 2 and all(o["mfa"] for o in js["operators"]), "operators are listed with their MFA state", (st, js))

# The deployment's keys, from an operator's session.
st, js, _, _ = call("GET", "/v1/operator/keys", cookie=op1)
names = {t.get("name") for t in (js or {}).get("tenants", [])}
dev_v = max([k["version"] for t in (js or {}).get("tenants", []) if t.get("name") == "dev" for k in t.get("keks", [])] or [0])
st2, js2, _, _ = call("POST", "/v1/operator/tenants/dev/keys/rotate", cookie=op1, csrf=op1x)
report(st == 200 and {"dev", OTHER, "(operators)"} <= names and st2 == 200 and js2["kek_version"] == dev_v + 1,
       "an operator sees every tenant's keys and rotates a tenant's KEK", (st, js, st2, js2))

# Break-glass: asked with a reason, approved by another operator, read-only, audited.
st, js, _, _ = call("POST", "/v1/operator/break-glass", {"tenant": "dev", "access": "read"}, cookie=op1, csrf=op1x)
report(st == 422 and code(js) == "missing_field", "break-glass without a reason: 422", (st, js))
st, js, _, _ = call("POST", "/v1/operator/break-glass", {"tenant": "dev", "reason": "ticket 4711: export stuck", "access": "root"}, cookie=op1, csrf=op1x)
report(st == 422 and js["error"].get("field") == "access" and js["error"].get("rule") == "enum", "break-glass with an unknown access: 422 naming the field", (st, js))
st, js, _, _ = call("POST", "/v1/operator/break-glass", {"tenant": "dev", "reason": "ticket 4711: export stuck", "minutes": 30}, cookie=op1, csrf=op1x)
g1 = (js or {}).get("id")
report(st == 201 and js["state"] == "pending" and js["access"] == "read" and js["minutes"] == 30, "an operator asks for read access to a tenant, with a reason", (st, js))
st, js, _, _ = call("GET", "/v1/t/dev/users", cookie=op1)
report(st == 403, "a pending grant gives nothing", (st, js))
st, js, _, _ = call("POST", "/v1/operator/break-glass/%s/approve" % g1, cookie=op1, csrf=op1x)
report(st == 403 and code(js) == "forbidden", "an operator cannot approve their own grant (the database refuses)", (st, js))
st, js, _, _ = call("POST", "/v1/operator/break-glass/%s/approve" % g1, cookie=op2, csrf=op2x)
report(st == 200 and js["state"] == "active" and js["approver_kind"] == "operator" and js["approved_by"] == op2_id
       and 1790 <= js["expires_at"] - js["approved_at"] <= 1800, "another operator approves: active for its 30 minutes", (st, js))
st, js, _, _ = call("GET", "/v1/t/dev/users", cookie=op1)
report(st == 200 and len(js["users"]) >= 4, "under an approved read grant the operator reads the tenant's users", (st, js))
st, js, _, _ = call("GET", "/v1/t/%s/users" % OTHER, cookie=op1)
report(st == 403, "the grant is for one tenant only", (st, js))
st, js, _, _ = call("POST", "/v1/t/dev/users", {"email": "intruder@dev.example"}, cookie=op1, csrf=op1x)
report(st == 403 and "read-only" in js["error"]["message"], "a read grant does not write: 403", (st, js))
st, js, _, _ = call("GET", "/v1/t/dev/users", cookie=op2)
report(st == 403, "the approver gets nothing from it", (st, js))
st, js, _, _ = call("GET", "/v1/t/dev/break-glass", cookie=owner_cookie)
mine = [g for g in (js or {}).get("grants", []) if g["id"] == g1]
report(st == 200 and mine and mine[0]["state"] == "active" and mine[0]["reason"] == "ticket 4711: export stuck",
       "the tenant's admins see the grant, its reason and state", (st, js))
time.sleep(1.5)
st, js, _, _ = call("GET", "/v1/t/dev/audit?action=users.list&limit=50", cookie=owner_cookie)
used = [e for e in (js or {}).get("entries", []) if e.get("privilege") == "break_glass:%s:read" % g1]
st2, js2, _, _ = call("GET", "/v1/t/dev/audit?action=break_glass.approve&outcome=ok", cookie=owner_cookie)
report(st == 200 and used and used[0]["actor_kind"] == "operator" and st2 == 200 and len(js2["entries"]) == 1,
       "every use is in the tenant's audit log, naming the grant as the privilege (AL5)", (st, used, js2))
st, js, _, _ = call("DELETE", "/v1/t/dev/break-glass/" + g1, cookie=owner_cookie, csrf=owner_csrf)
st2, js2, _, _ = call("GET", "/v1/t/dev/users", cookie=op1)
report(st == 200 and st2 == 403, "the tenant's admins end a grant: access stops at once", (st, st2, js2))

# Tenants by the API, and a write grant approved by the tenant's owner.
st, js, _, _ = call("POST", "/v1/operator/tenants", {"name": "fourth", "owner_email": "own@fourth.example"}, cookie=op1, csrf=op1x)
tok4 = ((js or {}).get("owner") or {}).get("setup_token")
report(st == 201 and js["name"] == "fourth" and tok4, "an operator creates a tenant and its first owner's setup token", (st, js))
st, js, _, _ = call("POST", "/v1/operator/tenants", {"name": "fourth", "owner_email": "own@fourth.example"}, cookie=op1, csrf=op1x)
report(st == 409, "a taken tenant name: 409", (st, js))
st0, js0, _, _ = call("POST", "/v1/operator/tenants", {"name": "Fifth Tenant", "owner_email": "own@fifth.example"}, cookie=op1, csrf=op1x)
report(st0 == 422 and js0["error"].get("field") == "name" and js0["error"].get("rule") == "name",
       "a new tenant's name out of its pattern: 422 naming the field", (st0, js0))
st, js, _, _ = call("POST", "/v1/operator/tenants", {"name": "fifth", "owner_email": "nobody"}, cookie=op1, csrf=op1x)
st2, js2, _, _ = call("GET", "/v1/operator/tenants", cookie=op1)
report(st == 422 and js["error"].get("field") == "owner_email" and js["error"].get("rule") == "email"
       and st2 == 200 and "fifth" not in [t["name"] for t in js2["tenants"]],
       "a tenant whose owner's email is not an address: 422 naming owner_email, and no tenant left behind", (st, js, st2))
st, js, _, _ = call("POST", "/v1/operator/break-glass", {"tenant": "fourth", "reason": "no"}, cookie=op1, csrf=op1x)
report(st == 422 and code(js) == "out_of_range" and js["error"].get("field") == "reason" and js["error"].get("rule") == "min",
       "a break-glass reason too short: 422 naming reason (rule min)", (st, js))
call("POST", "/v1/t/fourth/auth/setup", {"token": tok4, "password": GOOD_PW})
own4, own4x, _, _ = login("own@fourth.example", GOOD_PW, "fourth")
st, js, _, _ = call("POST", "/v1/operator/break-glass", {"tenant": "fourth", "reason": "restore a deleted user", "access": "write"}, cookie=op1, csrf=op1x)
g2 = (js or {}).get("id")
st, js, _, _ = call("POST", "/v1/t/fourth/break-glass/%s/approve" % g2, cookie=own4, csrf=own4x)
report(st == 200 and js["approver_kind"] == "owner" and js["state"] == "active", "the tenant's owner approves a write grant", (st, js))
st, js, _, _ = call("POST", "/v1/t/fourth/users", {"email": "helper@fourth.example", "roles": ["agent"]}, cookie=op1, csrf=op1x)
report(st == 201, "under a write grant the operator may change the tenant", (st, js))
st, js, _, _ = call("POST", "/v1/t/fourth/users", {"email": "boss2@fourth.example", "roles": ["owner"]}, cookie=op1, csrf=op1x)
report(st == 403, "a grant holds an admin's rights, never an owner's", (st, js))
st, js, _, _ = call("DELETE", "/v1/operator/break-glass/" + g2, cookie=op1, csrf=op1x)
st2, _, _, _ = call("GET", "/v1/t/fourth/users", cookie=op1)
report(st == 200 and st2 == 403, "an operator ends their grant", (st, st2))
st, js, _, _ = call("PATCH", "/v1/operator/tenants/fourth", {"state": "suspended"}, cookie=op1, csrf=op1x)
st2, _, _, _ = call("GET", "/v1/auth/me", cookie=own4)
report(st == 200 and js["state"] == "suspended" and st2 in (401, 403), "an operator suspends a tenant: its sessions stop", (st, js, st2))
st, js, _, _ = call("DELETE", "/v1/operator/tenants/fourth", cookie=op1, csrf=op1x)
report(st == 400, "deleting a tenant needs ?confirm=NAME", (st, js))
st, js, _, _ = call("DELETE", "/v1/operator/tenants/fourth?confirm=fourth", cookie=op1, csrf=op1x)
report(st == 200 and js["keys_destroyed"] >= 5, "an operator deletes (crypto-shreds) a tenant", (st, js))

# --- the password policy's optional rules (IA3): classes, history, maximum age ------------------
def dbsql(sql):
    return subprocess.run(["bash", os.environ["COFFRE_TEST_DBSQL"], sql], capture_output=True, text=True)


st, js, _, _ = call("POST", "/v1/operator/tenants", {"name": "policy-t", "owner_email": "own@policy.example"}, cookie=op1, csrf=op1x)
call("POST", "/v1/t/policy-t/auth/setup", {"token": ((js or {}).get("owner") or {}).get("setup_token", ""), "password": GOOD_PW})
pc, px, _, _ = login("own@policy.example", GOOD_PW, "policy-t")
st, js, _, _ = call("GET", "/v1/t/policy-t/auth/policy", cookie=pc)
report(st == 200 and js["password_min_classes"] == 0 and js["password_max_age_days"] == 0 and js["password_history"] == 0,
       "classes, maximum age and history are off by default (NIST SP 800-63B)", (st, js))
st, js, _, _ = call("PUT", "/v1/t/policy-t/auth/policy", {"mfa_required": False, "password_min_classes": 5}, cookie=pc, csrf=px)
st2, js2, _, _ = call("PUT", "/v1/t/policy-t/auth/policy", {"mfa_required": False, "password_history": 13}, cookie=pc, csrf=px)
report(st == 422 and st2 == 422, "out-of-range policy values: 422", (st, js, st2, js2))
pol = {"mfa_required": False, "password_min_classes": 4, "password_history": 3, "password_max_age_days": 30}
st, js, _, _ = call("PUT", "/v1/t/policy-t/auth/policy", pol, cookie=pc, csrf=px)
report(st == 200 and all(js[k] == v for k, v in pol.items()), "the tenant's admin turns on classes, history and a maximum age", (st, js))


def change(cur, new):
    st, js, _, _ = call("POST", "/v1/auth/password", {"current_password": cur, "new_password": new}, cookie=pc, csrf=px)
    return st, js


P = ["Violet-tractor-harbour-%d" % i for i in range(43, 48)]
st, js = change(GOOD_PW, "violet-tractor-harbour-43")
report(st == 422 and code(js) == "weak_password" and "at least 4 of" in js["error"]["message"],
       "a password of three classes where four are asked: 422, naming the rule", (st, js))
sts = [change(GOOD_PW, P[0])[0], change(P[0], P[1])[0]]
st, js = change(P[1], P[0])
report(sts == [200, 200] and st == 422 and "last 3" in js["error"]["message"],
       "a password among the last three comes back: 422", (sts, st, js))
sts = [change(P[1], P[2])[0], change(P[2], P[3])[0], change(P[3], P[0])[0]]
report(sts == [200, 200, 200], "only the last three are kept: an older one may come back", sts)
# --- the token signing key rotates with overlap (IA9) ------------------------------------------
def jwks_kids():
    st, js, _, _ = call("GET", "/v1/auth/jwks")
    return [k["kid"] for k in (js or {}).get("keys", [])]


def rotate_token_key():
    r = subprocess.run([os.environ["COFFRE_TEST_COFFRE"], "--data", DATA, "--json", "keys", "rotate-token"],
                       capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


st, js, _, _ = call("POST", "/v1/t/policy-t/clients", {"name": "rotating", "roles": ["agent"]}, cookie=pc, csrf=px)
rcid, rsec = (js or {}).get("client_id"), (js or {}).get("client_secret")


def new_token():
    st, js, _, _ = call("POST", "/v1/t/policy-t/auth/token", {"client_id": rcid, "client_secret": rsec})
    return (js or {}).get("access_token", "")


tok_a = new_token()
kids0 = jwks_kids()
rc, out = rotate_token_key()
kids1 = jwks_kids()
tok_b = new_token()
kid_b = jwt.get_unverified_header(tok_b)["kid"]
st, _, _, _ = call("GET", "/v1/auth/me", token=tok_a)
st_b, _, _, _ = call("GET", "/v1/auth/me", token=tok_b)
report(rc == 0 and len(kids0) == 1 and kids1 == [kid_b, kids0[0]] and st == 200 and st_b == 200,
       "after a token key rotation the JWKS lists the new key and the old; old tokens hold, new ones use the new kid",
       (rc, out, kids0, kids1, kid_b, st, st_b))
jwk_b = [k for k in call("GET", "/v1/auth/jwks")[1]["keys"] if k["kid"] == kid_b][0]
try:
    claims = jwt.decode(tok_b, OKPAlgorithm.from_jwk(json.dumps(jwk_b)), algorithms=["EdDSA"], audience=URL + "/v1",
                        issuer=URL)
    report(claims.get("tenant") is not None, "PyJWT verifies a token of the new key with the JWKS", claims)
except Exception as e:  # noqa: BLE001 (the test reports any failure)
    report(False, "PyJWT verifies a token of the new key with the JWKS", repr(e))
rc, out = rotate_token_key()
kids2 = jwks_kids()
st, js, _, _ = call("GET", "/v1/auth/me", token=tok_a)
st_b, _, _, _ = call("GET", "/v1/auth/me", token=tok_b)
report(rc == 0 and len(kids2) == 2 and kids2[1] == kid_b and kids0[0] not in kids2 and st == 401 and st_b == 200,
       "a second rotation retires the first key for good: its tokens stop (even cached ones); the second's hold",
       (kids2, st, js, st_b))

r = dbsql("UPDATE users SET password_at = 1000 WHERE email = 'own@policy.example'")
st, js, _, _ = call("POST", "/v1/t/policy-t/auth/login", {"email": "own@policy.example", "password": P[0]})
report(r.returncode == 0 and st == 403 and code(js) == "password_expired",
       "a password past the maximum age: 403 password_expired, no session", (r.stderr, st, js))
st, js, _, _ = call("POST", "/v1/t/policy-t/auth/login", {"email": "own@policy.example", "password": P[0], "new_password": P[3]})
report(st == 422 and code(js) == "weak_password", "the new password of an expired one follows the history too", (st, js))
st, js, _, _ = call("POST", "/v1/t/policy-t/auth/login", {"email": "own@policy.example", "password": P[0], "new_password": P[4]})
st2, _, _, _ = call("POST", "/v1/t/policy-t/auth/login", {"email": "own@policy.example", "password": P[0]})
st3, _, _, _ = call("POST", "/v1/t/policy-t/auth/login", {"email": "own@policy.example", "password": P[4]})
report(st == 200 and st2 == 401 and st3 == 200, "the login with new_password replaces it; the old one is gone", (st, js, st2, st3))

# Off-boarding an operator.
st, js, _, _ = call("DELETE", "/v1/operator/operators/" + me["id"], cookie=op1, csrf=op1x)
report(st == 403, "an operator cannot disable themselves", (st, js))
st, js, _, _ = call("DELETE", "/v1/operator/operators/%s/mfa" % me["id"], cookie=op1, csrf=op1x)
report(st == 403, "nor reset their own second factor", (st, js))
st, js, _, _ = call("DELETE", "/v1/operator/operators/" + op2_id, cookie=op1, csrf=op1x)
st2, _, _, _ = call("GET", "/v1/auth/me", cookie=op2)
report(st == 200 and st2 == 401, "disabling an operator ends their sessions at once", (st, st2))

print("flows complete", flush=True)
