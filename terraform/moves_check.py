#!/usr/bin/env python3
"""Proves that upgrading a deployment of an earlier layout of terraform/ to
this one destroys and recreates nothing: the plan is only moves.

No real state exists here and the provider cannot reach Google, so it is
built offline (.ci/terraform-plan.sh runs this after its own plan, with the
provider mirror, a dummy token and its variables):

 1. plan the earlier layout (terraform/ of BASE, with today's Go sources so
    the source zip is the same) from an empty state;
 2. turn that plan into a state, as if it had been applied: the planned
    values, and a placeholder where a value is only known after apply
    (ids, URLs); plan again against it and fold the new planned values in,
    until the earlier layout plans no change at all (a self-consistent
    state of a deployment of BASE);
 3. plan this layout against that state: no resource may be destroyed or
    replaced, and every `moved` block must move one. With --only-moves,
    nothing may be added or changed either: the plan is moves and nothing
    else ("0 to add, 0 to change, 0 to destroy").

Usage: moves_check.py --work DIR --var-file FILE --base REV [--only-moves]
DIR/repo holds the copy .ci/terraform-plan.sh planned; terraform runs with
the environment that script set (mirror, data dir, dummy credentials).
"""

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid

MODULE_DIR = "."  # where the configuration planned now is (relative paths in values)

# IAM members the layout retired on purpose (issue 26, the delegation and
# build blast radius), each destroyed once by the upgrade: exactly these
# addresses, nothing else may go.
RETIRED = {
    # Service Account Token Creator on the Calendar delegation account
    # (access tokens, ID tokens, blobs as the account): replaced by the
    # signJwt-only custom role, google_service_account_iam_member.delegation_signers.
    'google_service_account_iam_member.calendar_impersonators["sync"]',
    'google_service_account_iam_member.calendar_impersonators["renew"]',
    # The build account's project-wide Artifact Registry write and Cloud
    # Storage read: replaced by a write on calsync's image repository and a
    # read conditioned on the source buckets (iam.tf).
    'google_project_iam_member.build["roles/artifactregistry.writer"]',
    'google_project_iam_member.build["roles/storage.objectViewer"]',
}

PROVIDERS = {
    "google": 'provider["registry.terraform.io/hashicorp/google"]',
    "archive": 'provider["registry.terraform.io/hashicorp/archive"]',
}


def fail(msg):
    print("moves-check: FAIL: " + msg)
    sys.exit(1)


def tf(chdir, *args, data_dir):
    """Runs terraform in chdir; its standard output, or the end of the run."""
    env = dict(os.environ, TF_DATA_DIR=data_dir)
    p = subprocess.run(["terraform", "-chdir=" + chdir, *args], env=env, capture_output=True, text=True)
    if p.returncode != 0:
        print(p.stdout + p.stderr)
        fail("terraform " + args[0] + " in " + chdir)
    return p.stdout


def plan_json(chdir, data_dir, var_file, state, out):
    args = ["plan", "-refresh=false", "-input=false", "-lock=false", "-no-color",
            "-var-file=" + var_file, "-out=" + out]
    if state:
        args.append("-state=" + state)
    text = tf(chdir, *args, data_dir=data_dir)
    plan = json.loads(tf(chdir, "show", "-json", out, data_dir=data_dir))
    summary = next((l for l in text.splitlines() if l.startswith(("Plan: ", "No changes."))), "")
    return plan, summary


# --- placeholders for values only known after apply ------------------------

def child_type(t, key):
    """The type at t's key (an attribute's cty type, or ("block", schema))."""
    if isinstance(t, tuple):  # a block
        block = t[1]
        if key in block.get("attributes", {}):
            return block["attributes"][key]["type"]
        bt = block.get("block_types", {}).get(key)
        if bt is None:
            return None
        if bt["nesting_mode"] == "single":
            return ("block", bt["block"])
        return ["list", ("block", bt["block"])]
    if isinstance(t, list) and t[0] in ("list", "set", "map"):
        return t[1]
    if isinstance(t, list) and t[0] == "object":
        return t[1].get(key)
    return None


def file_md5(path):
    with open(os.path.join(MODULE_DIR, path), "rb") as f:
        return base64.b64encode(hashlib.md5(f.read()).digest()).decode()


