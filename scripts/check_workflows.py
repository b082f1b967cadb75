#!/usr/bin/env python3
"""Offline checks of .github/workflows/ (scripts/check-infra.sh runs this):
what deploys, when, in which order, and with which privileges. The GitHub
workflow schema (check-jsonschema) says the files are well formed; this says
they do what docs/deploy.md promises:

- every `uses:` of an action is pinned to a full 40-hex commit SHA with a
  `# v...` (or `# <branch>, <date>`) comment naming what the SHA is;
- every workflow sets `permissions: {}` at the top and every job its own,
  none beyond `contents: read` and `id-token: write`, and `id-token: write`
  only where an Azure login happens;
- ci.yml runs on pushes to main and pull requests, its test job runs
  `.ci/run` (and does not repeat its steps); deploy.yml can only be called
  (its one trigger is workflow_call);
- the deploy path: the package job needs every CI job; deploy-test needs the
  package; deploy-production needs deploy-test; each runs only on main and
  never on a pull request, and no condition lets a job run after a failure
  (always(), failure(), cancelled());
- production deploys in the GitHub environment `production`, test in
  `test`, with their parameter files, one run per environment at a time;
- nothing on the release path restores a cache, the deploy job compiles
  nothing (it deploys the package job's zip) and smoke-tests after deploying;
- every `toolchain:` is rust-toolchain.toml's channel;
- every cargo build, test, clippy, check, run or zigbuild in .ci/run,
  scripts/*.sh and the workflows uses Cargo.lock as it is (`--locked`).

`--self-test` breaks copies of the workflows one way at a time and
fails unless each broken copy is caught."""

import copy
import pathlib
import re
import sys

from ruamel.yaml import YAML

ROOT = pathlib.Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
MAIN_ONLY = ("github.ref == 'refs/heads/main' && "
             "(github.event_name == 'push' || github.event_name == 'workflow_dispatch')")
DEPLOY_WORKFLOW = "./.github/workflows/deploy.yml"
PINNED = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")
PIN_COMMENT = re.compile(r"uses:\s*(\S+)\s+#\s*\S+")
CACHES = ("swatinem/rust-cache", "actions/cache")
ALLOWED_PERMISSIONS = {("contents", "read"), ("id-token", "write")}
AZURE_LOGIN = "azure/login"


def load(name):
    path = WORKFLOWS / name
    text = path.read_text()
    return YAML(typ="safe", pure=True).load(text), text


def toolchain_channel():
    for line in (ROOT / "rust-toolchain.toml").read_text().splitlines():
        m = re.match(r'\s*channel\s*=\s*"([^"]+)"', line)
        if m:
            return m.group(1)
    return None


def action(uses):
    """'owner/repo' of a `uses:` value, lower case, without path or ref."""
    return "/".join(uses.split("@")[0].split("/")[:2]).lower()


def steps(job):
    return job.get("steps") or []


def needs(job):
    n = job.get("needs") or []
    return [n] if isinstance(n, str) else list(n)


def all_needs(jobs, name, seen=None):
    """Every job `name` waits for, directly or not."""
    seen = set() if seen is None else seen
    for n in needs(jobs.get(name, {})):
        if n not in seen:
            seen.add(n)
            all_needs(jobs, n, seen)
    return seen


def norm(expr):
    return " ".join(str(expr or "").replace("${{", "").replace("}}", "").split())


