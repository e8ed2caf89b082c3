"""Operating prescale (issue 12, section 3): the alerts and the Grafana dashboard.

- The rules: `promtool check rules` on deploy/prometheus-rules.yaml, and `promtool test rules` on
  operations/prometheus-rules.test.yaml (every alert fires on its input and stays silent on the rest); every
  alert has a summary, a description and a runbook_url whose anchor is a heading of docs/operations.md.
- The chart: charts/prescale/files/prometheus-rules.yaml rendered as Helm would (tests/integration/chartrender,
  text/template + Sprig) into the PrometheusRule, with k8s/'s values, is deploy/prometheus-rules.yaml; the
  thresholds come from the values; the dashboard ConfigMap holds the dashboard file byte for byte.
- The dashboard: the chart's copy and deploy/'s are the same bytes; Grafana 10/11's schema version, the
  datasource and `target` variables; every PromQL expression of the dashboard, of the rules and of
  docs/operations.md parses (promtool, after Grafana's variables are replaced), and every metric each one
  names is one that a running prescale serves on /metrics (a real prescale on a real Prometheus, after a
  GetMetrics made its per-target series), except the names of the two lists below.
- The rules on real series: a second real Prometheus scrapes that prescale and evaluates the rules; a target
  whose Prometheus is unreachable and one with less than two periods of history make their alerts pending.

The chart tests need tests/integration/chartrender (the chart's renderer, issue 12 section 2) and skip
without it.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
import urllib.parse

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = harness.REPO_ROOT
CHART = os.path.join(REPO, "charts", "prescale")
RULES = os.path.join(REPO, "deploy", "prometheus-rules.yaml")
RULES_TEMPLATE = os.path.join(CHART, "files", "prometheus-rules.yaml")
RULES_TESTS = os.path.join(HERE, "operations", "prometheus-rules.test.yaml")
DASHBOARD = os.path.join(REPO, "deploy", "grafana", "prescale-dashboard.json")
DASHBOARD_CHART = os.path.join(CHART, "files", "prescale-dashboard.json")
OPERATIONS_MD = os.path.join(REPO, "docs", "operations.md")
CHARTRENDER = os.path.join(HERE, "chartrender")  # h-chart's renderer (tests/integration/test_chart.py)

# The values deploy/prometheus-rules.yaml is rendered with: k8s/'s Prometheus scrapes prescale as job
# "prescale" (k8s/base/prometheus-config.yaml) and its Deployment is prescale/prescale.
K8S_VALUES = {"prometheusRule": {"enabled": True, "selector": 'job="prescale"',
                                 "deploymentSelector": 'namespace="prescale",deployment="prescale"'}}

# Series the rules and the dashboard read that prescale does not serve, for good: Prometheus makes `up` at
# every scrape, kube-state-metrics serves the Deployment's state.
NOT_PRESCALE_METRICS = {
    "up": "Prometheus' own series of each scrape",
    "kube_deployment_status_replicas_unavailable": "kube-state-metrics",
}


# Grafana's variables, replaced by values of their kind so that the expression is PromQL.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "30s", "$__range": "1h",
                     "$job": ".*", "$namespace": ".*", "$target": ".*"}


def promtool(*args, timeout=120):
    if not os.access(harness.PROMTOOL_BIN, os.X_OK):
        raise unittest.SkipTest(f"promtool not found at {harness.PROMTOOL_BIN} (Debian's prometheus package)")
    return subprocess.run([harness.PROMTOOL_BIN, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def load_rules(path=RULES):
    with open(path) as f:
        return yaml.safe_load(f)


def rules_of(doc):
    return [r for g in doc["groups"] for r in g["rules"]]


def load_dashboard(path=DASHBOARD):
    with open(path) as f:
        return json.load(f)


def all_panels(dash):
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])


def dashboard_exprs(dash):
    """(where, expr) of every PromQL the dashboard sends: each panel target, and the selector of each
    label_values() variable query."""
    out = []
    for p in all_panels(dash):
        for t in p.get("targets", []):
            out.append((f"panel {p['title']!r} {t['refId']}", t["expr"]))
    for v in dash["templating"]["list"]:
        if v["type"] != "query":
            continue
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = re.fullmatch(r"label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)", q)
        if m is None:
            raise AssertionError(f"variable {v['name']}: not a label_values(selector, label) query: {q}")
        out.append((f"variable {v['name']}", m.group(1)))
    return out


def docs_exprs():
    """(where, expr) of each ```promql block of docs/operations.md (the shadow-mode trial's queries)."""
    with open(OPERATIONS_MD) as f:
        blocks = re.findall(r"```promql\n(.*?)```", f.read(), re.S)
    return [(f"docs/operations.md block {i}", re.sub(r"\s+", " ", b).strip()) for i, b in enumerate(blocks)]


def grafana_to_promql(expr):
    for var, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    left = re.findall(r"\$\{?[a-zA-Z_]+", expr)
    if left:
        raise AssertionError(f"unknown Grafana variable {left} in {expr}")
    return expr


PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and",
                   "or", "unless", "inf", "nan"}


def metric_names(expr):
    """The metric names a PromQL expression selects: identifiers outside strings, label matchers, grouping
    lists and ranges that are neither functions (followed by "(") nor keywords. `{__name__=...}` selectors
    are refused: they would hide a name from this check."""
    if "__name__" in expr:
        raise AssertionError(f"a __name__ matcher hides the metric name from this check: {expr}")
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    s = re.sub(r"\{[^{}]*\}", "", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", "", s)  # ranges and subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", s):
        word, rest = m.group(0), s[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in PROMQL_KEYWORDS:
            continue
        if m.start() > 0 and (s[m.start() - 1].isdigit() or s[m.start() - 1] == "."):
            continue  # the exponent or suffix of a number (1e3, 5m)
        names.add(word)
    return names


def served_families(metrics_text):
    """{sample name: family} for every family /metrics declares (# TYPE), whether or not it has a sample
    yet: a histogram serves <name>_bucket, _sum and _count, a counter or gauge its own name."""
    out = {}
    for line in metrics_text.splitlines():
        m = re.match(r"# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)", line)
        if m is None:
            continue
        name, kind = m.groups()
        if kind in ("histogram", "summary"):
            for suffix in ("_bucket", "_sum", "_count") if kind == "histogram" else ("", "_sum", "_count"):
                out[name + suffix] = name
        else:
            out[name] = name
    return out


def check_promql(exprs, tmp):
    """Runs `promtool check rules` on a rule file with one recording rule per expression; returns promtool's
    result. The expressions were already turned from Grafana's into PromQL."""
    path = os.path.join(tmp, "exprs.rules.yaml")
    with open(path, "w") as f:
        yaml.safe_dump({"groups": [{"name": "exprs", "rules": [
            {"record": f"ops_check:expr_{i}", "expr": e} for i, e in enumerate(exprs)]}]}, f)
    return promtool("check", "rules", path)


def github_anchors(markdown):
    """The anchors GitHub gives the headings of a markdown file (lower case, punctuation dropped, spaces to
    dashes), for the runbook links."""
    anchors = set()
    for line in markdown.splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            text = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


# ---- chartrender ------------------------------------------------------------------------------------

_chartrender = None


def chartrender():
    """Builds h-chart's renderer (GOPATH mode, Debian's Sprig and yaml.v3) once; skips without it or go."""
    global _chartrender
    if _chartrender is None:
        if not os.path.isfile(os.path.join(CHARTRENDER, "render.go")):
            raise unittest.SkipTest("tests/integration/chartrender (the chart's renderer, issue 12 section 2) "
                                    "is not in this tree")
        go = os.environ.get("GO_BIN") or shutil.which("go")
        if not go:
            raise unittest.SkipTest("`go` is not installed (Debian's golang-go)")
        out = tempfile.mkdtemp(prefix="prescale-chartrender-")
        env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode", GOFLAGS="", CGO_ENABLED="0",
                   GOCACHE=os.path.join(out, "gocache"), GOPROXY="off")
        r = subprocess.run([go, "build", "-o", os.path.join(out, "chartrender"), "."], cwd=CHARTRENDER, env=env,
                           capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError(f"go build of {CHARTRENDER} failed:\n{r.stdout}{r.stderr}")
        import atexit
        atexit.register(shutil.rmtree, out, True)
        _chartrender = os.path.join(out, "chartrender")
    return _chartrender


def render_chart_text(values, name="prescale", namespace="prescale"):
    """The chart rendered as `helm template` would, with values over values.yaml: the text."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(values, f)
    try:
        r = subprocess.run([chartrender(), "-chart", CHART, "-f", f.name, "-name", name, "-namespace", namespace],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        os.unlink(f.name)
    if r.returncode != 0:
        raise AssertionError(f"chartrender failed: {r.stderr}")
    return r.stdout


def render_chart(values, name="prescale", namespace="prescale"):
    """The chart's objects, parsed."""
    return [d for d in yaml.safe_load_all(render_chart_text(values, name, namespace)) if d]


def deploy_rules_text():
    """deploy/prometheus-rules.yaml as it should be: the PrometheusRule's spec rendered with k8s/'s values
    (templates/prometheusrule.yaml indents the file's text by two spaces under spec:)."""
    text = render_chart_text(K8S_VALUES)
    doc = next(d for d in text.split("\n---\n") if "\nkind: PrometheusRule\n" in d)
    spec = doc.split("\nspec:\n", 1)[1]
    return "".join(line[2:] if line.startswith("  ") else line.lstrip(" ")
                   for line in spec.splitlines(keepends=True)).rstrip("\n") + "\n"


def one_of_kind(objects, kind):
    found = [o for o in objects if o.get("kind") == kind]
    if len(found) != 1:
        raise AssertionError(f"{len(found)} objects of kind {kind}, expected 1")
    return found[0]


# ---- the tests ----------------------------------------------------------------------------------------


class Rules(unittest.TestCase):
    def test_promtool_check_rules(self):
        r = promtool("check", "rules", RULES)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(f"SUCCESS: {len(rules_of(load_rules()))} rules found", r.stdout)

    def test_promtool_unit_tests(self):
        """Each alert fires on its input and stays silent on the rest (the cases are in the test file)."""
        r = promtool("test", "rules", RULES_TESTS)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("SUCCESS", r.stdout)

    def test_every_alert_has_a_firing_and_a_silent_case(self):
        tests = load_rules(RULES_TESTS)["tests"]
        firing, silent = set(), set()
        for t in tests:
            for c in t.get("alert_rule_test", []):
                (firing if c.get("exp_alerts") else silent).add(c["alertname"])
        alerts = {r["alert"] for r in rules_of(load_rules())}
        self.assertEqual(alerts - firing, set(), "alerts no test makes fire")
        self.assertEqual(alerts - silent, set(), "alerts no test checks stay silent")

    def test_a_wrong_threshold_fails_the_unit_tests(self):
        """The unit tests can fail: the rules with PrescaleTargetStale's threshold moved from 300 s to 900 s
        no longer fire where the tests expect it."""
        with tempfile.TemporaryDirectory() as tmp:
            with open(RULES) as f:
                text = f.read()
            self.assertIn("prescale_target_last_success_timestamp_seconds{job=\"prescale\"} > 300", text)
            os.makedirs(os.path.join(tmp, "deploy"))
            os.makedirs(os.path.join(tmp, "tests", "integration", "operations"))
            with open(os.path.join(tmp, "deploy", "prometheus-rules.yaml"), "w") as f:
                f.write(text.replace("_seconds{job=\"prescale\"} > 300", "_seconds{job=\"prescale\"} > 900"))
            shutil.copy(RULES_TESTS, os.path.join(tmp, "tests", "integration", "operations"))
            r = promtool("test", "rules", os.path.join(tmp, "tests", "integration", "operations",
                                                       os.path.basename(RULES_TESTS)))
            self.assertNotEqual(r.returncode, 0, r.stdout)
            self.assertIn("PrescaleTargetStale", r.stdout + r.stderr)

    def test_annotations_and_runbook_anchors(self):
        with open(OPERATIONS_MD) as f:
            anchors = github_anchors(f.read())
        for rule in rules_of(load_rules()):
            with self.subTest(alert=rule["alert"]):
                ann = rule["annotations"]
                self.assertTrue(ann.get("summary") and ann.get("description"), ann)
                self.assertIn(rule["labels"]["severity"], ("critical", "warning", "info"))
                url = ann["runbook_url"]
                self.assertEqual(url, "docs/operations.md#" + rule["alert"].lower())
                self.assertIn(rule["alert"].lower(), anchors, f"no heading {rule['alert']} in docs/operations.md")


class Chart(unittest.TestCase):
    def test_deploy_rules_are_the_chart_rules_with_k8s_values(self):
        """deploy/prometheus-rules.yaml is generated: the chart's PrometheusRule spec with k8s/'s values."""
        rule = one_of_kind(render_chart(K8S_VALUES), "PrometheusRule")
        self.assertEqual(rule["apiVersion"], "monitoring.coreos.com/v1")
        self.assertEqual(rule["spec"], load_rules(),
                         "deploy/prometheus-rules.yaml differs from charts/prescale/files/prometheus-rules.yaml "
                         "rendered with k8s/'s values: python3 tests/integration/test_operations.py "
                         "--write-deploy-rules")
        with open(RULES) as f:
            self.assertEqual(f.read(), deploy_rules_text(), "the same, byte for byte (comments included)")

    def test_thresholds_and_selector_come_from_values(self):
        values = {"prometheusRule": {"enabled": True, "alerts": {
            "stale": {"seconds": 60, "for": "7m"}, "grpcErrors": {"ratio": 0.25, "window": "2m"}}}}
        spec = one_of_kind(render_chart(values, name="shop", namespace="ops"), "PrometheusRule")["spec"]
        by_name = {r["alert"]: r for r in rules_of(spec)}
        stale = by_name["PrescaleTargetStale"]
        self.assertEqual(stale["expr"],
                         'time() - prescale_target_last_success_timestamp_seconds{job="shop-prescale-http"} > 60')
        self.assertEqual(stale["for"], "7m")
        self.assertIn("> 0.25", by_name["PrescaleGrpcErrors"]["expr"])
        self.assertIn("[2m]", by_name["PrescaleGrpcErrors"]["expr"])
        self.assertEqual(by_name["PrescaleNotReady"]["expr"],
                         'kube_deployment_status_replicas_unavailable{namespace="ops",deployment="shop-prescale"} > 0')
        # With the PodMonitor alone, the job is <namespace>/<PodMonitor's name>.
        spec = one_of_kind(render_chart({"prometheusRule": {"enabled": True}, "podMonitor": {"enabled": True}},
                                        name="shop", namespace="ops"), "PrometheusRule")["spec"]
        self.assertEqual({r["alert"]: r for r in rules_of(spec)}["PrescaleDown"]["expr"],
                         'up{job="ops/shop-prescale"} == 0')
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "rules.yaml")
            with open(path, "w") as f:
                yaml.safe_dump(spec, f)
            r = promtool("check", "rules", path)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_dashboard_configmap(self):
        objects = render_chart({"grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "prescale"}}})
        cm = [o for o in objects if o.get("kind") == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard")]
        self.assertEqual(len(cm), 1)
        cm = cm[0]
        self.assertEqual(cm["metadata"]["labels"]["grafana_dashboard"], "1")
        self.assertEqual(cm["metadata"]["annotations"], {"grafana_folder": "prescale"})
        with open(DASHBOARD) as f:
            self.assertEqual(cm["data"]["prescale-dashboard.json"], f.read().rstrip("\n"))
        # Off by default, as the PrometheusRule.
        kinds = {(o["kind"], o["metadata"]["name"]) for o in render_chart({})}
        self.assertNotIn(("ConfigMap", "prescale-dashboard"), kinds)
        self.assertFalse(any(k == "PrometheusRule" for k, _ in kinds))


class Dashboard(unittest.TestCase):
    def test_chart_copy_is_the_same_file(self):
        with open(DASHBOARD, "rb") as a, open(DASHBOARD_CHART, "rb") as b:
            self.assertEqual(a.read(), b.read(), "charts/prescale/files/prescale-dashboard.json differs from "
                                                 "deploy/grafana/prescale-dashboard.json: copy it")

    def test_structure(self):
        dash = load_dashboard()
        self.assertEqual(dash["schemaVersion"], 39)  # Grafana 10.3 to 11.2; later versions migrate it
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        self.assertEqual(variables["datasource"]["type"], "datasource")
        self.assertEqual(variables["datasource"]["query"], "prometheus")
        self.assertEqual(variables["target"]["type"], "query")
        self.assertIn("label_values(", variables["target"]["definition"])
        ids = [p["id"] for p in all_panels(dash)]
        self.assertEqual(len(ids), len(set(ids)), "panel ids repeat")
        for p in all_panels(dash):
            with self.subTest(panel=p["title"]):
                g = p["gridPos"]
                self.assertLessEqual(g["x"] + g["w"], 24)
                if p["type"] != "row":
                    self.assertEqual(p["datasource"], {"type": "prometheus", "uid": "${datasource}"})
                    for t in p["targets"]:
                        self.assertEqual(t["datasource"]["uid"], "${datasource}")
        # What the issue asks to see, each in some expression.
        exprs = " ".join(e for _, e in dashboard_exprs(dash))
        for name in ("prescale_target_observed", "prescale_target_predicted", "prescale_target_quantile_margin",
                     "prescale_target_model_info", "prescale_target_period_seconds", "prescale_target_model_error",
                     "prescale_refresh_duration_seconds_bucket", "prescale_grpc_requests_total"):
            self.assertIn(name, exprs)
        self.assertIn("/ max by (namespace, name, metric) (prescale_target_threshold", exprs)  # the replicas

    def test_every_expression_parses(self):
        """Every PromQL of the dashboard (Grafana's variables replaced), of the rules and of docs/operations.md
        parses: promtool checks them as recording rules. A broken one is refused by the same check."""
        self.assertEqual(len(docs_exprs()), 2)
        exprs = [grafana_to_promql(e) for _, e in dashboard_exprs(load_dashboard())]
        exprs += [r["expr"] for r in rules_of(load_rules())]
        exprs += [e for _, e in docs_exprs()]
        with tempfile.TemporaryDirectory() as tmp:
            r = check_promql(exprs, tmp)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn(f"SUCCESS: {len(exprs)} rules found", r.stdout)
            r = check_promql(exprs + ["sum by (le (rate(prescale_refresh_duration_seconds_bucket[1m]))"], tmp)
            self.assertNotEqual(r.returncode, 0, r.stdout)

    def test_metric_name_extraction(self):
        """The extractor the live test relies on: names, not functions, labels, keywords or numbers."""
        self.assertEqual(metric_names(
            'histogram_quantile(0.99, sum by (le, method) (rate(a_bucket{job=~"x",code!="OK"}[5m])))'
            ' / ignoring (code) group_left b_total{m="c d"} > 1e3 unless on (job) c:recorded offset 5m'),
            {"a_bucket", "b_total", "c:recorded"})
        self.assertEqual(metric_names("time() - up{job=\"prescale\"} > 300"), {"up"})


class Live(unittest.TestCase):
    """A real prescale on the harness' Prometheus, and a second real Prometheus that scrapes prescale every
    second as job "prescale" and evaluates deploy/prometheus-rules.yaml every second."""

    env = None
    rules_prom = None

    @classmethod
    def setUpClass(cls):
        cls.env, cls.pb2, cls.pb2_grpc = harness.start_module_env()
        try:
            cls.rules_prom = cls.start_rules_prometheus(cls.env)
        except BaseException:
            harness.stop_module_env(cls.env)
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.rules_prom is not None:
            cls.rules_prom[0].stop()
        harness.stop_module_env(cls.env)

    @staticmethod
    def start_rules_prometheus(env):
        port = harness.free_port()
        config = os.path.join(env.tmp, "rules-prometheus.yml")
        with open(config, "w") as f:
            yaml.safe_dump({"global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                                       "evaluation_interval": "1s"},
                            "rule_files": [RULES],
                            "scrape_configs": [{"job_name": "prescale", "static_configs": [
                                {"targets": [f"127.0.0.1:{env.http_port}"]}]}]}, f)
        argv = [harness.PROMETHEUS_BIN, f"--config.file={config}",
                f"--storage.tsdb.path={os.path.join(env.tmp, 'rules-tsdb')}",
                f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
        proc = harness.Process("rules-prometheus", argv, os.path.join(env.tmp, "rules-prometheus.log"))
        harness.wait_http_ok(proc, f"http://127.0.0.1:{port}/-/ready", 60, "the rules' Prometheus /-/ready")
        return proc, f"http://127.0.0.1:{port}"

    def get_metrics(self, name, **metadata):
        """One GetMetrics for target default/<name>; returns the gRPC status code's name."""
        import grpc
        channel = harness.grpc_channel(self.env.grpc_addr)
        try:
            stub = self.pb2_grpc.ExternalScalerStub(channel)
            ref = harness.scaled_ref(self.pb2, name=name, **harness.metadata(**metadata))
            stub.GetMetrics(self.pb2.GetMetricsRequest(scaledObjectRef=ref, metricName="prescale"), timeout=60)
            return "OK"
        except grpc.RpcError as e:
            return e.code().name
        finally:
            channel.close()

    def rules_query(self, query):
        url = self.rules_prom[1] + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
        status, body, _ = harness.http_get(url)
        self.assertEqual(status, 200, body)
        return json.loads(body)["data"]["result"]

    def alerts(self):
        """{(alertname, target name or method): state} of the rules' Prometheus now."""
        status, body, _ = harness.http_get(self.rules_prom[1] + "/api/v1/alerts")
        self.assertEqual(status, 200)
        out = {}
        for a in json.loads(body)["data"]["alerts"]:
            lb = a["labels"]
            out[(lb["alertname"], lb.get("name") or lb.get("method") or lb.get("instance"))] = a["state"]
        return out

    def test_every_metric_is_served(self):
        self.assertEqual(self.get_metrics("web", model="auto", period="auto"), "OK")
        status, body, _ = harness.http_get(self.env.http_url + "/metrics")
        self.assertEqual(status, 200)
        served = served_families(body)
        samples = harness.parse_metrics(body)
        # The per-target families have their series now (not only a # TYPE line).
        for family in ("prescale_target_observed", "prescale_target_predicted", "prescale_target_model_info",
                       "prescale_target_model_error", "prescale_target_last_success_timestamp_seconds"):
            self.assertTrue(any(name == family for name, _ in samples), family)
        used = {}
        sources = [("dashboard " + w, grafana_to_promql(e)) for w, e in dashboard_exprs(load_dashboard())]
        sources += [("alert " + r["alert"], r["expr"]) for r in rules_of(load_rules())]
        sources += docs_exprs()
        for where, expr in sources:
            for name in metric_names(expr):
                used.setdefault(name, []).append(where)
        self.assertGreater(len(used), 20)
        missing = {n: w for n, w in used.items()
                   if n not in served and n not in NOT_PRESCALE_METRICS}
        self.assertEqual(missing, {}, "metrics the dashboard or the rules name that prescale does not serve")
        self.assertEqual(set(NOT_PRESCALE_METRICS) - set(used), set(), "allowlisted but unused")

    def test_rules_match_real_series(self):
        """The rules' expressions on prescale's real series: a target whose Prometheus refuses connections
        (PrescaleFirstLoadFailing, and PrescaleGrpcErrors for GetMetrics UNAVAILABLE) and a target whose
        history is shorter than two periods (PrescaleTargetFallback) make their alerts pending (their `for`
        is minutes; pending means the expression holds); a healthy target and a healthy replica make none."""
        self.assertEqual(self.get_metrics("healthy"), "OK")
        # 75 minutes of history against a 1h period: fewer than two periods, the seasonal models wait.
        self.assertEqual(self.get_metrics("young", model="auto", period="1h"), "OK")
        for _ in range(3):
            self.assertEqual(self.get_metrics("unreachable", serverAddress="http://127.0.0.1:9"), "UNAVAILABLE")
        # A (method, code) series appears at its first call, so rate() counts the calls after Prometheus has
        # seen it: more failures once it has.
        harness.wait_until(lambda: self.rules_query('prescale_grpc_requests_total{code="UNAVAILABLE"}'), 30,
                           interval=0.25, what="the UNAVAILABLE series scraped by the rules' Prometheus")
        for _ in range(3):
            self.assertEqual(self.get_metrics("unreachable", serverAddress="http://127.0.0.1:9"), "UNAVAILABLE")
        want = {("PrescaleFirstLoadFailing", "unreachable"), ("PrescaleTargetFallback", "young"),
                ("PrescaleGrpcErrors", "GetMetrics")}
        harness.wait_until(lambda: want <= set(self.alerts()), 90, interval=0.5,
                           what=f"alerts {sorted(want)} pending on the rules' Prometheus")
        alerts = self.alerts()
        for key in want:
            self.assertIn(alerts[key], ("pending", "firing"), key)
        for key in alerts:
            self.assertNotIn("healthy", key, alerts)
        self.assertFalse(any(name in ("PrescaleDown", "PrescaleAbsent") for name, _ in alerts), alerts)


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-deploy-rules"]:
        # Regenerates deploy/prometheus-rules.yaml from the chart after an edit of its rules or defaults.
        with open(RULES, "w") as f:
            f.write(deploy_rules_text())
        sys.exit(0)
    unittest.main()
