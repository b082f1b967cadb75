#!/usr/bin/env python3
"""Local stand-ins for the Azure endpoints the service talks to, speaking
their real protocols so that the real Azure SDK crates can be tested:

- a managed-identity endpoint (App Service / Functions flavour: the client
  sends IDENTITY_ENDPOINT?resource=...&api-version=2019-08-01 with header
  X-IDENTITY-HEADER) answering {"access_token", "expires_on", "resource",
  "token_type"};
- a Key Vault over HTTPS: 401 with a Bearer challenge to requests without
  the token, then GET /secrets/<name>?api-version=... -> {"value": ...};
- an Application Insights ingestion endpoint over HTTPS, as a resource with
  local authentication disabled: POST /v2.1/track (or /v2/track) of a
  JSON array of envelopes (or newline-delimited JSON), gzip when
  Content-Encoding says so; 401 without the bearer token issued for
  Azure Monitor; each envelope's
  schema checked (name, time, iKey, tags, data.baseType/baseData), the
  answer {"itemsReceived", "itemsAccepted", "errors": [{index, statusCode,
  message}]} with 200, 206 (some refused) or 400 (all refused). Accepted
  envelopes are appended to envelopes.jsonl, refused ones (with why) to
  invalid.jsonl.

Secrets and the token are read from files on every request, so a test can
rotate them. Each request is appended to a log file (without secrets).

Usage: fake_azure.py DIR   (DIR holds tls/server.crt, tls/server.key,
secrets.json, token, monitor_token (the token for Azure Monitor),
optionally expires_in, deny (its presence makes
the vault refuse every read with 403), ikey (the instrumentation key
ingestion expects), local_auth (its presence makes ingestion accept
requests without a token, as a resource with local authentication
enabled does) and ingestion_hang (its presence makes ingestion read
each request and never answer); writes ports.json when listening)
"""

import gzip
import http.server
import json
import os
import re
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


# Azure Monitor's audience: tokens are issued per resource, and ingestion
# accepts only one issued for it (monitor_token), not the Key Vault or
# PostgreSQL one (token).
MONITOR = "https://monitor.azure.com/"


