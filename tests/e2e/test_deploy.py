#!/usr/bin/env python3
"""test_deploy.py - the deployment files in etc/ (issue 20 part 3) checked
with Debian's tools: both systemd units pass `systemd-analyze verify`
without a word (a broken copy is shown to be caught), and the Kubernetes
StatefulSet is parsed and checked for what nscollect relies on: the shard
from the pod index with N equal to replicas, a persistent volume holding
the database and output, the config nscollect itself accepts, Workload
Identity for GCS. $NSCOLLECT_SHARD, which the StatefulSet sets, is what the
CLI in the pod obeys.

    NSCOLLECT_BIN=./nscollect python3 tests/e2e/test_deploy.py [NAME...]
"""

import os
import shutil
import subprocess
import sys
import tempfile

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Workspace, nscollect_bin, run_tests  # noqa: E402
from test_shard import shard_of  # noqa: E402

ETC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "etc")


def verify(unit_text, name):
    """systemd-analyze verify on unit_text saved as name; (rc, output)."""
    d = tempfile.mkdtemp(prefix="nscollect-units-")
    try:
        path = os.path.join(d, name)
        with open(path, "w") as f:
            f.write(unit_text)
        if "@." in name:                      # a template is verified through an instance
            inst = name.replace("@.", "@0.")
            os.symlink(name, os.path.join(d, inst))
            path = os.path.join(d, inst)
        p = subprocess.run(["systemd-analyze", "verify", "--man=no", path], cwd=d,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        return p.returncode, p.stdout.decode()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def unit(name):
    with open(os.path.join(ETC, name)) as f:
        return f.read().replace("/usr/local/bin/nscollect", os.path.abspath(nscollect_bin()))


def test_systemd_units_verify():
    for name in ("nscollect.service", "nscollect@.service"):
        text = unit(name)
        rc, out = verify(text, name)
        assert rc == 0 and out.strip() == "", (name, rc, out)
        rc, out = verify(text.replace("ProtectHome=yes", "ProtectHome=sometimes"), name)
        assert "sometimes" in out, (name, out)          # the check can fail
    t = unit("nscollect@.service")
    assert "-c /etc/nscollect/shard-%i.conf run" in t
    assert "StateDirectory=nscollect/shard-%i" in t
    assert "WorkingDirectory=/var/lib/nscollect/shard-%i" in t


def load_k8s():
    with open(os.path.join(ETC, "k8s", "nscollect-statefulset.yaml")) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    return {d["kind"]: d for d in docs}


def test_statefulset_has_what_nscollect_relies_on():
    k = load_k8s()
    sts, cm, sa = k["StatefulSet"], k["ConfigMap"], k["ServiceAccount"]
    assert sts["apiVersion"] == "apps/v1"
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert env["NSCOLLECT_SHARD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.labels['apps.kubernetes.io/pod-index']"
    assert env["NSCOLLECT_SHARD"]["value"] == "$(NSCOLLECT_SHARD_INDEX)/%d" % spec["replicas"]
    assert c["args"][-1] == "run" and "-c" in c["args"]
    conf_path = c["args"][c["args"].index("-c") + 1]
    # the config comes from the ConfigMap, mounted where -c points
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    cfg_vol = [n for n, v in vols.items() if v.get("configMap", {}).get("name") ==
               cm["metadata"]["name"]]
    assert cfg_vol and os.path.dirname(conf_path) == mounts[cfg_vol[0]]
    conf = cm["data"][os.path.basename(conf_path)]
    # one persistent volume per pod, holding the database and the output
    (claim,) = spec["volumeClaimTemplates"]
    state = mounts[claim["metadata"]["name"]]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert 'database = "%s/' % state in conf and 'output_dir = "%s/' % state in conf
    # nscollect accepts that config
    with Workspace() as ws:
        with open(ws.conf, "w") as f:
            f.write(conf)
        rc, _, err = ws.run_cli(["shard", "of", "1", "x"])
        assert rc == 0, err
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert "iam.gke.io/gcp-service-account" in sa["metadata"]["annotations"]
    assert spec["podManagementPolicy"] == "Parallel"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert {"name": "metrics", "containerPort": 9464} in c["ports"]
    # the probes ask the port the config serves, on the daemon's paths
    assert 'listen = "0.0.0.0:9464"' in conf
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_cli_obeys_nscollect_shard():
    with Workspace() as ws:
        assert ws.run_cli(["init"])[0] == 0
        name = next(n for n in ("a%d" % i for i in range(100)) if shard_of(n, 3) == 0)
        rc, _, err = ws.run_cli(["tenant", "add", name, "--url", "http://127.0.0.1:9"],
                                stdin="tok", env={"NSCOLLECT_SHARD": "1/3"})
        assert rc == 2 and "belongs to shard 0/3" in err and "shard 1/3" in err, err
        rc, _, err = ws.run_cli(["tenant", "add", name, "--url", "http://127.0.0.1:9"],
                                stdin="tok", env={"NSCOLLECT_SHARD": "0/3"})
        assert rc == 0, err
        rc, _, err = ws.run_cli(["run", "--once"], env={"NSCOLLECT_SHARD": "x"})
        assert rc == 2 and "$NSCOLLECT_SHARD: 'x' is not a shard K/N" in err, err


if __name__ == "__main__":
    run_tests(globals())
