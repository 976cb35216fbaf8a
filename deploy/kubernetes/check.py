#!/usr/bin/env python3
"""Check the Kubernetes manifests: every file parses, names what it must,
and passes the accelhub binary only flags and variables it knows.

Usage: check.py PATH/TO/accelhub
"""
import os
import re
import subprocess
import sys
from urllib.parse import urlparse

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
errors = []


def fail(msg):
    errors.append(msg)


def load():
    with open(os.path.join(HERE, "kustomization.yaml")) as f:
        kust = yaml.safe_load(f)
    listed = kust.get("resources", [])
    on_disk = sorted(
        n for n in os.listdir(HERE) if n.endswith(".yaml") and n != "kustomization.yaml"
    )
    if sorted(listed) != on_disk:
        fail(f"kustomization.yaml lists {sorted(listed)}, the directory holds {on_disk}")
    docs = []
    for name in listed:
        with open(os.path.join(HERE, name)) as f:
            for doc in yaml.safe_load_all(f):
                if doc is None:
                    continue
                for field in ("apiVersion", "kind"):
                    if field not in doc:
                        fail(f"{name}: a document without {field}")
                if not doc.get("metadata", {}).get("name"):
                    fail(f"{name}: a {doc.get('kind')} without metadata.name")
                docs.append(doc)
    return docs


def find(docs, kind, name):
    for d in docs:
        if d.get("kind") == kind and d["metadata"]["name"] == name:
            return d
    fail(f"no {kind} named {name}")
    return None


def help_of(binary, sub):
    out = subprocess.run([binary, sub, "--help"], capture_output=True, text=True, check=True)
    text = out.stdout
    flags = set(re.findall(r"(--[a-z][a-z0-9-]*)", text))
    envs = set(re.findall(r"env: ([A-Z_]+)=?", text))
    return flags, envs


def container(workload):
    return workload["spec"]["template"]["spec"]["containers"][0]


def check_container(docs, c, sub, binary, configmaps):
    flags, envs = help_of(binary, sub)
    args = c.get("args", [])
    if not args or args[0] != sub:
        fail(f"container {c['name']}: args must start with '{sub}', got {args[:1]}")
    for a in args[1:]:
        if a.startswith("--") and a not in flags:
            fail(f"container {c['name']}: 'accelhub {sub}' has no flag {a}")
    names = {e["name"] for e in c.get("env", [])}
    for cm in c.get("envFrom", []):
        ref = cm.get("configMapRef", {}).get("name")
        if ref:
            names |= set(configmaps.get(ref, {}).keys())
    for n in names:
        if n.startswith("ACCELHUB_") and n not in envs:
            fail(f"container {c['name']}: 'accelhub {sub}' reads no variable {n}")
    # Every secret and config map it refers to exists with the key.
    for e in c.get("env", []):
        src = e.get("valueFrom", {})
        ref = src.get("secretKeyRef")
        if ref:
            secret = find(docs, "Secret", ref["name"])
            if secret and ref["key"] not in secret.get("stringData", secret.get("data", {})):
                fail(f"secret {ref['name']} has no key {ref['key']}")
    for cm in c.get("envFrom", []):
        ref = cm.get("configMapRef", {}).get("name")
        if ref and ref not in configmaps:
            fail(f"no ConfigMap named {ref}")
    return args, names, envs


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    binary = sys.argv[1]
    docs = load()
    configmaps = {
        d["metadata"]["name"]: d.get("data", {}) for d in docs if d.get("kind") == "ConfigMap"
    }

    # The control plane: a Deployment serving on a Service, on PostgreSQL
    # and S3, leaving jobs to the agents.
    cp = find(docs, "Deployment", "accelhub-control-plane")
    svc = find(docs, "Service", "accelhub")
    if cp:
        c = container(cp)
        args, names, _ = check_container(docs, c, "serve", binary, configmaps)
        for need in ("--no-local-jobs", "--listen"):
            if need not in args:
                fail(f"the control plane must run with {need}")
        for need in ("ACCELHUB_DATABASE", "ACCELHUB_MASTER_KEY", "ACCELHUB_OBJECTS"):
            if need not in names:
                fail(f"the control plane needs {need}")
        if cp["spec"].get("replicas", 1) < 2:
            fail("the control plane should run at least 2 replicas")
        port = c["ports"][0]
        for probe in ("readinessProbe", "livenessProbe"):
            if c.get(probe, {}).get("httpGet", {}).get("path") != "/healthz":
                fail(f"the control plane needs a {probe} on /healthz")
        if svc:
            sel = svc["spec"]["selector"]
            labels = cp["spec"]["template"]["metadata"]["labels"]
            if any(labels.get(k) != v for k, v in sel.items()):
                fail("Service accelhub does not select the control plane's pods")
            if svc["spec"]["ports"][0]["targetPort"] not in (port["name"], port["containerPort"]):
                fail("Service accelhub does not target the control plane's port")

    # The agents: a DaemonSet on labelled accelerator nodes, requesting
    # the device plugin's resources, pointed at the Service.
    ds = find(docs, "DaemonSet", "accelhub-agent")
    if ds:
        spec = ds["spec"]["template"]["spec"]
        if not spec.get("nodeSelector"):
            fail("the agent DaemonSet must select labelled accelerator nodes")
        c = container(ds)
        args, names, _ = check_container(docs, c, "agent", binary, configmaps)
        if "ACCELHUB_AGENT_TOKEN" not in names:
            fail("the agent needs ACCELHUB_AGENT_TOKEN")
        res = c.get("resources", {})
        plugin = [r for r in res.get("requests", {}) if "/" in r]
        if not plugin:
            fail("the agent must request a device plugin's resource (vendor.com/name)")
        for r in plugin:
            if res.get("limits", {}).get(r) != res["requests"][r]:
                fail(f"extended resource {r} must have equal request and limit")
        if "--server" in args and svc:
            url = urlparse(args[args.index("--server") + 1])
            if url.hostname != svc["metadata"]["name"] or url.port != svc["spec"]["ports"][0]["port"]:
                fail(f"the agent's --server {url.geturl()} is not Service accelhub")

    # PostgreSQL and S3 are external services, named where they are used.
    for name in ("postgres", "s3"):
        s = find(docs, "Service", name)
        if s and s["spec"].get("type") != "ExternalName":
            fail(f"Service {name} should be an ExternalName")
    secret = find(docs, "Secret", "accelhub-secrets")
    if secret:
        db = urlparse(secret["stringData"]["database-url"])
        if db.scheme not in ("postgres", "postgresql") or db.hostname != "postgres":
            fail("database-url must be a postgres:// URL on Service postgres")
    objects = configmaps.get("accelhub-config", {}).get("ACCELHUB_OBJECTS", "")
    if not objects.startswith("s3://") or "endpoint=http://s3:" not in objects:
        fail("ACCELHUB_OBJECTS must be an s3:// URL with endpoint on Service s3")

    if errors:
        for e in errors:
            print(f"deploy/kubernetes: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"deploy/kubernetes: {len(docs)} objects checked")


if __name__ == "__main__":
    main()