def check(workflows, texts, channel):
    """workflows: {file name: parsed}; texts: {file name: raw text}."""
    problems = []
    p = problems.append

    # Pins, permissions, toolchains: every workflow, every job.
    for name, wf in workflows.items():
        pinned_lines = {m.group(1) for m in PIN_COMMENT.finditer(texts[name])}
        if wf.get("permissions") != {}:
            p(f"{name}: the workflow must set `permissions: {{}}` (each job grants its own)")
        for job_name, job in (wf.get("jobs") or {}).items():
            where = f"{name} job {job_name}"
            uses_list = [s["uses"] for s in steps(job) if "uses" in s]
            if "uses" in job and not str(job["uses"]).startswith("./"):
                uses_list.append(job["uses"])
            for uses in uses_list:
                if str(uses).startswith("./"):
                    continue
                if not PINNED.match(str(uses)):
                    p(f"{where}: `{uses}` is not pinned to a full commit SHA")
                elif uses not in pinned_lines:
                    p(f"{where}: `{uses}` has no `# version` comment on its line")
            perms = job.get("permissions")
            if not isinstance(perms, dict):
                p(f"{where}: no explicit `permissions:` mapping")
                perms = {}
            for scope, level in perms.items():
                if (scope, level) not in ALLOWED_PERMISSIONS:
                    p(f"{where}: permission `{scope}: {level}` is more than this pipeline needs")
            logs_in = any(action(u) == AZURE_LOGIN for u in uses_list) or job.get("uses") == DEPLOY_WORKFLOW
            if perms.get("id-token") == "write" and not logs_in:
                p(f"{where}: `id-token: write` without an Azure login")
            if logs_in and perms.get("id-token") != "write":
                p(f"{where}: logs in to Azure (OIDC) without `id-token: write`")
            for s in steps(job):
                if action(s.get("uses", "")) == "dtolnay/rust-toolchain":
                    got = str((s.get("with") or {}).get("toolchain"))
                    if got != channel:
                        p(f"{where}: toolchain {got}, but rust-toolchain.toml says {channel}")

    ci = workflows.get("ci.yml")
    deploy = workflows.get("deploy.yml")
    if ci is None or deploy is None:
        return problems + ["ci.yml and deploy.yml must both exist"]

    # Triggers.
    on = ci.get("on") or {}
    if ((on.get("push") or {}).get("branches")) != ["main"]:
        p("ci.yml: must run on pushes to main (on.push.branches: [main])")
    if "pull_request" not in on:
        p("ci.yml: must run on pull requests")
    if "pull_request_target" in on or "workflow_run" in on:
        p("ci.yml: pull_request_target / workflow_run triggers are not part of this pipeline")
    deploy_on = deploy.get("on") or {}
    if list(deploy_on) != ["workflow_call"]:
        p(f"deploy.yml: its only trigger must be workflow_call (has {sorted(deploy_on)})")
    for name, wf in workflows.items():
        if name in ("ci.yml", "deploy.yml"):
            continue
        for job_name, job in (wf.get("jobs") or {}).items():
            if job.get("environment") or any(action(u) == AZURE_LOGIN
                                             for u in [s.get("uses", "") for s in steps(job)]):
                p(f"{name} job {job_name}: deploys outside the ci.yml path")

    jobs = ci.get("jobs") or {}
    # CI runs .ci/run, and only that.
    test = jobs.get("test", {})
    runs = [str(s.get("run", "")).strip() for s in steps(test) if "run" in s]
    if runs != [".ci/run"]:
        p(f"ci.yml job test: must run `.ci/run` and nothing else (runs {runs})")
    for job_name, job in jobs.items():
        for s in steps(job):
            if re.search(r"\bcargo (fmt|clippy|test)\b|scripts/test\.sh", str(s.get("run", ""))):
                p(f"ci.yml job {job_name}: repeats a step of .ci/run: {s['run']!r}")

    # The deploy path.
    callers = {n: j for n, j in jobs.items() if j.get("uses") == DEPLOY_WORKFLOW}
    by_env = {}
    for n, j in callers.items():
        env = (j.get("with") or {}).get("environment")
        by_env.setdefault(env, []).append(n)
    if sorted(by_env) != ["production", "test"] or any(len(v) != 1 for v in by_env.values()):
        p(f"ci.yml: deploy.yml must be called exactly once for test and once for production (got {by_env})")
        return problems
    deploy_test, deploy_prod = by_env["test"][0], by_env["production"][0]
    for n, env in ((deploy_test, "test"), (deploy_prod, "production")):
        want = f"infra/parameters/{env}.parameters.json"
        if (callers[n].get("with") or {}).get("parameters") != want:
            p(f"ci.yml job {n}: deploys {env} with other parameters than {want}")
    packagers = [n for n, j in jobs.items()
                 if any("scripts/package.sh" in str(s.get("run", "")) for s in steps(j)) and n != "test"]
    if len(packagers) != 1:
        p(f"ci.yml: exactly one job must build the package for deployment (got {packagers})")
        return problems
    package = packagers[0]
    ci_jobs = set(jobs) - {package, deploy_test, deploy_prod}
    if not ci_jobs <= all_needs(jobs, package):
        p(f"ci.yml job {package}: must need every CI job ({sorted(ci_jobs)}), needs {sorted(all_needs(jobs, package))}")
    if package not in all_needs(jobs, deploy_test):
        p(f"ci.yml job {deploy_test}: must need {package}")
    if deploy_test not in all_needs(jobs, deploy_prod):
        p(f"ci.yml job {deploy_prod}: must need {deploy_test} (test before production)")
    for n in (package, deploy_test, deploy_prod):
        cond = norm(jobs[n].get("if"))
        if cond != norm(MAIN_ONLY):
            p(f"ci.yml job {n}: `if:` must be exactly {MAIN_ONLY!r} (is {cond!r})")
    for n, j in jobs.items():
        if re.search(r"\b(always|failure|cancelled)\(\)", norm(j.get("if"))):
            p(f"ci.yml job {n}: its condition can run it after a failed or cancelled job")
    for n in (package,):
        for s in steps(jobs[n]):
            if action(s.get("uses", "")) in CACHES:
                p(f"ci.yml job {n}: restores a cache ({s['uses']}) on the release path")
        if not any(action(s.get("uses", "")) == "actions/upload-artifact" for s in steps(jobs[n])):
            p(f"ci.yml job {n}: does not upload the package it built")

    # deploy.yml: one job, the environment and concurrency of its caller's
    # choosing, the package from this run, deploy.sh, then the smoke test.
    djobs = deploy.get("jobs") or {}
    if len(djobs) != 1:
        p(f"deploy.yml: must have exactly one job (has {sorted(djobs)})")
        return problems
    (dname, djob), = djobs.items()
    where = f"deploy.yml job {dname}"
    inputs = ((deploy_on.get("workflow_call") or {}).get("inputs")) or {}
    env_input = inputs.get("environment") or {}
    if not env_input.get("required") or "default" in env_input:
        p("deploy.yml: input `environment` must be required, without a default")
    if norm(djob.get("environment")) != "inputs.environment":
        p(f"{where}: `environment:` must be the caller's (${{{{ inputs.environment }}}}), so production is protected")
    conc = djob.get("concurrency") or {}
    if "inputs.environment" not in norm(conc.get("group")) or conc.get("cancel-in-progress") is not False:
        p(f"{where}: needs `concurrency` per environment with cancel-in-progress: false")
    if djob.get("if"):
        p(f"{where}: must not have its own `if:` (the caller's conditions decide)")
    names = [action(s.get("uses", "")) or str(s.get("run", "")).strip() for s in steps(djob)]
    for s in steps(djob):
        if action(s.get("uses", "")) in CACHES or action(s.get("uses", "")) == "dtolnay/rust-toolchain":
            p(f"{where}: sets up a toolchain or cache ({s['uses']}): the deploy job compiles nothing")
    deploy_steps = [i for i, s in enumerate(steps(djob)) if str(s.get("run", "")).strip() == "scripts/deploy.sh"]
    smoke_steps = [i for i, s in enumerate(steps(djob)) if str(s.get("run", "")).startswith("scripts/smoke.sh")]
    if len(deploy_steps) != 1:
        p(f"{where}: must run scripts/deploy.sh exactly once (steps: {names})")
    else:
        env = steps(djob)[deploy_steps[0]].get("env") or {}
        if not str(env.get("PACKAGE", "")).strip():
            p(f"{where}: scripts/deploy.sh must get PACKAGE (the package job's zip), not build its own")
        if norm(env.get("PARAMETERS")) != "inputs.parameters":
            p(f"{where}: scripts/deploy.sh must get PARAMETERS from the caller")
        if not smoke_steps or smoke_steps[0] < deploy_steps[0]:
            p(f"{where}: must run scripts/smoke.sh after scripts/deploy.sh")
        if not any(action(s.get("uses", "")) == "actions/download-artifact"
                   for s in steps(djob)[:deploy_steps[0]]):
            p(f"{where}: must download the package before deploying")
    return problems


