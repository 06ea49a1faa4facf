"""The measuring half of bench/session.sh (which starts the bed and the
session): drives `pystrib --json session serve` (docs/events.md) and
ipyparallel side by side and prints bench/run's ROW lines.

    session.py PYSTRIB CONFIG SESSION REMOTE_ARGS...

Measures, each a median:
  cell     a trivial print on 2 ranks through serve, CELLS cells, against
           ipyparallel's DirectView.execute(block=True) on 2 local engines
  start    from `pystrib session start` to the end of the first cell, against
           ipyparallel's Cluster.start_and_connect_sync plus the first execute
  torch    a cell importing torch and doing a small matmul, run again in the
           session, against `pystrib run` of the same cell (runtime none)
  pull     256 MiB pulled through serve, against scp of the same bytes
           through the same sshd (throughput ratio)
  sync     in a second session, started with a project of SYNC_FILES small
           files: a trivial cell through serve after a one-file edit, against
           one with no edit (both pay the stat pass); the difference is what
           sending the edit costs (target <= 20 ms)
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

PYSTRIB, CONFIG, SESSION = sys.argv[1:4]
SSH = json.loads(os.environ["BENCH_SSH"])	# the scp/ssh argv prefix of the bed
CELLS = int(os.environ.get("CELLS", "50"))
PULL_MB = int(os.environ.get("PULL_MB", "256"))
SYNC_FILES = int(os.environ.get("SYNC_FILES", "200"))


def row(bench, measure, value, unit=""):
    print("ROW\t%s\t%s\t%s\t%s" % (bench, measure, value, unit), flush=True)


def say(*a):
    print("bench/session:", *a, file=sys.stderr, flush=True)


class Serve:
    """One `pystrib --json session serve` process: requests in, messages out."""

    def __init__(self, session):
        self.p = subprocess.Popen([PYSTRIB, "-c", CONFIG, "--json", "session", "serve", session],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.n = 0

    def send(self, msg):
        self.n += 1
        msg["id"] = "b%d" % self.n
        self.p.stdin.write(json.dumps(msg).encode() + b"\n")
        self.p.stdin.flush()
        return msg["id"]

    def until_done(self, rid):
        payload = 0
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise SystemExit("serve ended: exit %s" % self.p.wait())
            m = json.loads(line)
            if m.get("bytes"):
                left = m["bytes"]
                while left:
                    chunk = self.p.stdout.read(min(left, 1 << 20))
                    left -= len(chunk)
                payload += m["bytes"]
            if m.get("id") == rid and m.get("op") in ("done", "error"):
                return m, payload

    def run(self, code):
        return self.until_done(self.send({"op": "exec", "code": code}))

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=30)


def ipp_cluster():
    import ipyparallel as ipp
    t0 = time.monotonic()
    cluster = ipp.Cluster(n=2, log_level=40)
    rc = cluster.start_and_connect_sync()
    view = rc[:]
    view.execute("print('hello')", block=True)
    return cluster, rc, view, time.monotonic() - t0


def median_ms(f, n):
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        f()
        times.append(time.monotonic() - t0)
    return statistics.median(times) * 1000


def bench_cell(serve, view):
    serve.run("print(rank)")
    ours = median_ms(lambda: serve.run("print(rank)"), CELLS)
    theirs = median_ms(lambda: view.execute("print(1)", block=True), CELLS)
    row("session-cell", "pystrib serve, trivial cell on 2 ranks (median of %d)" % CELLS,
        "%.2f" % ours, "ms")
    row("session-cell", "ipyparallel execute, 2 local engines (median of %d)" % CELLS,
        "%.2f" % theirs, "ms")
    row("session-cell", "pystrib / ipyparallel (target <= 1.0)", "%.2f" % (ours / theirs), "x")


def bench_start(start_seconds, ipp_seconds):
    row("session-start", "pystrib session start + first cell", "%.2f" % start_seconds, "s")
    row("session-start", "ipyparallel start_and_connect_sync + first execute",
        "%.2f" % ipp_seconds, "s")
    row("session-start", "pystrib / ipyparallel (target <= 0.5)",
        "%.2f" % (start_seconds / ipp_seconds), "x")


TORCH_CELL = """import torch
a = torch.ones(64, 64)
print("rank", rank, "sum", float((a @ a).sum()))
"""


def bench_torch(serve, remote_args):
    try:
        import torch  # noqa: F401 (only whether the host's Python has it)
    except ImportError:
        say("no torch here: the torch cell is not measured")
        return
    serve.run(TORCH_CELL)
    ours = median_ms(lambda: serve.run(TORCH_CELL), 5) / 1000
    with tempfile.TemporaryDirectory() as d:
        cell = os.path.join(d, "torch_cell.py")
        with open(cell, "w") as f:
            f.write(TORCH_CELL)
        argv = [PYSTRIB, "-c", CONFIG, "run", cell, "-n", "2", "--no-project",
                "--results", os.path.join(d, "res")] + remote_args
        theirs = median_ms(lambda: subprocess.run(argv, stdout=subprocess.DEVNULL,
                                                  stderr=subprocess.DEVNULL, check=True), 3) / 1000
    row("session-torch", "torch matmul cell again in the session", "%.3f" % ours, "s")
    row("session-torch", "pystrib run of the same cell", "%.3f" % theirs, "s")
    row("session-torch", "run / session", "%.1f" % (theirs / ours), "x")


def bench_pull(serve):
    size = PULL_MB << 20
    serve.run("blob = bytes(%d) if rank == 0 else None" % size)
    t0 = time.monotonic()
    _, got = serve.until_done(serve.send({"op": "pull", "names": ["blob"], "ranks": [0]}))
    ours = time.monotonic() - t0
    if got < size:
        say("pull brought %d bytes, not %d" % (got, size))
        return
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "blob")
        with open(src, "wb") as f:
            f.truncate(size)
        remote = "/tmp/pystrib-bench-blob"
        subprocess.run(SSH["scp"] + [src, SSH["dest"] + ":" + remote], check=True)
        t0 = time.monotonic()
        subprocess.run(SSH["scp"] + [SSH["dest"] + ":" + remote, os.path.join(d, "back")],
                       check=True)
        theirs = time.monotonic() - t0
        subprocess.run(SSH["ssh"] + ["rm", "-f", remote], check=True)
    row("session-pull", "pull %d MiB through serve" % PULL_MB, "%.1f" % (PULL_MB / ours), "MiB/s")
    row("session-pull", "scp of the same bytes, same sshd", "%.1f" % (PULL_MB / theirs), "MiB/s")
    row("session-pull", "pystrib / scp throughput (target >= 0.8)", "%.2f" % (theirs / ours), "x")


def start_project_session(project, remote_args):
    for i in range(SYNC_FILES):
        sub = os.path.join(project, "pkg%d" % (i % 10))
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, "m%d.py" % i), "w") as f:
            f.write(("VALUE = %d\n" % i) * 20)
    with open(os.path.join(project, "edited.py"), "w") as f:
        f.write("VALUE = 0\n")
    time.sleep(0.1)	# older than the start: in the project layer, not sent again
    out = subprocess.run([PYSTRIB, "-c", CONFIG, "session", "start", "-n", "2",
                          "--project", project] + remote_args,
                         stdout=subprocess.PIPE, check=True)
    return out.stdout.decode().strip()


def bench_sync(remote_args):
    with tempfile.TemporaryDirectory(dir=".") as project:
        sid = start_project_session(project, remote_args)
        serve = Serve(sid)
        try:
            code = "import edited, importlib\nimportlib.reload(edited)\nprint(edited.VALUE)"
            serve.run(code)
            edited, plain = [], []
            for i in range(CELLS):
                with open(os.path.join(project, "edited.py"), "w") as f:
                    f.write("VALUE = %d\n" % (i + 1))
                t0 = time.monotonic()
                m, _ = serve.run(code)
                edited.append(time.monotonic() - t0)
                t0 = time.monotonic()
                serve.run(code)
                plain.append(time.monotonic() - t0)
            if m.get("status") != "ok":
                say("the sync cell failed: %s" % m)
            ours, base = statistics.median(edited) * 1000, statistics.median(plain) * 1000
            row("session-sync", "cell after a one-file edit, project of %d files (median of %d)"
                % (SYNC_FILES + 1, CELLS), "%.2f" % ours, "ms")
            row("session-sync", "cell without an edit, same project", "%.2f" % base, "ms")
            row("session-sync", "sync cost of a one-file edit (target <= 20 ms)",
                "%.2f" % (ours - base), "ms")
        finally:
            serve.close()
            subprocess.run([PYSTRIB, "-c", CONFIG, "session", "stop", sid],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    remote_args = sys.argv[4:]
    start_seconds = float(os.environ["BENCH_START_SECONDS"])
    serve = Serve(SESSION)
    t0 = time.monotonic()
    serve.run("print(rank)")
    start_seconds += time.monotonic() - t0
    say("ipyparallel: starting 2 engines")
    cluster, rc, view, ipp_seconds = ipp_cluster()
    try:
        bench_start(start_seconds, ipp_seconds)
        bench_cell(serve, view)
    finally:
        rc.close()
        cluster.stop_cluster_sync()
    bench_torch(serve, remote_args)
    bench_pull(serve)
    serve.close()
    bench_sync(remote_args)


main()
