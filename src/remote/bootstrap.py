"""pystrib rank bootstrap: runs one rank of a cell.

    python3 bootstrap.py CELL.py [ARGS...]

Started once per rank (by mpirun, srun, or alone as a single rank), inside
the cell's image or with the host's Python. Pure standard library, Python 3.7+.

Rank and sizes come from Open MPI (OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK,
_LOCAL_SIZE), else PMI (PMI_RANK, PMI_SIZE), else Slurm (SLURM_PROCID,
SLURM_NTASKS, SLURM_LOCALID), else a single rank 0 of 1. They are exported as
RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE, with MASTER_ADDR
(PYSTRIB_MASTER_ADDR, default 127.0.0.1) and MASTER_PORT (PYSTRIB_MASTER_PORT,
default 29500), the names torch.distributed and friends read.

PYSTRIB_GPUS: "all" (every device visible here), a count N (the first N;
0 means none) or a list "0,1,3". The devices are dealt round-robin over the
local ranks and this rank's share goes into CUDA_VISIBLE_DEVICES. Unset or
empty: CUDA_VISIBLE_DEVICES is left alone.

PYSTRIB_RESULTS: the directory the cell writes results to (default
./results), created and exported as an absolute path. PYSTRIB_INPUTS: the
inputs/ directory beside this file. If it holds pystrib_push.pkl (a pickled
dict), each entry becomes a global of the cell.

PYSTRIB_JOB_DIR: when set, this rank's stdout and stderr go (at the file
descriptor level, so child processes and C extensions too) to
$PYSTRIB_JOB_DIR/logs/rank.N.out and rank.N.err, line by line, and the exit
code is written to rank.N.exit when the rank ends.

A traceback names the cell as it was given to `pystrib run` (raise1.py),
read from the file beside CELL with the extension .name (user_code.name),
when there is one; __file__ and sys.argv[0] stay the real path.

The cell runs as __main__ with sys.argv = [CELL] + ARGS and the globals
rank, world_size and __process_id__ (= rank). sys.path starts with the
working directory (as in a notebook), the project root ($PYSTRIB_PROJECT, so
the project's packages import from anywhere in it) and the cell's directory. An exception prints its
traceback to stderr and exits 1; SystemExit keeps its code; SIGTERM exits
143 after running finally blocks.

PYSTRIB_PULL: "name,name" or "*". After the cell returns, those globals are
pickled (protocol 4) into $PYSTRIB_RESULTS/.pystrib/pull.rank.N.pkl as
    {"version": 1, "rank": N, "values": {name: value},
     "missing": [names not defined], "errors": {name: "why; repr"}}
A value that cannot be pickled lands in "errors" instead of failing the rank.
"""

import builtins
import linecache
import os
import pickle
import signal
import sys
import traceback
import types

PULL_VERSION = 1


def _env_int(*names):
    for name in names:
        value = os.environ.get(name)
        if value is not None and value.strip().lstrip("-").isdigit():
            return int(value)
    return None


def topology():
    """(rank, world_size, local_rank, local_world_size) from the launcher's environment."""
    for rank_var, size_var, lrank_var, lsize_var in (
        ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
         "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
        ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
        ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"),
    ):
        rank = _env_int(rank_var)
        size = _env_int(size_var)
        if rank is None or size is None:
            continue
        local_rank = _env_int(lrank_var)
        local_size = _env_int(lsize_var)
        if local_rank is None:
            local_rank = rank
        if local_size is None or local_size < 1:
            local_size = size
        return rank, size, local_rank, local_size
    return 0, 1, 0, 1


def visible_devices():
    """The GPU indexes this process can see, for PYSTRIB_GPUS=all."""
    current = os.environ.get("CUDA_VISIBLE_DEVICES")
    if current:
        return [d for d in current.split(",") if d.strip()]
    try:
        names = os.listdir("/dev")
    except OSError:
        names = []
    found = sorted(int(n[6:]) for n in names if n.startswith("nvidia") and n[6:].isdigit())
    return [str(i) for i in found]


def gpus_for(spec, local_rank, local_size):
    """This local rank's devices for a PYSTRIB_GPUS value, or None to leave things alone."""
    spec = (spec or "").strip()
    if not spec:
        return None
    if spec == "all":
        devices = visible_devices()
        if not devices:
            return None
    elif "," not in spec and spec.isdigit():
        devices = [str(i) for i in range(int(spec))]
    else:
        devices = [d.strip() for d in spec.split(",") if d.strip()]
    if not devices:
        return []
    if len(devices) >= local_size:
        return devices[local_rank::local_size]
    return [devices[local_rank % len(devices)]]


