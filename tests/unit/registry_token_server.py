#!/usr/bin/python3
"""A small token service for the distribution registry's `auth.token`, for tests.

Usage: registry_token_server.py PORT DIR

DIR holds key.pem and cert.pem (an RSA key and its self-signed certificate,
which the registry trusts as `rootcertbundle`), users (lines "user:password")
and refresh (an identity token accepted by the OAuth2 POST). Every request is
appended to DIR/requests.log as one line "METHOD user=U scope=S,S".

GET /token?service=&scope=...  (Basic credentials optional: anonymous gets
pull only) and POST /token (grant_type=refresh_token) answer with an RS256
JWT signed by `openssl dgst`, its certificate in the `x5c` header, as the
registry verifies it. When DIR/weak exists, the next token grants nothing
(the file is removed), so a client's retry after the registry's 401 can be
tested. DIR/lifetime, when it exists, holds the `expires_in` (seconds) of the
tokens handed out; 600 otherwise. Stdlib only.
"""
import base64
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ISSUER = "pystrib-test-issuer"
SERVICE = "pystrib-test"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass

    def users(self):
        with open(os.path.join(self.server.dir, "users")) as f:
            return dict(line.strip().split(":", 1) for line in f if ":" in line)

    def basic_user(self):
        h = self.headers.get("Authorization", "")
        if not h.lower().startswith("basic "):
            return None, True
        try:
            user, pw = base64.b64decode(h[6:]).decode().split(":", 1)
        except Exception:
            return None, False
        return user, self.users().get(user) == pw

    def lifetime(self):
        try:
            with open(os.path.join(self.server.dir, "lifetime")) as f:
                return int(f.read())
        except FileNotFoundError:
            return 600

    def token(self, user, scopes):
        access = []
        for s in scopes:
            parts = s.split(":")
            if len(parts) < 3 or parts[0] != "repository":
                continue
            name, actions = ":".join(parts[1:-1]), parts[-1].split(",")
            if user is None:
                actions = [a for a in actions if a == "pull"]
            access.append({"type": "repository", "name": name, "actions": actions})
        weak = os.path.join(self.server.dir, "weak")
        if os.path.exists(weak):
            os.unlink(weak)
            access = []
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.server.cert_b64]}
        claims = {"iss": ISSUER, "sub": user or "", "aud": SERVICE, "exp": now + self.lifetime(),
                  "nbf": now - 5, "iat": now, "jti": b64url(os.urandom(12)), "access": access}
        signing_input = (b64url(json.dumps(header).encode()) + "." +
                         b64url(json.dumps(claims).encode())).encode()
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign",
                              os.path.join(self.server.dir, "key.pem")],
                             input=signing_input, stdout=subprocess.PIPE, check=True).stdout
        return signing_input.decode() + "." + b64url(sig)

    def answer(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def record(self, method, user, scopes):
        with open(os.path.join(self.server.dir, "requests.log"), "a") as f:
            f.write("%s user=%s scope=%s\n" % (method, user or "-", ",".join(scopes)))

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(url.query)
        scopes = [s for v in q.get("scope", []) for s in v.split(" ") if s]
        user, ok = self.basic_user()
        self.record("GET", user, scopes)
        if url.path != "/token" or q.get("service") != [SERVICE]:
            return self.answer(400, {"error": "bad request"})
        if not ok:
            return self.answer(401, {"error": "invalid credentials"})
        tok = self.token(user, scopes)
        self.answer(200, {"token": tok, "access_token": tok, "expires_in": self.lifetime()})

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(n).decode())
        scopes = [s for v in form.get("scope", []) for s in v.split(" ") if s]
        self.record("POST", "<refresh>", scopes)
        with open(os.path.join(self.server.dir, "refresh")) as f:
            want = f.read().strip()
        if form.get("grant_type") != ["refresh_token"] or form.get("refresh_token") != [want]:
            return self.answer(401, {"error": "invalid_grant"})
        self.answer(200, {"access_token": self.token("refresh-user", scopes),
                          "expires_in": self.lifetime()})


def main():
    port, d = int(sys.argv[1]), sys.argv[2]
    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.dir = d
    with open(os.path.join(d, "cert.pem")) as f:
        srv.cert_b64 = base64.b64encode(ssl.PEM_cert_to_DER_cert(f.read())).decode()
    srv.serve_forever()


if __name__ == "__main__":
    main()
