"""grpc_bench.py's measuring part: one h2load or grpcblast run against one server, its latencies and the server's
CPU time, and the CPU pinning of --pin.

--pin puts every server under test on one core and the client on another (taskset(1), sched_setaffinity(2)), so
that each server gets the same single core whatever its threading: prescale and nghttpd run one thread;
grpc-go runs a thread per busy goroutine up to GOMAXPROCS and would otherwise take both cores, the client's
included. The affinity of every thread is checked after the rounds, not assumed.
"""

import math
import os
import re
import resource
import statistics
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CPU, CLIENT_CPU = 0, 1  # --pin: the servers' core and h2load's


def cpu_s(pid):
    """utime + stime of every thread of pid so far, in seconds (proc(5): fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def quantile(sorted_values, q):
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    i = max(0, math.ceil(q * len(sorted_values)) - 1)
    return sorted_values[i]


def idle_s(cpu):
    """Seconds core cpu has been idle so far (proc(5) /proc/stat: the idle and iowait columns)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                cols = line.split()
                return (int(cols[4]) + int(cols[5])) / CLK_TCK
    raise RuntimeError(f"no cpu{cpu} in /proc/stat")


def pin_prefix(cpu):
    """The argv prefix that starts a command on one core (the affinity is inherited by every thread it makes)."""
    return ["taskset", "-c", str(cpu)]


def pin_threads(pid, cpu):
    """Pins every thread pid has now to one core; threads it makes later inherit the affinity of their maker."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), {cpu})


def cpus_allowed(pid):
    """{thread id: its Cpus_allowed_list} of every thread of pid (proc(5))."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                out[tid] = re.search(r"^Cpus_allowed_list:\s*(\S+)", f.read(), re.M).group(1)
        except FileNotFoundError:
            pass  # the thread ended meanwhile
    return out


def check_pinned(name, pid, cpu):
    """Raises unless every thread of pid may run on cpu alone; returns the number of threads."""
    allowed = cpus_allowed(pid)
    wrong = {t: c for t, c in allowed.items() if c != str(cpu)}
    if wrong or not allowed:
        raise RuntimeError(f"{name}: threads not pinned to CPU {cpu}: {wrong or 'no thread'}")
    return len(allowed)


