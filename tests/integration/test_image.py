"""The container image: built by scripts/image.sh (`make image`) with podman and run the way
k8s/base/prescale.yaml runs it.

The image is built once per run (setUpClass), through the same script a user runs, so podman's layer cache
makes a rerun cost seconds and a source change one compile; the first build on a machine also makes the
Debian base images with mmdebstrap (minutes). Without a working podman every test FAILS and says why: a
skipped image test would hide an image nobody built.

The pod is rebuilt from the manifest: the Deployment's container args, its user, a read-only root
(without podman's default tmpfs mounts, which a pod does not have), all capabilities dropped, no new
privileges, and the Secret's config.yaml mounted read-only as the kubelet mounts it (group 65532, mode
0440). Like a pod, the container has a network namespace of its own with only loopback (--network none),
so its listen addresses stay the manifest's 0.0.0.0:6000 and 0.0.0.0:8080. What the pod would reach over
the cluster network is put into that namespace: a real Prometheus (harness's backfilled history, running
in the container's namespace through nsenter, at 127.0.0.1:9090 as the manifest's URL is rewritten to), the
health checks (made from this test's python through nsenter, as the kubelet's probes would), and
`prescale probe` run from a second container of the image joined to the first one's namespace
(--network container:...), as a sidecar would. No traffic leaves those namespaces.

Needs root, as `make test` runs (rootful podman; nsenter into the container's namespace).

Run: /usr/bin/python3 -m unittest -v tests/integration/test_image.py
"""

import datetime
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

REPO = h.REPO_ROOT
SCRIPT = os.path.join(REPO, "scripts", "image.sh")
MANIFEST = os.path.join(REPO, "k8s", "base", "prescale.yaml")
SECRET = os.path.join(REPO, "k8s", "base", "prescale-prometheus-config.yaml")
# The budget of the image, in podman's units (its "MB" is 10^6 bytes).
MAX_IMAGE_BYTES = 100 * 1000 * 1000
# A cold build makes two base images and compiles on a busy machine: generous, and far below it is normal.
BUILD_TIMEOUT = 1800
PROM_IN_POD = "http://127.0.0.1:9090"  # the manifest's Prometheus URL, moved into the pod's namespace
READY_TIMEOUT = 90.0
PROBE_TIMEOUT = 60.0


def podman(*args, timeout=120, check=True):
    r = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited with {r.returncode}:\n{r.stderr[-3000:]}")
    return r


def meson_version():
    with open(os.path.join(REPO, "meson.build")) as f:
        for line in f:
            if line.startswith("  version: '"):
                return line.split("'")[1]
    raise AssertionError("no version in meson.build")


def manifest_pod():
    """(pod spec, prescale container) of the prescale Deployment in k8s/base/prescale.yaml."""
    with open(MANIFEST) as f:
        for d in yaml.safe_load_all(f):
            if d and d["kind"] == "Deployment" and d["metadata"]["name"] == "prescale":
                spec = d["spec"]["template"]["spec"]
                return spec, next(c for c in spec["containers"] if c["name"] == "prescale")
    raise AssertionError(f"no prescale Deployment in {MANIFEST}")


def secret_files():
    with open(SECRET) as f:
        d = next(d for d in yaml.safe_load_all(f) if d and d["kind"] == "Secret")
    return d["stringData"]


