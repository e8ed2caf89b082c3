"""The grpc-go reference client (tests/integration/grpcgo/keda_client.go, its messages in
tests/gopath/src/externalscaler/): built once per run
with Debian's Go and grpc-go in GOPATH mode (no module download, no network), and run as KEDA's external
scaler would call prescale. test_grpc_go.py uses it; a later performance suite can too (its -repeat/-concurrency mode).

    binary = build(tmpdir)                  # raises unittest.SkipTest when `go` is not installed
    out = run(binary, "127.0.0.1:PORT", "-ca", ca, metadata={...}, calls="spec,metrics")
    out["ok"], out["exit"], out["spec"], out["metrics"], out["active"], out["stream"], out["tls"]["alpn"]
    out["code"], out["message"]             # the gRPC status of the call that failed (out["call"])
"""

import json
import os
import shutil
import subprocess
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "grpcgo")  # package main: keda_client.go
# Debian's Go packages live in the first; GOPATH mode finds google.golang.org/grpc and its dependencies in
# it, and the messages (package externalscaler, shared with tests/bench/refscaler) in the second.
GOPATH = "/usr/share/gocode:" + os.path.normpath(os.path.join(HERE, "..", "gopath"))
DEBIAN_PACKAGES = "golang-go golang-google-grpc-dev"
BUILD_TIMEOUT_S = 600  # compiling grpc-go and its dependencies from source on a busy 2-core machine


def go_bin():
    return os.environ.get("GO_BIN") or shutil.which("go")


def build(outdir, source=SOURCE, name="keda_client"):
    """Builds keda_client (or the Go command in source, e.g. tests/bench/refscaler) into outdir and returns
    its path. Skips (unittest.SkipTest) without a `go` command; a failed build (e.g. golang-google-grpc-dev
    missing) is an error that shows the compiler's output."""
    go = go_bin()
    if not go:
        raise unittest.SkipTest(f"`go` is not installed: the grpc-go client needs Debian's {DEBIAN_PACKAGES}")
    out = os.path.join(outdir, name)
    # GOPATH mode only: GO111MODULE=off never consults a module proxy; the build cache is the run's own;
    # CGO_ENABLED=0: a static binary, no C toolchain involved.
    env = dict(os.environ, GO111MODULE="off", GOPATH=GOPATH, GOFLAGS="", CGO_ENABLED="0",
               GOCACHE=os.path.join(outdir, "gocache"), GOPROXY="off")
    # "." from inside the package's directory: GOPATH mode takes a relative path, not an absolute one.
    r = subprocess.run([go, "build", "-o", out, "."], cwd=source, env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    if r.returncode != 0:
        raise RuntimeError(f"go build of {source} failed (exit {r.returncode}; are Debian's {DEBIAN_PACKAGES} "
                           f"installed?):\n{r.stdout}{r.stderr}")
    return out


def run(binary, addr, *args, metadata=None, calls="spec,metrics,active,stream", timeout_s=30, name="web",
        namespace="default"):
    """Runs the client once; returns its JSON result with "exit" (0 ok, 1 a call failed, 2 usage) and
    "stderr" added. timeout_s is each call's deadline; the process gets a generous bound on top."""
    argv = [binary, "-addr", addr, "-calls", calls, "-timeout", f"{timeout_s}s", "-name", name,
            "-namespace", namespace, "-metadata", json.dumps(metadata or {}), *args]
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=4 * timeout_s + 60)
    lines = r.stdout.strip().splitlines()
    try:
        out = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise AssertionError(f"keda_client printed no JSON (exit {r.returncode}): stdout={r.stdout!r} "
                             f"stderr={r.stderr!r}") from None
    out["exit"], out["stderr"] = r.returncode, r.stderr
    return out
