#!/usr/bin/python3
# coffre — the vault end to end over HTTPS (ER2, PV2, PV7, TI1), driven by t_vault.sh.
# Arguments: URL CA ADMIN_EMAIL ADMIN_PASSWORD DBSQL (a script running SQL on the
# server's database). Prints "ok - NAME" / "not ok - NAME -- DETAIL", then "flows complete".
import http.client
import json
import re
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
import os

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flowlib import code, make_call, openapi_checker, report  # noqa: E402

URL, CA, ADMIN, ADMIN_PW, DBSQL = sys.argv[1:6]
U = urllib.parse.urlparse(URL)
CTX = ssl.create_default_context(cafile=CA)


_call = make_call(URL, CA)


def call(method, path, body=None, cookie=None, csrf=None, headers=None, raw=None):
    st, js, _, _ = _call(method, path, body, cookie=cookie, csrf=csrf, headers=headers, raw=raw)
    return st, js


def login(email, pw, tenant="dev"):
    c = http.client.HTTPSConnection(U.hostname, U.port, context=CTX, timeout=20)
    c.request("POST", "/v1/t/%s/auth/login" % tenant, body=json.dumps({"email": email, "password": pw}),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    js = json.loads(r.read().decode())
    sc = r.getheader("Set-Cookie") or ""
    c.close()
    m = re.match(r"__Host-coffre_session=([^;]*)", sc)
    return (m.group(1), js["csrf_token"]) if m else (None, None)


def dbsql(sql):
    return subprocess.run(["bash", DBSQL, sql], capture_output=True, text=True)


ck, xs = login(ADMIN, ADMIN_PW)
S = dict(cookie=ck, csrf=xs)
C = "/v1/t/dev/collections"
schema = {"email": {"type": "email", "required": True, "classification": "personal"},
          "name": {"type": "string", "max": 100, "classification": "personal"},
          "phone": {"type": "phone", "classification": "personal"},
          "ssn": {"type": "string", "classification": "sensitive"},
          "plan": {"type": "string", "classification": "internal", "filter": True},
          "age": {"type": "integer"},
          "born": {"type": "date"},
          "vip": {"type": "boolean", "classification": "public", "filter": True}}
# the development bootstrap made a small 'customers' (make run's demo): start afresh
call("DELETE", C + "/customers?confirm=customers", **S)
st, js = call("POST", C, {"name": "customers", "fields": schema}, **S)
report(st == 201 and js["version"] == 1 and js["fields"]["age"]["classification"] == "confidential",
       "a collection with a schema; unclassified fields are confidential", (st, js))
st, js = call("POST", C, {"name": "customers", "fields": schema}, **S)
report(st == 409, "a taken collection name: 409", (st, js))
st, js = call("POST", C, {"name": "bad", "fields": {"ssn": {"type": "string", "classification": "sensitive", "filter": True}}}, **S)
report(st == 422 and js["error"]["field"] == "fields.ssn" and js["error"]["rule"] == "filter",
       "a sensitive field cannot be filtered on (it would be kept in clear): 422 naming field and rule", (st, js))
st, js = call("POST", C, {"name": "bad", "fields": {"x": {"type": "uuid"}}}, **S)
report(st == 422 and js["error"]["rule"] == "type", "an unknown type: 422", (st, js))
st, js = call("POST", C, {"name": "bad", "fields": {"x": {"type": "string", "colour": "red"}}}, **S)
report(st == 422 and js["error"]["field"] == "fields.x" and js["error"]["rule"] == "keys"
       and js["error"]["message"].startswith("fields.x: ") and js["error"]["message"].count("fields.x") == 1
       and "colour" in js["error"]["message"],
       "an unknown key in a field's definition: 422 naming the field, the rule and the key", (st, js))
st, js = call("POST", C, {"name": "bad", "fields": {}}, **S)
st2, js2 = call("POST", C, {"name": "bad", "fields": {"f%d" % i: {"type": "string"} for i in range(65)}}, **S)
st3, js3 = call("POST", C, {"name": "bad", "fields": {"x": {"type": "string", "max": "5"}}}, **S)
report(st == 422 and code(js) == "out_of_range" and js["error"]["rule"] == "min" and st2 == 422 and js2["error"]["rule"] == "max"
       and st3 == 422 and code(js3) == "wrong_type" and js3["error"]["rule"] == "max",
       "no field: 422 rule min; 65 fields: rule max; a max that is not a number: wrong_type", (st, js, st2, js2, st3, js3))

R = C + "/customers/records"
ada = {"email": "ada@example.com", "name": "Ada Lovelace", "phone": "+33 6 12 34 56 12", "ssn": "1 85 12 75 123 456",
       "plan": "pro", "age": 36, "born": "1815-12-10", "vip": True}
st, js = call("POST", R, {"data": ada}, **S)
rid = (js or {}).get("id", "")
d = (js or {}).get("data", {})
report(st == 201 and js["version"] == 1 and d["email"] == "a***@example.com" and d["phone"] == "+33 6 ** ** ** 12"
       and d["ssn"] == "**** 456" and d["plan"] == "pro" and d["age"] == 36 and sorted(js["masked"]) == ["email", "name", "phone", "ssn"],
       "a record is stored; personal and sensitive fields come back masked", (st, js))
# a phone keeps its country code (one, two or three digits: E.164), the next digit and the last two
masks = {}
call("POST", C, {"name": "phones", "fields": {"phone": {"type": "phone", "classification": "personal"}}}, **S)
for ph in ("+1-202-555-0199", "+353 87 123 4567", "+44 20 7946 0958"):
    st_, js_ = call("POST", C + "/phones/records", {"data": {"phone": ph}}, **S)
    masks[ph] = (js_ or {}).get("data", {}).get("phone")
call("DELETE", C + "/phones?confirm=phones", **S)
report(masks == {"+1-202-555-0199": "+1-2**-***-**99", "+353 87 123 4567": "+353 8* *** **67",
                 "+44 20 7946 0958": "+44 2* **** **58"},
       "a phone's mask keeps its whole country code and one digit more, whatever the code's length", masks)
bads = [({"name": "x"}, "data.email", "required"), ({"email": "not-an-email"}, "data.email", "email"),
        ({"email": "a@b.co", "age": "old"}, "data.age", "integer"), ({"email": "a@b.co", "colour": "red"}, "data.colour", "schema"),
        ({"email": "a@b.co", "name": "x" * 101}, "data.name", "max"), ({"email": "a@b.co", "phone": "0612"}, "data.phone", "phone"),
        ({"email": "a@b.co", "born": "2023-02-29"}, "data.born", "date")]
got = []
for data, field, rule in bads:
    st, js = call("POST", R, {"data": data}, **S)
    got.append((st, (js or {}).get("error", {}).get("field"), (js or {}).get("error", {}).get("rule")))
report(got == [(422, f, r) for _, f, r in bads], "schema violations: 422 with the field's path and the rule", got)
st, js = call("POST", R, raw=b'{"data": {', **S)
report(st == 400 and code(js) == "malformed_json", "malformed JSON: 400", (st, js))

st, js = call("GET", R + "/" + rid, **S)
report(st == 200 and js["data"]["email"] == "a***@example.com", "a read masks personal fields", (st, js))
# the replies are what docs/openapi.yaml says they are
check = openapi_checker(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../docs/openapi.yaml"))
st2, coll = call("GET", C + "/customers", **S)
st3, err = call("POST", R, {"data": {"email": "bad"}}, **S)
bad = [b for b in (check("Record", js), check("Collection", coll), check("Error", err)) if b]
report(not bad, "records, collections and errors match their OpenAPI schemas", bad)
st, js = call("GET", R + "/" + rid + "?reveal=email,ssn", **S)
report(st == 422 and js["error"]["field"] == "reason", "revealing needs a reason: 422", (st, js))
st1, js1 = call("GET", R + "/" + rid + "?reveal=&reason=ticket%201", **S)
st2, js2 = call("GET", R + "/" + rid + "?reason=ticket%201", **S)
report(st1 == 400 and js1["error"].get("field") == "reveal" and st2 == 400 and js2["error"].get("field") == "reason",
       "an empty ?reveal= or a reason without ?reveal=: 400 (neither would reveal anything, silently)", (st1, js1, st2, js2))
st, js = call("GET", R + "/" + rid + "?reveal=email&reason=" + "%C3%A9" * 150, **S)
report(st == 422 and code(js) == "out_of_range" and js["error"].get("field") == "reason" and js["error"].get("rule") == "max",
       "a reason of 300 bytes: 422 naming reason (rule max), as one of 201 (not the 400 of a buffer)", (st, js))
st, js = call("GET", R + "/" + rid + "?reveal=email&reason=ok", **S)
st2, js2 = call("GET", R + "/" + rid + "?reveal=true&reason=ticket%204711", **S)
st3, js3 = call("GET", R + "/" + rid + "?reveal=email,emial&reason=ticket%204711", **S)
st4, js4 = call("GET", R + "/" + rid + "?version=1&version=2", **S)
st5, js5 = call("GET", R + "?filter=plan:pro&filter=vip:true", **S)
st6, js6 = call("GET", R + "?limit=0", **S)
st7, js7 = call("GET", "/v1/t/dev/export?limit=0", **S)
st8, js8 = call("GET", R + "/" + rid + "?version=0", **S)
report(st == 422 and code(js) == "out_of_range" and js["error"].get("rule") == "min"
       and st2 == 400 and js2["error"].get("field") == "reveal" and "'true'" in js2["error"]["message"]
       and st3 == 400 and "'emial'" in js3["error"]["message"]
       and st4 == 400 and "version is given twice" in js4["error"]["message"] and st5 == 400 and "filter" in js5["error"]["message"]
       and st6 == 400 and "limit must be a number from 1 to 100" in js6["error"]["message"]
       and st7 == 400 and "from 1 to 1000" in js7["error"]["message"] and st8 == 400 and "from 1 to" in js8["error"]["message"],
       "a reason of 2 bytes: 422 (rule min); reveal=true or a misspelt field: 400 naming it (it would reveal nothing, silently); "
       "a query parameter given twice: 400 (one of them would be ignored); limit=0 or version=0: 400 naming the range, as OpenAPI's minimum says",
       (st, js, st2, js2, st3, js3, st4, js4, st5, js5, st6, js6, st7, js7))
st, js = call("GET", R + "/" + rid + "?reveal=email,ssn&reason=ticket%204711", **S)
report(st == 200 and js["data"]["email"] == "ada@example.com" and js["data"]["ssn"] == ada["ssn"] and js["data"]["phone"] != ada["phone"],
       "pii.reveal with a reason shows the fields named, only those", (st, js))

# optimistic concurrency, patch, history
st, js = call("PATCH", R + "/" + rid, {"data": {"plan": "team", "age": None}}, headers={"If-Match": "1"}, **S)
report(st == 200 and js["version"] == 2 and js["data"]["plan"] == "team" and "age" not in js["data"],
       "a patch at the version read: version 2 (null removes a field)", (st, js))
st, js = call("PUT", R + "/" + rid, {"data": ada}, headers={"If-Match": "1"}, **S)
report(st == 409 and code(js) == "conflict", "a write over a stale version: 409", (st, js))
st, js = call("PUT", R + "/" + rid, {"data": {"email": "ada@example.org"}}, headers={"If-Match": "\"2\""}, **S)
report(st == 200 and js["version"] == 3 and "plan" not in js["data"], "a full replace at the current version", (st, js))
# RFC 9110: reads and changes answer the version as an ETag, which If-Match sends back
st0, js0 = call("POST", R, {"data": {"email": "etag@example.com", "plan": "pro"}}, **S)
eid = (js0 or {}).get("id", "x")
st, js, _, hd = _call("GET", R + "/" + eid, cookie=ck, csrf=xs)
et = hd.get("ETag")
st2, js2, _, hd2 = _call("PATCH", R + "/" + eid, {"data": {"plan": "team"}}, cookie=ck, csrf=xs, headers={"If-Match": et or "x"})
st3, js3, _, hd3 = _call("PATCH", R + "/" + eid, {"data": {"plan": "free"}}, cookie=ck, csrf=xs, headers={"If-Match": et or "x"})
st4, js4, _, hd4 = _call("GET", R + "/" + eid + "?version=1", cookie=ck, csrf=xs)
call("DELETE", R + "/" + eid, **S)
report(st0 == 201 and st == 200 and et == '"1"' and st2 == 200 and js2["version"] == 2 and hd2.get("ETag") == '"2"'
       and st3 == 409 and "ETag" not in hd3 and st4 == 200 and hd4.get("ETag") == '"1"',
       "a read answers ETag \"1\", a change at it ETag \"2\"; the same ETag again: 409, no ETag; an old version's is its own",
       (st0, st, hd, st2, hd2, st3, js3, st4, hd4))
st, js = call("GET", R + "/" + rid + "/versions", **S)
st2, js2 = call("GET", R + "/" + rid + "?version=1&reveal=email&reason=audit%20check", **S)
report(st == 200 and [v["version"] for v in js["versions"]] == [3, 2, 1] and st2 == 200 and js2["data"]["email"] == "ada@example.com",
       "the history of versions, and an old version read", (st, js, st2, js2))
st, js = call("GET", R + "/" + rid + "/versions?limit=2", **S)
st2, js2 = call("GET", R + "/" + rid + "/versions?limit=2&before=%s" % (js or {}).get("next"), **S)
st3, js3 = call("GET", R + "/" + rid + "/versions?limit=0", **S)
report(st == 200 and [v["version"] for v in js["versions"]] == [3, 2] and js["next"] == 2
       and st2 == 200 and [v["version"] for v in js2["versions"]] == [1] and js2["next"] is None and st3 == 400,
       "the history a page at a time: limit, and next as the following page's before", (st, js, st2, js2, st3, js3))

# lists: filters, pagination, sensitive left out
ids = []
for i in range(5):
    st, js = call("POST", R, {"data": {"email": "u%d@example.com" % i, "plan": "pro" if i % 2 else "free", "ssn": "secret-%d" % i, "vip": i == 3}}, **S)
    ids.append(js["id"])
st, js = call("GET", R + "?filter=plan:pro&limit=1", **S)
st2, js2 = call("GET", R + "?filter=plan:pro&limit=1&cursor=" + (js or {}).get("next", ""), **S)
got = [r["id"] for r in (js or {}).get("records", []) + (js2 or {}).get("records", [])]
report(st == 200 and st2 == 200 and sorted(got) == sorted([ids[1], ids[3]]) and js2["next"] is None,
       "a filter on a filterable field, one record a page", (st, js, st2, js2))
st, js = call("GET", R + "?limit=100", **S)
recs = (js or {}).get("records", [])
report(st == 200 and len(recs) == 6 and all("ssn" not in r["data"] for r in recs) and all(r["data"]["email"].count("***") == 1 for r in recs),
       "lists leave sensitive fields out and mask personal ones", (st, js))
st, js = call("GET", R + "?filter=ssn:secret-1", **S)
report(st == 422 and js["error"]["rule"] == "filter", "a filter on a field not marked filter: 422", (st, js))
st, js = call("GET", R + "?fliter=plan:pro", **S)
report(st == 400 and js["error"]["code"] == "invalid_argument" and "fliter" in js["error"]["message"]
       and "filter" in js["error"]["message"],
       "a misspelt query parameter: 400 naming it and the ones the call takes (not the whole list)", (st, js))
st, js = call("GET", R + "?filter=plan:pro,plan:free", **S)
report(st == 400 and js["error"]["code"] == "invalid_argument" and "twice" in js["error"]["message"],
       "one field filtered on twice: 400 (not the last value alone)", (st, js))
st, js = call("GET", R + "?filter=vip:true", **S)
report(st == 200 and [r["id"] for r in js["records"]] == [ids[3]], "a boolean filter", (st, js))
# a filter's value is read as its field's type: one that cannot match is refused, and a
# filter jansson cannot keep (not UTF-8) is refused, not dropped (which listed every record)
st, js = call("GET", R + "?filter=vip:True", **S)
st2, js2 = call("GET", R + "?filter=vip:1", **S)
st3, js3 = call("GET", R + "?filter=plan:%FF", **S)
st4, js4 = call("GET", R + "?filter=%FF:pro", **S)
report(st == 422 and js["error"].get("field") == "filter.vip" and js["error"].get("rule") == "boolean"
       and st2 == 422 and js2["error"].get("rule") == "boolean"
       and st3 == 400 and "UTF-8" in js3["error"]["message"] and st4 == 400,
       "a filter value not of its field's type: 422 naming filter.FIELD and the rule; not UTF-8: 400", (st, js, st2, js2, st3, js3, st4, js4))
st, js = call("POST", C, {"name": "typed", "fields": {"n": {"type": "integer", "classification": "internal", "filter": True},
                                                     "x": {"type": "number", "classification": "internal", "filter": True},
                                                     "d": {"type": "date", "classification": "internal", "filter": True},
                                                     "t": {"type": "string", "classification": "internal", "filter": True}}}, **S)
call("POST", C + "/typed/records", {"data": {"n": 5, "x": 7, "d": "2020-01-31", "t": "a" * 1023}}, **S)
call("POST", C + "/typed/records", raw='{"data": {"x": 7.0}}', **S)
st1, js1 = call("GET", C + "/typed/records?filter=n:5", **S)
st2, js2 = call("GET", C + "/typed/records?filter=n:05", **S)
st3, js3 = call("GET", C + "/typed/records?filter=x:7.0", **S)
st4, js4 = call("GET", C + "/typed/records?filter=d:2020-1-31", **S)
st5, js5 = call("GET", C + "/typed/records?filter=t:" + "a" * 1023, **S)
st6, js6 = call("POST", C + "/typed/records", {"data": {"t": "a" * 1024}}, **S)
report(st1 == 200 and len(js1["records"]) == 1 and st2 == 422 and js2["error"].get("field") == "filter.n"
       and st3 == 200 and len(js3["records"]) == 2 and st4 == 422 and js4["error"].get("rule") == "date"
       and st5 == 200 and len(js5["records"]) == 1
       and st6 == 422 and js6["error"].get("field") == "data.t" and js6["error"].get("rule") == "max",
       "typed filters: 7.0 finds 7 and 7.0, 05 and 2020-1-31 are refused (422), a 1023-byte value filters; "
       "a filterable value over 1023 bytes (never findable) is refused (422 max)",
       (st1, js1, st2, js2, st3, js3, st4, js4, st5, st6, js6))
call("DELETE", C + "/typed?confirm=typed", **S)
# an unknown field whose name is cut inside a character where the error names it
st, js = call("POST", R, {"data": {"email": "a@example.com", "a" + "\u00e9" * 40: 1}}, **S)
st2, js2 = call("GET", R + "?filter=a" + "%C3%A9" * 40 + ":1", **S)
report(st == 422 and js["error"]["code"] == "unknown_field" and js["error"].get("field", "").startswith("data.a\u00e9")
       and st2 == 422 and js2["error"].get("field", "").startswith("filter.a\u00e9"),
       "a field name cut inside a character in its error: still 422 naming it (was 503 out_of_memory)", (st, js, st2, js2))

# batches: all or nothing; reads name what is missing
def count():
    return len(call("GET", R + "?limit=100", **S)[1]["records"])


n0 = count()
B = C + "/customers/batch"
st, js = call("POST", B, {"records": [{"data": {"email": "b%d@example.com" % i, "plan": "batch"}} for i in range(3)]}, **S)
bids = (js or {}).get("ids", [])
st2, js2 = call("POST", B + "/read", {"ids": bids + ["r0000000000000000"]}, **S)
report(st == 201 and len(bids) == 3 and st2 == 200 and [r["id"] for r in js2["records"]] == bids
       and js2["missing"] == ["r0000000000000000"] and js2["records"][0]["data"]["email"] == "b***@example.com",
       "a batch of three in one call; a batch read, masked, names the missing", (st, js, st2, js2))
st, js = call("POST", B, {"records": []}, **S)
st2, js2 = call("POST", B, {"records": [{"data": {"email": "x@example.com"}}] * 1001}, **S)
st3, js3 = call("POST", B + "/read", {"ids": []}, **S)
st4, js4 = call("POST", B + "/read", {"ids": "r0000000000000000"}, **S)
report(st == 422 and js["error"].get("rule") == "min" and st2 == 422 and js2["error"].get("rule") == "max"
       and st3 == 422 and js3["error"].get("rule") == "min" and st4 == 422 and code(js4) == "wrong_type" and js4["error"].get("rule") == "array",
       "an empty batch: 422 rule min; 1001 records: rule max; ids not an array: wrong_type", (st, js, st2, js2, st3, js3, st4, js4))
st, js = call("POST", B, {"records": [{"data": {"email": "c0@example.com"}}, {"data": {"email": "bad"}}]}, **S)
report(st == 422 and js["error"]["field"] == "records[1].data.email" and js["error"]["rule"] == "email"
       and js["error"]["message"].startswith("records[1]: data.email ") and count() == n0 + 3,
       "a batch with one bad record writes nothing: 422 naming records[1], the field and the rule", (st, js))
st, js = call("POST", B, {"records": [{"data": {"email": "bad"}}]}, **S)
report(st == 422 and js["error"]["field"] == "records[0].data.email" and js["error"]["rule"] == "email"
       and count() == n0 + 3, "a batch of one names records[0] too", (st, js))
st, js = call("POST", B, {"records": [{"data": {"email": "x@example.com"}}] * 1001}, **S)
report(st in (413, 422), "a batch over 1000 records is refused", (st, js))
# Idempotency-Key: the same request twice makes one record
K = {"Idempotency-Key": "order-7781-create"}
body = {"data": {"email": "idem@example.com", "plan": "pro"}}
st, js = call("POST", R, body, headers=K, **S)
st2, js2 = call("POST", R, body, headers=K, **S)
st3, js3 = call("POST", R, {"data": {"email": "other@example.com"}}, headers=K, **S)
report(st == 201 and st2 == 201 and js["id"] == js2["id"] and count() == n0 + 4 and st3 == 422 and js3["error"]["rule"] == "idempotency",
       "Idempotency-Key: a retry answers with the same record and writes nothing; the key with another body is refused", (st, js, st2, js2, st3, js3))
made = js2["id"]
call("DELETE", R + "/" + made, **S)
st4, js4 = call("POST", R, body, headers=K, **S)
report(st4 == 404 and made in js4["error"]["message"] and "deleted" in js4["error"]["message"],
       "a retry after the record it made was deleted: 404 saying so (not a second record)", (st4, js4))
st, js = call("PATCH", R + "/" + made, {"data": {"plan": "team"}}, headers={"Idempotency-Key": "order-7781-patch"}, **S)
st2, js2 = call("DELETE", R + "/" + made, headers={"Idempotency-Key": "order-7781-delete"}, **S)
st3, js3 = call("PATCH", R + "/" + call("GET", R + "?filter=plan:pro&limit=1", **S)[1]["records"][0]["id"], {"data": {"plan": "pro"}},
                headers={"If-Match": "*"}, **S)
report(st == 400 and js["error"].get("field") == "Idempotency-Key" and "If-Match" in js["error"]["message"] and st2 == 400
       and st3 == 200,
       "an Idempotency-Key on a change (PATCH, DELETE) is refused, not ignored (a retry would write again); If-Match: * is any version",
       (st, js, st2, js2, st3, js3))

# isolation below coffre (TI1): rows copied between records and tenants do not open
r2 = ids[0]
out = dbsql("UPDATE record_versions SET sealed = (SELECT sealed FROM record_versions WHERE record_id = '%s' AND version = 1)"
            " WHERE record_id = '%s' AND version = 1" % (ids[1], r2))
st, js = call("GET", R + "/" + r2, **S)
# nothing of either record comes back (the random request id may spell anything in hex)
shown = json.dumps(js)
report(out.returncode == 0 and st == 500 and code(js) == "integrity" and set(js or {}) == {"error"}
       and not any(w in shown for w in ("example.com", "secret-", "Lovelace")),
       "a sealed version copied from another record does not open: an integrity error, nothing garbled", (out.stderr, st, js))
keep = dbsql("CREATE TABLE kept AS SELECT sealed FROM record_versions WHERE record_id = '%s' AND version = 3" % rid)
out = dbsql("UPDATE record_versions SET sealed = (SELECT sealed FROM record_versions WHERE record_id = '%s' AND version = 1)"
            " WHERE record_id = '%s' AND version = 3" % (rid, rid))
st, js = call("GET", R + "/" + rid, **S)
report(out.returncode == 0 and st == 500 and code(js) == "integrity", "an old version's ciphertext put in the current version's place does not open", (out.stderr, st, js))
back = dbsql("UPDATE record_versions SET sealed = (SELECT sealed FROM kept) WHERE record_id = '%s' AND version = 3" % rid)
dbsql("DROP TABLE kept")
st, js = call("GET", R + "/" + rid, **S)
report(keep.returncode == 0 and back.returncode == 0 and st == 200, "put back, it opens again", (keep.stderr, back.stderr, st, js))
time.sleep(1.5)  # entries are listed once sequenced (within a second)
st, js = call("GET", "/v1/t/dev/audit?action=record.integrity&limit=10", **S)
report(st == 200 and len(js["entries"]) >= 2 and js["entries"][0]["outcome"] == "failed", "each failed read is audited (record.integrity)", (st, js))
st, js = call("GET", "/v1/t/dev/audit?action=record.reveal&limit=10", **S)
st2, js2 = call("GET", "/v1/t/dev/audit?action=record.reveal&resource=" + rid, **S)
report(st == 200 and len(js["entries"]) == 2 and js["entries"][1]["detail"] == "fields=email,ssn reason=ticket 4711"
       and st2 == 200 and len(js2["entries"]) == 2,
       "each reveal is audited: the record (searchable), the fields and the reason (in clear)", (st, js, st2, js2))

# deletion
st, js = call("DELETE", R + "/" + ids[4], headers={"If-Match": "7"}, **S)
st2, js2 = call("DELETE", R + "/" + ids[4], **S)
st3, _ = call("GET", R + "/" + ids[4], **S)
report(st == 409 and st2 == 200 and st3 == 404, "delete: a stale If-Match is refused; then gone (404)", (st, js, st2, js2, st3))
st, js = call("PUT", C + "/customers", {"fields": dict(schema, notes={"type": "string", "classification": "confidential"})}, **S)
st2, js2 = call("GET", R + "/" + rid, **S)
report(st == 200 and js["version"] == 2 and st2 == 200 and js2["schema_version"] == 1,
       "a schema change is a new version; records keep the one they were written with", (st, js, st2, js2))
call("POST", C, {"name": "scratch", "fields": {"n": {"type": "integer"}}}, **S)
st, js = call("POST", C + "/scratch/records", {"data": {"n": 1}}, **S)
tid = (js or {}).get("id", "")
st, js = call("DELETE", C + "/scratch", **S)
st2, js2 = call("DELETE", C + "/scratch?confirm=scratch", **S)
st3, _ = call("GET", C + "/scratch/records/" + tid, **S)
report(st == 400 and st2 == 200 and st3 == 404, "deleting a collection needs ?confirm=NAME, then takes its records", (st, st2, st3))
# The same through an API client's token: the record routes then run on the connection's
# own thread (SQLite) or the work pool (PostgreSQL), their write handed to the store's
# writer and the reply made once it is durable, no thread waiting for it meanwhile.
st, cl = call("POST", "/v1/t/dev/clients", {"name": "vault-flow", "roles": ["agent"]}, **S)
st2, tk = call("POST", "/v1/t/dev/auth/token", {"client_id": cl["client_id"], "client_secret": cl["client_secret"]})
T = {"Authorization": "Bearer " + (tk or {}).get("access_token", "")}
made = [call("POST", R, {"data": {"email": "tok%d@example.com" % i, "plan": "pro"}}, headers=T) for i in range(3)]
tids = [(j or {}).get("id", "") for _, j in made]
report(st2 == 200 and all(s == 201 for s, _ in made) and all(re.fullmatch(r"r[0-9a-f]{28}", i) for i in tids)
       and tids == sorted(tids) and made[0][1]["data"]["email"] == "t***@example.com" and made[0][1]["masked"] == ["email"],
       "creates with a token: 201, masked; ids are r and 28 hex digits, in the order they were made", made)
st, js = call("GET", R + "/" + tids[0], headers=T)
report(st == 200 and js["id"] == tids[0] and js["data"] == {"email": "t***@example.com", "plan": "pro"} and js["masked"] == ["email"]
       and not check("Record", js), "a read with a token: masked as the schema says, as OpenAPI says", (st, js))
st, js = call("GET", R + "/" + tids[0] + "?reveal=email&reason=ticket%201", headers=T)
report(st == 403, "a reveal without pii.reveal, with a token: 403", (st, js))
st, js = call("GET", C + "/nope/records/" + tids[0], headers=T)
st2, js2 = call("POST", C + "/nope/records", {"data": {"x": 1}}, headers=T)
report(st == 404 and st2 == 404, "a collection that does not exist, with a token: 404", (st, js, st2, js2))
K2 = {"Idempotency-Key": "token-create-0001"}
st, js = call("POST", R, {"data": {"email": "k@example.com"}}, headers=dict(T, **K2))
st2, js2 = call("POST", R, {"data": {"email": "k@example.com"}}, headers=dict(T, **K2))
st3, js3 = call("POST", R, {"data": {"email": "k2@example.com"}}, headers=dict(T, **K2))
report(st == 201 and st2 == 201 and js["id"] == js2["id"] and st3 == 422 and js3["error"]["rule"] == "idempotency",
       "Idempotency-Key with a token: the retry gets the same record, another body is refused", (st, js, st2, js2, st3, js3))
# nothing to mask: the stored text comes back as it was sealed, byte for byte the data
call("POST", C, {"name": "notes", "fields": {"text": {"type": "string"}, "n": {"type": "integer", "classification": "internal"}}}, **S)
note = {"text": "caf\u00e9 \"quoted\" \\ line\nbreak", "n": 7}
st, js = call("POST", C + "/notes/records", {"data": note}, headers=T)
nid = (js or {}).get("id", "")
st2, js2 = call("GET", C + "/notes/records/" + nid, headers=T)
call("PUT", C + "/notes", {"fields": {"text": {"type": "string"}, "n": {"type": "integer"}, "who": {"type": "email", "classification": "personal"}}}, **S)
st3, js3 = call("GET", C + "/notes/records/" + nid, headers=T)
report(st == 201 and st2 == 200 and js2["data"] == note and js2["masked"] == [] and js2["version"] == 1 and not check("Record", js2)
       and js == js2 and not check("Record", js)
       and st3 == 200 and js3["data"] == note and js3["schema_version"] == 1,
       "a record with nothing to mask: its create answers it as sealed, and it reads back exactly, before and after its schema changes",
       (st, js, st2, js2, st3, js3))
# the data's text as sent is what is sealed (cf_json_member_text): spaces, line breaks and
# escapes read back as the same values, in a collection that masks nothing (framed as
# sealed) and in one that masks (parsed, then encoded); a body whose key is written with
# an escape is encoded again, with the same result
call("POST", C, {"name": "plain", "fields": {"text": {"type": "string"}, "n": {"type": "integer"}}}, **S)
raw1 = b'{ "data" :\n  {\n    "text" : "caf\\u00e9 \\/ \\"q\\"",\n\t"n" : 8\n  }\n}\n'
want1 = {"text": "caf\u00e9 / \"q\"", "n": 8}
raw2 = b'{"d\\u0061ta": {"text": "x", "n": 9}}'
res = []
for coll in ("plain", "notes"):
    for raw, want in ((raw1, want1), (raw2, {"text": "x", "n": 9})):
        st, js = call("POST", C + "/" + coll + "/records", raw=raw, headers=T)
        st2, js2 = call("GET", C + "/" + coll + "/records/" + (js or {}).get("id", "x"), headers=T)
        res.append((coll, st, js, st2, js2, st == 201 and st2 == 200 and js["data"] == want
                    and js2["data"] == want and js == js2 and not check("Record", js2)))
report(all(r[-1] for r in res),
       "a create seals its data's text as sent: spaces, line breaks and escapes read back as the same values; an escaped key is encoded again",
       res)
# a record's data is at most 256 KiB (records.md "Size"): for a create as sent, spaces
# included; a batch seals the compact encoding, so the same data with 30 000 spaces fits
call("POST", C, {"name": "big", "fields": {k: {"type": "string"} for k in "abcde"}}, **S)
v = "x" * 60000
st, js = call("POST", C + "/big/records", {"data": {k: v for k in "abcde"}}, headers=T)
padded = ('{"data": {"a": "%s", "b": "%s",%s"c": "%s", "d": "%s"}}' % (v, v, " " * 30000, v, v)).encode()
st2, js2 = call("POST", C + "/big/records", raw=padded, headers=T)
st3, js3 = call("POST", C + "/big/batch", raw=b'{"records": [' + padded + b']}', headers=T)
st4, js4 = call("GET", C + "/big/records", headers=T)
report(st == 413 and code(js) == "too_large" and js["error"].get("field") == "data" and js["error"].get("rule") == "max"
       and st2 == 413 and code(js2) == "too_large" and js2["error"].get("field") == "data"
       and st3 == 201 and st4 == 200 and [r["id"] for r in js4["records"]] == js3["ids"],
       "a record over 256 KiB is 413 too_large (data, max) and nothing is written; a create counts its spaces, a batch its compact encoding",
       (st, js, st2, js2, st3, st4, len((js4 or {}).get("records", []))))
# A reply's head record waits for its body's, to leave in one send (tls.c cf_tls_push).
# Large replies and small ones, pipelined on one connection: the server's sends can fill the
# socket (EAGAIN, short sends) while heads wait for their bodies; each reply still comes
# whole and in order, and the connection serves on. (tests/unit/test_http.c drives the
# sending side through a full socket and checks each byte arrives once, in order.)
big = {k: v for k in "abcd"}
for _ in range(2):
    call("POST", C + "/big/batch", {"records": [{"data": big}] * 4}, headers=T)


def pipelined(paths, token):
    s = socket.create_connection((U.hostname, U.port), timeout=30)
    t = CTX.wrap_socket(s, server_hostname=U.hostname)
    t.sendall("".join("GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n"
                      % (p, U.hostname, token) for p in paths).encode())
    time.sleep(0.3)  # the server's sends fill the socket meanwhile
    out, buf = [], b""
    for _ in paths:
        while b"\r\n\r\n" not in buf:
            chunk = t.recv(4096)
            if not chunk:
                break
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        m = re.search(rb"(?im)^content-length: *([0-9]+)", head)
        n = int(m.group(1)) if m else -1
        while 0 <= n and len(buf) < n:
            chunk = t.recv(4096)
            if not chunk:
                break
            buf += chunk
        body, buf = buf[:n], buf[n:]
        try:
            out.append((int(head.split()[1]), json.loads(body)))
        except (ValueError, IndexError):
            out.append((head[:40], len(body)))
    t.close()
    return out


lst = C + "/big/records?limit=9"
got = pipelined([lst, "/healthz", lst, "/healthz"], T["Authorization"][7:])
report([g[0] for g in got] == [200] * 4
       and all(len(got[i][1]["records"]) == 9 and all(r["data"] == big for r in got[i][1]["records"]) for i in (0, 2))
       and got[1][1]["status"] == "ok" and got[3][1]["status"] == "ok",
       "large replies and small ones, pipelined on one connection, come whole and in order, and the connection serves on",
       [(g[0], str(g[1])[:80]) for g in got])
call("DELETE", C + "/big?confirm=big", **S)
# changes with a token: the new version is answered as a read would show it
st, js = call("PATCH", R + "/" + tids[1], {"data": {"plan": "team"}}, headers=dict(T, **{"If-Match": "1"}))
st2, js2 = call("GET", R + "/" + tids[1], headers=T)
st3, js3 = call("PUT", R + "/" + tids[1], {"data": {"email": "new@example.com"}}, headers=dict(T, **{"If-Match": "1"}))
st4, js4 = call("PUT", R + "/" + tids[1], {"data": {"email": "new@example.com"}}, headers=dict(T, **{"If-Match": "2"}))
report(st == 200 and js["version"] == 2 and js["data"] == {"email": "t***@example.com", "plan": "team"}
       and js == js2 and not check("Record", js) and st3 == 409 and code(js3) == "conflict"
       and st4 == 200 and js4["version"] == 3 and js4["data"] == {"email": "n***@example.com"},
       "a patch and a replace with a token answer the version written, as a read shows it; a stale If-Match: 409",
       (st, js, st2, js2, st3, js3, st4, js4))
st, js = call("DELETE", R + "/" + tids[2], headers=T)
st2, js2 = call("DELETE", R + "/" + tids[2], headers=T)
st3, _ = call("GET", R + "/" + tids[2], headers=T)
report(st == 403 and st2 == 403 and st3 == 200, "deleting needs records.delete, which the agent role has not: 403", (st, js, st2, js2, st3))
st, js = call("DELETE", R + "/" + tids[2], **S)
st2, js2 = call("DELETE", R + "/" + tids[2], **S)
report(st == 200 and js == {"ok": True} and st2 == 404, "a delete, then a second one: 404", (st, js, st2, js2))
time.sleep(1.5)
st, js = call("GET", "/v1/t/dev/audit?action=record.get&actor=" + cl["client_id"] + "&limit=50", **S)
st2, js2 = call("GET", "/v1/t/dev/audit?action=record.create&actor=" + cl["client_id"] + "&limit=50", **S)
report(st == 200 and len(js["entries"]) >= 4 and st2 == 200 and len(js2["entries"]) >= 5
       and any(e["outcome"] == "denied" for e in js["entries"]),
       "every token read and create is in the audit log, the refused ones too", (st, js, st2, js2))
# PV2: masks of values that are not ASCII keep whole characters, and a value whose field
# changed type since it was written is masked too: never left out, never a crash
long_domain = "@" + ".".join(["d" * 50] * 4) + ".example"  # 212 bytes
st, js = call("POST", C + "/customers/records", {"data": {"email": "\u00e9lo\u00efse" + long_domain, "name": "Zo\u00eb \u00c5ngstr\u00f6m-\u00dcnal"}}, **S)
st2, js2 = call("GET", C + "/customers/records/" + (js or {}).get("id", "x"), **S)
report(st == 201 and js["data"].get("email") == "\u00e9***" + long_domain and js["data"].get("name") == "****\u00dcnal"
       and js2["data"] == js["data"] and sorted(js["masked"]) == ["email", "name"],
       "a mask keeps whole characters (\u00e9***@..., ****\u00dcnal) and a long domain: the field is never left out", (st, js, st2, js2))
st, js = call("POST", C, {"name": "retyped", "fields": {"age": {"type": "integer", "classification": "personal"}}}, **S)
st2, js2 = call("POST", C + "/retyped/records", {"data": {"age": 36}}, **S)
st3, js3 = call("PUT", C + "/retyped", {"fields": {"age": {"type": "string", "classification": "personal"}}}, **S)
st4, js4 = call("GET", C + "/retyped/records/" + (js2 or {}).get("id", "x"), **S)
st5, js5 = call("GET", C + "/retyped/records", **S)
st6, _ = call("GET", "/healthz")
report(st == 201 and st2 == 201 and st3 == 200 and st4 == 200 and js4["data"] == {"age": "***"} and js4["masked"] == ["age"]
       and st5 == 200 and js5["records"][0]["data"] == {"age": "***"} and st6 == 200,
       "a field that changed type (integer to string) masks its old values as ***: the read and the list answer, the server stays up",
       (st, st2, st3, js3, st4, js4, st5, js5, st6))
# PV2: a string written before its field became phone or email is no phone or email: the
# phone mask kept all but its digits in clear ("John Smith, 12 rue de la Paix")
call("POST", C, {"name": "retyped2", "fields": {"p": {"type": "string", "classification": "personal"},
                                                "e": {"type": "string", "classification": "personal"}}}, **S)
st2, js2 = call("POST", C + "/retyped2/records", {"data": {"p": "John Smith, 12 rue de la Paix", "e": "Jane Doe"}}, **S)
st3, js3 = call("PUT", C + "/retyped2", {"fields": {"p": {"type": "phone", "classification": "personal"},
                                                    "e": {"type": "email", "classification": "personal"}}}, **S)
st4, js4 = call("GET", C + "/retyped2/records/" + (js2 or {}).get("id", "x"), **S)
st5, js5 = call("GET", C + "/retyped2/records", **S)
report(st2 == 201 and st3 == 200 and st4 == 200 and js4["data"] == {"p": "***", "e": "***"}
       and st5 == 200 and js5["records"][0]["data"] == {"p": "***", "e": "***"},
       "old strings of a field become phone or email are masked *** in reads and lists, not shown in clear", (st2, js2, st3, st4, js4, st5, js5))
call("DELETE", C + "/retyped2?confirm=retyped2", **S)

# ER2, PV2: a value is in clear in the database only while its field is marked filter
st, js = call("POST", C, {"name": "tiers", "fields": {"plan": {"type": "string", "classification": "internal", "filter": True},
                                                     "tier": {"type": "string", "classification": "internal", "filter": True},
                                                     "note": {"type": "string", "classification": "internal"}}}, **S)
st2, js2 = call("POST", C + "/tiers/records", {"data": {"plan": "plan-clear-4711", "tier": "gold", "note": "n"}}, **S)
before = dbsql("SELECT field || '=' || value FROM record_index WHERE collection = 'tiers' ORDER BY 1").stdout.split()
st3, js3 = call("PUT", C + "/tiers", {"fields": {"plan": {"type": "string", "classification": "personal"},
                                                 "tier": {"type": "string", "classification": "internal", "filter": True},
                                                 "note": {"type": "string", "classification": "internal"}}}, **S)
after = dbsql("SELECT field || '=' || value FROM record_index WHERE collection = 'tiers' ORDER BY 1").stdout.split()
st4, js4 = call("GET", C + "/tiers/records?filter=tier:gold", **S)
report(st == 201 and st2 == 201 and before == ["plan=plan-clear-4711", "tier=gold"]
       and st3 == 200 and after == ["tier=gold"] and st4 == 200 and len(js4["records"]) == 1,
       "a filtered field made personal: its clear values leave the database in the same change; the others stay and filter",
       (st, st2, before, st3, after, st4, js4))
base = {"plan": {"type": "string", "classification": "personal"}, "tier": {"type": "string", "classification": "internal", "filter": True},
        "note": {"type": "string", "classification": "internal"}}
st, js = call("PUT", C + "/tiers", {"fields": dict(base, note={"type": "string", "classification": "internal", "filter": True})}, **S)
st2, js2 = call("PUT", C + "/tiers", {"fields": {k: v for k, v in base.items() if k != "tier"}}, **S)
gone = dbsql("SELECT count(*) FROM record_index WHERE collection = 'tiers'").stdout.strip()
st3, js3 = call("PUT", C + "/tiers", {"fields": dict(base)}, **S)
notier = {k: v for k, v in base.items() if k != "tier"}
st4, js4 = call("PUT", C + "/tiers", {"fields": dict(notier, region={"type": "string", "classification": "internal", "filter": True})}, **S)
st5, js5 = call("POST", C + "/tiers/records", {"data": {"region": "eu"}}, **S)
st6, js6 = call("GET", C + "/tiers/records?filter=region:eu", **S)
report(st == 409 and js["error"].get("field") == "fields.note" and js["error"].get("rule") == "filter"
       and st2 == 200 and gone == "0" and st3 == 409 and js3["error"].get("field") == "fields.tier"
       and st4 == 200 and st5 == 201 and st6 == 200 and [r["id"] for r in js6["records"]] == [js5["id"]],
       "a field of a collection with records becomes filterable only if no version had it (409 fields.NAME, rule filter): "
       "a filtered list never leaves out older records; a dropped filter field's clear values go",
       (st, js, st2, gone, st3, js3, st4, js4, st5, js5, st6, js6))
print("flows complete", flush=True)
