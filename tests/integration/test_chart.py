"""The Helm chart charts/prescale, rendered without Helm (not in Debian) and checked offline.

The renderer is tests/integration/chartrender/ (Go's text/template + Sprig, the template language Helm uses,
with Helm's include, tpl, toYaml, required and .Files.Get), built once per run in GOPATH mode from Debian's
golang-github-masterminds-sprig-dev and golang-gopkg-yaml.v3-dev (no module download). A user with Helm runs
`helm lint charts/prescale` and `helm template charts/prescale` instead (charts/prescale/README.md).

- the renderer itself: values merged as Helm merges them (later file wins, maps merged at every depth, null
  removes a default), include, tpl, required, toYaml and .Files.Get on a small chart made here, a missing key
  an error in strict mode;
- default values: only built-in kinds (the chart installs on a cluster without cert-manager, KEDA's or the
  Prometheus Operator's CRDs), every object closed-schema valid (k8s_schema.py: why a checked-in schema set),
  in the release namespace with the chart's labels, selectors matching the pods, the locked-down pod, probes
  on /healthz and /readyz, terminationGracePeriodSeconds above --shutdown-grace, `args` holding every flag of
  `prescale --help` with its default, and NOTES.txt giving the scalerAddress of the rendered Service;
- everything enabled (charts/prescale/ci/all-values.yaml): every object valid, ScaledObjects against KEDA's
  CRD (../shared/reference or $KEDA_CRD), the example ScaledObject pointing at the release's Service and its
  TriggerAuthentication, and prescale started with the rendered args and mounts (certificates made by openssl
  as the Certificates say) answering KEDA's GetMetricSpec over mTLS;
- bad values fail with the chart's `required` or `fail` message;
- no drift: with charts/prescale/ci/kustomize-values.yaml the chart renders what k8s/base/prescale.yaml and
  k8s/overlays/tls say (image, the flags in effect, ports, probes, security contexts, resources, drain,
  mounts, Services, PDB, the cert-manager chain and KEDA's TriggerAuthentication).

Run: /usr/bin/python3 -m unittest -v tests/integration/test_chart.py
"""

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import certs as certs_mod  # noqa: E402
import grpcgo_client  # noqa: E402
import harness as h  # noqa: E402
import k8s_schema  # noqa: E402
import test_deploy as deploy  # noqa: E402  (its helpers only: its test classes are not collected here)

try:
    import yaml
except ImportError:  # pragma: no cover - Debian's python3-yaml is a dependency (scripts/deps.sh)
    yaml = None

REPO = h.REPO_ROOT
CHART = os.path.join(REPO, "charts", "prescale")
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "chartrender")
ALL_VALUES = os.path.join(CHART, "ci", "all-values.yaml")
KUSTOMIZE_VALUES = os.path.join(CHART, "ci", "kustomize-values.yaml")
DEBIAN_PACKAGES = "golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev"
BUILD_TIMEOUT_S = 600
RENDER_TIMEOUT_S = 60
RELEASE, NAMESPACE = "prescale", "prescale"
# The flags the chart sets from other values than `args` (containerPorts, tls, prometheus.config).
NOT_IN_ARGS = {"--grpc-listen", "--http-listen", "--tls-cert", "--tls-key", "--tls-client-ca", "--prometheus-config"}
# The two defaults the chart changes, and why: prescale's own URL is loopback (useless in a pod), and
# json logs are what log collectors in a cluster parse.
CHART_DEFAULTS = {"--prometheus-url": "http://prometheus-operated.monitoring.svc:9090", "--log-format": "json"}
BUILTIN_API_VERSIONS = {"v1", "apps/v1", "policy/v1"}

RENDERER = None
TMP = None


