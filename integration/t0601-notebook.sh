#!/usr/bin/env bash
# t0601: the pystributed extension end to end. Notebooks are executed
# headless by nbclient with the Debian ipykernel (/usr/bin/python3), the
# package installed with pip from magic/ (offline, into a directory of the
# test's own), the real pystrib binary and the real bed (sshd; runtime none =
# the host's python3 and Open MPI through sshd):
#   1. %load_ext: a variable pushed, a 2-rank %%remote cell, rank output in
#      the cell, the HTML summary, a variable pulled back (rank 0 and
#      --pull-all), a failing rank raising with its traceback, an
#      unpicklable push refused before anything runs, an undefined pull
#      named, pystrib's own error with its hint, %pystrib VERB JOB;
#   2. the original workflow: import pystributed.main as runner,
#      %%save_for_remote, runner.main() with the defaults of ./pystrib.ini
#      (found as pystrib finds it), the binary from its [notebook] section;
#   3. cancelling: Jupyter's kernel interrupt while the ranks run, nbclient's
#      interrupt on a cell timeout, and %pystrib cancel of a --detach job
#      each leave the remote job cancelled and nothing running;
#   4. what the notebooks wrote: only user_code.py and pystrib-results/ next
#      to the notebook, no push file left in $TMPDIR.
. "$(dirname "$0")/lib.sh"
require_verbs "the notebook drives 'pystrib --json VERB'" run jobs status logs attach fetch cancel
bed_up sshd

notebook_setup

# The kernels inherit this environment too.
export BED_SSH_HOST BED_SSH_PORT BED_SSH_USER BED_SSH_KEY BED_KNOWN_HOSTS
# As t0401: the bed's python3 with mpi4py, 2 ranks on whatever cores there are.
export PYSTRIB_REMOTE_PYTHON=/usr/bin/python3 PYSTRIB_REMOTE_MPIRUN_ARGS=--oversubscribe

checks=$BED_DIR/checks
"$PY" - "$checks" "$INTEGRATION_DIR" <<'PYEOF'
import asyncio, inspect, json, os, sys, threading, time
import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

sys.path.insert(0, sys.argv[2])	# integration/: nbdriver.py
from nbdriver import Checks, cell, text, data, error, execute as run_notebook
checks = Checks(sys.argv[1])
check = checks.check


def html(c):
    return data(c, "text/html")


def execute(*args, **kw):
    return run_notebook(check, *args, **kw)
bed = os.environ["BED_DIR"]
jobs_dir = os.path.join(bed, "remote", "jobs")
site = os.path.join(bed, "site")












def jobs():
    return set(os.listdir(jobs_dir)) if os.path.isdir(jobs_dir) else set()


def rank_logs(job):
    seen = ""
    for r in (0, 1):
        try:
            with open(os.path.join(jobs_dir, job, "logs", "rank.%d.out" % r)) as f:
                seen += f.read()
        except OSError:
            pass
    return seen


