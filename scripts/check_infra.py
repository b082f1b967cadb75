#!/usr/bin/env python3
"""Offline checks of infra/ (the Bicep CLI cannot be installed here):
every .bicep file parses (pycep-parser); every module main.bicep uses exists
and is given only parameters it declares, and every parameter it requires;
the parameter files name only parameters of main.bicep and give all the
required ones. What this does not check: resource types, API versions and
property names against Azure's schemas, expressions' types, and whether a
deployment would succeed. `az bicep build` / `az deployment group what-if`
in the deploy workflow do that."""

import json
import pathlib
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

for problem in problems:
    print(f"infra: {problem}", file=sys.stderr)
print(f"infra: {len(parsed)} Bicep files parsed, {len(problems)} problems")
sys.exit(1 if problems else 0)
