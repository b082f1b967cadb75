#!/usr/bin/env python3
"""A stand-in for the Azure CLI, for the deploy rehearsal (tests/deploy.rs):
the `az` commands scripts/deploy.sh runs, answered the way Azure would,
against local stand-ins. Installed as `az` on the PATH of the rehearsal.

State lives in $FAKE_AZURE_STATE (shared with fake_azure.py, whose Key Vault
serves secrets.json):
  arm-outputs.json   what Azure would report for each module of
                     infra/main.bicep (names, host names, ports)
  platform.json      what the Functions platform adds when it starts the app
                     (endpoints of the stand-ins, port, /etc/hosts lines)
  cli_token          the deploying principal's Entra token
  deleted-vaults.json  soft-deleted vaults (optional)
  secrets.json       the vault's secrets
Written here: calls.log (every command, secrets elided), deployments.json
(parameters of each deployment), app-settings.json (the function app's
settings, evaluated from the Bicep), site/ (the unpacked package), site.log.

The app settings are not copied by hand: `deployment group create` reads
infra/main.bicep and infra/modules/functionapp.bicep and evaluates the
expressions that make them (a small evaluator for the Bicep the templates
use; anything else fails loudly, so templates and rehearsal cannot drift).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile

STATE = os.environ["FAKE_AZURE_STATE"]


def path(name):
    return os.path.join(STATE, name)


def load(name, default=None):
    try:
        with open(path(name)) as f:
            return json.load(f)
    except FileNotFoundError:
        if default is None:
            raise
        return default


def save(name, value):
    tmp = path(name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1)
    os.replace(tmp, path(name))


def fail(message, code=1):
    print(f"ERROR: {message}", file=sys.stderr)
    sys.exit(code)


# --- A small evaluator for the Bicep expressions the templates use. --------

class Bicep:
    """One .bicep file: its params (with defaults), vars, module blocks and
    outputs, each kept as expression text and evaluated on demand."""

    def __init__(self, file):
        self.text = strip_comments(open(file).read())
        self.params, self.vars, self.outputs, self.modules = {}, {}, {}, {}
        for m in re.finditer(r"^param\s+(\w+)\s+\w+(?:\s*=\s*)?", self.text, re.M):
            if m.group(0).rstrip().endswith("="):
                self.params[m.group(1)] = expression_text(self.text, m.end())
            else:
                self.params[m.group(1)] = None
        for m in re.finditer(r"^var\s+(\w+)\s*=\s*", self.text, re.M):
            self.vars[m.group(1)] = expression_text(self.text, m.end())
        for m in re.finditer(r"^output\s+(\w+)\s+\w+\s*=\s*", self.text, re.M):
            self.outputs[m.group(1)] = expression_text(self.text, m.end())
        for m in re.finditer(r"^module\s+(\w+)\s+'([^']+)'\s*=\s*", self.text, re.M):
            block = expression_text(self.text, m.end())
            params = re.search(r"\bparams:\s*", block)
            self.modules[m.group(1)] = {
                "path": m.group(2),
                "params": object_entries(block, params.end()) if params else {},
            }


def strip_comments(text):
    out, i, quote = [], 0, False
    while i < len(text):
        c = text[i]
        if quote:
            out.append(c)
            if c == "\\":
                out.append(text[i + 1])
                i += 1
            elif c == "'":
                quote = False
        elif c == "'":
            quote = True
            out.append(c)
        elif text.startswith("//", i):
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def expression_text(text, start):
    """The expression starting at `start`: up to the end of the line, or of
    the bracket it opens."""
    depth, i, quote = 0, start, False
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == "'":
                quote = False
        elif c == "'":
            quote = True
        elif c in "{[(":
            depth += 1
        elif c in "}])":
            depth -= 1
            if depth < 0:
                break
        elif c == "\n" and depth == 0:
            break
        i += 1
    return text[start:i].strip()


def object_entries(text, start):
    """`{ key: expr ... }` at `start` -> {key: expression text}."""
    body = expression_text(text, start)
    assert body.startswith("{"), body[:40]
    entries, i = {}, 1
    while True:
        m = re.compile(r"\s*(\w+|'[^']*')\s*:\s*").match(body, i)
        if not m:
            break
        expr = expression_text(body, m.end())
        entries[m.group(1).strip("'")] = expr
        i = m.end() + len(expr)
    return entries


TOKEN = re.compile(r"\s*(?:(?P<num>\d+)|(?P<name>[A-Za-z_]\w*)|(?P<op>==|!=|&&|\|\||[?:.,()\[\]{}!])|(?P<str>'))")


class Parser:
    """Recursive descent over one expression; evaluates as it parses."""

    def __init__(self, text, scope):
        self.text, self.i, self.scope = text, 0, scope

    def peek(self):
        m = TOKEN.match(self.text, self.i)
        return m

    def take(self, op):
        m = self.peek()
        if not m or m.group("op") != op:
            raise ValueError(f"expected {op!r} in {self.text!r} at {self.i}")
        self.i = m.end()

    def expr(self):
        cond = self.equality()
        m = self.peek()
        if m and m.group("op") == "?":
            self.i = m.end()
            yes = self.expr()
            self.take(":")
            no = self.expr()
            return yes if cond else no
        return cond

    def equality(self):
        left = self.postfix()
        m = self.peek()
        if m and m.group("op") in ("==", "!="):
            self.i = m.end()
            right = self.postfix()
            return (left == right) if m.group("op") == "==" else (left != right)
        return left

    def postfix(self):
        value = self.primary()
        while True:
            m = self.peek()
            if m and m.group("op") == ".":
                self.i = m.end()
                name = self.peek()
                self.i = name.end()
                value = value[name.group("name")]
            elif m and m.group("op") == "[":
                self.i = m.end()
                index = self.expr()
                self.take("]")
                value = value[index]
            else:
                return value

    def primary(self):
        m = self.peek()
        if not m:
            raise ValueError(f"unexpected end of {self.text!r}")
        self.i = m.end()
        if m.group("num"):
            return int(m.group("num"))
        if m.group("str"):
            return self.string()
        if m.group("op") == "(":
            value = self.expr()
            self.take(")")
            return value
        if m.group("op") == "!":
            return not self.postfix()
        name = m.group("name")
        if name in ("true", "false"):
            return name == "true"
        nxt = self.peek()
        if nxt and nxt.group("op") == "(":
            self.i = nxt.end()
            args = []
            while True:
                m = self.peek()
                if m and m.group("op") == ")":
                    self.i = m.end()
                    break
                args.append(self.expr())
                m = self.peek()
                if m and m.group("op") == ",":
                    self.i = m.end()
            return call(name, args)
        if name is None:
            raise ValueError(f"unsupported syntax in {self.text!r} at {self.i}")
        return self.scope(name)

    def string(self):
        out = []
        while True:
            c = self.text[self.i]
            if c == "'":
                self.i += 1
                return "".join(out)
            if c == "\\":
                out.append(self.text[self.i + 1])
                self.i += 2
            elif self.text.startswith("${", self.i):
                self.i += 2
                value = self.expr()
                self.take("}")
                out.append(str(value).lower() if isinstance(value, bool) else str(value))
            else:
                out.append(c)
                self.i += 1


def call(name, args):
    functions = {
        "string": lambda v: json.dumps(v) if isinstance(v, (dict, list)) else (str(v).lower() if isinstance(v, bool) else str(v)),
        "union": lambda *objs: {k: v for o in objs for k, v in o.items()},
        "concat": lambda *xs: "".join(xs) if all(isinstance(x, str) for x in xs) else sum(xs, []),
        "take": lambda v, n: v[:n],
        "toLower": lambda v: v.lower(),
    }
    if name not in functions:
        raise ValueError(f"the rehearsal's Bicep evaluator does not know {name}()")
    return functions[name](*args)


def evaluate(text, scope):
    parser = Parser(text, scope)
    value = parser.expr()
    if parser.text[parser.i:].strip():
        raise ValueError(f"unparsed rest of {text!r}: {parser.text[parser.i:]!r}")
    return value


def parse_value(text, scope):
    """An object literal becomes a dict of evaluated entries; anything else
    is one expression."""
    text = text.strip()
    if text.startswith("{"):
        return {k: parse_value(v, scope) for k, v in object_entries(text, 0).items()}
    if text.startswith("["):
        inner = text[1:-1].strip()
        return [evaluate(line, scope) for line in inner.splitlines() if line.strip()]
    return evaluate(text, scope)


def deployment(template, parameters, module_outputs):
    """Evaluates infra/main.bicep with `parameters`, taking each module's
    outputs from the stand-in; returns (outputs, function app settings)."""
    main = Bicep(template)

    def main_scope(name):
        if name in parameters:
            return parameters[name]
        if name in main.params and main.params[name] is not None:
            return parse_value(main.params[name], main_scope)
        if name in main.vars:
            return parse_value(main.vars[name], main_scope)
        if name in main.modules:
            return {"outputs": module_outputs[name]}
        raise ValueError(f"{template}: cannot resolve {name}")

    outputs = {name: parse_value(text, main_scope) for name, text in main.outputs.items()}
    app = main.modules["functionApp"]
    module = Bicep(os.path.join(os.path.dirname(template), app["path"]))

    def module_scope(name):
        if name in app["params"]:
            return parse_value(app["params"][name], main_scope)
        if name in module.vars:
            return parse_value(module.vars[name], module_scope)
        raise ValueError(f"{app['path']}: cannot resolve {name}")

    # Mirrors the site's `appSettings: [for setting in items(union(platformSettings, appSettings)) ...]`.
    if "items(union(platformSettings, appSettings))" not in module.text:
        raise ValueError(f"{app['path']} no longer builds app settings as union(platformSettings, appSettings)")
    settings = {**module_scope("platformSettings"), **module_scope("appSettings")}
    return outputs, {k: v if isinstance(v, str) else json.dumps(v) for k, v in settings.items()}


# --- The commands. ----------------------------------------------------------

def options(args):
    """--name value pairs (repeatable ones collect) and bare flags."""
    opts, i = {}, 0
    while i < len(args):
        if args[i].startswith("-"):
            key = args[i].lstrip("-")
            values = []
            i += 1
            while i < len(args) and not args[i].startswith("-"):
                values.append(args[i])
                i += 1
            opts.setdefault(key, []).extend(values or [""])
        else:
            i += 1
    return opts


def one(opts, *names):
    for name in names:
        if name in opts:
            return opts[name][0]
    fail(f"the following arguments are required: --{names[0]}", 2)


def emit(value, opts):
    query = opts.get("query", [None])[0]
    if query:
        for part in query.split("."):
            value = value[part]
    if opts.get("output", opts.get("o", ["json"]))[0] == "tsv":
        print(value)
    elif opts.get("output", opts.get("o", ["json"]))[0] != "none":
        print(json.dumps(value, indent=2))


def get_access_token(opts):
    token = open(path("cli_token")).read().strip()
    expires = int(time.time()) + 3600
    emit({"accessToken": token, "expiresOn": time.strftime("%Y-%m-%d %H:%M:%S.000000", time.localtime(expires)),
          "expires_on": expires, "tenant": "00000000-0000-0000-0000-000000000000", "tokenType": "Bearer"}, opts)


def deployment_create(opts):
    parameters = {}
    for item in opts.get("parameters", []):
        if item.startswith("@"):
            with open(item[1:]) as f:
                parameters.update({k: v["value"] for k, v in json.load(f)["parameters"].items()})
        else:
            key, _, value = item.partition("=")
            try:
                parameters[key] = json.loads(value)
            except ValueError:
                parameters[key] = value
    outputs, settings = deployment(one(opts, "template-file", "f"), parameters, load("arm-outputs.json"))
    deployments = load("deployments.json", [])
    deployments.append({"resource_group": one(opts, "resource-group", "g"), "parameters": parameters})
    save("deployments.json", deployments)
    save("app-settings.json", settings)
    typed = {k: {"type": type(v).__name__, "value": v} for k, v in outputs.items()}
    emit({"properties": {"outputs": typed}}, opts)


def secret_show(opts):
    name = one(opts, "name", "n")
    secrets = load("secrets.json", {})
    if name not in secrets:
        fail(f"(SecretNotFound) A secret with (name/id) {name} was not found in this key vault. "
             "If you recently deleted this secret you may be able to recover it using the correct recovery command.", 3)
    emit({"id": f"https://{one(opts, 'vault-name')}.vault.azure.net/secrets/{name}/1", "value": secrets[name]}, opts)


def secret_set(opts):
    name = one(opts, "name", "n")
    value = opts["value"][0] if "value" in opts else open(one(opts, "file", "f")).read()
    secrets = load("secrets.json", {})
    secrets[name] = value
    save("secrets.json", secrets)
    emit({"id": f"https://{one(opts, 'vault-name')}.vault.azure.net/secrets/{name}/1"}, opts)


def functionapp_deploy(opts):
    """What One Deploy and the Functions platform do: replace the site with
    the package and start the custom handler with the app settings, as an
    unprivileged user, with the platform's own variables."""
    stop_site()
    site = path("site")
    shutil.rmtree(site, ignore_errors=True)
    with zipfile.ZipFile(one(opts, "src-path")) as z:
        for info in z.infolist():
            z.extract(info, site)
            mode = info.external_attr >> 16
            if mode:
                os.chmod(os.path.join(site, info.filename), mode)
    for folder, _, _ in os.walk(site):
        os.chmod(folder, 0o755)
    platform = load("platform.json")
    env = {"PATH": "/usr/bin:/bin", **load("app-settings.json"), **platform["env"]}
    # scripts/test.sh's check for processes the tests left running.
    if "AMPLIFIER_TEST_RUN" in os.environ:
        env["AMPLIFIER_TEST_RUN"] = os.environ["AMPLIFIER_TEST_RUN"]
    hosts = path("hosts")
    with open("/etc/hosts") as f, open(hosts, "w") as out:
        out.write(f.read() + "\n" + "\n".join(platform["hosts"]) + "\n")
    os.chmod(hosts, 0o644)
    binary = os.path.join(site, load_host_json(site))
    if os.geteuid() == 0:
        run = ["unshare", "--mount", "--", "sh", "-c",
               f'mount --bind "$0" /etc/hosts && exec setpriv --reuid=65534 --regid=65534 --clear-groups -- "$1" serve',
               hosts, binary]
    else:
        run = ["unshare", "--user", "--map-root-user", "--mount", "--", "sh", "-c",
               'mount --bind "$0" /etc/hosts && exec "$1" serve', hosts, binary]
    log = open(path("site.log"), "a")
    process = subprocess.Popen(run, env=env, cwd=site, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                               start_new_session=True)
    with open(path("site.pid"), "w") as f:
        f.write(str(process.pid))
    emit({"status": "Succeeded"}, {"output": ["none"]})