def run_measured(name, argv, url, timing, pid, client_cpu=None, server_cpu=None):
    """Runs a load client (argv + [url]) and returns (its output, the server's CPU seconds and server_cpu's
    idle seconds over the measured part). With ("D", D, W) timing the measured part starts after the W
    seconds of warm-up (read by the clock: a measurement window, not a synchronisation; the client starts
    its own clock a few milliseconds later), when the client's pinning is also checked."""
    c0 = cpu_s(pid)
    i0 = idle_s(server_cpu) if server_cpu is not None else 0
    proc = subprocess.Popen(argv + [url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if timing[0] == "D":
        time.sleep(timing[2])
        c0 = cpu_s(pid)
        i0 = idle_s(server_cpu) if server_cpu is not None else 0
        if client_cpu is not None and proc.poll() is None:
            check_pinned(name, proc.pid, client_cpu)
    try:
        out, _ = proc.communicate(timeout=600 if timing[0] == "n" else timing[1] + timing[2] + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise RuntimeError(f"{' '.join(argv)} {url} did not finish:\n{out}") from None
    cpu = cpu_s(pid) - c0
    idle = idle_s(server_cpu) - i0 if server_cpu is not None else None
    return out, cpu, idle, proc.returncode


def h2load(url, clients, streams, data, log_path, timing, pid, headers=(), client_cpu=None, server_cpu=None):
    """One h2load run; returns (req/s, requests measured, sorted request durations in ms, server CPU seconds
    over the measured part, h2load's own CPU seconds, warm-up included, the seconds server_cpu's core was
    idle over the measured part (None without server_cpu)). timing is ("n", N): N requests,
    connection set-up included, or ("D", D, W): W seconds of warm-up (connections set up, requests not
    counted) then D seconds measured. client_cpu: run h2load on that core alone (checked during the run)."""
    argv = ["h2load", "-c", str(clients), "-m", str(streams), "-t", "1", "-d", data, f"--log-file={log_path}"]
    if timing[0] == "n":
        argv += ["-n", str(timing[1])]
    else:
        argv += ["-D", f"{round(timing[1] * 1000)}ms", f"--warm-up-time={round(timing[2] * 1000)}ms"]
    for h in headers:
        argv += ["-H", h]
    if client_cpu is not None:
        argv = pin_prefix(client_cpu) + argv
    # h2load is the only child reaped during the run: the children's usage grows by its CPU time alone
    # (taskset execs h2load: the same process).
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out, cpu, idle, _ = run_measured("h2load", argv, url, timing, pid, client_cpu, server_cpu)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu_s = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    rps = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    ok = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", out)
    if not rps or not ok:
        raise RuntimeError("cannot read h2load's output:\n" + out)
    n = int(ok.group(1))
    if int(ok.group(4)) != 0 or int(ok.group(3)) != n or int(ok.group(2)) != n or n == 0:
        raise RuntimeError(f"h2load: {ok.group(3)} of {n} succeeded\n" + out)
    durations, cut = [], 0
    with open(log_path) as f:
        for line in f:
            cols = line.split("\t")
            if cols[1] == "200":
                durations.append(int(cols[2]) / 1000.0)
            elif cols[1] == "0" and timing[0] == "D":
                cut += 1  # ended as the measured time did: h2load counts it, logs it with status 0
            else:
                raise RuntimeError(f"h2load --log-file ({url}): a request ended with status {cols[1]}: {line!r}")
    os.unlink(log_path)
    if len(durations) + cut != n or cut > clients * streams:
        raise RuntimeError(f"h2load --log-file ({url}): {len(durations)} answered and {cut} cut off at the end, "
                           f"for {n} requests")
    durations.sort()
    return float(rps.group(1)), n, durations, cpu, client_cpu_s, idle


def grpcblast(binary, url, clients, streams, data, expected, grpc, timing, pid, headers=(), client_cpu=None,
              server_cpu=None):
    """One grpcblast run (tests/bench/grpcblast.c, a lighter client than h2load: every answer checked against
    the bytes in the file `expected`, with grpc its trailers' grpc-status 0 too); returns (req/s, requests
    measured, p50 ms, p99 ms, server CPU seconds over the measured part, grpcblast's own CPU seconds over
    the measured part (its getrusage), the seconds server_cpu's core was idle over the measured part).
    timing as h2load()'s. Raises unless grpcblast exits 0: every answer right, none missing."""
    argv = [binary, "-c", str(clients), "-m", str(streams), "-d", data, "-e", expected] + (["-g"] if grpc else [])
    argv += ["-n", str(timing[1])] if timing[0] == "n" else ["-D", f"{timing[1]:g}", "-W", f"{timing[2]:g}"]
    for h in headers:
        argv += ["-H", h]
    if client_cpu is not None:
        argv = pin_prefix(client_cpu) + argv
    out, cpu, idle, rc = run_measured("grpcblast", argv, url, timing, pid, client_cpu, server_cpu)
    m = re.search(r"^grpcblast: (.*)$", out, re.M)
    if rc != 0 or not m:
        raise RuntimeError(f"grpcblast ({url}) exited with {rc}:\n{out}")
    f = dict(kv.split("=", 1) for kv in m.group(1).split())
    n = int(f["ok"])
    if int(f["failed"]) != 0 or n == 0:
        raise RuntimeError(f"grpcblast ({url}): {f['failed']} failed, {n} measured:\n{out}")
    return float(f["rps"]), n, float(f["p50_ms"]), float(f["p99_ms"]), cpu, float(f["cpu_s"]), idle


class Server:
    """One server under test: where the client sends the POST, and the process whose CPU time is counted.
    expected: a file with the DATA bytes every answer must carry (grpcblast checks them; h2load cannot);
    grpc: the answers are gRPC's (grpcblast checks the trailers' grpc-status 0)."""

    def __init__(self, name, url, pid, headers=(), expected=None, grpc=False):
        self.name, self.url, self.pid, self.headers = name, url, pid, headers
        self.expected, self.grpc = expected, grpc
        # per load, per round: req/s, latencies, CPU per request, requests per CPU-second of the server,
        # the server's and h2load's CPU per second measured
        self.rps, self.p50, self.p99, self.cpu_us, self.per_cpu_s = {}, {}, {}, {}, {}
        self.busy, self.client_busy, self.core_idle, self.client_us = {}, {}, {}, {}
        self.measured = 0  # requests the client measured, every load and round

    def run(self, load, timing, reqfile, log_path, client_cpu=None, server_cpu=None, blast=None):
        """One round with h2load, or with grpcblast when blast is its binary."""
        if blast:
            rps, n, p50, p99, cpu, client, idle = grpcblast(
                blast, self.url, load[0], load[1], reqfile, self.expected, self.grpc, timing, self.pid,
                self.headers, client_cpu, server_cpu)
            # grpcblast's CPU is its own over the measured part alone
            span = timing[1] if timing[0] == "D" else n / rps
        else:
            rps, n, d, cpu, client, idle = h2load(self.url, load[0], load[1], reqfile, log_path, timing,
                                                  self.pid, self.headers, client_cpu, server_cpu)
            p50, p99 = quantile(d, 0.5), quantile(d, 0.99)
            # h2load's CPU over its whole run, warm-up included
            span = timing[1] + timing[2] if timing[0] == "D" else n / rps
        self.measured += n
        self.cpu_us.setdefault(load, []).append(cpu * 1e6 / n)
        # The server's capacity on one core: requests per second of its own CPU time, whatever the client
        # could drive (1 / CPU per request).
        self.per_cpu_s.setdefault(load, []).append(n / cpu if cpu > 0 else math.inf)
        measured_s = timing[1] if timing[0] == "D" else n / rps
        self.busy.setdefault(load, []).append(cpu / measured_s)
        if idle is not None:
            # The server's core left idle (--pin): near 0 with the server busy below 1, other processes took
            # the rest of the core; well above 0, the server waited for the client.
            self.core_idle.setdefault(load, []).append(idle / measured_s)
        # The client's CPU per second: near 1.0, the one-thread client is what limits the rate, not the
        # server. Its CPU per request: that over the rate (the same rate during the warm-up, for h2load).
        self.client_busy.setdefault(load, []).append(client / span)
        self.client_us.setdefault(load, []).append(client / span / rps * 1e6)
        self.rps.setdefault(load, []).append(rps)
        self.p50.setdefault(load, []).append(p50)
        self.p99.setdefault(load, []).append(p99)

    def med(self, what, load):
        return statistics.median(getattr(self, what)[load])
