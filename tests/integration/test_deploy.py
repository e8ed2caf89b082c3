"""Static checks of the deployment: Containerfile, k8s/ manifests and k6/ scripts, against the real binaries.

No container engine or cluster runs on the development machines, so what can be checked without one is
checked here, each against the real thing rather than a copy of it:

- every YAML file under k8s/ parses; every object of k8s/base/ has apiVersion, kind and metadata.name, and
  sits in the namespace of namespace.yaml; base/kustomization.yaml lists files that exist, and every manifest
  is listed (or is one of the documented exceptions); k8s/kustomization.yaml is base/; `kubectl kustomize`
  renders it when kubectl is installed;
- every ScaledObject validates against KEDA's own CRD schema (openAPIV3Schema of the served version, from
  ../shared/reference/keda.sh_scaledobjects.yaml or $KEDA_CRD), with unknown fields rejected as kubectl's
  strict field validation does;
- the manifests match the binaries: every flag in the container args is one `prescale --help` /
  `prescale-demo-app --help` lists, the processes start with exactly those args (listen addresses moved to
  free loopback ports) and answer the probe paths with 200, container ports match the listen flags,
  Service targetPorts name container ports, and the metadata of every external trigger is accepted by a
  running prescale (GetMetricSpec answers OK with the threshold and metricName given);
- the Secret with prescale's --prometheus-config is mounted read-only for prescale's group only, its entry
  applies to the walkthrough's Prometheus, prescale starts with it, and its headers reach the server named;
- k8s/overlays/tls renders (a small kustomize here, compared with `kubectl kustomize` when installed), adds
  the cert-manager chain and KEDA's TriggerAuthentication with the fields and keys each reads, and prescale
  started with the overlay's args and openssl-made certificates answers grpcio over TLS only with KEDA's
  client certificate;
- Prometheus's configuration passes `promtool check config`, every trigger query passes `promtool check
  rules`, and the scrape jobs and DNS names match the Services and the queries;
- the Containerfile has a Debian bookworm build stage and a bookworm-slim runtime stage whose packages
  provide every NEEDED library of both binaries (readelf -d, resolved with ldd and dpkg -S), runs as a
  numeric non-root user, EXPOSEs 6000 and 8080, has ENTRYPOINT ["prescale"], ships prescale-demo-app, has
  the OCI labels, and fetches nothing at run time;
- the k6 scripts parse as ES modules (`node --check`), and, run under node with stand-ins for the k6
  modules, periodic.js builds the 3-minute cycle the ScaledObjects' `period` says, and replay.js turns a
  small trace into the stages expected.

Binaries: $PRESCALE_BIN (default build/src/prescale) and prescale-demo-app next to it
(demo_app/prescale-demo-app), or $DEMO_APP_BIN.

Run: /usr/bin/python3 -m unittest -v tests/integration/test_deploy.py
"""

import base64
import copy
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import certs as certs_mod  # noqa: E402
import harness as h  # noqa: E402

try:
    import yaml
except ImportError:  # pragma: no cover - Debian's python3-yaml is a dependency (scripts/deps.sh)
    yaml = None

