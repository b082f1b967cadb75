#!/usr/bin/env python3
"""Local stand-ins for the two Azure endpoints the service talks to, speaking
their real protocols so that the real Azure SDK crates can be tested:

- a managed-identity endpoint (App Service / Functions flavour: the client
  sends IDENTITY_ENDPOINT?resource=...&api-version=2019-08-01 with header
  X-IDENTITY-HEADER) answering {"access_token", "expires_on", "resource",
  "token_type"};
- a Key Vault over HTTPS: 401 with a Bearer challenge to requests without
  the token, then GET /secrets/<name>?api-version=... -> {"value": ...}.

Secrets and the token are read from files on every request, so a test can
rotate them. Each request is appended to a log file (without secrets).

Usage: fake_azure.py DIR   (DIR holds tls/server.crt, tls/server.key,
secrets.json, token, optionally expires_in, and deny (its presence makes
the vault refuse every read with 403); writes ports.json when listening)
"""

import http.server
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse

DIR = sys.argv[1]
IDENTITY_HEADER = "local-identity-header"


def read(name):
    with open(os.path.join(DIR, name)) as f:
        return f.read()


def record(line):
    with open(os.path.join(DIR, "requests.log"), "a") as f:
        f.write(line + "\n")


def expires_in():
    try:
        return int(read("expires_in"))
    except FileNotFoundError:
        return 3600


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body=None, headers=()):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class Identity(Handler):
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query)
        resource = query.get("resource", [""])[0]
        record(f"identity {resource} client_id={query.get('client_id', [''])[0]}")
        if self.headers.get("X-IDENTITY-HEADER") != IDENTITY_HEADER:
            return self.reply(400, {"error": "missing or wrong X-IDENTITY-HEADER"})
        self.reply(200, {
            "access_token": read("token").strip(),
            "expires_on": str(int(time.time()) + expires_in()),
            "resource": resource,
            "token_type": "Bearer",
        })


class Vault(Handler):
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        auth = self.headers.get("Authorization", "")
        if auth != "Bearer " + read("token").strip():
            record("vault challenge")
            return self.reply(401, {"error": {"code": "Unauthorized"}}, [(
                "WWW-Authenticate",
                'Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000", '
                'resource="https://vault.azure.net"')])
        name = url.path.split("/")[2] if url.path.startswith("/secrets/") else ""
        record(f"vault get {name}")
        if os.path.exists(os.path.join(DIR, "deny")):
            return self.reply(403, {"error": {"code": "Forbidden",
                                              "message": "Caller is not authorized to perform action on resource"}})
        secrets = json.loads(read("secrets.json"))
        if name not in secrets:
            return self.reply(404, {"error": {"code": "SecretNotFound",
                                              "message": f"A secret with (name/id) {name} was not found"}})
        self.reply(200, {"value": secrets[name], "id": f"https://vault/secrets/{name}/1",
                         "attributes": {"enabled": True}})


def serve(handler, tls):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(os.path.join(DIR, "tls/server.crt"), os.path.join(DIR, "tls/server.key"))
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


ports = {"identity": serve(Identity, False), "vault": serve(Vault, True)}
with open(os.path.join(DIR, "ports.json.tmp"), "w") as f:
    json.dump(ports, f)
os.rename(os.path.join(DIR, "ports.json.tmp"), os.path.join(DIR, "ports.json"))
threading.Event().wait()
