#!/usr/bin/env python3
"""Offline checks of infra/ (the Bicep CLI cannot be installed here):
every .bicep file parses (pycep-parser); every module main.bicep uses exists
and is given only parameters it declares, and every parameter it requires;
the parameter files name only parameters of main.bicep and give all the
required ones; each parameter file's worst case of PostgreSQL connections
fits the server it chooses (docs/scaling.md); values respect the
parameters' @minValue/@maxValue; the identity holds Storage Blob Data Owner
on the host's storage (timers keep their schedule and singleton lease
there); every app setting a function.json names (%NAME%) is set. What this
does not check: resource types, API versions and
property names against Azure's schemas, expressions' types, and whether a
deployment would succeed. `az bicep build` / `az deployment group what-if`
in the deploy workflow do that."""

import json
import pathlib
import re
import sys

from pycep import BicepParser

root = pathlib.Path(__file__).resolve().parent.parent / "infra"
problems = []
parsed = {}
for path in sorted(root.rglob("*.bicep")):
    try:
        parsed[path] = BicepParser().parse(text=path.read_text())
    except Exception as e:  # the parser's own exception types vary
        problems.append(f"{path.relative_to(root)}: does not parse: {type(e).__name__}: {e}")


def required(params):
    return {name for name, p in params.items() if p.get("default") is None}


main = parsed.get(root / "main.bicep")
if main is None:
    problems.append("main.bicep: missing or unparsable")
else:
    for name, module in main.get("modules", {}).items():
        path = root / module["detail"]["path"]
        declared = parsed.get(path, {}).get("parameters")
        if declared is None:
            problems.append(f"module {name}: {path.relative_to(root)} missing or unparsable")
            continue
        given = set(module["config"].get("params", {}))
        for extra in sorted(given - set(declared)):
            problems.append(f"module {name}: passes undeclared parameter {extra}")
        for missing in sorted(required(declared) - given):
            problems.append(f"module {name}: does not pass required parameter {missing}")
    declared = main.get("parameters", {})
    for path in sorted((root / "parameters").glob("*.json")):
        given = set(json.loads(path.read_text())["parameters"])
        for extra in sorted(given - set(declared)):
            problems.append(f"{path.name}: unknown parameter {extra}")
        for missing in sorted(required(declared) - given):
            problems.append(f"{path.name}: misses required parameter {missing}")

# Usable connections (max_connections minus the 15 Azure reserves) by SKU,
# from Learn "Limits in Azure Database for PostgreSQL flexible server".
USABLE_CONNECTIONS = {
    "Standard_B1ms": 35,
    "Standard_B2s": 414,
    "Standard_D2s_v3": 844,
    "Standard_D2ds_v4": 844,
    "Standard_D2ds_v5": 844,
    "Standard_D2ads_v5": 844,
}
PGBOUNCER_MAX_CLIENT_CONN = 5000  # the built-in PgBouncer's default
ADMIN_CONNECTIONS = 5  # migrations, psql, monitoring


LISTENING_CONNECTIONS = 1  # per instance, to port 5432 directly (live sessions)
PURGE_CONNECTIONS = 1  # the purge's advisory lock, direct, one instance at a time


def budget(file, values):
    """The worst case: every instance holds a full pool at once, plus its
    listening connection, which never goes through PgBouncer."""
    sku = values["postgresSku"]
    usable = USABLE_CONNECTIONS.get(sku["name"])
    if usable is None:
        return [f"{file}: unknown PostgreSQL SKU {sku['name']}: add its connections to check_infra.py"]
    instances = values["maximumInstanceCount"]
    clients = instances * values["poolMaxSize"]
    listeners = instances * LISTENING_CONNECTIONS
    if sku["tier"] == "Burstable":  # no built-in PgBouncer on this tier
        if clients + listeners + PURGE_CONNECTIONS + ADMIN_CONNECTIONS > usable:
            return [f"{file}: {instances} instances x ({values['poolMaxSize']} pooled + {LISTENING_CONNECTIONS}"
                    f" listening) connections + {ADMIN_CONNECTIONS} > {usable} usable on {sku['name']}"]
        return []
    problems = []
    if clients > PGBOUNCER_MAX_CLIENT_CONN:
        problems.append(f"{file}: {clients} client connections > PgBouncer's {PGBOUNCER_MAX_CLIENT_CONN}")
    if values["pgbouncerPoolSize"] + listeners + PURGE_CONNECTIONS + ADMIN_CONNECTIONS > usable:
        problems.append(f"{file}: PgBouncer pool {values['pgbouncerPoolSize']} + {listeners} listening"
                        f" + {ADMIN_CONNECTIONS} > {usable} usable")
    return problems


if main is not None:
    declared = main.get("parameters", {})
    for path in sorted((root / "parameters").glob("*.json")):
        given = {k: v["value"] for k, v in json.loads(path.read_text())["parameters"].items()}
        values = {name: given.get(name, p.get("default")) for name, p in declared.items()}
        for name, p in declared.items():
            for d in p.get("decorators", []):
                value = values.get(name)
                if d["type"] == "min_value" and value is not None and value < d["argument"]:
                    problems.append(f"{path.name}: {name} = {value} is below its minimum {d['argument']}")
                if d["type"] == "max_value" and value is not None and value > d["argument"]:
                    problems.append(f"{path.name}: {name} = {value} is above its maximum {d['argument']}")
        problems.extend(budget(path.name, values))

# The host keeps its keys, and timers their schedule status and singleton
# lease (one instance runs a timer function at a time), as blobs in
# AzureWebJobsStorage, reached with the identity: leases need Storage Blob
# Data Owner (Learn: "Connecting to host storage with an identity").
BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
storage_text = (root / "modules" / "storage.bicep").read_text()
if not (BLOB_DATA_OWNER in storage_text
        and "Microsoft.Authorization/roleAssignments" in storage_text
        and "principalId: principalId" in storage_text):
    problems.append("modules/storage.bicep: the identity is not assigned Storage Blob Data Owner")
main_text = (root / "main.bicep").read_text()
if main is not None:
    storage_params = main.get("modules", {}).get("storage", {}).get("config", {}).get("params", {})
    if "principalId" not in storage_params or "identity.outputs.principalId" not in main_text:
        problems.append("main.bicep: the storage module is not given the identity's principalId")
if "AzureWebJobsStorage__credential: 'managedidentity'" not in (root / "modules" / "functionapp.bicep").read_text():
    problems.append("modules/functionapp.bicep: AzureWebJobsStorage does not use the identity")

# A binding expression %NAME% that no app setting defines keeps the host
# from loading the function.
functions_dir = root.parent / "functions"
for path in sorted(functions_dir.glob("*/function.json")):
    for binding in json.loads(path.read_text())["bindings"]:
        for value in binding.values():
            if isinstance(value, str) and len(value) > 2 and value.startswith("%") and value.endswith("%"):
                setting = value[1:-1]
                if not re.search(rf"^\s*{re.escape(setting)}:\s", main_text, re.MULTILINE):
                    problems.append(f"main.bicep: no app setting {setting}, which functions/{path.parent.name} uses")

for problem in problems:
    print(f"infra: {problem}", file=sys.stderr)
print(f"infra: {len(parsed)} Bicep files parsed, {len(problems)} problems")
sys.exit(1 if problems else 0)