REPO = h.REPO_ROOT
K8S = os.path.join(REPO, "k8s")
# The manifests: k8s/kustomization.yaml lists base/, which overlays (k8s/overlays/*) build on too.
BASE = os.path.join(K8S, "base")
K6 = os.path.join(REPO, "k6")
CONTAINERFILE = os.path.join(REPO, "Containerfile")
NAMESPACE = "prescale"
# Files in k8s/base/ that are not Kubernetes objects applied by `kubectl apply -k`: the kustomization
# itself, and an optional replacement applied by hand (k8s/README.md). KinD's own config is in k8s/.
NOT_OBJECTS = {"kustomization.yaml"}
OPTIONAL = {"scaledobject-proactive-push.yaml"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def demo_bin():
    if os.environ.get("DEMO_APP_BIN"):
        return os.environ["DEMO_APP_BIN"]
    return os.path.join(os.path.dirname(h.prescale_bin()), "demo_app", "prescale-demo-app")


def keda_crd_path():
    if os.environ.get("KEDA_CRD"):
        return os.environ["KEDA_CRD"]
    return os.path.join(os.path.dirname(REPO), "shared", "reference", "keda.sh_scaledobjects.yaml")


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def manifest_files():
    return sorted(glob.glob(os.path.join(BASE, "*.yaml")) + glob.glob(os.path.join(BASE, "*.yml")))


def all_yaml_files():
    """Every YAML file under k8s/: the base, kind-config.yaml, the kustomizations and the overlays."""
    return sorted(glob.glob(os.path.join(K8S, "**", "*.yaml"), recursive=True)
                  + glob.glob(os.path.join(K8S, "**", "*.yml"), recursive=True))


def objects(include_optional=False):
    """[(file name, object)] of every Kubernetes object in k8s/base/."""
    out = []
    for path in manifest_files():
        name = os.path.basename(path)
        if name in NOT_OBJECTS or (name in OPTIONAL and not include_optional):
            continue
        out += [(name, d) for d in load_docs(path)]
    return out


def find(kind, name, include_optional=False):
    for _, o in objects(include_optional):
        if o.get("kind") == kind and o.get("metadata", {}).get("name") == name:
            return o
    raise AssertionError(f"no {kind} {name} in k8s/base/")


def flags_of(args):
    """['--a=1', '--b', '2'] -> {'--a': '1', '--b': '2'}; every arg is a --flag (with = or a value)."""
    out, i = {}, 0
    while i < len(args):
        a = args[i]
        assert a.startswith("--"), f"not a flag: {a!r}"
        if "=" in a:
            k, v = a.split("=", 1)
        else:
            k, v = a, args[i + 1]
            i += 1
        out[k] = v
        i += 1
    return out


def help_flags(binary):
    r = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r
    return set(re.findall(r"(?m)^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)", r.stdout))


def port_of(hostport):
    return int(hostport.rsplit(":", 1)[1])


def strip_extensions(node):
    """Drops x-kubernetes-* keys (jsonschema does not know them) and, as kubectl's strict field validation
    does, rejects unknown fields wherever the schema lists properties and does not preserve unknown ones."""
    if isinstance(node, dict):
        preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
        out = {k: strip_extensions(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
        if "properties" in out and "additionalProperties" not in out and not preserve:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [strip_extensions(v) for v in node]
    return node


def pointer_tokens(path):
    """A JSON pointer (RFC 6901) -> its tokens, ~1 and ~0 unescaped."""
    assert path.startswith("/"), path
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def json_patch(doc, op):
    """Applies one JSON patch operation (RFC 6902: add, replace, remove; what k8s/overlays use) in place."""
    *parents, last = pointer_tokens(op["path"])
    node = doc
    for t in parents:
        node = node[int(t)] if isinstance(node, list) else node[t]
    kind = op["op"]
    assert kind in ("add", "replace", "remove"), f"operation this renderer does not know: {kind}"
    if isinstance(node, list):
        if kind == "add":
            node.insert(len(node) if last == "-" else int(last), copy.deepcopy(op["value"]))
        elif kind == "replace":
            node[int(last)] = copy.deepcopy(op["value"])
        else:
            del node[int(last)]
    else:
        assert kind == "add" or last in node, f"{kind} of a missing {op['path']}"
        if kind == "remove":
            del node[last]
        else:
            node[last] = copy.deepcopy(op["value"])


def target_matches(obj, target):
    group, _, version = obj["apiVersion"].rpartition("/")
    return (obj["kind"] == target["kind"] and obj["metadata"]["name"] == target["name"]
            and target.get("group", group) == group and target.get("version", version) == version)


def render(folder):
    """The part of kustomize that k8s/ uses: resources (files, or folders with a kustomization.yaml),
    JSON 6902 patches given by path and target, images' newTag. Each patch must match exactly one object.
    Checked against `kubectl kustomize` where kubectl is installed (TestTlsOverlay)."""
    [k] = load_docs(os.path.join(folder, "kustomization.yaml"))
    unknown = set(k) - {"apiVersion", "kind", "resources", "patches", "images"}
    assert not unknown, f"{folder}/kustomization.yaml: fields this renderer does not know: {unknown}"
    out = []
    for r in k.get("resources", []):
        path = os.path.normpath(os.path.join(folder, r))
        out += render(path) if os.path.isdir(path) else load_docs(path)
    for patch in k.get("patches", []):
        assert set(patch) == {"path", "target"}, patch
        [ops] = load_docs(os.path.join(folder, patch["path"]))
        assert isinstance(ops, list), f"{patch['path']}: not a JSON 6902 patch"
        hits = [o for o in out if target_matches(o, patch["target"])]
        assert len(hits) == 1, f"{patch['path']}: target {patch['target']} matches {len(hits)} objects"
        for op in ops:
            json_patch(hits[0], op)
    for img in k.get("images", []):
        for o in out:
            for c in o.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                if c["image"].split(":")[0] == img["name"]:
                    c["image"] = f"{img.get('newName', img['name'])}:{img['newTag']}"
    return out


def object_key(o):
    return (o["apiVersion"], o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])


def pick(objs, kind, name):
    hits = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"{len(hits)} {kind} {name}"
    return hits[0]


def mounted_files(deployment, container_name, objs, tmp, made_elsewhere=None):
    """Writes the Secret volumes that the container mounts as the kubelet would (a folder per mount, a file
    per key of the Secret's data or stringData, with the volume's defaultMode) under tmp, and returns
    {mountPath: that folder}. Secrets that are not in objs (cert-manager makes them) come from
    made_elsewhere: {secretName: {key: bytes}}."""
    pod = deployment["spec"]["template"]["spec"]
    c = container(deployment, container_name)
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    out = {}
    for m in c.get("volumeMounts", []):
        v = volumes[m["name"]]
        assert "secret" in v, f"volume {m['name']}: only Secret volumes are written here"
        name = v["secret"]["secretName"]
        secrets = [o for o in objs if o["kind"] == "Secret" and o["metadata"]["name"] == name]
        if secrets:
            [sec] = secrets
            data = {k: base64.b64decode(val) for k, val in sec.get("data", {}).items()}
            data.update({k: val.encode() for k, val in sec.get("stringData", {}).items()})
        else:
            data = (made_elsewhere or {})[name]
        folder = os.path.join(tmp, "mount-" + m["name"])
        os.makedirs(folder)
        for key, content in data.items():
            path = os.path.join(folder, key)
            with open(path, "wb") as f:
                f.write(content)
            os.chmod(path, v["secret"].get("defaultMode", 0o644))
        out[m["mountPath"]] = folder
    return out


def local_argv(binary, args, mounts, grpc_port, http_port):
    """The container's args, in order, with the listen addresses moved to loopback ports and the paths
    under a mount moved to the folder mounted_files wrote."""
    argv = [binary]
    for a in args:
        if a.startswith("--grpc-listen"):
            a = f"--grpc-listen=127.0.0.1:{grpc_port}"
        elif a.startswith("--http-listen"):
            a = f"--http-listen=127.0.0.1:{http_port}"
        elif "=" in a:
            k, v = a.split("=", 1)
            for mount, folder in mounts.items():
                if v.startswith(mount.rstrip("/") + "/"):
                    a = f"{k}={folder}{v[len(mount.rstrip('/')):]}"
        argv.append(a)
    return argv


# ---- YAML and kustomize -------------------------------------------------------------------------------


class TestManifests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if yaml is None:
            raise unittest.SkipTest("python3-yaml is not installed (/usr/bin/python3 has it on Debian)")

    def test_every_yaml_parses(self):
        files = all_yaml_files()
        self.assertGreater(len(files), 5)
        self.assertTrue(set(manifest_files()) < set(files))
        for path in files:
            with self.subTest(file=os.path.relpath(path, K8S)):
                self.assertTrue(load_docs(path), "no document")

    def test_objects_have_apiversion_kind_metadata_and_namespace(self):
        for name, o in objects(include_optional=True):
            with self.subTest(file=name, kind=o.get("kind"), name=o.get("metadata", {}).get("name")):
                self.assertIsInstance(o.get("apiVersion"), str)
                self.assertIsInstance(o.get("kind"), str)
                self.assertIsInstance(o.get("metadata"), dict)
                self.assertRegex(o["metadata"].get("name", ""), r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
                if o["kind"] not in CLUSTER_SCOPED:
                    self.assertEqual(o["metadata"].get("namespace"), NAMESPACE)
        ns = find("Namespace", NAMESPACE)
        self.assertEqual(ns["apiVersion"], "v1")

    def test_kind_config(self):
        [cfg] = load_docs(os.path.join(K8S, "kind-config.yaml"))
        self.assertEqual(cfg["kind"], "Cluster")
        self.assertEqual(cfg["apiVersion"], "kind.x-k8s.io/v1alpha4")
        mapped = {m["containerPort"] for n in cfg["nodes"] for m in n.get("extraPortMappings", [])}
        node_ports = {p["nodePort"] for _, o in objects() if o["kind"] == "Service"
                      for p in o["spec"]["ports"] if "nodePort" in p}
        self.assertTrue(node_ports)
        self.assertEqual(node_ports, mapped, "every NodePort is reachable from the host, and only those")

    def test_kustomization_lists_existing_files_and_every_manifest(self):
        # `kubectl apply -k k8s/` applies exactly base/.
        [top] = load_docs(os.path.join(K8S, "kustomization.yaml"))
        self.assertEqual(top["kind"], "Kustomization")
        self.assertEqual(top["resources"], ["base"])
        self.assertEqual(set(top), {"apiVersion", "kind", "resources"})
        [k] = load_docs(os.path.join(BASE, "kustomization.yaml"))
        self.assertEqual(k["kind"], "Kustomization")
        listed = k["resources"]
        self.assertEqual(len(listed), len(set(listed)), "listed twice")
        for r in listed:
            self.assertTrue(os.path.isfile(os.path.join(BASE, r)), f"kustomization lists missing file {r}")
        on_disk = {os.path.basename(p) for p in manifest_files()} - NOT_OBJECTS - OPTIONAL
        self.assertEqual(set(listed), on_disk)
        for name in OPTIONAL:
            self.assertTrue(os.path.isfile(os.path.join(BASE, name)))
        # The image the manifests use is the one kustomize rewrites.
        images = {i["name"] for i in k.get("images", [])}
        used = {c["image"].split(":")[0] for _, o in objects() if o["kind"] == "Deployment"
                for c in o["spec"]["template"]["spec"]["containers"] if "prescale" in c["image"]}
        self.assertEqual(used, images)

    def test_kubectl_kustomize_renders(self):
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            self.skipTest("kubectl not installed: `kubectl kustomize k8s/` not run")
        r = subprocess.run([kubectl, "kustomize", K8S], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        rendered = [d for d in yaml.safe_load_all(r.stdout) if d]
        self.assertEqual(len(rendered), len(objects()))
        for d in rendered:
            for c in d.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                if c["image"].startswith("prescale"):
                    self.assertEqual(c["image"], "prescale:0.1.0")

    def test_selectors_match_pod_labels_and_target_ports_exist(self):
        deployments = [o for _, o in objects() if o["kind"] == "Deployment"]
        for _, svc in objects():
            if svc["kind"] != "Service":
                continue
            with self.subTest(service=svc["metadata"]["name"]):
                sel = svc["spec"]["selector"]
                pods = [d for d in deployments
                        if all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())]
                self.assertEqual(len(pods), 1, f"selector {sel} matches {len(pods)} Deployments")
                names = {p["name"] for c in pods[0]["spec"]["template"]["spec"]["containers"]
                         for p in c.get("ports", [])}
                for p in svc["spec"]["ports"]:
                    self.assertIn(p["targetPort"], names)
        for d in deployments:
            with self.subTest(deployment=d["metadata"]["name"]):
                labels = d["spec"]["template"]["metadata"]["labels"]
                for k, v in d["spec"]["selector"]["matchLabels"].items():
                    self.assertEqual(labels.get(k), v)

    def test_pods_are_locked_down(self):
        for _, d in objects():
            if d["kind"] != "Deployment":
                continue
            pod = d["spec"]["template"]["spec"]
            with self.subTest(deployment=d["metadata"]["name"]):
                self.assertIs(pod["securityContext"]["runAsNonRoot"], True)
                self.assertNotEqual(pod["securityContext"].get("runAsUser", 1), 0)
                self.assertEqual(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault")
                self.assertIs(pod.get("automountServiceAccountToken"), False)
                for c in pod["containers"]:
                    sc = c["securityContext"]
                    self.assertIs(sc["allowPrivilegeEscalation"], False)
                    self.assertIs(sc["readOnlyRootFilesystem"], True)
                    self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
                    self.assertIn("requests", c["resources"])
                    self.assertIn("memory", c["resources"]["limits"])
                    self.assertIn("livenessProbe", c)
                    self.assertIn("readinessProbe", c)


# ---- ScaledObjects against KEDA's CRD ------------------------------------------------------------------


class TestScaledObjects(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if yaml is None:
            raise unittest.SkipTest("python3-yaml is not installed")
        try:
            import jsonschema
        except ImportError:
            raise unittest.SkipTest("python3-jsonschema is not installed (/usr/bin/python3 has it on Debian)")
        path = keda_crd_path()
        if not os.path.isfile(path):
            raise unittest.SkipTest(f"KEDA's ScaledObject CRD not found at {path}: set KEDA_CRD to "
                                    "keda.sh_scaledobjects.yaml (from KEDA's config/crd/bases/)")
        [crd] = load_docs(path)
        cls.crd = crd
        cls.jsonschema = jsonschema
        cls.sos = [(n, o) for n, o in objects(include_optional=True) if o["kind"] == "ScaledObject"]

    def validator(self, api_version):
        group, version = api_version.split("/")
        self.assertEqual(group, self.crd["spec"]["group"])
        served = [v for v in self.crd["spec"]["versions"] if v["name"] == version and v.get("served")]
        self.assertEqual(len(served), 1, f"{api_version} is not a served version of the CRD")
        schema = strip_extensions(served[0]["schema"]["openAPIV3Schema"])
        cls = self.jsonschema.validators.validator_for(schema, default=self.jsonschema.Draft4Validator)
        return cls(schema)

    def test_three_scaled_objects(self):
        kinds = sorted(t["type"] for _, o in self.sos for t in o["spec"]["triggers"])
        self.assertEqual(kinds, ["external", "external-push", "prometheus"])

    def test_validate_against_keda_crd(self):
        for name, so in self.sos:
            with self.subTest(file=name):
                errors = sorted(self.validator(so["apiVersion"]).iter_errors(so), key=lambda e: list(e.path))
                self.assertEqual([f"{list(e.path)}: {e.message}" for e in errors], [])

    def test_validator_is_not_vacuous(self):
        _, so = self.sos[0]
        v = self.validator(so["apiVersion"])
        for mutate in (lambda o: o["spec"].pop("triggers"),
                       lambda o: o["spec"].__setitem__("pollingIntervall", 15),
                       lambda o: o["spec"]["triggers"][0]["metadata"].__setitem__("threshold", 50),
                       lambda o: o["spec"].__setitem__("minReplicaCount", "1")):
            bad = copy.deepcopy(so)
            mutate(bad)
            self.assertTrue(list(v.iter_errors(bad)), "a broken ScaledObject validated")

    def test_targets_exist_and_each_app_has_one_scaled_object(self):
        targets = {}
        for name, so in self.sos:
            target = so["spec"]["scaleTargetRef"]["name"]
            find("Deployment", target)
            targets.setdefault(target, set()).add(name)
        self.assertEqual(targets["demo-proactive"],
                         {"scaledobject-proactive.yaml", "scaledobject-proactive-push.yaml"})
        self.assertEqual(targets["demo-reactive"], {"scaledobject-reactive.yaml"})
        # The push variant replaces the polling one (same name), never runs beside it.
        names = {so["metadata"]["name"] for n, so in self.sos if so["spec"]["scaleTargetRef"]["name"] == "demo-proactive"}
        self.assertEqual(names, {"demo-proactive"})

    def test_external_triggers_point_at_the_headless_grpc_service(self):
        svc = find("Service", "prescale-grpc")
        self.assertEqual(svc["spec"]["clusterIP"], "None")
        grpc_port = [p["port"] for p in svc["spec"]["ports"] if p["name"] == "grpc"]
        self.assertEqual(grpc_port, [6000])
        for name, so in self.sos:
            for t in so["spec"]["triggers"]:
                if t["type"].startswith("external"):
                    self.assertEqual(t["metadata"]["scalerAddress"],
                                     f"dns:///prescale-grpc.{NAMESPACE}.svc.cluster.local:6000", name)

    def test_period_matches_the_k6_cycle(self):
        for name, so in self.sos:
            for t in so["spec"]["triggers"]:
                if t["type"].startswith("external"):
                    self.assertEqual(t["metadata"]["period"], "3m", name)


# ---- the manifests against the real binaries ----------------------------------------------------------


def container(deployment, name=None):
    cs = deployment["spec"]["template"]["spec"]["containers"]
    return cs[0] if name is None else next(c for c in cs if c["name"] == name)


def probe_port(c, probe):
    port = c[probe]["httpGet"]["port"]
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in c["ports"] if p["name"] == port)


class TestPrescaleBinary(unittest.TestCase):
    """prescale started with the Deployment's args; its trigger metadata checked over gRPC."""

    @classmethod
    def setUpClass(cls):
        if yaml is None:
            raise unittest.SkipTest("python3-yaml is not installed")
        if not os.access(h.prescale_bin(), os.X_OK):
            raise unittest.SkipTest(f"prescale not built: {h.prescale_bin()} (build it or set PRESCALE_BIN)")
        cls.dep = find("Deployment", "prescale")
        cls.c = container(cls.dep, "prescale")
        cls.flags = flags_of(cls.c["args"])
        cls.tmp = tempfile.mkdtemp(prefix="prescale-deploy-")
        cls.grpc_port, cls.http_port = h.free_port(), h.free_port()
        # The manifest's args, in order, with only the listen addresses moved to free loopback ports and
        # the mounted Secrets (the --prometheus-config file) written to the temp dir.
        cls.mounts = mounted_files(cls.dep, "prescale", [o for _, o in objects()], cls.tmp)
        argv = local_argv(h.prescale_bin(), cls.c["args"], cls.mounts, cls.grpc_port, cls.http_port)
        cls.proc = h.Process("prescale", argv, os.path.join(cls.tmp, "prescale.log"))

        def up():
            if not cls.proc.alive():
                raise RuntimeError(cls.proc.describe())
            return h.http_get(f"http://127.0.0.1:{cls.http_port}/healthz", 1)[0] == 200

        try:
            h.wait_until(up, 15, what="prescale /healthz")
        except BaseException:
            cls.proc.stop()
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        rc = cls.proc.stop()
        text = h.log_tail(cls.proc.log_path, 100000)
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if rc != 0 or "Sanitizer" in text or "runtime error:" in text:
            raise AssertionError(f"prescale exited with {rc}:\n{text[-3000:]}")

    def test_args_are_real_flags(self):
        known = help_flags(h.prescale_bin())
        self.assertIn("--grpc-listen", known)
        for flag in self.flags:
            self.assertIn(flag, known)
        self.assertEqual(self.flags["--prometheus-url"], f"http://prometheus.{NAMESPACE}.svc.cluster.local:9090")

    def test_prometheus_config_from_the_secret_is_loaded(self):
        """prescale started with the Secret's config.yaml (which it refuses when anything is wrong: exit 2)
        and says how many servers it holds."""
        path = self.flags["--prometheus-config"]
        self.assertTrue(any(path.startswith(m + "/") for m in self.mounts), "not a file of a mounted Secret")
        [sec] = [o for _, o in objects() if o["kind"] == "Secret"]
        servers = yaml.safe_load(sec["stringData"][os.path.basename(path)])["servers"]
        h.wait_until(lambda: "prometheus config loaded" in h.log_tail(self.proc.log_path, 100000), 10,
                     what="the prometheus config line")
        line = next(json.loads(ln) for ln in h.log_tail(self.proc.log_path, 100000).splitlines()
                    if "prometheus config loaded" in ln)
        self.assertEqual(line["servers"], str(len(servers)))
        self.assertTrue(line["file"].endswith("/config.yaml"))

    def test_container_ports_match_listen_flags(self):
        ports = {p["name"]: p["containerPort"] for p in self.c["ports"]}
        self.assertEqual(ports["grpc"], port_of(self.flags["--grpc-listen"]))
        self.assertEqual(ports["http"], port_of(self.flags["--http-listen"]))
        self.assertEqual(probe_port(self.c, "livenessProbe"), ports["http"])
        self.assertEqual(probe_port(self.c, "readinessProbe"), ports["http"])
        self.assertEqual(self.dep["spec"]["replicas"], 2)

    def test_probe_paths_answer_200(self):
        self.assertEqual(self.c["livenessProbe"]["httpGet"]["path"], "/healthz")
        self.assertEqual(self.c["readinessProbe"]["httpGet"]["path"], "/readyz")
        for probe in ("livenessProbe", "readinessProbe"):
            path = self.c[probe]["httpGet"]["path"]
            status, _, _ = h.http_get(f"http://127.0.0.1:{self.http_port}{path}")
            self.assertEqual(status, 200, path)
        status, body, _ = h.http_get(f"http://127.0.0.1:{self.http_port}/metrics")
        self.assertEqual(status, 200)
        self.assertIn("prescale_", body)

    def test_trigger_metadata_accepted_by_prescale(self):
        import grpc
        pb2, pb2_grpc = h.grpc_modules()
        checked = 0
        for name, so in objects(include_optional=True):
            if so["kind"] != "ScaledObject":
                continue
            for t in so["spec"]["triggers"]:
                if not t["type"].startswith("external"):
                    continue
                md = dict(t["metadata"])
                # Same metadata, but Prometheus on a closed loopback port: no lookup of cluster names.
                md["serverAddress"] = "http://127.0.0.1:9"
                ref = pb2.ScaledObjectRef(name=so["metadata"]["name"], namespace=NAMESPACE, scalerMetadata=md)
                with self.subTest(file=name), h.grpc_channel(f"127.0.0.1:{self.grpc_port}") as ch:
                    try:
                        resp = pb2_grpc.ExternalScalerStub(ch).GetMetricSpec(ref, timeout=10)
                    except grpc.RpcError as e:
                        self.fail(f"{name}: prescale rejected the metadata: {e.code()} {e.details()}")
                    [spec] = resp.metricSpecs
                    self.assertEqual(spec.targetSizeFloat, float(t["metadata"]["threshold"]))
                    self.assertEqual(spec.metricName, t["metadata"].get("metricName", "prescale"))
                    checked += 1
        self.assertEqual(checked, 2)

    def test_a_typo_in_metadata_is_rejected(self):
        """The check above can fail: prescale refuses an unknown key."""
        import grpc
        pb2, pb2_grpc = h.grpc_modules()
        so = find("ScaledObject", "demo-proactive")
        md = dict(so["spec"]["triggers"][0]["metadata"], serverAddress="http://127.0.0.1:9", lookahed="1m")
        ref = pb2.ScaledObjectRef(name="typo", namespace=NAMESPACE, scalerMetadata=md)
        with h.grpc_channel(f"127.0.0.1:{self.grpc_port}") as ch:
            with self.assertRaises(grpc.RpcError) as cm:
                pb2_grpc.ExternalScalerStub(ch).GetMetricSpec(ref, timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("lookahed", cm.exception.details())


def url_prefix_of(prefix, address):
    """docs/prometheus-config.md: an entry applies to addresses it is a prefix of, ending at a boundary."""
    p, a = prefix.rstrip("/"), address.rstrip("/")
    return a == p or a.startswith(p + "/")


class TestPrometheusConfigSecret(unittest.TestCase):
    """The Secret with prescale's --prometheus-config: mounted read-only for prescale's user only, its entry
    applies to the walkthrough's Prometheus, and what it says reaches Prometheus."""

    @classmethod
    def setUpClass(cls):
        if yaml is None:
            raise unittest.SkipTest("python3-yaml is not installed")
        cls.secret = find("Secret", "prescale-prometheus")
        cls.dep = find("Deployment", "prescale")
        cls.c = container(cls.dep, "prescale")
        cls.flags = flags_of(cls.c["args"])

    def test_secret_is_mounted_read_only_for_prescale_only(self):
        self.assertEqual(self.secret.get("type"), "Opaque")
        pod = self.dep["spec"]["template"]["spec"]
        [vol] = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "prescale-prometheus"]
        [mount] = [m for m in self.c["volumeMounts"] if m["name"] == vol["name"]]
        self.assertIs(mount.get("readOnly"), True)
        self.assertNotIn("subPath", mount, "a subPath mount never sees the kubelet's updates")
        mode = vol["secret"]["defaultMode"]
        self.assertIn(mode, (0o400, 0o440), "no access for other users")
        sc = pod["securityContext"]
        if mode == 0o440:
            # Files are root:fsGroup: the group must be prescale's, the only member of it.
            self.assertEqual(sc["fsGroup"], sc["runAsGroup"])
        self.assertEqual(self.flags["--prometheus-config"],
                         mount["mountPath"] + "/" + next(iter(self.secret["stringData"])))
        self.assertEqual(list(self.secret["stringData"]), ["config.yaml"])

    def test_entry_applies_to_the_walkthroughs_prometheus(self):
        cfg = yaml.safe_load(self.secret["stringData"]["config.yaml"])
        self.assertEqual(set(cfg), {"servers"})
        urls = [srv["url"] for srv in cfg["servers"]]
        addresses = [self.flags["--prometheus-url"]] + [
            t["metadata"].get("serverAddress", self.flags["--prometheus-url"])
            for _, so in objects(include_optional=True) if so["kind"] == "ScaledObject"
            for t in so["spec"]["triggers"] if t["type"].startswith("external")]
        self.assertEqual(len(addresses), 3)
        for a in addresses:
            self.assertTrue(any(url_prefix_of(u, a) for u in urls), f"no entry of config.yaml applies to {a}")
        # The boundary rule is the one prescale applies (a port that merely starts alike is another server).
        self.assertFalse(url_prefix_of(urls[0], urls[0] + "1"))
        # Nothing secret: the walkthrough's Prometheus needs no credentials, the example holds none.
        for srv in cfg["servers"]:
            self.assertFalse({"authorization", "basic_auth"} & set(srv))

    def test_headers_reach_prometheus(self):
        """prescale started with the Secret's file sends its headers to the server the entry names (a
        recording stand-in for Prometheus on loopback at the entry's url: a real one does not show headers)."""
        if not os.access(h.prescale_bin(), os.X_OK):
            self.skipTest(f"prescale not built: {h.prescale_bin()}")
        from test_prom_keys import FakeApi
        pb2, pb2_grpc = h.grpc_modules()
        cfg = yaml.safe_load(self.secret["stringData"]["config.yaml"])
        [srv] = cfg["servers"]
        self.assertTrue(srv["headers"])
        fake = FakeApi()
        tmp = tempfile.mkdtemp(prefix="prescale-deploy-cfg-")
        try:
            # The same file and args, with the cluster's Prometheus address moved to the stand-in.
            moved = copy.deepcopy(self.secret)
            moved["stringData"]["config.yaml"] = moved["stringData"]["config.yaml"].replace(srv["url"], fake.url)
            dep = copy.deepcopy(self.dep)
            c = container(dep, "prescale")
            c["args"] = [a.replace(srv["url"], fake.url) for a in c["args"]]
            grpc_port, http_port = h.free_port(), h.free_port()
            mounts = mounted_files(dep, "prescale", [moved], tmp)
            proc = h.Process("prescale", local_argv(h.prescale_bin(), c["args"], mounts, grpc_port, http_port),
                             os.path.join(tmp, "prescale.log"))
            try:
                h.wait_until(lambda: proc.alive() and h.http_get(f"http://127.0.0.1:{http_port}/healthz", 1)[0]
                             == 200, 15, what="prescale /healthz")
                so = find("ScaledObject", "demo-proactive")
                md = dict(so["spec"]["triggers"][0]["metadata"])
                md["serverAddress"] = md["serverAddress"].replace(srv["url"], fake.url)
                ref = pb2.ScaledObjectRef(name=so["metadata"]["name"], namespace=NAMESPACE, scalerMetadata=md)
                with h.grpc_channel(f"127.0.0.1:{grpc_port}") as ch:
                    pb2_grpc.ExternalScalerStub(ch).GetMetricSpec(ref, timeout=30)
                    try:
                        pb2_grpc.ExternalScalerStub(ch).GetMetrics(
                            pb2.GetMetricsRequest(scaledObjectRef=ref, metricName="prescale"), timeout=30)
                    except Exception:  # noqa: BLE001 - only what reached the stand-in matters here
                        pass
                h.wait_until(lambda: fake.seen("/api/v1/query"), 30, what="a query at the stand-in")
                for path, headers in fake.seen("/api/v1/query"):
                    for name, value in srv["headers"].items():
                        self.assertEqual(headers.get(name.lower()), value, path)
            finally:
                self.assertEqual(proc.stop(), 0, h.log_tail(proc.log_path))
        finally:
            fake.close()
            shutil.rmtree(tmp, ignore_errors=True)


OVERLAY_TLS = os.path.join(K8S, "overlays", "tls")
# What KEDA's external and external-push scalers read from a TriggerAuthentication for the gRPC connection
# (KEDA's docs, scalers/external.md "Authentication Parameters"; pkg/scalers/external_scaler.go reads
# config.AuthParams["caCert"], ["tlsClientCert"], ["tlsClientKey"] as PEM contents).
KEDA_EXTERNAL_TLS_PARAMS = {"caCert", "tlsClientCert", "tlsClientKey"}
# The keys cert-manager writes into a Certificate's Secret (kubernetes.io/tls, plus the issuing CA).
CERT_MANAGER_KEYS = {"tls.crt", "tls.key", "ca.crt"}
# Metadata keys of KEDA's external trigger that KEDA also passes on to prescale, which refuses what it does
# not know: TLS must come from the TriggerAuthentication, not from these.
KEDA_TLS_METADATA = {"enableTLS", "unsafeSsl", "tlsCertFile", "caCert", "tlsClientCert", "tlsClientKey"}


class TestTlsOverlay(unittest.TestCase):
    """k8s/overlays/tls: kustomize renders it, cert-manager gets what it needs, KEDA what it reads, and
    prescale started with the overlay's args and files (certificates made by openssl as the Certificates
    say) answers over TLS only to a client with KEDA's certificate."""

    @classmethod
    def setUpClass(cls):
        if yaml is None:
            raise unittest.SkipTest("python3-yaml is not installed")
        cls.base = render(K8S)
        cls.objs = render(OVERLAY_TLS)
        cls.dep = pick(cls.objs, "Deployment", "prescale")
        cls.c = container(cls.dep, "prescale")
        cls.flags = flags_of(cls.c["args"])
        certs = [o for o in cls.objs if o["kind"] == "Certificate"]
        cls.server_cert = next(o for o in certs if "server auth" in o["spec"].get("usages", []))
        cls.client_cert = next(o for o in certs if "client auth" in o["spec"].get("usages", []))
        cls.ta = pick(cls.objs, "TriggerAuthentication", "prescale-tls")

    def test_renders_as_kubectl_kustomize_does(self):
        """The renderer of this file against the real kustomize (kubectl's), for the base and the overlay."""
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            self.skipTest("kubectl not installed: the overlay is checked through this file's renderer only")
        for folder, mine in ((K8S, self.base), (OVERLAY_TLS, self.objs)):
            with self.subTest(folder=os.path.relpath(folder, REPO)):
                r = subprocess.run([kubectl, "kustomize", folder], capture_output=True, text=True, timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
                theirs = [d for d in yaml.safe_load_all(r.stdout) if d]
                self.assertEqual(sorted(map(object_key, theirs)), sorted(map(object_key, mine)))
                by_key = {object_key(o): o for o in theirs}
                for o in mine:
                    self.assertEqual(by_key[object_key(o)], o, object_key(o))

    def test_overlay_adds_to_the_base_and_patches_existing_objects(self):
        [k] = load_docs(os.path.join(OVERLAY_TLS, "kustomization.yaml"))
        self.assertIn("../../base", k["resources"])
        for r in k["resources"] + [p["path"] for p in k["patches"]]:
            self.assertTrue(os.path.exists(os.path.join(OVERLAY_TLS, r)), r)
        # Every YAML file of the overlay is used.
        used = {os.path.basename(r) for r in k["resources"] + [p["path"] for p in k["patches"]]}
        on_disk = {os.path.basename(p) for p in glob.glob(os.path.join(OVERLAY_TLS, "*.yaml"))}
        self.assertEqual(on_disk - {"kustomization.yaml"}, used - {"base"})
        base_keys = {object_key(o) for o in self.base}
        mine = {object_key(o) for o in self.objs}
        self.assertTrue(base_keys < mine)
        added = [o for o in self.objs if object_key(o) not in base_keys]
        self.assertEqual(sorted(o["kind"] for o in added),
                         ["Certificate", "Certificate", "Certificate", "Issuer", "Issuer", "TriggerAuthentication"])
        for o in added:
            self.assertEqual(o["metadata"].get("namespace"), NAMESPACE, object_key(o))
            self.assertRegex(o["metadata"]["name"], r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
        # The renderer refuses a patch whose target is missing (so the check above is not vacuous).
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copytree(OVERLAY_TLS, os.path.join(tmp, "tls"))
            os.symlink(BASE, os.path.join(tmp, "base"))
            path = os.path.join(tmp, "tls", "kustomization.yaml")
            with open(path) as f:
                text = f.read().replace("../../base", "../base").replace("name: demo-proactive", "name: demo-proactve")
            with open(path, "w") as f:
                f.write(text)
            with self.assertRaisesRegex(AssertionError, "matches 0 objects"):
                render(os.path.join(tmp, "tls"))

    def test_cert_manager_chain(self):
        """selfSigned Issuer -> CA Certificate -> CA Issuer -> server and client Certificates, with the fields
        cert-manager.io/v1 requires (no CRD here: checked by hand)."""
        cm = [o for o in self.objs if o["apiVersion"].startswith("cert-manager.io/")]
        self.assertTrue(cm)
        for o in cm:
            self.assertEqual(o["apiVersion"], "cert-manager.io/v1")
            self.assertIn(o["kind"], ("Issuer", "Certificate"))
        issuers = {o["metadata"]["name"]: o["spec"] for o in cm if o["kind"] == "Issuer"}
        certs = {o["metadata"]["name"]: o["spec"] for o in cm if o["kind"] == "Certificate"}
        for name, spec in certs.items():
            with self.subTest(certificate=name):
                self.assertTrue(spec["secretName"])
                ref = spec["issuerRef"]
                self.assertEqual(ref.get("kind", "Issuer"), "Issuer")
                self.assertEqual(ref.get("group", "cert-manager.io"), "cert-manager.io")
                self.assertIn(ref["name"], issuers)
                self.assertTrue(spec.get("commonName") or spec.get("dnsNames"))
        self.assertEqual(len({s["secretName"] for s in certs.values()}), len(certs), "a Secret shared")
        [root] = [n for n, s in issuers.items() if "selfSigned" in s]
        [ca_cert] = [n for n, s in certs.items() if s.get("isCA")]
        self.assertEqual(certs[ca_cert]["issuerRef"]["name"], root)
        [ca_issuer] = [n for n, s in issuers.items() if "ca" in s]
        self.assertEqual(issuers[ca_issuer]["ca"]["secretName"], certs[ca_cert]["secretName"])
        for leaf in (self.server_cert, self.client_cert):
            self.assertEqual(leaf["spec"]["issuerRef"]["name"], ca_issuer)
            self.assertFalse(leaf["spec"].get("isCA", False))
        self.assertNotIn("client auth", self.server_cert["spec"]["usages"])
        self.assertNotIn("server auth", self.client_cert["spec"]["usages"])

    def test_server_certificate_names_what_keda_dials(self):
        """KEDA's gRPC client verifies the host of scalerAddress: the Service's names are in dnsNames."""
        svc = pick(self.objs, "Service", "prescale-grpc")
        names = set(self.server_cert["spec"]["dnsNames"])
        svc_name = f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc"
        self.assertEqual(names, {svc_name, svc_name + ".cluster.local"})
        hosts = {external_host(t) for so in self.objs if so["kind"] == "ScaledObject"
                 for t in so["spec"]["triggers"] if t["type"].startswith("external")}
        self.assertTrue(hosts)
        self.assertLessEqual(hosts, names)

    def test_service_app_protocol(self):
        [port] = pick(self.objs, "Service", "prescale-grpc")["spec"]["ports"]
        self.assertEqual(port["appProtocol"], "https", "TLS, with HTTP/2 chosen by ALPN")
        [base_port] = pick(self.base, "Service", "prescale-grpc")["spec"]["ports"]
        self.assertEqual(base_port["appProtocol"], "kubernetes.io/h2c")

    def test_trigger_authentication_gives_keda_what_it_reads(self):
        self.assertEqual(self.ta["apiVersion"], "keda.sh/v1alpha1")
        refs = self.ta["spec"]["secretTargetRef"]
        self.assertEqual({r["parameter"] for r in refs}, KEDA_EXTERNAL_TLS_PARAMS)
        self.assertEqual(len(refs), len(KEDA_EXTERNAL_TLS_PARAMS))
        self.assertEqual(set(self.ta["spec"]), {"secretTargetRef"})
        want = {"caCert": "ca.crt", "tlsClientCert": "tls.crt", "tlsClientKey": "tls.key"}
        for r in refs:
            self.assertEqual(r["name"], self.client_cert["spec"]["secretName"], r)
            self.assertEqual(r["key"], want[r["parameter"]], r)
            self.assertIn(r["key"], CERT_MANAGER_KEYS)
        # Every external trigger (the polling one, which the overlay keeps) uses it, and passes no TLS key in
        # its metadata (KEDA would send it to prescale, which refuses keys it does not know).
        triggers = [(so, t) for so in self.objs if so["kind"] == "ScaledObject" for t in so["spec"]["triggers"]
                    if t["type"].startswith("external")]
        self.assertEqual(len(triggers), 1)
        for so, t in triggers:
            self.assertEqual(t["authenticationRef"], {"name": self.ta["metadata"]["name"]})
            self.assertEqual(so["metadata"]["namespace"], self.ta["metadata"]["namespace"])
            self.assertFalse(KEDA_TLS_METADATA & set(t["metadata"]))

    def test_scaled_object_validates_against_keda_crd(self):
        try:
            import jsonschema
        except ImportError:
            self.skipTest("python3-jsonschema is not installed")
        if not os.path.isfile(keda_crd_path()):
            self.skipTest(f"KEDA's ScaledObject CRD not found at {keda_crd_path()} (set KEDA_CRD)")
        [crd] = load_docs(keda_crd_path())
        [version] = [v for v in crd["spec"]["versions"] if v.get("served")]
        schema = strip_extensions(version["schema"]["openAPIV3Schema"])
        v = jsonschema.validators.validator_for(schema, default=jsonschema.Draft4Validator)(schema)
        so = pick(self.objs, "ScaledObject", "demo-proactive")
        self.assertEqual([e.message for e in v.iter_errors(so)], [])
        bad = copy.deepcopy(so)
        bad["spec"]["triggers"][0]["authenticationRef"] = {"nmae": "prescale-tls"}
        self.assertTrue(list(v.iter_errors(bad)), "a misspelt authenticationRef validated")

    def test_deployment_mounts_the_server_secret(self):
        known = help_flags(h.prescale_bin()) if os.access(h.prescale_bin(), os.X_OK) else None
        if known is not None:
            for flag in self.flags:
                self.assertIn(flag, known)
        base_args = container(pick(self.base, "Deployment", "prescale"), "prescale")["args"]
        self.assertEqual(self.c["args"][:len(base_args)], base_args, "the base's args are kept")
        pod = self.dep["spec"]["template"]["spec"]
        [vol] = [v for v in pod["volumes"]
                 if v.get("secret", {}).get("secretName") == self.server_cert["spec"]["secretName"]]
        [mount] = [m for m in self.c["volumeMounts"] if m["name"] == vol["name"]]
        self.assertIs(mount.get("readOnly"), True)
        self.assertNotIn("subPath", mount, "a subPath mount never sees cert-manager's renewals")
        self.assertIn(vol["secret"]["defaultMode"], (0o400, 0o440))
        if vol["secret"]["defaultMode"] == 0o440:
            self.assertEqual(pod["securityContext"]["fsGroup"], pod["securityContext"]["runAsGroup"])
        for flag, key in (("--tls-cert", "tls.crt"), ("--tls-key", "tls.key"), ("--tls-client-ca", "ca.crt")):
            self.assertEqual(self.flags[flag], f"{mount['mountPath']}/{key}")
        # The probes stay on the plain HTTP port.
        self.assertEqual(self.c["readinessProbe"]["httpGet"]["port"], "http")

    def test_prescale_serves_tls_to_keda_only(self):
        if not os.access(h.prescale_bin(), os.X_OK):
            self.skipTest(f"prescale not built: {h.prescale_bin()}")
        if shutil.which(certs_mod.OPENSSL) is None:
            self.skipTest("openssl not installed")
        import grpc
        pb2, pb2_grpc = h.grpc_modules()
        so = pick(self.objs, "ScaledObject", "demo-proactive")
        trigger = so["spec"]["triggers"][0]
        host = external_host(trigger)
        with certs_mod.Certs(tmp_prefix="prescale-deploy-tls-") as c:
            # As cert-manager would issue them from the two Certificates (names and usages), by one CA.
            srv_spec, cli_spec = self.server_cert["spec"], self.client_cert["spec"]
            server = c.issue_server("prescale-grpc", sans=tuple("DNS:" + n for n in srv_spec["dnsNames"]),
                                    cn=srv_spec["commonName"])
            client = c.issue_client("keda-client", cn=cli_spec["commonName"])
            secrets = {
                srv_spec["secretName"]: {"tls.crt": c.read(server.cert), "tls.key": c.read(server.key),
                                         "ca.crt": c.read(c.ca.cert)},
                cli_spec["secretName"]: {"tls.crt": c.read(client.cert), "tls.key": c.read(client.key),
                                         "ca.crt": c.read(c.ca.cert)},
            }
            grpc_port, http_port = h.free_port(), h.free_port()
            mounts = mounted_files(self.dep, "prescale", self.objs, c.dir, secrets)
            proc = h.Process("prescale", local_argv(h.prescale_bin(), self.c["args"], mounts, grpc_port, http_port),
                             os.path.join(c.dir, "prescale.log"))
            try:
                h.wait_until(lambda: proc.alive() and h.http_get(f"http://127.0.0.1:{http_port}/readyz", 1)[0]
                             == 200, 15, what="prescale /readyz (plain HTTP)")
                # KEDA's side: the TriggerAuthentication's parameters, read from the client Certificate's Secret.
                auth = {r["parameter"]: secrets[r["name"]][r["key"]] for r in self.ta["spec"]["secretTargetRef"]}
                md = dict(trigger["metadata"], serverAddress="http://127.0.0.1:9")
                ref = pb2.ScaledObjectRef(name=so["metadata"]["name"], namespace=NAMESPACE, scalerMetadata=md)
                # grpc-go checks the scalerAddress's host against the certificate: so does this channel.
                options = [("grpc.ssl_target_name_override", host)]

                def call(creds):
                    with grpc.secure_channel(f"127.0.0.1:{grpc_port}", creds, options=options) as ch:
                        return pb2_grpc.ExternalScalerStub(ch).GetMetricSpec(ref, timeout=20)

                resp = call(grpc.ssl_channel_credentials(auth["caCert"], auth["tlsClientKey"], auth["tlsClientCert"]))
                self.assertEqual(resp.metricSpecs[0].targetSizeFloat, float(trigger["metadata"]["threshold"]))
                # mTLS: without KEDA's client certificate the handshake fails.
                with self.assertRaises(grpc.RpcError) as cm:
                    call(grpc.ssl_channel_credentials(auth["caCert"]))
                self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
                # h2c, as the base's KEDA would speak, gets nothing.
                with h.grpc_channel(f"127.0.0.1:{grpc_port}") as ch:
                    with self.assertRaises(grpc.RpcError) as cm:
                        pb2_grpc.ExternalScalerStub(ch).GetMetricSpec(ref, timeout=20)
                self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
            finally:
                rc = proc.stop()
                text = h.log_tail(proc.log_path, 100000)
                self.assertEqual(rc, 0, text[-3000:])
                self.assertNotIn("Sanitizer", text)
            started = [json.loads(ln) for ln in text.splitlines() if '"prescale started"' in ln]
            self.assertEqual([ln["grpc_tls"] for ln in started], ["mtls"])


def external_host(trigger):
    """The host KEDA's gRPC client dials and verifies: scalerAddress without dns:/// and the port."""
    addr = trigger["metadata"]["scalerAddress"]
    addr = re.sub(r"^dns:(//[^/]*)?/", "", addr)
    return addr.rsplit(":", 1)[0]


class TestDemoAppBinary(unittest.TestCase):
    """Both demo-app Deployments: args are real flags, the app starts with them and answers the probes."""

    def setUp(self):
        if yaml is None:
            self.skipTest("python3-yaml is not installed")
        if not os.access(demo_bin(), os.X_OK):
            self.skipTest(f"prescale-demo-app not built: {demo_bin()} (build it or set DEMO_APP_BIN)")

    def test_deployments_match_the_binary(self):
        known = help_flags(demo_bin())
        for name in ("demo-proactive", "demo-reactive"):
            with self.subTest(deployment=name):
                c = container(find("Deployment", name))
                self.assertEqual(c["command"], ["prescale-demo-app"])
                flags = flags_of(c["args"])
                for flag in flags:
                    self.assertIn(flag, known)
                ports = {p["name"]: p["containerPort"] for p in c["ports"]}
                self.assertEqual(ports["http"], port_of(flags["--listen"]))
                self.assertEqual(probe_port(c, "readinessProbe"), ports["http"])
                port = h.free_port()
                argv = [demo_bin()] + [f"--listen=127.0.0.1:{port}" if a.startswith("--listen") else a
                                       for a in c["args"]]
                with tempfile.TemporaryDirectory() as tmp:
                    p = h.Process("demo-app", argv, os.path.join(tmp, "demo.log"))
                    try:
                        h.wait_until(lambda: p.alive() and h.http_get(f"http://127.0.0.1:{port}/healthz", 1)[0]
                                     == 200, 10, what="prescale-demo-app /healthz")
                        for probe in ("livenessProbe", "readinessProbe"):
                            path = c[probe]["httpGet"]["path"]
                            self.assertEqual(h.http_get(f"http://127.0.0.1:{port}{path}")[0], 200, path)
                        status, body, _ = h.http_get(f"http://127.0.0.1:{port}/metrics")
                        self.assertIn("http_requests_total", body)
                    finally:
                        self.assertEqual(p.stop(), 0)


# ---- Prometheus ----------------------------------------------------------------------------------------


class TestPrometheusConfig(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if yaml is None:
            raise unittest.SkipTest("python3-yaml is not installed")
        cm = find("ConfigMap", "prometheus-config")
        cls.text = cm["data"]["prometheus.yml"]
        cls.cfg = yaml.safe_load(cls.text)

    def test_promtool_check_config(self):
        if not os.access(h.PROMTOOL_BIN, os.X_OK):
            self.skipTest(f"promtool not installed ({h.PROMTOOL_BIN})")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "prometheus.yml")
            with open(path, "w") as f:
                f.write(self.text)
            r = subprocess.run([h.PROMTOOL_BIN, "check", "config", "--syntax-only", path], capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_trigger_queries_are_valid_promql(self):
        if not os.access(h.PROMTOOL_BIN, os.X_OK):
            self.skipTest(f"promtool not installed ({h.PROMTOOL_BIN})")
        queries = [t["metadata"]["query"] for _, o in objects(include_optional=True) if o["kind"] == "ScaledObject"
                   for t in o["spec"]["triggers"]]
        self.assertEqual(len(queries), 3)
        rules = {"groups": [{"name": "triggers", "rules": [{"record": f"trigger_{i}", "expr": q}
                                                          for i, q in enumerate(queries)]}]}
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "rules.yml")
            with open(path, "w") as f:
                yaml.safe_dump(rules, f)
            r = subprocess.run([h.PROMTOOL_BIN, "check", "rules", path], capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            # promtool really parses: a broken expression fails.
            rules["groups"][0]["rules"][0]["expr"] = "sum(rate(x[1m])"
            with open(path, "w") as f:
                yaml.safe_dump(rules, f)
            r = subprocess.run([h.PROMTOOL_BIN, "check", "rules", path], capture_output=True, text=True, timeout=60)
            self.assertNotEqual(r.returncode, 0)

    def test_scrape_jobs_match_services_and_queries(self):
        jobs = {j["job_name"]: j for j in self.cfg["scrape_configs"]}
        self.assertEqual(set(jobs), {"demo-proactive", "demo-reactive", "prescale"})
        expect = {"demo-proactive": "demo-proactive-pods", "demo-reactive": "demo-reactive-pods",
                  "prescale": "prescale-grpc"}
        for job, svc_name in expect.items():
            with self.subTest(job=job):
                [sd] = jobs[job]["dns_sd_configs"]
                self.assertEqual(sd["names"], [f"{svc_name}.{NAMESPACE}.svc.cluster.local"])
                self.assertEqual(sd["type"], "A")
                svc = find("Service", svc_name)
                self.assertEqual(svc["spec"]["clusterIP"], "None", "dns_sd needs a headless Service")
                self.assertEqual(sd["port"], 8080)
        for name, so in objects(include_optional=True):
            if so["kind"] != "ScaledObject":
                continue
            for t in so["spec"]["triggers"]:
                job = so["spec"]["scaleTargetRef"]["name"]
                self.assertIn(f'job="{job}"', t["metadata"]["query"], name)
                self.assertIn("http_requests_total", t["metadata"]["query"], name)
                self.assertEqual(t["metadata"]["serverAddress"],
                                 f"http://prometheus.{NAMESPACE}.svc.cluster.local:9090", name)
        prom = find("Service", "prometheus")
        self.assertEqual(prom["spec"]["ports"][0]["port"], 9090)


# ---- Containerfile --------------------------------------------------------------------------------------


def parse_containerfile(path):
    """-> (global ARG defaults, [stage dicts]) from a Containerfile; continuation lines joined."""
    with open(path) as f:
        text = f.read()
    text = re.sub(r"\\\n", " ", text)
    args, stages = {}, []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        rest = rest.strip()
        if instr == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", rest, re.I)
            image = re.sub(r"\$\{(\w+)\}", lambda mm: args.get(mm.group(1), ""), m.group(1))
            stages.append({"image": image, "name": m.group(2), "lines": [], "args": {}})
        elif instr == "ARG" and not stages:
            k, _, v = rest.partition("=")
            args[k] = v
        elif stages:
            if instr == "ARG":
                k, _, v = rest.partition("=")
                stages[-1]["args"][k] = v
            stages[-1]["lines"].append((instr, rest))
    return args, stages


def apt_packages(stage):
    pkgs = []
    for instr, rest in stage["lines"]:
        if instr != "RUN":
            continue
        for cmd in re.split(r"&&|;", rest):
            words = shlex.split(cmd)
            if "apt-get" in words and "install" in words:
                pkgs += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return pkgs


def package_of_library(binary, soname):
    """The Debian package providing the library `binary` loads for soname (ldd, then dpkg -S)."""
    r = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=30)
    m = re.search(rf"^\s*{re.escape(soname)} => (\S+)", r.stdout, re.M)
    assert m, f"ldd does not resolve {soname} for {binary}:\n{r.stdout}"
    path = os.path.realpath(m.group(1))
    candidates = [m.group(1), path]
    for p in list(candidates):  # merged /usr: dpkg knows one of /lib/... and /usr/lib/...
        candidates.append(p[4:] if p.startswith("/usr/") else "/usr" + p)
    for p in candidates:
        r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True, timeout=30)
        if r.returncode == 0:
            return r.stdout.split(":", 1)[0].strip()
    raise AssertionError(f"dpkg -S knows none of {candidates}")


class TestContainerfile(unittest.TestCase):
    # Packages of debian:bookworm-slim itself that a binary may link (libc6 provides libc, libm).
    BASE_PACKAGES = {"libc6"}

    @classmethod
    def setUpClass(cls):
        cls.args, cls.stages = parse_containerfile(CONTAINERFILE)
        cls.build = next((s for s in cls.stages if s["name"] == "build"), None)
        cls.runtime = cls.stages[-1]

    def lines(self, stage, instr):
        return [rest for i, rest in stage["lines"] if i == instr]

    def test_stages(self):
        self.assertEqual(len(self.stages), 2)
        self.assertIsNotNone(self.build)
        self.assertRegex(self.build["image"], r"(^|/)debian:bookworm$")
        self.assertRegex(self.runtime["image"], r"(^|/)debian:bookworm-slim$")
        self.assertEqual(self.runtime["name"], "runtime")

    def test_build_stage_uses_debian_packages_and_meson(self):
        pkgs = set(apt_packages(self.build))
        for p in ("meson", "ninja-build", "pkg-config", "node-llhttp", "libuv1-dev", "libnghttp2-dev",
                  "libprotobuf-c-dev", "protobuf-c-compiler", "libcjson-dev", "libyaml-dev", "libssl-dev"):
            self.assertIn(p, pkgs)
        self.assertNotIn("libcriterion-dev", pkgs, "tests are not built in the image")
        run = " ".join(self.lines(self.build, "RUN"))
        self.assertIn("meson setup", run)
        self.assertIn("-Dtests=false", run)
        # The ninja targets the Containerfile builds exist in a real build directory.
        build_dir = os.path.dirname(os.path.dirname(h.prescale_bin()))
        if shutil.which("ninja") and os.path.isfile(os.path.join(build_dir, "build.ninja")):
            targets = re.search(r"ninja -C \S+ ([^&]+)", run).group(1).split()
            r = subprocess.run(["ninja", "-C", build_dir, "-t", "targets", "all"], capture_output=True, text=True,
                               timeout=60)
            known = {line.split(":")[0] for line in r.stdout.splitlines()}
            for t in targets:
                self.assertIn(t, known)

    def test_runtime_packages_cover_needed_libraries(self):
        pkgs = set(apt_packages(self.runtime))
        binaries = [b for b in (h.prescale_bin(), demo_bin()) if os.access(b, os.X_OK)]
        if not binaries:
            self.skipTest("no built binary to read NEEDED entries from")
        if not (shutil.which("readelf") and shutil.which("dpkg")):
            self.skipTest("readelf or dpkg missing")
        for b in binaries:
            r = subprocess.run(["readelf", "-d", b], capture_output=True, text=True, timeout=30)
            needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", r.stdout)
            self.assertIn("libuv.so.1", needed)
            # A sanitizer build (PRESCALE_BIN=build-asan/...) also links the sanitizer runtimes; the image
            # is a release build, which does not.
            needed = [n for n in needed if not re.match(r"lib(asan|ubsan|lsan|tsan)\.so", n)]
            for soname in needed:
                with self.subTest(binary=os.path.basename(b), library=soname):
                    pkg = package_of_library(b, soname)
                    self.assertIn(pkg, pkgs | self.BASE_PACKAGES, f"{soname} comes from {pkg}")
        # Nothing more than the libraries either (the brief's runtime set, and libyaml for
        # --prometheus-config and libssl for TLS since issue 10), and the system CAs TLS verifies with.
        self.assertEqual(pkgs, {"libuv1", "libnghttp2-14", "libprotobuf-c1", "libcjson1", "libyaml-0-2", "libssl3",
                                "ca-certificates"})

    def test_user_ports_entrypoint(self):
        [user] = self.lines(self.runtime, "USER")
        uid, _, gid = user.partition(":")
        self.assertRegex(uid, r"^\d+$", "numeric, so that runAsNonRoot can be verified")
        self.assertNotEqual(int(uid), 0)
        self.assertTrue(gid == "" or (gid.isdigit() and int(gid) != 0))
        for _, d in objects():
            if d["kind"] == "Deployment" and "prescale" in container(d)["image"]:
                self.assertEqual(d["spec"]["template"]["spec"]["securityContext"]["runAsUser"], int(uid))
        exposed = {int(p.split("/")[0]) for e in self.lines(self.runtime, "EXPOSE") for p in e.split()}
        self.assertEqual(exposed, {6000, 8080})
        self.assertEqual(exposed, {port_of("0.0.0.0:6000"), port_of("0.0.0.0:8080")})
        [ep] = self.lines(self.runtime, "ENTRYPOINT")
        self.assertEqual(json.loads(ep), ["prescale"])

    def test_both_binaries_on_path(self):
        copies = [c for c in self.lines(self.runtime, "COPY") if c.startswith("--from=build")]
        self.assertEqual(len(copies), 1)
        words = copies[0].split()[1:]
        dest = words[-1]
        self.assertIn(dest.rstrip("/"), ("/usr/local/bin", "/usr/bin"))
        self.assertEqual(sorted(os.path.basename(w) for w in words[:-1]), ["prescale", "prescale-demo-app"])

    def test_oci_labels_and_version(self):
        labels = " ".join(self.lines(self.runtime, "LABEL"))
        for key in ("title", "description", "version", "revision", "created", "licenses", "source"):
            self.assertIn(f"org.opencontainers.image.{key}=", labels)
        with open(os.path.join(REPO, "meson.build")) as f:
            version = re.search(r"version:\s*'([^']+)'", f.read()).group(1)
        self.assertEqual(self.runtime["args"].get("VERSION"), version)
        self.assertIn("Apache-2.0", labels)

    def test_nothing_fetched_at_run_time(self):
        with open(CONTAINERFILE) as f:
            text = f.read()
        self.assertNotRegex(text, r"(?im)^\s*ADD\s+https?://")
        runtime_run = " ".join(self.lines(self.runtime, "RUN"))
        for tool in ("curl", "wget", "git "):
            self.assertNotIn(tool, runtime_run)
        self.assertIn("rm -rf /var/lib/apt/lists/*", runtime_run)
        # The ENTRYPOINT is the binary itself: no shell wrapper that could download or write anything.
        self.assertNotIn("CMD", [i for i, _ in self.runtime["lines"]])

    def test_context_ignore_file(self):
        path = next((p for p in (os.path.join(REPO, ".containerignore"), os.path.join(REPO, ".dockerignore"))
                     if os.path.isfile(p)), None)
        self.assertIsNotNone(path, "no .containerignore or .dockerignore")
        with open(path) as f:
            patterns = {line.strip() for line in f if line.strip() and not line.startswith("#")}
        for p in (".git", "build", "build-*"):
            self.assertIn(p, patterns)
        for needed in ("src", "proto", "third_party", "meson.build", "meson_options.txt"):
            self.assertNotIn(needed, patterns)


# ---- k6 -------------------------------------------------------------------------------------------------

# Stand-ins for k6's modules, so node can load the scripts and compute their `options`.
K6_STUBS = {
    "k6_http.mjs": "export default { batch: () => [], get: () => ({}) };\n",
    "k6.mjs": "export function check() { return true; }\nexport function sleep() {}\n",
    "k6_data.mjs": "export class SharedArray { constructor(name, f) { return f(); } }\n",
}
MODULE_MAP = {"k6/http": "./k6_http.mjs", "k6": "./k6.mjs", "k6/data": "./k6_data.mjs"}


def k6_options(script, env, cwd):
    """Loads a k6 script under node with the stubs and the given __ENV; returns its `options`."""
    with open(os.path.join(K6, script)) as f:
        src = f.read()
    for mod, stub in MODULE_MAP.items():
        src = src.replace(f"from '{mod}';", f"from '{stub}';")
    for name, text in K6_STUBS.items():
        with open(os.path.join(cwd, name), "w") as f:
            f.write(text)
    with open(os.path.join(cwd, "script.mjs"), "w") as f:
        f.write(src)
    with open(os.path.join(cwd, "run.mjs"), "w") as f:
        f.write(textwrap.dedent(f"""\
            import fs from 'node:fs';
            globalThis.__ENV = {json.dumps(env)};
            globalThis.open = (p) => fs.readFileSync(p, 'utf8');
            const m = await import('./script.mjs');
            process.stdout.write(JSON.stringify(m.options));
            """))
    r = subprocess.run(["node", "run.mjs"], cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"{script} failed under node: {r.stderr}")
    return json.loads(r.stdout)


def seconds(d):
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", d):
        total += float(num) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


class TestK6(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if shutil.which("node") is None:
            raise unittest.SkipTest("node is not installed")

    def test_scripts_parse_as_modules(self):
        scripts = sorted(glob.glob(os.path.join(K6, "*.js")))
        self.assertEqual([os.path.basename(s) for s in scripts], ["periodic.js", "replay.js"])
        with tempfile.TemporaryDirectory() as tmp:
            for s in scripts:
                # .mjs: parsed as an ES module, as k6 does, whatever node's default for .js is.
                copy_path = os.path.join(tmp, os.path.basename(s)[:-3] + ".mjs")
                shutil.copy(s, copy_path)
                r = subprocess.run(["node", "--check", copy_path], capture_output=True, text=True, timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
            with open(os.path.join(tmp, "broken.mjs"), "w") as f:
                f.write("import http from 'k6/http';\nexport default function () {\n")
            r = subprocess.run(["node", "--check", os.path.join(tmp, "broken.mjs")], capture_output=True, timeout=60)
            self.assertNotEqual(r.returncode, 0, "node --check accepts anything?")

    def test_periodic_cycle(self):
        with tempfile.TemporaryDirectory() as tmp:
            opts = k6_options("periodic.js", {"CYCLES": "2"}, tmp)
        sc = opts["scenarios"]["periodic"]
        self.assertEqual(sc["executor"], "ramping-vus")
        stages = sc["stages"]
        self.assertEqual(len(stages) % 2, 0)
        cycle = stages[: len(stages) // 2]
        self.assertEqual(cycle, stages[len(stages) // 2:])
        self.assertEqual(sum(seconds(s["duration"]) for s in cycle), 180, "the ScaledObjects say period: 3m")
        # VUs over the cycle, second by second: 30 s at 10, 120 s at 50, 30 s at 10 (1 s ramps included).
        at = []
        for s in cycle:
            at += [s["target"]] * int(seconds(s["duration"]))
        self.assertEqual(at, [10] * 30 + [50] * 120 + [10] * 30)
        self.assertTrue(opts["noVUConnectionReuse"])

    def test_replay_stages_follow_the_trace(self):
        with tempfile.TemporaryDirectory() as tmp:
            trace = os.path.join(tmp, "trace.csv")
            with open(trace, "w") as f:
                f.write("timestamp_seconds,value\n1000,60\n1060,120\n1120,0\n1180,240\n")
            opts = k6_options("replay.js", {"TRACE": trace, "FACTOR": "60", "PEAK_RPS": "8"}, tmp)
            sc = opts["scenarios"]["replay"]
            self.assertEqual(sc["executor"], "ramping-arrival-rate")
            self.assertEqual(sc["timeUnit"], "1m")
            # 60 s rows at FACTOR 60 -> 1 s stages; peak 240/60 = 4 req/s scaled to 8 req/s = 480/min.
            self.assertEqual([s["duration"] for s in sc["stages"]], ["1000ms"] * 4)
            self.assertEqual([s["target"] for s in sc["stages"]], [120, 240, 0, 480])
            opts = k6_options("replay.js", {"TRACE": trace, "FACTOR": "10", "PEAK_RPS": "0", "START_ROW": "1",
                                            "ROWS": "2"}, tmp)
            stages = opts["scenarios"]["replay"]["stages"]
            self.assertEqual(stages, [{"duration": "6000ms", "target": 120}, {"duration": "6000ms", "target": 0}])
            with self.assertRaises(AssertionError):
                k6_options("replay.js", {}, tmp)  # TRACE is required


if __name__ == "__main__":
    unittest.main()
