#!/usr/bin/env bash
# t0603: the session magics (magic/pystributed/dist.py, cluster.py) against
# the real `pystrib --json session serve` on the bed's sshd, runtime none
# (the host's python3, torch 1.13 with gloo, numpy, Open MPI). Notebooks are
# executed headless by nbclient with Debian's ipykernel, the extension
# pip-installed as t0601 does. The seed documents' cells run as written:
#   1. jupyter_distributed (000): the Quick Start (%dist_init --num-ranks 2,
#      %%distributed with torch, %%rank[0], %sync, %dist_status), %%rank[0-1],
#      a failing rank (RemoteError naming it, the other rank's output kept),
#      torch.distributed all_reduce and broadcast (with the broadcast's
#      tensors of one dtype; the document's own broadcast, an int64 tensor
#      against float zeros, aborts gloo on the receiving rank: the session
#      says it is broken, naming the rank), %dist_shutdown leaving nothing;
#   2. a kernel interrupt during a cell: the cell says the session survives,
#      the next cell sees the variables; the kernel's end leaves the session
#      up; a new kernel (a restart) whose %dist_init reattaches to the
#      recorded session, variables intact; %dist_attach ID from another
#      notebook; with [session] stop_on_exit = true the kernel's end stops
#      its session, leaving nothing;
#   3. %distribute (001): basic, persistence, --sync, --timeout (and a cell
#      past its timeout: the session survives), the numpy examples;
#   4. ipyparallel (003, 004): the %%px mpi4py cell on Cluster(n=4), and
#      execute, %px, %autopx, push/pull, dict style, views, scatter, gather,
#      map on Cluster(n=2); shutdown() leaving nothing;
#   5. the docker runtime (the bed's base image: numpy but no torch): the
#      same magics in a container, and %dist_shutdown, %distribute's and
#      Cluster's sessions stopped leaving no container and no process.
. "$(dirname "$0")/lib.sh"
require_verbs "the notebook keeps one 'pystrib --json session serve' per session" session
bed_up registry sshd base docker
# A session a failed step left up: bed.sh stop ends sshd but not a hub of
# runtime none, which outlives its login. Ours by their path: by pid.
stop_sessions() {
	local s
	for s in "$BED_DIR"/remote/jobs/*/hub.sock; do
		[ -e "$s" ] || continue
		"$PYSTRIB" -c "$BED_CONFIG" session stop "$(basename "$(dirname "$s")")" > /dev/null 2>&1
	done
	sleep 1
	# shellcheck disable=SC2046
	kill $(pgrep -f "$BED_DIR/remote/jobs/") 2> /dev/null
}
cleanup stop_sessions

notebook_setup
# The kernels inherit this environment too: the seeds' cells name no
# remote, so the config's default remote runs with runtime none.
export BED_DOCKER_HOST
export PYSTRIB_REMOTE_RUNTIME=none PYSTRIB_REMOTE_PYTHON=/usr/bin/python3 \
	PYSTRIB_REMOTE_MPIRUN_ARGS=--oversubscribe

checks=$BED_DIR/checks
"$PY" - "$checks" "$INTEGRATION_DIR" <<'PYEOF'
import asyncio, glob, inspect, json, os, subprocess, sys, threading, time
import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

sys.path.insert(0, sys.argv[2])	# integration/: nbdriver.py
from nbdriver import Checks, cell, text, data, error, execute as run_notebook
checks = Checks(sys.argv[1])
check, info = checks.check, checks.info


def execute(*args, **kw):
    return run_notebook(check, *args, **kw)[0].cells


bed = os.environ["BED_DIR"]
jobs_dir = os.path.join(bed, "remote", "jobs")


def sessions():
    return set(os.listdir(jobs_dir)) if os.path.isdir(jobs_dir) else set()


def session_json(sid):
    try:
        with open(os.path.join(jobs_dir, sid, "session.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def running(sid):
    r = subprocess.run(["pgrep", "-f", os.path.join(jobs_dir, sid)], capture_output=True, text=True)
    return r.stdout.split()


def left_nothing(sid, limit=20):
    """(True, "") once sid's hub, ranks and sockets are gone and its
    session.json says stopped; else (False, what is left)."""
    end = time.monotonic() + limit
    while True:
        procs = running(sid)
        socks = [s for s in ("hub.sock", "ranks.sock") if os.path.exists(os.path.join(jobs_dir, sid, s))]
        st = session_json(sid).get("state")
        if not procs and not socks and st == "stopped":
            return True, ""
        if time.monotonic() > end:
            return False, "processes %s sockets %s state %s" % (procs, socks, st)
        time.sleep(0.2)


def cell_logs(sid, word):
    seen = ""
    for f in glob.glob(os.path.join(jobs_dir, sid, "cells", "*", "rank.*.out")):
        try:
            seen += open(f).read()
        except OSError:
            pass
    return seen.count(word)


def new_session(before):
    new = sorted(sessions() - before)
    return new[0] if len(new) == 1 else None


# 1. jupyter_distributed (seed 000).
before = sessions()
c = execute("quickstart", [
    cell("%load_ext pystributed"),
    cell("%dist_init --num-ranks 2"),
    cell("%%distributed\nimport torch\ntensor = torch.randn(2, 3)\nprint(f\"Rank {rank}: {tensor.shape}\")\n"),
    cell("%%rank[0]\nprint(\"Only on rank 0\")\n"),
    cell("%sync"),
    cell("%dist_status"),
    cell("%%rank[0-1]\nprint(f\"range: rank {rank} of {world_size}\")\n"),
    cell("%%distributed\nif rank == 1:\n    raise ValueError(\"Error on rank 1\")\nelse:\n"
         "    print(f\"Rank {rank} success\")\n", raises=True),
    cell("%%distributed\nimport torch.distributed as dist\n\n# All-reduce\n"
         "tensor = torch.randn(3, 3)\ndist.all_reduce(tensor, op=dist.ReduceOp.SUM)\n\n"
         "# Broadcast\nif rank == 0:\n    data = torch.tensor([1, 2, 3])\nelse:\n"
         "    data = torch.zeros(3, dtype=torch.int64)\ndist.broadcast(data, src=0)\n"
         "print('group', dist.get_backend(), dist.get_world_size(), 'sum %.4f' % tensor.sum().item(),"
         " 'data', data.tolist())\n"),
    # The document's own broadcast, as written.
    cell("%%distributed\nimport torch.distributed as dist\n\n# All-reduce\n"
         "tensor = torch.randn(3, 3)\ndist.all_reduce(tensor, op=dist.ReduceOp.SUM)\n\n"
         "# Broadcast\nif rank == 0:\n    data = torch.tensor([1, 2, 3])\nelse:\n"
         "    data = torch.zeros(3)\ndist.broadcast(data, src=0)\n", raises=True),
    cell("%dist_status"),
    cell("%dist_shutdown"),
])
sid = new_session(before)
check(sid is not None, "%dist_init --num-ranks 2 started one session", sorted(sessions() - before))
so = text(c[1])
check("starting a session of 2 ranks" in so and "2 ranks up in" in so,
      "%dist_init says it starts the session and when it is up", c[1].outputs)
so = text(c[2])
check("[0] Rank 0: torch.Size([2, 3])\n" in so and "[1] Rank 1: torch.Size([2, 3])\n" in so,
      "%%distributed: the Quick Start cell prints on both ranks, prefixed", c[2].outputs)
check(text(c[3]) == "[0] Only on rank 0\n", "%%rank[0]: only rank 0 runs the cell", c[3].outputs)
check("barrier" in text(c[4]) and error(c[4])[0] is None, "%sync: a barrier on every rank", c[4].outputs)
h, p = data(c[5], "text/html"), data(c[5], "text/plain")
check("<table" in h and "<th>rank</th><th>host</th><th>GPUs</th><th>state</th>" in h
      and h.count("<td>idle</td>") == 2, "%dist_status: an HTML table of both ranks, idle", h or c[5].outputs)
check("idle, 2 ranks" in p, "%dist_status: a plain-text form too", p)
so = text(c[6])
check("[0] range: rank 0 of 2\n" in so and "[1] range: rank 1 of 2\n" in so,
      "%%rank[0-1]: a range of ranks", c[6].outputs)
ename, evalue = error(c[7])
check(ename == "RemoteError" and "rank 1 raised ValueError: Error on rank 1" in evalue
      and "remote traceback (rank 1)" in evalue and "rank 0: ok" in evalue,
      "a failing rank: RemoteError names the rank, with its traceback and the other rank's outcome",
      "%s: %s" % (ename, evalue))
check("[0] Rank 0 success\n" in text(c[7]), "a failing rank: the other rank's output is shown", c[7].outputs)
check("ValueError" not in text(c[7], "stderr"),
      "a failing rank: its traceback is shown once, in the RemoteError, not streamed too", c[7].outputs)
so = text(c[8])
lines = [l for l in so.splitlines() if " group " in l]
sums = {l.split("sum ")[1].split()[0] for l in lines}
check(len(lines) == 2 and all("group gloo 2" in l and "data [1, 2, 3]" in l for l in lines)
      and len(sums) == 1, "torch.distributed: the default gloo group, all_reduce and broadcast "
      "across cells (the broadcast's tensors of one dtype)", c[8].outputs)
ename, evalue = error(c[9])
se = text(c[9], "stderr")
check(ename == "SessionBroken" and "rank 1 killed by SIGABRT" in evalue,
      "the document's own broadcast (int64 against float32 zeros) aborts gloo on rank 1: "
      "the cell says the session is broken, naming the rank", "%s: %s\n%s" % (ename, evalue, se))
# Why, when rank 1's last words reached the cell before it died (they may
# not: the worker's pipe reader dies with it).
if "24 vs 12" in se:
    info("seed 000's broadcast as written: gloo on rank 1 says 'op.preamble.length <= "
         "op.nbytes. 24 vs 12' (3 int64 sent, room for 3 float32) and aborts")
else:
    info("seed 000's broadcast as written: rank 1 died; its stderr in the cell: %r" % se[-300:])
check("broken: rank 1 killed by SIGABRT" in data(c[10], "text/plain"),
      "%dist_status of a broken session says which rank died", c[10].outputs)
check(("session %s stopped" % sid) in text(c[11]), "%dist_shutdown says it stopped the session",
      c[11].outputs)
ok, left = left_nothing(sid) if sid else (False, "no session")
check(ok, "%dist_shutdown leaves nothing: no hub, no rank, no socket; session.json says stopped", left)
with open(os.path.join(os.environ["HOME"], ".local", "state", "pystrib", "notebooks.json")) as f:
    rec = json.load(f)
check(not [e for e in rec.get("sessions", []) if e.get("session") == sid],
      "%dist_shutdown forgets the notebook's record of the session", rec)

# 2. A kernel interrupt during a cell, then a new kernel that reattaches.
snap = {}


def interrupt_when_running(client, sid_box):
    end = time.monotonic() + 120
    while time.monotonic() < end:
        sid = new_session(snap["before"])
        if sid and cell_logs(sid, "sleeping") == 2:
            snap["interrupted"] = sid
            time.sleep(0.5)
            r = client.km.interrupt_kernel()
            if inspect.isawaitable(r):
                asyncio.run(r)
            return
        time.sleep(0.1)


def on_cell(client, i):
    if i == 3:
        threading.Thread(target=interrupt_when_running, args=(client, snap), daemon=True).start()


snap["before"] = sessions()
c = execute("restart", [
    cell("%load_ext pystributed"),
    cell("%dist_init --num-ranks 2"),
    cell("%%distributed\nkept = 100 + rank\nimport time\n"),
    cell("%%distributed\nprint('sleeping', rank, flush=True)\ntime.sleep(600)\n", raises=True),
    cell("%%distributed\nprint('after the interrupt', kept)\n"),
], on_cell=on_cell)
sid = snap.get("interrupted")
check(sid is not None, "interrupt: the kernel was interrupted while both ranks ran the cell", c[3].outputs)
ename, evalue = error(c[3])
check(ename == "CellInterrupted" and "still up" in evalue and "variables are kept" in evalue,
      "interrupt: the cell says it was interrupted on the ranks and the session is still up",
      "%s: %s\n%s" % (ename, evalue, text(c[3], "stderr")))
so = text(c[3])
check("[0] sleeping 0\n" in so and "[1] sleeping 1\n" in so,
      "interrupt: the ranks' output came while the cell ran", c[3].outputs)
so = text(c[4])
check("[0] after the interrupt 100\n" in so and "[1] after the interrupt 101\n" in so,
      "interrupt: the next cell runs in the same session, its variables kept", c[4].outputs)
check(sid and session_json(sid).get("state") == "idle" and running(sid),
      "the kernel's shutdown leaves the session up, idle", sid and session_json(sid))
c = execute("restart", [
    cell("%load_ext pystributed"),
    cell("%dist_init --num-ranks 2"),
    cell("%%distributed\nprint('kept', kept)\nkept += 1\n"),
])
so = text(c[1])
check(sid and ("reattached to session %s" % sid) in so and "variables are as they were" in so,
      "a new kernel: %dist_init reattaches to the notebook's session and says so", c[1].outputs)
so = text(c[2])
check("[0] kept 100\n" in so and "[1] kept 101\n" in so,
      "a new kernel: the variables are intact", c[2].outputs)
# A third kernel, in another directory, picks the session by hand.
c = execute("attach", [
    cell("%load_ext pystributed"),
    cell("%%dist_attach %s" % sid),
    cell("%%distributed\nprint('kept', kept)\n"),
    cell("%dist_shutdown"),
])
so = text(c[2])
check("[0] kept 101\n" in so and "[1] kept 102\n" in so,
      "%dist_attach ID from another notebook: the session's variables", c[1].outputs + c[2].outputs)
ok, left = left_nothing(sid) if sid else (False, "no session")
check(ok, "after %dist_attach, %dist_shutdown leaves nothing", left)

# [session] stop_on_exit = true: the kernel's end stops its session.
before = sessions()
c = execute("stoponexit", [
    cell("%load_ext pystributed"),
    cell("%dist_init --num-ranks 2"),
    cell("%%distributed\nprint('up', rank)\n"),
], env={"PYSTRIB_SESSION_STOP_ON_EXIT": "true"})
sid = new_session(before)
check(sid is not None and "[1] up 1\n" in text(c[2]), "stop_on_exit: the session ran a cell", c[2].outputs)
ok, left = left_nothing(sid) if sid else (False, "no session")
check(ok, "stop_on_exit = true: the kernel's shutdown stops the session, leaving nothing", left)

# 3. %distribute (seed 001), as written.
STOP_ALL = ("from pystributed import pool\nfor _, s in pool.live():\n"
            "    pool.drop(s, stop=True)\n    print('stopped', s.id)\n")
before = sessions()
c = execute("distribute", [
    cell("%load_ext pystributed"),
    cell("%%distribute 4\nimport os\nimport time\n\n# Each process gets a unique __process_id__\n"
         "process_id = __process_id__\nresult = f\"Hello from process {process_id}! PID: {os.getpid()}\"\n"
         "print(result)\n\n# Variables set here will be available in subsequent %distribute calls\n"
         "computation_result = process_id ** 2\n"),
    cell("%%distribute 4\n# Variables from previous cells are available\n"
         "print(f\"Process {__process_id__}: Previous result was {computation_result}\")\n"
         "new_result = computation_result * 10\n"),
    cell("%%distribute 4 --sync\n# Only process 0 sets this variable\nif __process_id__ == 0:\n"
         "    shared_data = \"This will be shared across all processes\"\n    shared_number = 42\n\n"
         "print(f\"Process {__process_id__} finished\")\n"),
    cell("%distribute 4 print(__process_id__, shared_number, shared_data)"),
    cell("%%distribute 4 --timeout 10\nimport time\n\n"
         "# This will timeout if it takes longer than 10 seconds\n"
         "time.sleep(5)  # This will complete successfully\n"
         "result = f\"Process {__process_id__} completed\"\n"),
    cell("%%distribute 4 --timeout 2\nimport time\ntime.sleep(60)\n", raises=True),
    cell("%distribute 4 print(result, new_result)"),
    cell("%%distribute 4\nimport numpy as np\n\n# Different random seed for each process\n"
         "np.random.seed(__process_id__)\ndata = np.random.randn(1000)\n\n"
         "# Process data in parallel\nmean_val = np.mean(data)\nstd_val = np.std(data)\n"
         "processed_data = (data - mean_val) / std_val\n\n"
         "print(f\"Process {__process_id__}: Mean={mean_val:.3f}, Std={std_val:.3f}\")\n"),
    cell("%%distribute 8\nimport numpy as np\n\ndef estimate_pi(n_samples):\n"
         "    np.random.seed(__process_id__ * 1000)\n    x = np.random.uniform(-1, 1, n_samples)\n"
         "    y = np.random.uniform(-1, 1, n_samples)\n    inside_circle = (x**2 + y**2) <= 1\n"
         "    return 4 * np.sum(inside_circle) / n_samples\n\n"
         "# Each process estimates pi independently\npi_estimate = estimate_pi(100000)\n"
         "print(f\"Process {__process_id__}: \u03c0 \u2248 {pi_estimate:.6f}\")\n"),
    cell(STOP_ALL),
])
new = sorted(sessions() - before)
check(len(new) == 2, "%distribute: one session per n (4 and 8), reused", new)
so = text(c[1])
check(all("[%d] Hello from process %d! PID: " % (i, i) in so for i in range(4)),
      "%%distribute 4: each process prints with its __process_id__", c[1].outputs)
so = text(c[2])
check(all("[%d] Process %d: Previous result was %d\n" % (i, i, i * i) in so for i in range(4)),
      "%%distribute 4: variables persist to the next cell of the same n", c[2].outputs)
so = text(c[3])
check("shared_data, shared_number copied from process 0" in so, "--sync: says what it copied", c[3].outputs)
so = text(c[4])
check(all("[%d] %d 42 This will be shared across all processes\n" % (i, i) in so for i in range(4)),
      "--sync: every process has what process 0 set", c[4].outputs)
check(error(c[5])[0] is None, "--timeout 10: a 5-second cell completes", c[5].outputs)
ename, evalue = error(c[6])
check(ename == "CellTimeout" and "ran out of time" in evalue and "still up" in evalue,
      "--timeout 2: the cell is interrupted and says the session is still up", "%s: %s" % (ename, evalue))
so = text(c[7])
check(all("[%d] Process %d completed %d\n" % (i, i, i * i * 10) in so for i in range(4)),
      "--timeout: after a timed-out cell the session and its variables are there", c[7].outputs)
so = text(c[8])
check(all(("[%d] Process %d: Mean=" % (i, i)) in so for i in range(4)),
      "the per-process seeds example (numpy) runs on 4 processes", c[8].outputs)
so = text(c[9])
est = [float(l.split("\u2248 ")[1]) for l in so.splitlines() if "\u2248" in l]
check(len(est) == 8 and all(3.1 < e < 3.2 for e in est),
      "the Monte Carlo example (numpy) estimates pi on 8 processes", c[9].outputs)
for s in new:
    ok, left = left_nothing(s)
    check(ok, "%%distribute's session %s stopped leaves nothing" % s, left)

# 4. ipyparallel (seeds 003 and 004) on pystributed.Cluster.
before = sessions()
c = execute("ipyparallel", [
    cell("%load_ext pystributed"),
    cell("import pystributed\ncluster = pystributed.Cluster(n=4)\n"
         "client = cluster.start_and_connect_sync(activate=True)\nview = client[:]\nclient.ids\n"),
    cell("%%px\nfrom mpi4py import MPI\nimport platform\nmpi_rank=MPI.COMM_WORLD.Get_rank()\n"
         "mpi_size = MPI.COMM_WORLD.Get_size()\n"
         "print (\"Process %d out of %d started in %s.\\n\" % (mpi_rank, mpi_size, platform.node()))\n"),
    cell("cluster.shutdown()"),
    cell("ic = pystributed.Cluster(n=2)\nic.activate()"),
    cell("ic.execute('a = 5')\nic.execute('b = 10')\nic.execute('c = 30',0)\nic.execute('c = 40',1)\n"
         "ic[0].execute('d = 10')\nprint(ic.pull('c'), ic[0].pull('d'), ic.pull('a'))"),
    cell("%px c = 30"),
    cell("%autopx"),
    cell("a = 40"),
    cell("b = 40"),
    cell("c = a + b"),
    cell("%autopx"),
    cell("print('c', ic.pull('c'))"),
    cell("ic.push('a',10)\nprint(ic.pull('a'))"),
    cell("ic.pull('q')", raises=True),
    cell("ic.push('a',10,0)\nic.push('a',20,1)\nprint(ic.pull('a'))\n"
         "ic.push('a',10,[0,1])\nprint(ic.pull('a',[0,1]))\nic[0].push('a',10)\nprint(ic[0].pull('a'))"),
    cell("ic['a'] = 10\nprint(ic['a'])\nic[0]['b'] = 20\nic[1]['b'] = 20\nprint(ic['b'])"),
    cell("ic.push({'e': 'dict'})\nprint(ic.pull('e'))"),
    cell("ic.scatter('a', range(10))\nprint(ic.pull('a'))\nprint(ic.gather('a'))"),
    cell("ic.scatter('a', range(10))\n%px b = [x*x for x in a]\nprint(ic.gather('b'))"),
    cell("print(ic.map('lambda x: x*x',range(10)))"),
    cell("ic.shutdown()"),
])
new = sorted(sessions() - before)
check(len(new) == 2, "Cluster(n=4) and Cluster(n=2): a session each", new)
check(data(c[1], "text/plain") == "[0, 1, 2, 3]", "start_and_connect_sync: client.ids", c[1].outputs)
so = text(c[2])
check(all(("[%d] Process %d out of 4 started in " % (i, i)) in so for i in range(4)),
      "seed 003's %%px mpi4py cell prints each rank's line", c[2].outputs)
check("[30, 40] 10 [5, 5]\n" in text(c[5]), "execute(code, targets), c[0].execute, pull", c[5].outputs)
check("c [80, 80]\n" in text(c[12]), "%px and %autopx on and off run on the ranks", c[12].outputs)
check("[10, 10]\n" in text(c[13]), "push('a', 10) and pull('a'): one value per rank", c[13].outputs)
ename, evalue = error(c[14])
check(ename == "NotDefined" and "'q'" in evalue, "pull of an undefined name says so", "%s: %s" % (ename, evalue))
check(text(c[15]) == "[10, 20]\n[10, 10]\n10\n", "push and pull with targets, c[0] views", c[15].outputs)
check(text(c[16]) == "[10, 10]\n[20, 20]\n", "dict style c['a'] = 10, c['a'], c[0]['b']", c[16].outputs)
check(text(c[17]) == "['dict', 'dict']\n", "push({'e': ...})", c[17].outputs)
check(text(c[18]) == "[[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]\n[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n",
      "scatter('a', range(10)) and gather('a')", c[18].outputs)
check(text(c[19]) == "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]\n", "scatter, %px on each part, gather",
      c[19].outputs)
check(text(c[20]) == "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]\n", "map('lambda x: x*x', range(10))",
      c[20].outputs)
for s in new:
    ok, left = left_nothing(s)
    check(ok, "Cluster.shutdown() of %s leaves nothing" % s, left)

# 5. The docker runtime: the config's default remote, the cell's image
#    built from the bed's base (Open MPI and mpi4py; numpy, no torch).
def containers():
    r = subprocess.run(["/usr/bin/docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True,
                       text=True, env=dict(os.environ, DOCKER_HOST=os.environ["BED_DOCKER_HOST"]))
    return r.stdout.split()


before = sessions()
c = execute("docker", [
    cell("%load_ext pystributed"),
    cell("%dist_init --num-ranks 2"),
    cell("%%distributed\nimport os\nprint(f'Rank {rank} of {world_size} in a container:',"
         " os.path.exists('/.dockerenv'))\nx = 40 + rank\n"),
    cell("%%rank[1]\nprint('x is', x)\n"),
    cell("%sync"),
    cell("%dist_status"),
    cell("%%distributed\nif rank == 1:\n    raise ValueError(\"Error on rank 1\")\nelse:\n"
         "    print(f\"Rank {rank} success\")\n", raises=True),
    cell("import subprocess\nprint('containers', ' '.join(sorted(subprocess.run(['/usr/bin/docker', 'ps', "
         "'--format', '{{.Names}}'], capture_output=True, text=True, env=dict(__import__('os').environ, "
         "DOCKER_HOST=%r)).stdout.split())))" % os.environ["BED_DOCKER_HOST"]),
    cell("%dist_shutdown"),
    cell("%%distribute 2\ncomputation_result = __process_id__ ** 2 + 1\n"),
    cell("%%distribute 2 --sync\nif __process_id__ == 0:\n    shared_number = 42\n"
         "print(f\"Process {__process_id__}: {computation_result}\")\n"),
    cell("%distribute 2 print('shared', __process_id__, shared_number)"),
    cell("import pystributed\nic = pystributed.Cluster(n=2)\nic.activate()\nic.push('a', 10)\n"
         "ic.scatter('b', range(10))\n%px from mpi4py import MPI; s = MPI.COMM_WORLD.allreduce(a)\n"
         "print(ic.pull('s'), ic.gather('b'), ic.map('lambda x: x*x', range(4)))"),
    cell(STOP_ALL),
], env={"PYSTRIB_REMOTE_RUNTIME": None})
new = sorted(sessions() - before)
sid = new[0] if new else None
check(len(new) == 3, "docker: %dist_init, %distribute 2 and Cluster(n=2) each started a session", new)
so = text(c[2])
check("[0] Rank 0 of 2 in a container: True\n" in so and "[1] Rank 1 of 2 in a container: True\n" in so,
      "docker: %%distributed runs both ranks inside a container", c[2].outputs + c[1].outputs)
check(text(c[3]) == "[1] x is 41\n", "docker: %%rank[1] sees the variables of the cell before", c[3].outputs)
check("barrier" in text(c[4]), "docker: %sync", c[4].outputs)
check(data(c[5], "text/html").count("<td>idle</td>") == 2, "docker: %dist_status", c[5].outputs)
ename, evalue = error(c[6])
check(ename == "RemoteError" and "rank 1 raised ValueError: Error on rank 1" in evalue,
      "docker: a failing rank raises RemoteError naming it", "%s: %s" % (ename, evalue))
check(sid and ("pystrib-" + sid) in text(c[7]), "docker: the session's container ran", c[7].outputs)
so = text(c[10]) + text(c[11])
check("[1] Process 1: 2\n" in so and "[1] shared 1 42\n" in so,
      "docker: %%distribute persistence and --sync", c[10].outputs + c[11].outputs)
check("[20, 20] [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] [0, 1, 4, 9]\n" in text(c[12]),
      "docker: Cluster push, %px with mpi4py, pull, scatter, gather, map", c[12].outputs)
for s in new:
    ok, left = left_nothing(s)
    check(ok and ("pystrib-" + s) not in containers(),
          "docker: session %s stopped leaves no process and no container" % s, "%s %s" % (left, containers()))
checks.out.close()
PYEOF
rc=$?
while IFS= read -r line; do
	case $line in
	"PASS "*) check_status "${line#PASS }" 0 ;;
	"FAIL "*) check_status "${line#FAIL }" 1 ;;
	"#"*) echo "$line" ;;
	"INFO "*) echo "# ${line#INFO }" ;;
	esac
done < "$checks"
check_eq "the notebook driver exits 0" 0 "$rc"

# Nothing of any session is left running on the bed.
left=$(pgrep -f "$BED_DIR/remote/jobs/" || true)
if ! check_eq "no process of the bed's sessions is left running" "" "$left"; then
	ps -o pid,ppid,pgid,cmd -p "$(echo $left | tr ' ' ,)" | sed 's/^/#   /'
	kill $left 2>/dev/null || true
fi