def as_read(rtype, attrs):
    """What the provider's read would store where a plan holds something else."""
    # A bucket object's read stores its md5hash in detect_md5hash, which the
    # plan compares with the local file's (the planned value is a default),
    # and not its content (which, set, the plan would hash instead).
    if rtype == "google_storage_bucket_object" and attrs.get("source"):
        attrs["detect_md5hash"] = file_md5(attrs["source"])
        attrs["content"] = None
    return attrs


def placeholder(t, addr, path, values):
    name = path[-1] if path and isinstance(path[-1], str) else ""
    tag = hashlib.sha256((addr + "/" + "/".join(map(str, path))).encode()).hexdigest()[:10]
    if t == "string":
        project = values.get("project") or "calsync-ci-plan"
        if name == "email":
            return f"ph-{tag}@{project}.iam.gserviceaccount.com"
        if name == "member":
            return "serviceAccount:" + (values.get("email") or f"ph-{tag}@{project}.iam.gserviceaccount.com")
        if name == "name" and addr.startswith("google_service_account."):
            return f"projects/{project}/serviceAccounts/{values.get('email')}"
        if name == "md5hash" and values.get("source"):
            return file_md5(values["source"])
        if name in ("url", "uri", "gcf_uri", "self_link"):
            return f"https://ph-{tag}.example.com"
        return "ph-" + tag
    if t == "number":
        return 1
    if t == "bool":
        return False
    if isinstance(t, list) and t[0] in ("list", "set"):
        return []
    if isinstance(t, list) and t[0] == "map":
        return {}
    return None


def fill(values, unknown, t, addr, path, prior, top):
    """Puts a value wherever `unknown` marks one as known only after apply:
    the prior state's value at that path if there is one, else a placeholder."""
    if unknown is True:
        return prior if prior is not None else placeholder(t, addr, path, top)
    if isinstance(unknown, dict):
        values = dict(values or {})
        for k, u in unknown.items():
            if u is False:
                continue
            p = prior.get(k) if isinstance(prior, dict) else None
            values[k] = fill(values.get(k), u, child_type(t, k), addr, path + [k], p, top)
        return values
    if isinstance(unknown, list):
        values = list(values or [])
        et = child_type(t, 0)
        for i, u in enumerate(unknown):
            if u is False:
                continue
            p = prior[i] if isinstance(prior, list) and i < len(prior) else None
            while len(values) <= i:
                values.append(None)
            values[i] = fill(values[i], u, et, addr, path + [i], p, top)
        return values
    return values


def build_state(plan, schemas, prior):
    """A state holding every managed instance as the plan would leave it."""
    by_addr = {}
    for rc in plan["resource_changes"]:
        if rc["mode"] != "managed":
            continue
        if "delete" in rc["change"]["actions"] and "create" not in rc["change"]["actions"]:
            continue
        ps = schemas[rc["provider_name"]]["resource_schemas"][rc["type"]]
        before = prior.get(rc["address"], {}).get("attributes")
        after = rc["change"]["after"] or {}
        attrs = as_read(rc["type"], fill(after, rc["change"]["after_unknown"], ("block", ps["block"]), rc["address"], [], before, after))
        by_addr[rc["address"]] = {"rc": rc, "attributes": attrs, "schema_version": ps.get("version", 0)}
    resources = {}
    for addr, inst in by_addr.items():
        rc = inst["rc"]
        key = (rc["type"], rc["name"])
        r = resources.setdefault(key, {
            "mode": "managed", "type": rc["type"], "name": rc["name"],
            "provider": PROVIDERS[rc["provider_name"].split("/")[-1]], "instances": [],
        })
        i = {"schema_version": inst["schema_version"], "attributes": inst["attributes"],
             "sensitive_attributes": []}
        if "index" in rc:
            i["index_key"] = rc["index"]
            r["each"] = "map" if isinstance(rc["index"], str) else "list"
        r["instances"].append(i)
    state = {"version": 4, "terraform_version": "1.5.0", "serial": 1,
             "lineage": str(uuid.uuid4()), "outputs": {}, "resources": list(resources.values())}
    return state, {a: {"attributes": v["attributes"]} for a, v in by_addr.items()}