def setUpModule():
    global RENDERER, TMP
    if yaml is None:
        raise unittest.SkipTest("python3-yaml is not installed (/usr/bin/python3 has it on Debian)")
    go = grpcgo_client.go_bin()
    if not go:
        raise unittest.SkipTest(f"`go` is not installed: the chart's renderer needs Debian's {DEBIAN_PACKAGES}")
    TMP = tempfile.mkdtemp(prefix="prescale-chart-")
    RENDERER = os.path.join(TMP, "chartrender")
    env = dict(os.environ, GO111MODULE="off", GOPATH=grpcgo_client.GOPATH, GOFLAGS="", CGO_ENABLED="0",
               GOCACHE=os.path.join(TMP, "gocache"), GOPROXY="off")
    r = subprocess.run([go, "build", "-o", RENDERER, "."], cwd=SOURCE, env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    if r.returncode != 0:
        shutil.rmtree(TMP, ignore_errors=True)
        raise RuntimeError(f"go build of {SOURCE} failed (exit {r.returncode}; are Debian's {DEBIAN_PACKAGES} "
                           f"installed?):\n{r.stdout}{r.stderr}")


def tearDownModule():
    if TMP:
        shutil.rmtree(TMP, ignore_errors=True)


def run_render(*files, values=None, chart=CHART, name=RELEASE, namespace=NAMESPACE, notes=False, strict=True):
    """Runs the renderer: values.yaml, then each file, then `values` (a dict written to a file) on top."""
    argv = [RENDERER, "-chart", chart, "-name", name, "-namespace", namespace]
    if strict:
        argv.append("-strict")
    if notes:
        argv.append("-notes")
    extra = list(files)
    if values is not None:
        fd, path = tempfile.mkstemp(suffix=".yaml", dir=TMP)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(values, f)
        extra.append(path)
    for p in extra:
        argv += ["-f", p]
    return subprocess.run(argv, capture_output=True, text=True, timeout=RENDER_TIMEOUT_S, stdin=subprocess.DEVNULL)


def render(*files, **kw):
    """The rendered objects (every document must parse as YAML); a render error fails the test."""
    r = run_render(*files, **kw)
    assert r.returncode == 0, f"render failed (exit {r.returncode}):\n{r.stderr}"
    return [d for d in yaml.safe_load_all(r.stdout) if d is not None]


def render_error(*files, strict=False, **kw):
    """The error of a render that must fail. Not strict by default, as `helm template` (a value set to null
    is then missing, and `required` says so)."""
    r = run_render(*files, strict=strict, **kw)
    assert r.returncode != 0, f"rendered although it should not have:\n{r.stdout[:2000]}"
    return r.stderr


def chart_values():
    with open(os.path.join(CHART, "values.yaml")) as f:
        return yaml.safe_load(f)


def help_defaults(binary):
    """{--flag: its default} from `prescale --help` (a default may sit on a flag's continuation line)."""
    r = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r
    out, current = {}, None
    for line in r.stdout.splitlines():
        m = re.match(r"^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)", line)
        if m:
            current = m.group(1)
            out.setdefault(current, None)
        d = re.search(r"\(default ([^;)]*);", line)
        if d and current:
            out[current] = d.group(1)
    return out


def effective_flags(args, defaults):
    """The configuration a container's args give prescale: its flags over `prescale --help`'s defaults."""
    out = {k: v for k, v in defaults.items() if v is not None}
    out.update(deploy.flags_of(args))
    return out


def validate(testcase, objs):
    """Every object against its closed schema (k8s_schema.py) or, for ScaledObjects, KEDA's CRD."""
    import jsonschema
    crd_path = deploy.keda_crd_path()
    for o in objs:
        key = f"{o.get('kind')} {o.get('metadata', {}).get('name')}"
        with testcase.subTest(object=key):
            if o.get("kind") == "ScaledObject":
                if not os.path.isfile(crd_path):
                    testcase.skipTest(f"KEDA's ScaledObject CRD not found at {crd_path} (set KEDA_CRD)")
                [crd] = deploy.load_docs(crd_path)
                version = o["apiVersion"].split("/")[1]
                [served] = [v for v in crd["spec"]["versions"] if v["name"] == version and v.get("served")]
                schema = deploy.strip_extensions(served["schema"]["openAPIV3Schema"])
            else:
                schema = k8s_schema.schema_for(o)
                testcase.assertIsNotNone(schema, f"{key}: no schema for {o.get('apiVersion')} {o.get('kind')}: "
                                                 "add one to k8s_schema.py")
            v = jsonschema.validators.validator_for(schema, default=jsonschema.Draft4Validator)(schema)
            errors = sorted(v.iter_errors(o), key=lambda e: list(e.path))
            testcase.assertEqual([f"{list(e.path)}: {e.message}" for e in errors], [])


def pick(objs, kind, name=None):
    hits = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(hits) == 1, f"{len(hits)} {kind} {name}: {[o['metadata']['name'] for o in hits]}"
    return hits[0]


def certificate(objs, usage):
    """The one cert-manager Certificate with this usage ("server auth", "client auth")."""
    [c] = [o for o in objs if o["kind"] == "Certificate" and usage in o["spec"].get("usages", [])]
    return c


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def run_prescale(testcase, dep, objs, tmp, made_elsewhere=None):
    """Starts prescale with the Deployment's args and mounted Secrets (listen addresses on loopback ports);
    returns (process, grpc_port, http_port) once /readyz answers 200. The caller stops it."""
    binary = h.prescale_bin()
    if not os.access(binary, os.X_OK):
        testcase.skipTest(f"prescale not built: {binary} (build it or set PRESCALE_BIN)")
    c = deploy.container(dep, "prescale")
    mounts = deploy.mounted_files(dep, "prescale", objs, tmp, made_elsewhere)
    grpc_port, http_port = h.free_port(), h.free_port()
    proc = h.Process("prescale", deploy.local_argv(binary, c["args"], mounts, grpc_port, http_port),
                     os.path.join(tmp, "prescale.log"))
    try:
        h.wait_http_ok(proc, f"http://127.0.0.1:{http_port}/readyz", 15, "prescale /readyz")
    except BaseException:
        proc.stop()
        raise
    return proc, grpc_port, http_port


def stop_prescale(testcase, proc):
    rc = proc.stop()
    text = h.log_tail(proc.log_path, 100000)
    testcase.assertEqual(rc, 0, text[-3000:])
    for marker in h.SANITIZER_MARKERS:
        testcase.assertNotIn(marker, text)
    return text


# ---- the renderer ------------------------------------------------------------------------------------


class TestRenderer(unittest.TestCase):
    """The renderer does what Helm does with the functions and objects the chart uses, on a chart made here."""

    @classmethod
    def setUpClass(cls):
        cls.chart = os.path.join(TMP, "mini")
        os.makedirs(os.path.join(cls.chart, "templates"))
        os.makedirs(os.path.join(cls.chart, "files"))
        files = {
            "Chart.yaml": "apiVersion: v2\nname: mini\nversion: 1.2.3\nappVersion: \"4.5\"\n",
            "values.yaml": textwrap.dedent("""\
                a: {b: 1, c: {d: keep, e: drop}}
                list: [x, y]
                text: "{{ .Release.Name }}-{{ .Values.a.b }}"
                need: present
                """),
            "files/data.json": '{"k": "v"}\n',
            "templates/_h.tpl": '{{- define "mini.n" -}}{{ .Chart.Name }}-{{ .Release.Name }}{{- end }}\n',
            "templates/cm.yaml": textwrap.dedent("""\
                apiVersion: v1
                kind: ConfigMap
                metadata:
                  name: {{ include "mini.n" . }}
                  namespace: {{ .Release.Namespace }}
                data:
                  a: {{ toYaml .Values.a | quote }}
                  list: {{ toJson .Values.list | quote }}
                  tpl: {{ tpl .Values.text . | quote }}
                  file: {{ .Files.Get "files/data.json" | quote }}
                  need: {{ required "need is required" .Values.need | quote }}
                  chart: "{{ .Chart.Version }}/{{ .Chart.AppVersion }}"
                  kube: {{ .Capabilities.KubeVersion.Version | quote }}
                  has: {{ .Capabilities.APIVersions.Has "apps/v1" | quote }}
                  cm: {{ .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" | quote }}
                  template: {{ .Template.Name | quote }}
                """),
            "templates/empty.yaml": "{{- if false }}\nkind: Nothing\n{{- end }}\n",
            "templates/NOTES.txt": "notes for {{ .Release.Name }}\n",
        }
        for path, text in files.items():
            with open(os.path.join(cls.chart, path), "w") as f:
                f.write(text)

    def data(self, **kw):
        [cm] = render(chart=self.chart, name="r", namespace="ns", **kw)
        return cm

    def test_functions_and_objects(self):
        cm = self.data()
        self.assertEqual(cm["metadata"], {"name": "mini-r", "namespace": "ns"})
        d = cm["data"]
        self.assertEqual(yaml.safe_load(d["a"]), {"b": 1, "c": {"d": "keep", "e": "drop"}})
        self.assertEqual(json.loads(d["list"]), ["x", "y"])
        self.assertEqual(d["tpl"], "r-1")
        self.assertEqual(d["file"], '{"k": "v"}\n')
        self.assertEqual(d["need"], "present")
        self.assertEqual(d["chart"], "1.2.3/4.5")
        self.assertRegex(d["kube"], r"^v1\.\d+\.\d+$")
        self.assertEqual((d["has"], d["cm"]), ("true", "false"))
        self.assertEqual(d["template"], "mini/templates/cm.yaml")

    def test_values_merge_like_helm(self):
        over1 = {"a": {"c": {"d": "over1"}}, "list": ["z"]}
        over2 = {"a": {"b": 2, "c": {"e": None}}}
        path1 = os.path.join(TMP, "over1.yaml")
        with open(path1, "w") as f:
            yaml.safe_dump(over1, f)
        [cm] = render(path1, chart=self.chart, name="r", namespace="ns", values=over2)
        # Later wins; maps merge at every depth; lists are replaced whole; null removes a default.
        self.assertEqual(yaml.safe_load(cm["data"]["a"]), {"b": 2, "c": {"d": "over1"}})
        self.assertEqual(json.loads(cm["data"]["list"]), ["z"])
        self.assertEqual(cm["data"]["tpl"], "r-2")

    def test_required_fails_with_its_message(self):
        err = render_error(chart=self.chart, values={"need": ""})
        self.assertIn("need is required", err)
        err = render_error(chart=self.chart, values={"need": None})
        self.assertIn("need is required", err)

    def test_strict_mode_refuses_a_missing_key(self):
        path = os.path.join(self.chart, "templates", "typo.yaml")
        with open(path, "w") as f:
            f.write("kind: X\nv: {{ .Values.a.nope }}\n")
        try:
            self.assertIn("nope", render_error(chart=self.chart, strict=True))
            r = run_render(chart=self.chart, strict=False)
            self.assertEqual(r.returncode, 0, r.stderr)  # Helm's own default: a missing key renders empty
        finally:
            os.unlink(path)

    def test_empty_templates_are_left_out_and_notes_render_apart(self):
        r = run_render(chart=self.chart, name="r")
        self.assertEqual(r.stdout.count("# Source: "), 1, r.stdout)
        self.assertNotIn("notes for", r.stdout)
        r = run_render(chart=self.chart, name="r", notes=True)
        self.assertEqual(r.stdout, "notes for r\n")


# ---- the chart with default values ---------------------------------------------------------------------


class TestDefaults(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.objs = render()
        cls.dep = pick(cls.objs, "Deployment")
        cls.pod = cls.dep["spec"]["template"]["spec"]
        cls.c = deploy.container(cls.dep, "prescale")

    def test_only_builtin_kinds(self):
        """Installs on a cluster without the CRDs of cert-manager, KEDA or the Prometheus Operator."""
        self.assertEqual(sorted(o["kind"] for o in self.objs),
                         ["Deployment", "PodDisruptionBudget", "Service", "Service", "ServiceAccount"])
        for o in self.objs:
            self.assertIn(o["apiVersion"], BUILTIN_API_VERSIONS)

    def test_objects_validate(self):
        validate(self, self.objs)

    def test_schemas_are_not_vacuous(self):
        import jsonschema
        for mutate in (lambda o: o["spec"]["template"]["spec"]["containers"][0].__setitem__("imagePullpolicy", "x"),
                       lambda o: o["spec"]["template"]["spec"].__setitem__("securityContext", {"runAsUser": "65532"}),
                       lambda o: o["spec"].__setitem__("replicas", "2"),
                       lambda o: o["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
                       .__setitem__("memory", "256 MB"),
                       lambda o: o["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
                       .__setitem__("httpget", {}),
                       lambda o: o["metadata"].__setitem__("name", "Prescale")):
            bad = copy.deepcopy(self.dep)
            mutate(bad)
            schema = k8s_schema.schema_for(bad)
            self.assertTrue(list(jsonschema.Draft4Validator(schema).iter_errors(bad)), "a broken Deployment validated")

    def test_namespace_and_labels(self):
        for o in self.objs:
            with self.subTest(kind=o["kind"], name=o["metadata"]["name"]):
                self.assertEqual(o["metadata"]["namespace"], NAMESPACE)
                labels = o["metadata"]["labels"]
                self.assertEqual(labels["app.kubernetes.io/instance"], RELEASE)
                self.assertEqual(labels["app.kubernetes.io/managed-by"], "Helm")
                self.assertRegex(labels["helm.sh/chart"], r"^prescale-\d+\.\d+\.\d+")

    def test_selectors_match_the_pods_and_target_ports_exist(self):
        pod_labels = self.dep["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(selects(self.dep["spec"]["selector"], pod_labels))
        ports = {p["name"] for p in self.c["ports"]}
        for svc in (o for o in self.objs if o["kind"] == "Service"):
            self.assertTrue(selects({"matchLabels": svc["spec"]["selector"]}, pod_labels))
            for p in svc["spec"]["ports"]:
                self.assertIn(p["targetPort"], ports)
        self.assertTrue(selects(pick(self.objs, "PodDisruptionBudget")["spec"]["selector"], pod_labels))
        term = self.pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
        self.assertTrue(selects(term["podAffinityTerm"]["labelSelector"], pod_labels))
        grpc = pick(self.objs, "Service", f"{RELEASE}-grpc")
        self.assertEqual(grpc["spec"]["clusterIP"], "None")  # headless: KEDA balances over every pod

    def test_pod_is_locked_down(self):
        psc, sc = self.pod["securityContext"], self.c["securityContext"]
        self.assertEqual((psc["runAsNonRoot"], psc["runAsUser"], psc["runAsGroup"]), (True, 65532, 65532))
        self.assertEqual(psc["seccompProfile"], {"type": "RuntimeDefault"})
        self.assertIs(sc["readOnlyRootFilesystem"], True)
        self.assertIs(sc["allowPrivilegeEscalation"], False)
        self.assertEqual(sc["capabilities"], {"drop": ["ALL"]})
        self.assertEqual(sc["seccompProfile"], {"type": "RuntimeDefault"})
        self.assertIs(self.pod["automountServiceAccountToken"], False)
        self.assertEqual(self.dep["spec"]["replicas"], 2)
        self.assertEqual(self.c["image"], f"prescale:{chart_values()['image']['tag'] or self.app_version()}")

    def app_version(self):
        with open(os.path.join(CHART, "Chart.yaml")) as f:
            return yaml.safe_load(f)["appVersion"]

    def test_app_version_is_the_projects(self):
        with open(os.path.join(REPO, "meson.build")) as f:
            version = re.search(r"version:\s*'([^']+)'", f.read()).group(1)
        self.assertEqual(self.app_version(), version)

    def test_probes_and_drain(self):
        self.assertEqual(self.c["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "http"})
        self.assertEqual(self.c["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "http"})
        flags = deploy.flags_of(self.c["args"])
        m = re.fullmatch(r"(\d+)s", flags["--shutdown-grace"])
        self.assertIsNotNone(m, flags["--shutdown-grace"])
        grace_ms = int(m.group(1)) * 1000
        # SIGTERM -> /readyz 503 -> calls in flight get --shutdown-grace -> GOAWAY, streams end: the kubelet's
        # SIGKILL must come later.
        self.assertGreater(self.pod["terminationGracePeriodSeconds"] * 1000, grace_ms)
        ports = {p["name"]: p["containerPort"] for p in self.c["ports"]}
        self.assertEqual(deploy.port_of(flags["--grpc-listen"]), ports["grpc"])
        self.assertEqual(deploy.port_of(flags["--http-listen"]), ports["http"])

    def test_args_hold_every_flag_with_its_default(self):
        binary = h.prescale_bin()
        if not os.access(binary, os.X_OK):
            self.skipTest(f"prescale not built: {binary}")
        defaults = help_defaults(binary)
        server_flags = {f for f in defaults if f not in ("--help", "--version")} - NOT_IN_ARGS
        args = chart_values()["args"]
        as_flags = {"--" + re.sub(r"([A-Z])", lambda m: "-" + m.group(1).lower(), k): v for k, v in args.items()}
        self.assertEqual(set(as_flags), server_flags, "values.yaml args and `prescale --help` differ")
        for flag, value in as_flags.items():
            want = CHART_DEFAULTS.get(flag, defaults[flag])
            self.assertEqual(str(value), want, flag)
        # And they reach the container as --flag=value.
        rendered = deploy.flags_of(self.c["args"])
        for flag, value in as_flags.items():
            self.assertEqual(rendered[flag], str(value))

    def test_prescale_starts_with_the_rendered_args(self):
        with tempfile.TemporaryDirectory(prefix="prescale-chart-run-") as tmp:
            proc, _, http_port = run_prescale(self, self.dep, self.objs, tmp)
            try:
                for path in ("/healthz", "/readyz"):
                    self.assertEqual(h.http_get(f"http://127.0.0.1:{http_port}{path}")[0], 200, path)
            finally:
                text = stop_prescale(self, proc)
            started = [json.loads(ln) for ln in text.splitlines() if '"prescale started"' in ln]
            self.assertEqual(len(started), 1, text[-2000:])

    def test_notes_give_the_scaler_address_of_the_service(self):
        r = run_render(notes=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        grpc = pick(self.objs, "Service", f"{RELEASE}-grpc")
        port = grpc["spec"]["ports"][0]["port"]
        want = f"dns:///{grpc['metadata']['name']}.{NAMESPACE}.svc.cluster.local:{port}"
        self.assertIn(f"scalerAddress: {want}", r.stdout)
        self.assertNotIn("caCert", r.stdout)  # no TLS: KEDA must not be told to use it


# ---- everything enabled ------------------------------------------------------------------------------


class TestAllEnabled(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.objs = render(ALL_VALUES)
        cls.dep = pick(cls.objs, "Deployment")
        cls.c = deploy.container(cls.dep, "prescale")

    def test_every_kind_is_rendered(self):
        kinds = {o["kind"] for o in self.objs}
        for kind in ("Deployment", "Service", "ServiceAccount", "PodDisruptionBudget", "Secret", "Certificate",
                     "Issuer", "TriggerAuthentication", "ServiceMonitor", "PodMonitor", "ScaledObject"):
            self.assertIn(kind, kinds)
        # Section 3's objects, once their templates are in the chart.
        templates = os.listdir(os.path.join(CHART, "templates"))
        if any("prometheusrule" in t.lower() for t in templates):
            self.assertIn("PrometheusRule", kinds)
        if any("dashboard" in t.lower() for t in templates):
            self.assertIn("ConfigMap", kinds)

    def test_objects_validate(self):
        validate(self, self.objs)

    def test_monitors_keep_prescales_namespace_label(self):
        """prescale's per-target series carry the ScaledObject's namespace as `namespace`; without honorLabels
        the Prometheus Operator's target label would rename it exported_namespace (docs/operations.md)."""
        for kind, key in (("ServiceMonitor", "endpoints"), ("PodMonitor", "podMetricsEndpoints")):
            [ep] = pick(self.objs, kind)["spec"][key]
            self.assertIs(ep["honorLabels"], True, kind)
            self.assertEqual((ep["port"], ep["path"]), ("http", "/metrics"))

    def test_kubectl_kustomize_reads_it_the_same(self):
        """kustomize (kubectl's) parses every rendered document into the same objects as this test does."""
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            self.skipTest("kubectl not installed (not a Debian package): parsed by python3-yaml only")
        r = run_render(ALL_VALUES)
        self.assertEqual(r.returncode, 0, r.stderr)
        with tempfile.TemporaryDirectory(prefix="prescale-chart-kustomize-") as tmp:
            with open(os.path.join(tmp, "chart.yaml"), "w") as f:
                f.write(r.stdout)
            with open(os.path.join(tmp, "kustomization.yaml"), "w") as f:
                f.write("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [chart.yaml]\n")
            k = subprocess.run([kubectl, "kustomize", tmp], capture_output=True, text=True, timeout=60)
        self.assertEqual(k.returncode, 0, k.stderr)
        theirs = [d for d in yaml.safe_load_all(k.stdout) if d]
        self.assertEqual(sorted(map(deploy.object_key, theirs)), sorted(map(deploy.object_key, self.objs)))
        by_key = {deploy.object_key(o): o for o in theirs}
        for o in self.objs:
            self.assertEqual(by_key[deploy.object_key(o)], o, deploy.object_key(o))

    def test_example_points_at_the_release(self):
        so = pick(self.objs, "ScaledObject")
        trigger = so["spec"]["triggers"][0]
        # Values as written: 0 stays 0 (scale to zero), numbers become the strings KEDA's metadata holds.
        self.assertEqual(so["spec"]["minReplicaCount"], 0)
        self.assertEqual((trigger["metadata"]["headroom"], trigger["metadata"]["history"]), ("0.1", "1000000"))
        grpc = pick(self.objs, "Service", f"{RELEASE}-grpc")
        self.assertEqual(trigger["metadata"]["scalerAddress"],
                         f"dns:///{RELEASE}-grpc.{NAMESPACE}.svc.cluster.local:{grpc['spec']['ports'][0]['port']}")
        self.assertEqual(grpc["spec"]["ports"][0]["appProtocol"], "https")
        ta = pick(self.objs, "TriggerAuthentication", trigger["authenticationRef"]["name"])
        client = certificate(self.objs, "client auth")
        self.assertEqual({r["parameter"] for r in ta["spec"]["secretTargetRef"]}, {"caCert", "tlsClientCert",
                                                                                   "tlsClientKey"})
        for r in ta["spec"]["secretTargetRef"]:
            self.assertEqual(r["name"], client["spec"]["secretName"])
        server = certificate(self.objs, "server auth")
        self.assertIn(deploy.external_host(trigger), server["spec"]["dnsNames"])

    def test_cert_manager_with_an_issuer_of_yours(self):
        ref = {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
        objs = render(ALL_VALUES, values={"tls": {"certManager": {"issuerRef": ref}}})
        validate(self, objs)
        self.assertEqual([o for o in objs if o["kind"] == "Issuer"], [])  # no chain of its own then
        certs = [o for o in objs if o["kind"] == "Certificate"]
        self.assertEqual(len(certs), 2)
        for c in certs:
            self.assertEqual(c["spec"]["issuerRef"], ref)

    def test_notes_name_keda_tls_keys(self):
        r = run_render(ALL_VALUES, notes=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        for key in ("scalerAddress", "caCert", "tlsClientCert", "tlsClientKey", f"{RELEASE}-tls"):
            self.assertIn(key, r.stdout)

    def test_prescale_serves_keda_over_mtls(self):
        """prescale with the rendered args and mounts (the chart's --prometheus-config Secret; the TLS Secret
        as cert-manager would issue it, made by openssl) answers the example trigger's GetMetricSpec to a
        client holding what the TriggerAuthentication gives KEDA."""
        if shutil.which(certs_mod.OPENSSL) is None:
            self.skipTest("openssl not installed")
        import grpc
        pb2, pb2_grpc = h.grpc_modules()
        so = pick(self.objs, "ScaledObject")
        trigger = so["spec"]["triggers"][0]
        certs = [o for o in self.objs if o["kind"] == "Certificate"]
        srv, cli = certificate(certs, "server auth")["spec"], certificate(certs, "client auth")["spec"]
        ta = pick(self.objs, "TriggerAuthentication")
        with certs_mod.Certs(tmp_prefix="prescale-chart-tls-") as c:
            server = c.issue_server("prescale-grpc", sans=tuple("DNS:" + n for n in srv["dnsNames"]),
                                    cn=srv["commonName"])
            client = c.issue_client("keda-client", cn=cli["commonName"])
            secrets = {
                srv["secretName"]: {"tls.crt": c.read(server.cert), "tls.key": c.read(server.key),
                                    "ca.crt": c.read(c.ca.cert)},
                cli["secretName"]: {"tls.crt": c.read(client.cert), "tls.key": c.read(client.key),
                                    "ca.crt": c.read(c.ca.cert)},
            }
            proc, grpc_port, _ = run_prescale(self, self.dep, self.objs, c.dir, secrets)
            try:
                auth = {r["parameter"]: secrets[r["name"]][r["key"]] for r in ta["spec"]["secretTargetRef"]}
                md = dict(trigger["metadata"], serverAddress="http://127.0.0.1:9")
                ref = pb2.ScaledObjectRef(name=so["metadata"]["name"], namespace=NAMESPACE, scalerMetadata=md)
                options = [("grpc.ssl_target_name_override", deploy.external_host(trigger))]

                def call(creds):
                    with grpc.secure_channel(f"127.0.0.1:{grpc_port}", creds, options=options) as ch:
                        return pb2_grpc.ExternalScalerStub(ch).GetMetricSpec(ref, timeout=20)

                resp = call(grpc.ssl_channel_credentials(auth["caCert"], auth["tlsClientKey"], auth["tlsClientCert"]))
                self.assertEqual(resp.metricSpecs[0].targetSizeFloat, float(trigger["metadata"]["threshold"]))
                with self.assertRaises(grpc.RpcError) as cm:  # mTLS: no client certificate, no handshake
                    call(grpc.ssl_channel_credentials(auth["caCert"]))
                self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
            finally:
                text = stop_prescale(self, proc)
        self.assertIn("prometheus config loaded", text)
        started = [json.loads(ln) for ln in text.splitlines() if "prescale started" in ln]
        self.assertTrue(started, text[-2000:])


# ---- bad values ----------------------------------------------------------------------------------------


class TestBadValues(unittest.TestCase):
    def test_each_fails_with_its_message(self):
        cases = [
            ({"tls": {"enabled": True}},
             "tls.existingSecret is required when tls.enabled is true and tls.certManager.enabled is false"),
            ({"prometheus": {"config": {"enabled": True}}},
             "prometheus.config.inline (the config file's text) is required"),
            ({"image": {"repository": ""}}, "image.repository is required"),
            ({"podDisruptionBudget": {"minAvailable": None}}, "podDisruptionBudget.minAvailable or "),
            ({"terminationGracePeriodSeconds": 5}, "terminationGracePeriodSeconds (5) must exceed args.shutdownGrace"),
            ({"args": {"shutdownGrace": "1h30m"}}, "must exceed args.shutdownGrace (1h30m)"),
            ({"podAntiAffinity": "sometimes"}, 'podAntiAffinity must be soft, hard or empty, not "sometimes"'),
            ({"examples": {"enabled": True, "scaledObjects": [{"name": "x"}]}},
             "examples.scaledObjects[].scaleTargetRef.name is required"),
        ]
        for values, message in cases:
            with self.subTest(values=values):
                self.assertIn(message, render_error(values=values))

    def test_the_same_values_fixed_render(self):
        """Each bad case above is one value away from a good render (so each message is the only problem)."""
        for values in ({"tls": {"enabled": True, "existingSecret": "mine"}},
                       {"prometheus": {"config": {"enabled": True, "existingSecret": "mine"}}},
                       {"terminationGracePeriodSeconds": 6},
                       {"args": {"shutdownGrace": "14.5s"}},
                       {"podAntiAffinity": ""}):
            with self.subTest(values=values):
                render(values=values)


# ---- the chart's README ---------------------------------------------------------------------------


def leaf_paths(node, prefix=""):
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from leaf_paths(v, f"{prefix}{k}.")
    else:
        yield prefix.rstrip(".")


class TestReadme(unittest.TestCase):
    # Section 3's keys (alerts, dashboard) are documented in docs/operations.md: only their switch is here.
    OWN_DOCS = ("prometheusRule", "grafanaDashboard")

    def test_values_table_is_complete_and_true(self):
        with open(os.path.join(CHART, "README.md")) as f:
            text = f.read()
        rows = dict(re.findall(r"(?m)^\| `([^`]+)` \| .*? \| (.*) \|$", text))
        values = chart_values()
        for path in leaf_paths(values):
            if path.split(".")[0] in self.OWN_DOCS and not path.endswith(".enabled"):
                continue
            with self.subTest(key=path):
                parts = path.split(".")
                self.assertTrue(any(".".join(parts[:i]) in rows for i in range(1, len(parts) + 1)),
                                f"{path} has no row in charts/prescale/README.md")
        for key, default in rows.items():
            if key.split(".")[0] in self.OWN_DOCS and key.split(".")[0] not in values:
                continue  # until section 3's values are in the chart
            with self.subTest(row=key):
                node = values
                for part in key.split("."):
                    self.assertTrue(isinstance(node, dict) and part in node,
                                    f"README row {key} is not a key of values.yaml")
                    node = node[part]
                if default.startswith("`") and key != "examples.scaledObjects":
                    self.assertEqual(json.loads(default.strip("`")), node, key)


# ---- no drift from k8s/ --------------------------------------------------------------------------------


class TestKustomizeInSync(unittest.TestCase):
    """k8s/ stays (kubectl apply -k), and renders the same prescale as the chart with ci/kustomize-values.yaml."""

    @classmethod
    def setUpClass(cls):
        binary = h.prescale_bin()
        if not os.access(binary, os.X_OK):
            raise unittest.SkipTest(f"prescale not built: {binary} (its --help gives the defaults compared)")
        cls.defaults = help_defaults(binary)
        cls.base = deploy.render(deploy.K8S)
        cls.chart = render(KUSTOMIZE_VALUES)
        cls.tls_overlay = deploy.render(os.path.join(deploy.K8S, "overlays", "tls"))

    def compare_deployments(self, theirs, mine):
        tc, mc = deploy.container(theirs, "prescale"), deploy.container(mine, "prescale")
        self.assertEqual(mc["image"], tc["image"])
        self.assertEqual(effective_flags(mc["args"], self.defaults), effective_flags(tc["args"], self.defaults))
        for field in ("ports", "livenessProbe", "readinessProbe", "resources", "securityContext", "volumeMounts",
                      "imagePullPolicy"):
            self.assertEqual(mc.get(field), tc.get(field), field)
        tp, mp = theirs["spec"]["template"]["spec"], mine["spec"]["template"]["spec"]
        for field in ("securityContext", "terminationGracePeriodSeconds", "automountServiceAccountToken",
                      "volumes", "serviceAccountName"):
            self.assertEqual(mp.get(field), tp.get(field), field)
        for field in ("replicas", "strategy", "revisionHistoryLimit"):
            self.assertEqual(mine["spec"].get(field), theirs["spec"].get(field), field)
        # Anti-affinity: the same rule, each selecting its own pods (the chart's labels add the release).
        for dep, pod in ((theirs, tp), (mine, mp)):
            [term] = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
            self.assertEqual((term["weight"], term["podAffinityTerm"]["topologyKey"]), (100, "kubernetes.io/hostname"))
            pod_labels = dep["spec"]["template"]["metadata"]["labels"]
            self.assertTrue(selects(term["podAffinityTerm"]["labelSelector"], pod_labels))

    def test_deployment(self):
        self.compare_deployments(pick(self.base, "Deployment", "prescale"), pick(self.chart, "Deployment", "prescale"))

    def test_services_pdb_and_service_account(self):
        for name in ("prescale-grpc", "prescale-http"):
            theirs, mine = pick(self.base, "Service", name), pick(self.chart, "Service", name)
            self.assertEqual(mine["spec"]["ports"], theirs["spec"]["ports"], name)
            self.assertEqual(mine["spec"].get("clusterIP"), theirs["spec"].get("clusterIP"), name)
        self.assertEqual(pick(self.chart, "PodDisruptionBudget", "prescale")["spec"]["minAvailable"],
                         pick(self.base, "PodDisruptionBudget", "prescale")["spec"]["minAvailable"])
        self.assertEqual(pick(self.chart, "ServiceAccount", "prescale").get("automountServiceAccountToken"),
                         pick(self.base, "ServiceAccount", "prescale").get("automountServiceAccountToken"))

    def test_image_tag_is_the_kustomization_one(self):
        [k] = deploy.load_docs(os.path.join(deploy.BASE, "kustomization.yaml"))
        [img] = k["images"]
        self.assertEqual(deploy.container(pick(self.chart, "Deployment", "prescale"), "prescale")["image"],
                         f"{img['name']}:{img['newTag']}")

    def test_tls_overlay_with_an_existing_secret(self):
        tls = {"tls": {"enabled": True, "existingSecret": "prescale-grpc-tls"}}
        chart = render(KUSTOMIZE_VALUES, values=tls)
        self.compare_deployments(pick(self.tls_overlay, "Deployment", "prescale"),
                                 pick(chart, "Deployment", "prescale"))
        self.assertEqual(pick(chart, "Service", "prescale-grpc")["spec"]["ports"],
                         pick(self.tls_overlay, "Service", "prescale-grpc")["spec"]["ports"])

    def test_tls_overlay_with_cert_manager(self):
        """With tls.certManager the chart makes the overlay's cert-manager chain and TriggerAuthentication."""
        cm = {"tls": {"enabled": True, "certManager": {"enabled": True}}}
        chart = render(KUSTOMIZE_VALUES, values=cm)
        self.compare_deployments(pick(self.tls_overlay, "Deployment", "prescale"),
                                 pick(chart, "Deployment", "prescale"))
        added = [o for o in self.tls_overlay if o["kind"] in ("Certificate", "Issuer", "TriggerAuthentication")]
        self.assertEqual(len(added), 6)
        for theirs in added:
            with self.subTest(kind=theirs["kind"], name=theirs["metadata"]["name"]):
                if theirs["kind"] == "Certificate":  # KEDA's is keda-client there, <release>-keda-client here
                    [mine] = [o for o in chart if o["kind"] == "Certificate"
                              and o["spec"]["secretName"] == theirs["spec"]["secretName"]]
                else:
                    mine = pick(chart, theirs["kind"], theirs["metadata"]["name"])
                self.assertEqual(mine["apiVersion"], theirs["apiVersion"])
                self.assertEqual(mine["spec"], theirs["spec"])

    def test_the_comparison_is_not_vacuous(self):
        """A changed value of the chart shows up as a difference."""
        for values in ({"args": {"targetIdle": "11m"}}, {"resources": {"limits": {"memory": "512Mi"}}},
                       {"containerPorts": {"http": 8081}}, {"terminationGracePeriodSeconds": 16},
                       {"securityContext": {"readOnlyRootFilesystem": False}}, {"image": {"tag": "0.1.1"}}):
            with self.subTest(values=values):
                chart = render(KUSTOMIZE_VALUES, values=values)
                with self.assertRaises(AssertionError):
                    self.compare_deployments(pick(self.base, "Deployment", "prescale"),
                                             pick(chart, "Deployment", "prescale"))


if __name__ == "__main__":
    unittest.main()