def wait_running(before, word, limit=120):
    """The one job started since `before` once both its ranks printed word, or None."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        new = sorted(jobs() - before)
        if len(new) == 1 and rank_logs(new[0]).count(word) == 2:
            return new[0]
        time.sleep(0.1)
    return None


def job_state(job, want="cancelled", limit=15):
    state = ""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            with open(os.path.join(jobs_dir, job, "state")) as f:
                state = f.read().strip()
        except (OSError, TypeError):
            state = ""
        if state == want:
            break
        time.sleep(0.1)
    return state




# 1. %load_ext, push, 2 ranks, pull, failures; then %pystrib VERB on the first job.
verbs = ["jobs", "status", "logs", "attach", "fetch"]
before = jobs()
nb, wd = execute("magics", [
    cell("%load_ext pystributed"),
    cell("factor = 7\nimport threading\nlock = threading.Lock()"),
    cell("%%remote -n 2 --remote none --push factor --pull total\n"
         "import os, sys\n"
         "total = factor * (rank + 1)\n"
         "print(f'rank {rank} of {world_size}: total={total}')\n"
         "print(f'to stderr from {rank}', file=sys.stderr)\n"
         "with open(os.path.join(os.environ['PYSTRIB_RESULTS'], f'out{rank}.txt'), 'w') as f:\n"
         "    f.write(str(total))\n"),
    cell("import pystributed\nr = pystributed.last_result()\n"
         "print('pulled total =', total)\n"
         "print('exit codes', r.exit_codes)\n"
         "print('results', r.results)\n"
         "print('package', pystributed.__file__)"),
    cell("%%remote -n 2 --remote none -q --push factor --pull total --pull-all\n"
         "total = factor * (rank + 1)\n"),
    cell("print('pulled all =', total)"),
    cell("%%remote -n 2 --remote none\n"
         "if rank == 1:\n"
         "    raise ValueError('boom on rank one')\n"
         "print('rank', rank, 'fine')\n", raises=True),
    cell("%%remote -n 2 --remote none --push lock,factor\nprint(lock)\n", raises=True),
    cell("%%remote -n 2 --remote none --pull total,nosuch\ntotal = 1\n", raises=True),
    cell("%%remote --remote nosuchremote\nx = 1\n", raises=True),
] + [cell("%%pystrib %s {r.job_id}" % v if v != "jobs" else "%pystrib jobs") for v in verbs])
c = nb.cells
so, se = text(c[2]), text(c[2], "stderr")
check("[0] rank 0 of 2: total=7\n" in so and "[1] rank 1 of 2: total=14\n" in so,
      "2-rank cell: each rank's output in the cell, prefixed by rank, pushed value used", so + se)
check("[0] to stderr from 0\n" in se and "[1] to stderr from 1\n" in se,
      "2-rank cell: rank stderr in the cell's stderr", se)
h = html(c[2])
check("<table" in h and "<th>image digest</th>" in h and "<td>1</td><td>0</td>" in h
      and "none (runtime none)" in h and "<code>%s/pystrib-results/" % wd in h,
      "2-rank cell: the HTML summary table (ranks, exit codes, no image with runtime none, results)",
      h or c[2].outputs)
plain = [o.data.get("text/plain", "") for o in c[2].outputs if o.output_type == "display_data"]
check(any("succeeded" in p for p in plain), "2-rank cell: the summary has a plain-text form", plain)
s3 = text(c[3])
check("package %s/pystributed/__init__.py\n" % site in s3,
      "the kernel uses the pip-installed package, not the source tree", s3)
check("pulled total = 7\n" in s3, "--pull: rank 0's value is set in the notebook", s3 + str(c[3].outputs))
check("exit codes [0, 0]\n" in s3, "the result object holds every rank's exit code", s3)
res = next((l[len("results "):] for l in s3.splitlines() if l.startswith("results ")), "")
found = [os.path.join(d, f) for d, _, fs in os.walk(res) for f in fs if f == "out1.txt"] if res else []
check(found and open(found[0]).read() == "14", "the files the ranks wrote came back to %s" % res, found)
check("pulled all = [7, 14]\n" in text(c[5]), "--pull-all: one value per rank", c[5].outputs)
check("pystrib:" not in text(c[4]), "-q: no stage lines", text(c[4]))
ename, evalue = error(c[6])
check(ename == "RemoteError" and "rank 1" in evalue and "ValueError: boom on rank one" in evalue
      and "remote traceback" in evalue,
      "a failing rank raises RemoteError naming the rank, with its remote traceback",
      "%s: %s" % (ename, evalue))
check("[0] rank 0 fine" in text(c[6]), "the other rank's output is still shown", c[6].outputs)
ename, evalue = error(c[7])
check(ename == "PushError" and "'lock' cannot be pickled" in evalue,
      "an unpicklable push is named", "%s: %s" % (ename, evalue))
ename, evalue = error(c[8])
check(ename == "PullError" and "did not define 'nosuch'" in evalue,
      "a pulled name the cell did not define is named", "%s: %s" % (ename, evalue))
ename, evalue = error(c[9])
check(ename == "PystribError" and "no remote named 'nosuchremote'" in evalue and "hint: " in evalue,
      "pystrib's own error (an unknown remote) is raised with its hint", "%s: %s" % (ename, evalue))
def created(job):
    """When the job was submitted (ids of one second do not sort by time)."""
    try:
        with open(os.path.join(jobs_dir, job, "job.json")) as f:
            return json.load(f).get("created", 0)
    except (OSError, ValueError):
        return 0


new = sorted(jobs() - before, key=lambda j: (created(j), j))
check(len(new) == 4, "4 remote jobs ran (none for the refused push)", new)
first = new[0] if new else "?"
check(os.path.isfile(os.path.join(os.environ["HOME"], ".local", "state", "pystrib", "jobs", first + ".json")),
      "the job record is in $XDG_STATE_HOME/pystrib/jobs", first)
for i, v in enumerate(verbs):
    pc = c[10 + i]
    so, se = text(pc), text(pc, "stderr")
    ename, evalue = error(pc)
    if v in ("jobs", "status"):
        good = first in so and ename is None
    elif v == "logs":
        good = "rank 0 of 2: total=7" in so and "rank 1 of 2: total=14" in so
    elif v == "attach":
        good = "[0] rank 0 of 2: total=7\n" in so and "<table" in html(pc)
    else:   # fetch
        good = ename is None and first in so + se
    check(good, "%%pystrib %s: its output in the cell" % (v if v == "jobs" else v + " JOB"),
          "%s%s%s %s" % (so, se, ename, evalue))

# 2. The original workflow. The kernel has no PYSTRIB_* variables: pystrib and
#    the extension both find ./pystrib.ini next to the notebook (2 ranks,
#    runtime none), the extension finds the binary in its [notebook] section.
wd = os.path.join(os.environ["NB_DIR"], "original")
os.makedirs(wd, exist_ok=True)
e = os.environ
with open(os.path.join(wd, "pystrib.ini"), "w") as f:
    f.write("[remote]\nhost = %s\nport = %s\nuser = %s\nidentity = %s\nknown_hosts = %s\n"
            "workdir = %s\nruntime = none\npython = /usr/bin/python3\nmpirun_args = --oversubscribe\n"
            "[job]\nnp = 2\n[notebook]\nbinary = %s\n" % (
                e["BED_SSH_HOST"], e["BED_SSH_PORT"], e["BED_SSH_USER"], e["BED_SSH_KEY"],
                e["BED_KNOWN_HOSTS"], os.path.join(bed, "remote"), e["PYSTRIB_BIN"]))
before = jobs()
nb, wd = execute("original", [
    cell("import pystributed.main as runner"),
    cell("import pystributed\nprint('binary', pystributed.find_binary())"),
    cell("%%save_for_remote --pull greeting\nran_locally = True\n"
         "greeting = f'hello from rank {rank}'\nprint('hello from rank', rank, 'of', world_size)\n"),
    cell("print('ran locally:', 'ran_locally' in globals())"),
    cell("result = runner.main()\nresult"),
    cell("assert result.state == 'succeeded', result\n"
         "print('state', result.state, 'exit codes', result.exit_codes, 'job', result.job_id)\n"
         "print('pulled', result.pulled, greeting)"),
], env={k: None for k in os.environ if k.startswith("PYSTRIB_")})
c = nb.cells
check("binary %s\n" % os.environ["PYSTRIB_BIN"] in text(c[1]),
      "the binary comes from [notebook] binary in ./pystrib.ini", text(c[1]) + str(c[1].outputs))
path = os.path.join(wd, "user_code.py")
check("cell saved to %s" % path in text(c[2]) and os.path.exists(path),
      "%%save_for_remote saves the cell and says where", text(c[2]))
check("ran locally: False" in text(c[3]), "%%save_for_remote does not run the cell here", text(c[3]))
so = text(c[4])
check("[0] hello from rank 0 of 2\n" in so and "[1] hello from rank 1 of 2\n" in so,
      "runner.main(): the saved cell ran on 2 ranks (./pystrib.ini's defaults), output in the cell",
      c[4].outputs)
check("<table" in html(c[4]), "runner.main(): summary table", c[4].outputs)
check(any(o.output_type == "execute_result" and "RunResult(job_id=" in o.data.get("text/plain", "")
          for o in c[4].outputs), "runner.main() returns a result object", c[4].outputs)
new = sorted(jobs() - before)
so = text(c[5])
check(len(new) == 1 and "state succeeded exit codes [0, 0] job %s\n" % new[0] in so,
      "the result: state, exit codes, job id", "%s %s" % (new, c[5].outputs))
check("pulled {'greeting': 'hello from rank 0'} hello from rank 0\n" in so,
      "the result's pulled variables, also set in the notebook", c[5].outputs)

# 3. Cancelling. a) Jupyter's interrupt (what the interrupt button sends)
#    once both ranks run; b) %pystrib cancel of a --detach job once both its
#    ranks run; c) nbclient's interrupt_on_timeout on a cell past its timeout.
snap = {}
CELL_TIMEOUT = 40


def interrupt_when_running(client, before):
    snap["interrupted"] = job = wait_running(before, "sleeping")
    if job:
        time.sleep(0.5)
        r = client.km.interrupt_kernel()
        if inspect.isawaitable(r):
            asyncio.run(r)


def on_cell(client, i):
    snap[i] = jobs()
    if i == 2:
        threading.Thread(target=interrupt_when_running, args=(client, snap[i]), daemon=True).start()
    elif i == 6:    # before %pystrib cancel: the detached job's ranks run
        snap["detached"] = wait_running(snap[4], "detached")


nb, wd = execute("interrupt", [
    cell("%load_ext pystributed"),
    cell("x = 5"),
    cell("%%remote -n 2 --remote none --push x\nimport time\nprint('sleeping', rank, x, flush=True)\n"
         "time.sleep(600)\n", raises=True),
    cell("print('after the interrupt')"),
    cell("%%remote -n 2 --remote none --detach\nimport time\nprint('detached', rank, flush=True)\n"
         "time.sleep(600)\n"),
    cell("import pystributed\ndetached = pystributed.last_result().job_id\nprint('job', detached)"),
    cell("%pystrib cancel {detached}"),
    cell("%%remote -n 2 --remote none\nimport time\nprint('timing out', rank, flush=True)\n"
         "time.sleep(600)\n", raises=True),
    cell("print('after the timeout')"),
], on_cell=on_cell, interrupt_on_timeout=True,
   timeout_func=lambda c: CELL_TIMEOUT if "timing out" in c.source else 300)
c = nb.cells
# a) the interrupt
job = snap.get("interrupted")
check(job is not None, "interrupt: the kernel was interrupted while both ranks ran", c[2].outputs)
ename, evalue = error(c[2])
se = text(c[2], "stderr")
check(ename == "JobInterrupted" and ("remote job %s was cancelled" % job) in evalue,
      "interrupt: JobInterrupted says the remote job was cancelled", "%s: %s\n%s" % (ename, evalue, se))
check(job and ("interrupted: cancelling remote job %s" % job) in se,
      "interrupt: the cell says it is cancelling the job", se)
check(job and job_state(job) == "cancelled", "interrupt: the remote job's state is cancelled",
      job and job_state(job, limit=0))
check("after the interrupt" in text(c[3]), "interrupt: the kernel goes on afterwards", c[3].outputs)
# b) --detach, then %pystrib cancel
det = snap.get("detached")
check(det is not None and ("job %s\n" % det) in text(c[5]),
      "--detach: the cell returns with the job running on 2 ranks", "%s %s %s" % (det, c[4].outputs, c[5].outputs))
check(det and job_state(det) == "cancelled" and error(c[6])[0] is None,
      "%pystrib cancel JOB: the detached job's state is cancelled", "%s %s" % (det and job_state(det, limit=0), c[6].outputs))
# c) nbclient's timeout
new = sorted(snap[8] - snap[7]) if 7 in snap and 8 in snap else []
tjob = new[0] if len(new) == 1 else None
check(tjob and rank_logs(tjob).count("timing out") == 2,
      "cell timeout: both ranks ran before nbclient interrupted the kernel", "%s %s" % (new, c[7].outputs))
ename, evalue = error(c[7])
check(ename == "JobInterrupted" and tjob and ("remote job %s was cancelled" % tjob) in evalue,
      "cell timeout: nbclient's interrupt cancels the remote job and the cell says so",
      "%s: %s\n%s" % (ename, evalue, text(c[7], "stderr")))
check(tjob and job_state(tjob) == "cancelled", "cell timeout: the remote job's state is cancelled",
      tjob and job_state(tjob, limit=0))
check("after the timeout" in text(c[8]), "cell timeout: the kernel goes on afterwards", c[8].outputs)

# 4. What the notebooks left behind: the saved cell and the results next to
#    each notebook (and the .ipynb this driver wrote), nothing in $TMPDIR.
for name in ("magics", "original", "interrupt"):
    wd = os.path.join(os.environ["NB_DIR"], name)
    extra = set(os.listdir(wd)) - {name + ".ipynb", "user_code.py", "pystrib-results", "pystrib.ini"}
    check(not extra and os.path.isfile(os.path.join(wd, "user_code.py")),
          "%s: only user_code.py and pystrib-results/ in the notebook's directory" % name, sorted(os.listdir(wd)))
left = [f for f in os.listdir(os.environ["TMPDIR"]) if f.startswith("pystrib")]
check(not left, "no push file or other pystrib temp file left in $TMPDIR (also after the interrupt)", left)
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

# pystrib reads the same ./pystrib.ini the extension does: the [notebook]
# section is its own, not an unknown one.
ini=$NB_DIR/original/pystrib.ini
"$PYSTRIB" -c "$ini" config show > "$BED_DIR/show.out" 2> "$BED_DIR/show.err"
check_no_grep "pystrib knows the [notebook] section the extension reads (binary = PATH)" \
	"notebook" "$BED_DIR/show.err" || show "$BED_DIR/show.err"

# No rank of the cancelled jobs is left running (given a few seconds to stop).
jobs_dir=$BED_DIR/remote/jobs
if check "jobs ran on the bed" test -n "$(ls "$jobs_dir" 2>/dev/null)"; then
	for _ in $(seq 100); do pgrep -f "$jobs_dir/" > /dev/null 2>&1 || break; sleep 0.1; done
	left=$(pgrep -f "$jobs_dir/" || true)
	if ! check_eq "after the cancels, no process of the bed's jobs is left running" "" "$left"; then
		ps -o pid,ppid,pgid,cmd -p "$(echo $left | tr ' ' ,)" | sed 's/^/#   /'
		# Ours (the path is this bed's): stop them by pid.
		kill $left 2>/dev/null || true
	fi
fi