def changes(plan):
    return [(rc["address"], rc["change"]["actions"], rc.get("previous_address"))
            for rc in plan["resource_changes"] if rc["mode"] == "managed"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--var-file", required=True)
    ap.add_argument("--base", required=True)
    ap.add_argument("--only-moves", action="store_true")
    a = ap.parse_args()
    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    if subprocess.run(["git", "-C", root, "cat-file", "-e", a.base + "^{commit}"]).returncode != 0:
        fail(f"commit {a.base} (the earlier layout) is not in this clone: fetch the history (git fetch --unshallow)")

    new = os.path.join(a.work, "repo", "terraform")
    oldrepo = os.path.join(a.work, "base")
    shutil.rmtree(oldrepo, ignore_errors=True)
    shutil.copytree(os.path.join(a.work, "repo"), oldrepo, ignore=shutil.ignore_patterns(".terraform*", "*.zip"))
    shutil.rmtree(os.path.join(oldrepo, "terraform"))
    archive = subprocess.run(["git", "-C", root, "archive", a.base, "terraform"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", oldrepo], input=archive, check=True)
    old = os.path.join(oldrepo, "terraform")
    olddata = os.path.join(a.work, "base-data")
    newdata = os.environ.get("TF_DATA_DIR") or os.path.join(a.work, "data")
    global MODULE_DIR
    MODULE_DIR = old
    tf(old, "init", "-backend=false", "-input=false", "-no-color", data_dir=olddata)

    schemas = json.loads(tf(old, "providers", "schema", "-json", data_dir=olddata))["provider_schemas"]
    statefile = os.path.join(a.work, "base.tfstate")

    # 1 and 2: a state of BASE as applied, consistent with its own plan.
    plan, summary = plan_json(old, olddata, a.var_file, None, os.path.join(a.work, "base.plan"))
    created = len(changes(plan))
    prior = {}
    for rnd in range(1, 8):
        state, prior = build_state(plan, schemas, prior)
        with open(statefile, "w") as f:
            json.dump(state, f)
        plan, summary = plan_json(old, olddata, a.var_file, statefile, os.path.join(a.work, "base.plan"))
        pending = [c for c in changes(plan) if c[1] != ["no-op"]]
        if not pending:
            break
    else:
        fail("the state of the earlier layout does not settle; still changing: %s" % pending[:5])
    print(f"moves-check: earlier layout {a.base[:12]}: {created} resources; against the state made of its plan"
          f" (settled in {rnd} rounds) it plans no change")

    # 3: this layout against it.
    plan, summary = plan_json(new, newdata, a.var_file, statefile, os.path.join(a.work, "moves.plan"))
    moved = [c for c in changes(plan) if c[2]]
    counts = {}
    for addr, actions, _ in changes(plan):
        for act in actions:
            counts.setdefault(act, []).append(addr)
    problems = []
    # The source zip's object is named by its content (a code change must
    # redeploy): replacing it is a redeploy, not a lost resource. RETIRED are
    # IAM bindings issue 26 removed on purpose: a broader grant replaced by a
    # narrower one under another address (a binding holds no data; the
    # narrower one is created in the same apply).
    deleted = [x for x in counts.get("delete", []) if x != "google_storage_bucket_object.source" and x not in RETIRED]
    if deleted:
        problems.append("destroyed or replaced: " + ", ".join(deleted))
    if a.only_moves:
        for act in ("create", "update"):
            if counts.get(act):
                problems.append(f"{act}: " + ", ".join(counts[act]))
    blocks = 0
    for name in os.listdir(new):
        if name.endswith(".tf"):
            with open(os.path.join(new, name)) as f:
                blocks += len(re.findall(r"(?m)^moved\s*\{", f.read()))
    if len(moved) != blocks:
        problems.append(f"{len(moved)} resources moved, but terraform/ has {blocks} moved blocks")
    for addr, actions, prev in moved:
        print(f"moves-check:   {prev} -> {addr} ({'+'.join(actions)})")
    if problems:
        fail("this layout against a deployment of the earlier one:\n  " + "\n  ".join(problems))
    print(f"moves-check: OK: {summary} ({len(moved)} moved of {len(changes(plan))} resources; nothing destroyed"
          + (", added or changed" if a.only_moves else "") + ")")


if __name__ == "__main__":
    main()