class TestImage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if shutil.which("podman") is None:
            raise AssertionError("podman is not installed, so the image cannot be built or run: install podman, "
                                 "runc and mmdebstrap (scripts/deps.sh)")
        if os.geteuid() != 0:
            raise AssertionError("the image test runs podman rootful and enters the container's network namespace "
                                 "with nsenter: run it as root, as `make test` is run")
        info = subprocess.run(["podman", "info"], capture_output=True, text=True, timeout=120)
        if info.returncode != 0:
            raise AssertionError(f"podman does not work on this machine (`podman info` exited with "
                                 f"{info.returncode}): {info.stderr.strip()[-2000:]}")
        cls.version = meson_version()
        cls.image = f"prescale:{cls.version}"
        t0 = time.monotonic()
        r = subprocess.run(["bash", SCRIPT], capture_output=True, text=True, timeout=BUILD_TIMEOUT,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise AssertionError(f"scripts/image.sh exited with {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        print(f"\nimage built (or found in podman's cache) in {time.monotonic() - t0:.0f} s", file=sys.stderr)
        # The options this host needs for every container (runtime, rlimits), as the script says.
        cls.run_args = subprocess.run(["bash", SCRIPT, "run-args"], capture_output=True, text=True, timeout=30,
                                      check=True).stdout.split()
        cls.pod_spec, cls.container = manifest_pod()

    def setUp(self):
        self.names = []  # containers this test started: removed in tearDown, whatever happened
        self.prometheus = None
        self.tmp = tempfile.mkdtemp(prefix="prescale-image-")

    def tearDown(self):
        if self.prometheus is not None:
            self.prometheus.stop()
        for name in reversed(self.names):
            podman("rm", "--force", "--time", "0", name, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------------------

    def locked_down(self):
        """podman options for the manifest's pod and container security contexts."""
        pod, ctr = self.pod_spec["securityContext"], self.container["securityContext"]
        self.assertEqual(ctr["capabilities"], {"drop": ["ALL"]})
        self.assertIs(ctr["readOnlyRootFilesystem"], True)
        self.assertIs(ctr["allowPrivilegeEscalation"], False)
        return ["--user", f"{pod['runAsUser']}:{pod['runAsGroup']}",
                # A pod's read-only root has no writable /tmp or /run: neither has this container.
                "--read-only", "--read-only-tmpfs=false",
                "--cap-drop=ALL", "--security-opt", "no-new-privileges"]

    def run_image(self, *args, entrypoint=None, network="none", timeout=120, as_root=False):
        """A container of the image run to its end; returns the CompletedProcess. Locked down as the
        manifest's, unless as_root (to look at root-only files of the image: still read-only)."""
        name = f"prescale-test-{uuid.uuid4().hex[:12]}"
        self.names.append(name)
        ep = ["--entrypoint", entrypoint] if entrypoint else []
        mode = ["--user", "0:0", "--read-only"] if as_root else self.locked_down()
        return podman("run", "--rm", "--name", name, *self.run_args, *mode, f"--network={network}",
                      *ep, self.image, *args, timeout=timeout, check=False)

    def netns_get(self, pid, url, timeout=5):
        """GET url from inside the network namespace of host process pid: (status, body) or (None, error)."""
        code = ("import sys, urllib.request, urllib.error\n"
                "try:\n"
                "    r = urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])); print(r.status); "
                "print(r.read().decode())\n"
                "except urllib.error.HTTPError as e:\n"
                "    print(e.code); print(e.read().decode())\n")
        r = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, "-c", code, url, str(timeout)],
                           capture_output=True, text=True, timeout=timeout + 30)
        if r.returncode != 0:
            return None, r.stderr.strip()[-500:]
        status, _, body = r.stdout.partition("\n")
        return int(status), body

    def wait_get_200(self, pid, url, timeout, what):
        last = [None]

        def ok():
            status, body = self.netns_get(pid, url)
            last[0] = (status, body[:300])
            return status == 200

        try:
            h.wait_until(ok, timeout, interval=0.5, what=what)
        except Exception as e:  # noqa: BLE001 - add what was seen last and the container's log
            raise AssertionError(f"{e}; last answer: {last[0]}") from None

    def start_pod(self):
        """The manifest's prescale in a container of its own namespace, its Secret mounted, and a real
        Prometheus with harness's history beside it. Returns (container name, its host pid)."""
        files = secret_files()
        secret_dir = os.path.join(self.tmp, "prometheus-secret")
        os.mkdir(secret_dir)
        os.chmod(secret_dir, 0o755)
        gid = self.pod_spec["securityContext"]["fsGroup"]
        for key, text in files.items():
            if key == "config.yaml":  # its server is the manifest's Prometheus: moved into the pod
                text = text.replace("http://prometheus.prescale.svc.cluster.local:9090", PROM_IN_POD)
            path = os.path.join(secret_dir, key)
            with open(path, "w") as f:
                f.write(text)
            os.chown(path, 0, gid)  # the kubelet's ownership with fsGroup, and the volume's defaultMode
            os.chmod(path, 0o440)
        [mount] = [m for m in self.container["volumeMounts"] if m["name"] == "prometheus-config"]
        self.assertIs(mount.get("readOnly"), True)

        args = []
        for a in self.container["args"]:
            if a.startswith("--prometheus-url="):
                a = f"--prometheus-url={PROM_IN_POD}"
            args.append(a)
        self.assertIn("--grpc-listen=0.0.0.0:6000", args)
        self.assertIn("--http-listen=0.0.0.0:8080", args)

        name = f"prescale-test-{uuid.uuid4().hex[:12]}"
        self.names.append(name)
        # --timeout: podman kills the container after that long even if this test process was killed
        # before its tearDown (nothing is left running).
        podman("run", "--detach", "--name", name, "--timeout", "900", *self.run_args, *self.locked_down(),
               "--network=none", "--volume", f"{secret_dir}:{mount['mountPath']}:ro", self.image, *args)
        pid = int(podman("inspect", "--format", "{{.State.Pid}}", name).stdout.strip())
        self.assertGreater(pid, 0)

        # Prometheus in the pod's network namespace, with 75 min of history ending in the future (no live
        # scrape needed: every query in the test finds backfilled samples, harness's model holds exactly).
        tsdb = os.path.join(self.tmp, "tsdb")
        end = h.align(time.time()) + 900 + h.SAMPLE_LAG
        om = os.path.join(self.tmp, "backfill.om")
        h.write_backfill(om, end - 75 * 60, end)
        with open(os.path.join(self.tmp, "promtool.log"), "ab") as log:
            h.create_blocks(om, tsdb, log)
        cfg = os.path.join(self.tmp, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  evaluation_interval: 15s\n")
        self.prometheus = h.Process("prometheus", [
            "nsenter", f"--net=/proc/{pid}/ns/net", h.PROMETHEUS_BIN, f"--config.file={cfg}",
            f"--storage.tsdb.path={tsdb}", "--web.listen-address=127.0.0.1:9090",
            "--storage.tsdb.retention.time=1d", "--log.level=warn"], os.path.join(self.tmp, "prometheus.log"))
        self.wait_get_200(pid, PROM_IN_POD + "/-/ready", 60, "Prometheus /-/ready in the pod's namespace")
        return name, pid

    def container_log(self, name):
        r = podman("logs", name, check=False)
        return r.stdout + r.stderr

    # -- the tests -------------------------------------------------------------------------------------

    def test_tags_labels_and_size(self):
        latest = podman("image", "inspect", "prescale:latest").stdout
        [info] = json.loads(podman("image", "inspect", self.image).stdout)
        self.assertEqual(json.loads(latest)[0]["Id"], info["Id"], "prescale:latest is prescale:<version>")
        labels = info["Config"]["Labels"]
        self.assertEqual(labels["org.opencontainers.image.version"], self.version)
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        if head:  # this build's revision, not the one of a cached LABEL step (scripts/image.sh says why)
            self.assertIn(labels["org.opencontainers.image.revision"], (head, head + "-dirty"))
        created = datetime.datetime.strptime(labels["org.opencontainers.image.created"], "%Y-%m-%dT%H:%M:%SZ")
        self.assertLess(abs(created - datetime.datetime.utcnow()), datetime.timedelta(hours=1), "this build's date")
        self.assertEqual(info["Config"]["User"], "65532:65532")
        self.assertEqual(info["Config"]["Entrypoint"], ["prescale"])
        size = int(podman("image", "inspect", "--format", "{{.Size}}", self.image).stdout)
        print(f"\nimage size: {size / 1e6:.1f} MB", file=sys.stderr)
        self.assertLessEqual(size, MAX_IMAGE_BYTES, f"the image is {size / 1e6:.1f} MB, over the 100 MB budget")

    def test_binaries_packages_and_no_apt_leftovers(self):
        for binary in ("prescale", "prescale-demo-app"):
            with self.subTest(binary=binary):
                r = self.run_image("--version", entrypoint=binary)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn(self.version, r.stdout + r.stderr)
        # The runtime libraries, TLS's and the config file's included, and the system CAs.
        pkgs = ["libuv1", "libnghttp2-14", "libprotobuf-c1", "libcjson1", "libyaml-0-2", "libssl3", "ca-certificates"]
        r = self.run_image("-W", "-f", "${Package} ${db:Status-Abbrev}\n", *pkgs, entrypoint="dpkg-query")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(r.stdout.split("\n")[:-1]), sorted(f"{p} ii " for p in pkgs))
        # OpenSSL's default CA file (what prescale loads for https without a CA of its own) is the bundle.
        r = self.run_image("-s", "/usr/lib/ssl/cert.pem", entrypoint="test")
        self.assertEqual(r.returncode, 0, "no CA bundle at /usr/lib/ssl/cert.pem")
        # No apt caches or package lists in the image (apt's partial/ directories are root's).
        r = self.run_image("/var/cache/apt", "/var/lib/apt/lists", "-type", "f", "(", "-name", "*.bin", "-o",
                           "-path", "/var/lib/apt/lists/*", ")", entrypoint="find", as_root=True)
        self.assertEqual((r.returncode, r.stdout), (0, ""), r.stderr)

    def test_runs_as_the_manifest_says(self):
        name, pid = self.start_pod()
        # Readiness as the kubelet asks for it: polled with a generous bound.
        self.wait_get_200(pid, "http://127.0.0.1:8080/readyz", READY_TIMEOUT, "prescale /readyz in the container")
        status, body = self.netns_get(pid, "http://127.0.0.1:8080/healthz")
        self.assertEqual(status, 200, body)
        top = podman("top", name, "user", "group", "comm").stdout.split("\n")[1:]
        self.assertEqual([line.split() for line in top if line.strip()], [["65532", "65532", "prescale"]])
        log = self.container_log(name)
        self.assertIn("/etc/prescale/prometheus/config.yaml", log, "the mounted --prometheus-config was read")
        for line in log.splitlines():  # --log-format=json: every line one JSON object
            json.loads(line)

        # prescale probe from a second container of the image, in the first one's namespace.
        metadata = dict(h.TEST_METADATA)
        argv = ["probe", "--addr", "127.0.0.1:6000", "--name", "web", "--namespace", "image", "--json"]
        for k, v in metadata.items():
            argv += ["-m", f"{k}={v}"]
        before = time.time()
        r = self.run_image(*argv, network=f"container:{name}", timeout=PROBE_TIMEOUT)
        after = time.time()
        self.assertEqual(r.returncode, 0, f"stdout={r.stdout!r} stderr={r.stderr!r}\n{self.container_log(name)}")
        out = json.loads(r.stdout)
        self.assertEqual(out["metricSpecs"][0], {"metricName": "prescale", "targetSize": 10, "targetSizeFloat": 10})
        [mv] = out["metricValues"]
        # The seasonal forecast over the real Prometheus's history, exactly (harness's model).
        want = {h.seasonal_value(n) for n in h.candidate_slots(before, after)}
        self.assertTrue(any(h.close_to(mv["metricValueFloat"], w) for w in want),  # a float on the wire
                        f"{mv['metricValueFloat']} is none of {want}")
        self.assertEqual(mv["metricValue"], math.ceil(mv["metricValueFloat"]))
        self.assertIs(out["active"], True)

        # SIGTERM as the kubelet sends it (prescale is PID 1 in the container): a clean exit, well within
        # the manifest's terminationGracePeriodSeconds.
        grace = self.pod_spec["terminationGracePeriodSeconds"]
        podman("stop", "--time", str(grace), name, timeout=grace + 60)
        state = json.loads(podman("inspect", "--format", "{{json .State}}", name).stdout)
        self.assertEqual(state["ExitCode"], 0, self.container_log(name))
        self.assertFalse(state["Running"])


if __name__ == "__main__":
    unittest.main()