def _atomic_write(path, data):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def redirect_output(job_dir, rank):
    """Points fds 1 and 2 at the job's per-rank log files; returns the logs directory."""
    logs = os.path.join(job_dir, "logs")
    os.makedirs(logs, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    for fd, name in ((1, "rank.%d.out" % rank), (2, "rank.%d.err" % rank)):
        target = os.open(os.path.join(logs, name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(target, fd)
        os.close(target)
    return logs


def line_buffered():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True, errors="backslashreplace")
        except (AttributeError, ValueError):
            pass
    os.environ["PYTHONUNBUFFERED"] = "1"


def setup_environment(rank, size, local_rank, local_size):
    env = os.environ
    env["RANK"] = str(rank)
    env["WORLD_SIZE"] = str(size)
    env["LOCAL_RANK"] = str(local_rank)
    env["LOCAL_WORLD_SIZE"] = str(local_size)
    env["MASTER_ADDR"] = env.get("PYSTRIB_MASTER_ADDR") or "127.0.0.1"
    env["MASTER_PORT"] = env.get("PYSTRIB_MASTER_PORT") or "29500"
    devices = gpus_for(env.get("PYSTRIB_GPUS"), local_rank, local_size)
    if devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    results = os.path.abspath(env.get("PYSTRIB_RESULTS") or "results")
    os.makedirs(results, exist_ok=True)
    env["PYSTRIB_RESULTS"] = results
    inputs = os.path.join(os.path.dirname(os.path.abspath(__file__)), "inputs")
    env["PYSTRIB_INPUTS"] = inputs
    return results, inputs


def load_pushed(inputs):
    path = os.path.join(inputs, "pystrib_push.pkl")
    if not os.path.exists(path):
        return {}
    with open(path, "rb") as f:
        pushed = pickle.load(f)
    if not isinstance(pushed, dict):
        raise TypeError("%s holds a %s, not a dict" % (path, type(pushed).__name__))
    return {str(k): v for k, v in pushed.items()}


INJECTED = ("rank", "world_size", "__process_id__")


def pull_names(spec, namespace):
    spec = spec.strip()
    if spec == "*":
        return sorted(n for n, v in namespace.items()
                      if not n.startswith("_") and n not in INJECTED
                      and not isinstance(v, types.ModuleType))
    return [n.strip() for n in spec.split(",") if n.strip()]


def write_pull(spec, namespace, results, rank):
    values, missing, errors = {}, [], {}
    for name in pull_names(spec, namespace):
        if name not in namespace:
            missing.append(name)
            continue
        value = namespace[name]
        try:
            pickle.dumps(value, protocol=4)
            values[name] = value
        except Exception as e:  # anything a __reduce__ may raise
            try:
                shown = repr(value)
            except Exception:
                shown = "<unrepresentable %s>" % type(value).__name__
            if len(shown) > 200:
                shown = shown[:200] + "..."
            errors[name] = "%s: %s; value: %s" % (type(e).__name__, e, shown)
    record = {"version": PULL_VERSION, "rank": rank, "values": values,
              "missing": missing, "errors": errors}
    folder = os.path.join(results, ".pystrib")
    os.makedirs(folder, exist_ok=True)
    _atomic_write(os.path.join(folder, "pull.rank.%d.pkl" % rank),
                  pickle.dumps(record, protocol=4))


def exit_code_of(e):
    code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xff
    print(code, file=sys.stderr)
    return 1


def print_user_traceback(exc_type, exc, tb):
    """The traceback from the cell's first frame on: bootstrap's own frames are noise."""
    here = os.path.abspath(__file__)
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) == here:
        tb = tb.tb_next
    traceback.print_exception(exc_type, exc, tb)


def _on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


NAME_MAX = 4096


def display_name(cell):
    """The name the cell was given to run with, from user_code.name beside it, else cell.

    pystrib writes that file into the cell layer (the cell is always
    user_code.py there), so that a traceback names the user's own file.
    """
    try:
        with open(os.path.splitext(cell)[0] + ".name", "rb") as f:
            name = f.read(NAME_MAX + 1).decode("utf-8", "replace").strip()
    except OSError:
        return cell
    if not name or len(name) > NAME_MAX or "\n" in name or "\0" in name:
        return cell
    return name


def compile_cell(cell):
    """The cell's code, compiled under its display name; its lines are kept for tracebacks."""
    with open(cell, "rb") as f:
        source = f.read()
    name = display_name(cell)
    code = compile(source, name, "exec")
    if name != cell:
        # The name is not a file here: linecache gets the lines (an mtime of
        # None means checkcache never drops them).
        text = source.decode("utf-8", "replace")
        linecache.cache[name] = (len(text), None, text.splitlines(True), name)
    return code


def run_cell(cell, args, rank, size, inputs):
    code = compile_cell(cell)
    module = types.ModuleType("__main__")
    namespace = module.__dict__
    namespace.update(__file__=cell, __builtins__=builtins, __cached__=None,
                     __loader__=None, __package__=None, __spec__=None)
    namespace.update(load_pushed(inputs))
    namespace.update(rank=rank, world_size=size, __process_id__=rank)
    sys.modules["__main__"] = module
    sys.argv = [cell] + list(args)
    front = []
    for path in (os.getcwd(), os.environ.get("PYSTRIB_PROJECT"), os.path.dirname(cell)):
        if not path or not os.path.isdir(path):
            continue
        if path not in front:
            front.append(path)
    sys.path[:1] = front
    exec(code, namespace)
    return namespace


def main(argv):
    if len(argv) < 2:
        print("usage: bootstrap.py CELL.py [ARGS...]", file=sys.stderr)
        return 2
    cell = os.path.abspath(argv[1])
    rank, size, local_rank, local_size = topology()
    job_dir = os.environ.get("PYSTRIB_JOB_DIR")
    logs = redirect_output(job_dir, rank) if job_dir else None
    line_buffered()
    signal.signal(signal.SIGTERM, _on_sigterm)
    code = 1
    try:
        results, inputs = setup_environment(rank, size, local_rank, local_size)
        namespace = run_cell(cell, argv[2:], rank, size, inputs)
        pull = os.environ.get("PYSTRIB_PULL")
        if pull:
            write_pull(pull, namespace, results, rank)
        code = 0
    except SystemExit as e:
        code = exit_code_of(e)
    except KeyboardInterrupt:
        traceback.print_exc()
        code = 130
    except BaseException:
        print_user_traceback(*sys.exc_info())
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        if logs:
            _atomic_write(os.path.join(logs, "rank.%d.exit" % rank), b"%d\n" % code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