class Identity(Handler):
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query)
        resource = query.get("resource", [""])[0]
        record(f"identity {resource} client_id={query.get('client_id', [''])[0]}")
        if self.headers.get("X-IDENTITY-HEADER") != IDENTITY_HEADER:
            return self.reply(400, {"error": "missing or wrong X-IDENTITY-HEADER"})
        self.reply(200, {
            "access_token": read("monitor_token" if resource == MONITOR else "token").strip(),
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


HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
# d.hh:mm:ss.fffffff, the day part optional (Application Insights' TimeSpan).
DURATION = re.compile(r"^(\d+\.)?\d\d:[0-5]\d:[0-5]\d(\.\d{1,7})?$")
BASE_TYPES = {
    "Microsoft.ApplicationInsights.Request": "RequestData",
    "Microsoft.ApplicationInsights.RemoteDependency": "RemoteDependencyData",
    "Microsoft.ApplicationInsights.Message": "MessageData",
    "Microsoft.ApplicationInsights.Exception": "ExceptionData",
    "Microsoft.ApplicationInsights.Event": "EventData",
    "Microsoft.ApplicationInsights.Metric": "MetricData",
}


def envelope_problem(envelope, ikey):
    """Why ingestion would refuse this envelope (None: it is valid). The
    fields and types are those of the Application Insights data model
    (Envelope; RequestData and RemoteDependencyData version 2)."""
    if not isinstance(envelope, dict):
        return "not an object"
    name = envelope.get("name")
    if name not in BASE_TYPES:
        return f"unknown name {name!r}"
    if not isinstance(envelope.get("time"), str) or not TIME.match(envelope["time"]):
        return "time is not an ISO 8601 date-time"
    if envelope.get("iKey") != ikey:
        return "iKey is not this resource's instrumentation key"
    sample_rate = envelope.get("sampleRate", 100)
    if not isinstance(sample_rate, (int, float)) or not 0 < sample_rate <= 100:
        return "sampleRate is not in (0, 100]"
    tags = envelope.get("tags")
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        return "tags is not an object of strings"
    # A metric belongs to no operation; everything else to a trace.
    if name != "Microsoft.ApplicationInsights.Metric" and not HEX32.match(tags.get("ai.operation.id", "")):
        return "ai.operation.id is not a trace id"
    if "ai.operation.parentId" in tags and not HEX16.match(tags["ai.operation.parentId"]):
        return "ai.operation.parentId is not a span id"
    data = envelope.get("data")
    if not isinstance(data, dict) or data.get("baseType") != BASE_TYPES[name]:
        return "data.baseType does not match the name"
    base = data.get("baseData")
    if not isinstance(base, dict) or base.get("ver") != 2:
        return "data.baseData is not version 2"
    properties = base.get("properties", {})
    if not isinstance(properties, dict) or not all(isinstance(v, str) for v in properties.values()):
        return "properties is not an object of strings"
    if data["baseType"] == "RequestData":
        for field, kind in (("id", str), ("duration", str), ("responseCode", str), ("success", bool)):
            if not isinstance(base.get(field), kind):
                return f"RequestData.{field} is missing or not a {kind.__name__}"
        if "name" in base and not isinstance(base["name"], str):
            return "RequestData.name is not a string"
        if not DURATION.match(base["duration"]):
            return "RequestData.duration is not a TimeSpan"
    if data["baseType"] == "RemoteDependencyData":
        if not isinstance(base.get("name"), str) or not isinstance(base.get("duration"), str):
            return "RemoteDependencyData.name or duration is missing"
        if not DURATION.match(base["duration"]):
            return "RemoteDependencyData.duration is not a TimeSpan"
        for field, kind in (("id", str), ("resultCode", str), ("type", str), ("target", str),
                            ("data", str), ("success", bool)):
            if field in base and not isinstance(base[field], kind):
                return f"RemoteDependencyData.{field} is not a {kind.__name__}"
    if data["baseType"] == "MetricData":
        metrics = base.get("metrics")
        if not isinstance(metrics, list) or len(metrics) != 1:
            return "MetricData.metrics is not a list of one data point"
        point = metrics[0]
        if not isinstance(point.get("name"), str) or not isinstance(point.get("value"), (int, float)):
            return "MetricData's data point has no name or value"
        if point.get("kind", "Measurement") not in ("Measurement", "Aggregation"):
            return "MetricData's data point kind is neither Measurement nor Aggregation"
        if "count" in point and not isinstance(point["count"], int):
            return "MetricData's data point count is not an integer"
    return None


class Ingestion(Handler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        path = urllib.parse.urlparse(self.path).path
        if os.path.exists(os.path.join(DIR, "ingestion_hang")):
            record(f"ingestion hang {path}")
            threading.Event().wait()
        if path not in ("/v2.1/track", "/v2/track"):
            record(f"ingestion unknown path {path}")
            return self.reply(404, {"error": "not found"})
        auth = self.headers.get("Authorization")
        expected = "Bearer " + read("monitor_token").strip()
        local_auth = os.path.exists(os.path.join(DIR, "local_auth"))
        if auth != expected and not (local_auth and auth is None):
            record(f"ingestion refused {path} authorization={'wrong' if auth else 'missing'}")
            return self.reply(401, {"itemsReceived": 0, "itemsAccepted": 0, "errors": [{
                "index": 0, "statusCode": 401,
                "message": "Authorization token is required: local authentication is disabled"}]})
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        text = body.decode("utf-8")
        try:
            parsed = json.loads(text)
            envelopes = parsed if isinstance(parsed, list) else [parsed]
        except json.JSONDecodeError:
            envelopes = [json.loads(line) for line in text.splitlines() if line.strip()]
        ikey = read("ikey").strip()
        errors = []
        with open(os.path.join(DIR, "envelopes.jsonl"), "a") as ok, \
                open(os.path.join(DIR, "invalid.jsonl"), "a") as bad:
            for index, envelope in enumerate(envelopes):
                problem = envelope_problem(envelope, ikey)
                if problem is None:
                    ok.write(json.dumps(envelope) + "\n")
                else:
                    bad.write(json.dumps({"problem": problem, "envelope": envelope}) + "\n")
                    errors.append({"index": index, "statusCode": 400, "message": problem})
        record(f"ingestion {path} items={len(envelopes)} refused={len(errors)} "
               f"authorization={'token' if auth else 'none'}")
        accepted = len(envelopes) - len(errors)
        status = 200 if not errors else (206 if accepted else 400)
        self.reply(status, {"itemsReceived": len(envelopes), "itemsAccepted": accepted,
                            "errors": errors})


def serve(handler, tls):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(os.path.join(DIR, "tls/server.crt"), os.path.join(DIR, "tls/server.key"))
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


ports = {"identity": serve(Identity, False), "vault": serve(Vault, True),
         "ingestion": serve(Ingestion, True)}
with open(os.path.join(DIR, "ports.json.tmp"), "w") as f:
    json.dump(ports, f)
os.rename(os.path.join(DIR, "ports.json.tmp"), os.path.join(DIR, "ports.json"))
threading.Event().wait()