def load_host_json(site):
    with open(os.path.join(site, "host.json")) as f:
        return json.load(f)["customHandler"]["description"]["defaultExecutablePath"]


def stop_site():
    try:
        pid = int(open(path("site.pid")).read())
    except FileNotFoundError:
        return
    try:
        os.killpg(pid, signal.SIGTERM)
        for _ in range(100):
            os.killpg(pid, 0)
            time.sleep(0.05)
    except ProcessLookupError:
        pass
    os.remove(path("site.pid"))


def main(args):
    with open(path("calls.log"), "a") as f:
        shown = ["<secret>" if a.startswith("--federated-token") else a for a in args]
        f.write(" ".join(shown) + "\n")
    opts = options(args)
    words = [a for a in args[:3] if not a.startswith("-")]
    command = " ".join(words)
    if command.startswith("login") or command.startswith("account set"):
        return
    if command.startswith("account get-access-token"):
        return get_access_token(opts)
    if command.startswith("deployment group create"):
        return deployment_create(opts)
    if command.startswith("keyvault list-deleted"):
        return emit(load("deleted-vaults.json", []), opts)
    if command.startswith("keyvault secret show"):
        return secret_show(opts)
    if command.startswith("keyvault secret set"):
        return secret_set(opts)
    if command.startswith("functionapp deploy"):
        return functionapp_deploy(opts)
    if command.startswith("functionapp stop"):
        return stop_site()
    fail(f"the rehearsal's az does not know `az {' '.join(args)}`", 2)


if __name__ == "__main__":
    main(sys.argv[1:])
