#!/usr/bin/env python3
"""A bearer-token front for a test registry (podvisor image tests).

token mode: /v2/ answers 401 with a Bearer challenge whose realm is this server's /token;
/token issues tokens for the basic-auth user/password (GET) or the refresh token (POST,
grant_type=refresh_token); authorised manifest requests are forwarded to the backend registry and
blob requests are redirected (307) to it, so redirects are exercised too. The token
"static-registry-token" is always accepted (the CRI registry_token field).
truncate mode: no auth; blob answers announce their full length, send half, and drop the
connection, as a registry going down mid-pull.
"""
import argparse
import base64
import http.server
import json
import secrets
import socketserver
import sys
import urllib.error
import urllib.parse
import urllib.request

STATIC_TOKEN = "static-registry-token"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    tokens = set()

    def log_message(self, fmt, *args):
        sys.stderr.write("proxy: " + (fmt % args) + "\n")

    def reply(self, code, body=b"", headers=None):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        if (self.path.startswith("/token") and form.get("grant_type") == ["refresh_token"]
                and form.get("refresh_token") == [ARGS.refresh] and ARGS.refresh):
            return self.issue("access_token")
        self.reply(401, b'{"error":"invalid refresh token"}')

    def issue(self, field):
        token = secrets.token_hex(16)
        Handler.tokens.add(token)
        self.reply(200, json.dumps({field: token, "expires_in": 300}).encode(),
                   {"Content-Type": "application/json"})

    def do_GET(self):
        if self.path.startswith("/token"):
            auth = self.headers.get("Authorization", "")
            want = "Basic " + base64.b64encode(f"{ARGS.user}:{ARGS.password}".encode()).decode()
            if auth == want:
                return self.issue("token")
            return self.reply(401, b'{"error":"bad credentials"}')
        if not self.path.startswith("/v2/"):
            return self.reply(404)
        if ARGS.mode == "token":
            auth = self.headers.get("Authorization", "")
            token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
            if token not in Handler.tokens and token != STATIC_TOKEN:
                parts = self.path.split("/")
                name = "/".join(parts[2:-2]) if len(parts) > 4 else ""
                challenge = (f'Bearer realm="http://127.0.0.1:{PORT}/token",'
                             f'service="podvisor-test",scope="repository:{name}:pull"')
                return self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"token"}]}',
                                  {"WWW-Authenticate": challenge,
                                   "Content-Type": "application/json"})
            if "/blobs/" in self.path:
                return self.reply(307, b"", {"Location": ARGS.backend + self.path})
        self.forward()

    def forward(self):
        req = urllib.request.Request(ARGS.backend + self.path, method=self.command)
        if self.headers.get("Accept"):
            req.add_header("Accept", self.headers["Accept"])
        try:
            resp = urllib.request.urlopen(req)
            code, headers, body = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            code, headers, body = e.code, e.headers, e.read()
        keep = {k: headers[k] for k in ("Content-Type", "Docker-Content-Digest") if headers.get(k)}
        if ARGS.mode == "truncate" and "/blobs/" in self.path and code == 200:
            self.send_response(200)
            for k, v in keep.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.reply(code, body, keep)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--backend", required=True)
    p.add_argument("--user", default="")
    p.add_argument("--password", default="")
    p.add_argument("--refresh", default="")
    p.add_argument("--mode", default="token", choices=["token", "truncate"])
    p.add_argument("--port-file", required=True)
    ARGS = p.parse_args()
    server = Server(("127.0.0.1", 0), Handler)
    PORT = server.server_address[1]
    with open(ARGS.port_file + ".tmp", "w") as f:
        f.write(f"{PORT}\n")
    import os
    os.rename(ARGS.port_file + ".tmp", ARGS.port_file)
    server.serve_forever()
