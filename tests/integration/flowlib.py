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
            h["Content-Type"] = "application/json"
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
