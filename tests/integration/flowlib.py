# coffre — what the Python flows share (auth_flow.py, vault_flow.py): TAP-like reports and
# one HTTPS call with a session cookie, CSRF token or access token.
import http.client
import json
import ssl
import urllib.parse


def report(good, name, detail=""):
    print(("ok - %s" % name) if good else ("not ok - %s -- %s" % (name, str(detail)[:600])), flush=True)


def code(js):
    return (js or {}).get("error", {}).get("code")


def make_call(url, ca):
    """call(method, path, body=None, cookie=None, csrf=None, token=None, headers=None, raw=None)
    -> (status, json or None, Set-Cookie, headers)"""
    u = urllib.parse.urlparse(url)
    ctx = ssl.create_default_context(cafile=ca)

    def call(method, path, body=None, cookie=None, csrf=None, token=None, headers=None, raw=None):
        c = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=20)
        h = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        if cookie:
            h["Cookie"] = "__Host-coffre_session=" + cookie
        if csrf:
            h["X-CSRF-Token"] = csrf
        if token:
            h["Authorization"] = "Bearer " + token
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        text = r.read().decode()
        c.close()
        try:
            js = json.loads(text) if text else None
        except ValueError:
            js = None
        return r.status, js, r.getheader("Set-Cookie"), dict(r.getheaders())

    return call


def openapi_checker(path):
    """check(NAME or schema, value[, where]) -> None or the first mismatch with
    components/schemas/NAME (or the schema given) of the OpenAPI file: required keys,
    types, enums, recursively (nullable honoured). check.spec is the file, check.resolve
    follows $refs."""
    import yaml
    spec = yaml.safe_load(open(path))

    def resolve(s):
        while isinstance(s, dict) and "$ref" in s:
            node = spec
            for part in s["$ref"][2:].split("/"):
                node = node[part]
            s = node
        return s

    def walk(schema, v, where):
        schema = resolve(schema)
        if v is None and schema.get("nullable"):
            return None
        t = schema.get("type")
        kinds = {"object": dict, "array": list, "string": str, "boolean": bool}
        if t == "integer" and not (isinstance(v, int) and not isinstance(v, bool)):
            return "%s: not an integer" % where
        if t in kinds and not isinstance(v, kinds[t]):
            return "%s: not a %s" % (where, t)
        if "enum" in schema and v not in schema["enum"]:
            return "%s: %r not in %s" % (where, v, schema["enum"])
        for k in schema.get("required", []):
            if k not in v:
                return "%s.%s: missing" % (where, k)
        for k, sub in schema.get("properties", {}).items():
            if isinstance(v, dict) and k in v:
                bad = walk(sub, v[k], "%s.%s" % (where, k))
                if bad:
                    return bad
        if t == "array":
            for i, item in enumerate(v):
                bad = walk(schema.get("items", {}), item, "%s[%d]" % (where, i))
                if bad:
                    return bad
        return None

    def check(name_or_schema, v, where=None):
        if isinstance(name_or_schema, str):
            return walk({"$ref": "#/components/schemas/" + name_or_schema}, v, where or name_or_schema)
        return walk(name_or_schema, v, where or "reply")

    check.spec = spec
    check.resolve = resolve
    return check