CARGO_BUILD = re.compile(r'\bcargo(\s+"?\+\S+"?)?\s+(build|test|clippy|check|run|zigbuild)\b')


def unlocked_builds(texts):
    """Lines of the scripts and workflows that build without --locked."""
    sources = {f"{WORKFLOWS.name}/{name}": text for name, text in texts.items()}
    for path in [ROOT / ".ci" / "run", *sorted((ROOT / "scripts").glob("*.sh"))]:
        sources[str(path.relative_to(ROOT))] = path.read_text()
    problems = []
    for name, text in sources.items():
        for number, line in enumerate(text.splitlines(), 1):
            code = line.split("#", 1)[0] if line.lstrip().startswith("#") else line
            if CARGO_BUILD.search(code) and "--locked" not in code:
                problems.append(f"{name}:{number}: builds without --locked: {line.strip()}")
    return problems


def load_all():
    workflows, texts = {}, {}
    for path in sorted(WORKFLOWS.glob("*.y*ml")):
        workflows[path.name], texts[path.name] = load(path.name)
    return workflows, texts


def self_test(workflows, texts, channel):
    """Each mutation must produce at least one problem."""
    def ci(w):
        return w["ci.yml"]["jobs"]

    def deploy_job(w):
        return next(iter(w["deploy.yml"]["jobs"].values()))

    def unpin(w, t):
        step = ci(w)["test"]["steps"][0]
        step["uses"] = step["uses"].split("@")[0] + "@v4"

    def production_without_test(w, t):
        ci(w)["deploy-production"]["needs"] = ["package"]

    def deploy_without_tests(w, t):
        ci(w)["package"]["needs"] = ["msrv"]

    def deploy_on_pull_requests(w, t):
        ci(w)["package"]["if"] = "github.event_name != 'schedule'"

    def deploy_after_failure(w, t):
        ci(w)["deploy-production"]["if"] = "always() && " + MAIN_ONLY

    def deploy_workflow_on_push(w, t):
        w["deploy.yml"]["on"]["push"] = {"branches": ["main"]}

    def unprotected_production(w, t):
        deploy_job(w)["environment"] = "test"

    def swapped_parameters(w, t):
        ci(w)["deploy-production"]["with"]["parameters"] = "infra/parameters/test.parameters.json"

    def cached_release_build(w, t):
        ci(w)["package"]["steps"].insert(1, {"uses": "Swatinem/rust-cache@" + "0" * 40})

    def deploy_builds_again(w, t):
        deploy_job(w)["steps"].insert(1, {"uses": "dtolnay/rust-toolchain@" + "0" * 40,
                                          "with": {"toolchain": channel}})

    def no_package_given(w, t):
        for s in deploy_job(w)["steps"]:
            (s.get("env") or {}).pop("PACKAGE", None)

    def job_without_permissions(w, t):
        del ci(w)["msrv"]["permissions"]

    def broad_permissions(w, t):
        ci(w)["test"]["permissions"]["contents"] = "write"

    def needless_id_token(w, t):
        ci(w)["package"]["permissions"]["id-token"] = "write"

    def workflow_default_permissions(w, t):
        del w["ci.yml"]["permissions"]

    def ci_repeats_steps(w, t):
        ci(w)["test"]["steps"][-1]["run"] = "cargo clippy --all-targets -- -D warnings && scripts/test.sh"

    def overlapping_deploys(w, t):
        deploy_job(w)["concurrency"]["cancel-in-progress"] = True

    def smoke_test_dropped(w, t):
        deploy_job(w)["steps"] = [s for s in deploy_job(w)["steps"]
                                  if not str(s.get("run", "")).startswith("scripts/smoke.sh")]

    def other_toolchain(w, t):
        for s in ci(w)["test"]["steps"]:
            if "toolchain" in (s.get("with") or {}):
                s["with"]["toolchain"] = "stable"

    def sha_without_comment(w, t):
        t["ci.yml"] = PIN_COMMENT.sub(lambda m: "uses: " + m.group(1), t["ci.yml"])

    def unlocked_build(w, t):
        t["deploy.yml"] += "      - run: cargo build --release\n"

    mutations = [v for k, v in sorted(locals().items()) if callable(v) and k not in ("ci", "deploy_job")]
    failed = []
    for mutate in mutations:
        w, t = copy.deepcopy(workflows), dict(texts)
        mutate(w, t)
        if not check(w, t, channel) + unlocked_builds(t):
            failed.append(mutate.__name__)
    for name in failed:
        print(f"workflows: self-test: breaking the workflows by {name} went unnoticed", file=sys.stderr)
    print(f"workflows: self-test: {len(mutations) - len(failed)} of {len(mutations)} broken copies caught")
    return not failed


def main():
    workflows, texts = load_all()
    channel = toolchain_channel()
    problems = check(workflows, texts, channel) + unlocked_builds(texts)
    if channel is None:
        problems.append("rust-toolchain.toml: no channel")
    for problem in problems:
        print(f"workflows: {problem}", file=sys.stderr)
    print(f"workflows: {len(workflows)} workflows checked, {len(problems)} problems")
    ok = not problems
    if "--self-test" in sys.argv[1:] and ok:
        ok = self_test(workflows, texts, channel)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
