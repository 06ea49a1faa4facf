"""Tests of src/remote/session.py, the hub and the rank workers of a session.

Run with Debian's interpreter (it has pytest and mpi4py):
    /usr/bin/python3 -m pytest tests/python/test_session.py

Every test starts a real hub with real Open MPI ranks (mpirun -np 2) and talks
to it over hub.sock as pystrib's client does (docs/sessions.md). Most share
one session; those that end theirs start their own.
"""

import json
import os
import pickle
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "..", "src", "remote")
PYTHON = sys.executable
MPIRUN = shutil.which("mpirun")
MIB = 1 << 20

pytestmark = pytest.mark.skipif(not MPIRUN, reason="Open MPI's mpirun is not installed")

LAUNCHER_VARS = ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_RANK", "PMI_SIZE",
                 "SLURM_PROCID", "SLURM_NTASKS", "PYSTRIB_GPUS", "PYSTRIB_JOB_DIR",
                 "CUDA_VISIBLE_DEVICES", "PYSTRIB_MASTER_PORT")


def have(module):
    r = subprocess.run([PYTHON, "-c", "import " + module], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    return r.returncode == 0


class Session:
    """A hub started as pystrib's run.sh would start it, in a job directory."""

    def __init__(self, tmp, np=2, idle_timeout=None, env=None):
        self.tmp = tmp
        tmp.mkdir(exist_ok=True)
        cell = tmp / "cell"
        cell.mkdir()
        for name in ("session.py", "bootstrap.py"):
            shutil.copy(os.path.join(SRC, name), cell / name)
        self.job = tmp / "job"
        self.job.mkdir()
        self.work = tmp / "work"
        self.work.mkdir()
        script = str(cell / "session.py")
        cmd = [PYTHON, script, "hub", "--dir", str(self.job), "--np", str(np)]
        if idle_timeout is not None:
            cmd += ["--idle-timeout", str(idle_timeout)]
        cmd += ["--", MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(np),
                PYTHON, script, "worker", "--dir", str(self.job)]
        full_env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
        full_env["PYSTRIB_RESULTS"] = str(tmp / "results")
        full_env.update(env or {})
        self.log = open(str(tmp / "hub.log"), "wb")
        self.shm_before = set(os.listdir("/dev/shm"))
        self.proc = subprocess.Popen(cmd, cwd=str(self.work), env=full_env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_state(("idle",), 90)

    def status(self):
        try:
            with open(str(self.job / "session.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def wait_state(self, states, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.status().get("state") in states:
                return self.status()
            if self.proc.poll() is not None and self.status().get("state") not in states:
                break
            time.sleep(0.05)
        raise AssertionError("session not %s: %s\n%s" % (states, self.status(), self.logtext()))

    def logtext(self):
        return (self.tmp / "hub.log").read_text(errors="replace")

    def client(self, replay=None):
        c = Client(str(self.job / "hub.sock"))
        hello = {"op": "hello", "id": "h"}
        if replay:
            hello["replay"] = replay
        c.send(hello)
        c.hello = c.recv()
        assert c.hello["op"] == "hello", c.hello
        return c

    def pids(self):
        st = self.status()
        return [r["pid"] for r in st.get("ranks", []) if r.get("pid")]

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Client:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(path)
        self.rfile = self.sock.makefile("rb")
        self.n = 0

    def send(self, msg, payload=None):
        data = json.dumps(msg).encode() + b"\n"
        self.sock.sendall(data)
        if payload is not None:
            self.sock.sendall(payload)

    def recv(self):
        line = self.rfile.readline()
        assert line, "the hub closed the connection"
        msg = json.loads(line)
        if msg.get("bytes"):
            msg["payload"] = self.rfile.read(msg["bytes"])
            assert len(msg["payload"]) == msg["bytes"]
        return msg

    def request(self, msg, payload=None):
        self.n += 1
        msg = dict(msg, id=self.n)
        self.send(msg, payload)
        return self.n

    def until_done(self, rid):
        got = []
        while True:
            m = self.recv()
            got.append(m)
            if m.get("id") == rid and m["op"] in ("done", "error"):
                return got
            if m["op"] == "stopped":
                return got

    def exec(self, code, name="cell.py", **fields):
        msg = {"op": "exec", "code": code, "name": name}
        msg.update(fields)
        return self.until_done(self.request(msg))

    def close(self):
        self.sock.close()


def text_of(messages, rank, stream="stdout"):
    return "".join(m["text"] for m in messages
                   if m["op"] == "output" and m["rank"] == rank and m["stream"] == stream)


def done_of(messages):
    assert messages[-1]["op"] == "done", messages[-1]
    return messages[-1]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    s = Session(tmp_path_factory.mktemp("shared"))
    yield s
    s.close()


@pytest.fixture
def client(session):
    c = session.client()
    yield c
    c.close()


def test_state_persists_across_cells(client):
    got = client.exec("x = rank * 10 + world_size\nprint('set', x)\n")
    assert got[0]["op"] == "started"
    assert done_of(got)["status"] == "ok"
    assert text_of(got, 0) == "set 2\n" and text_of(got, 1) == "set 12\n"
    got = client.exec("print('read', x, __process_id__, __name__)\n")
    assert text_of(got, 0) == "read 2 0 __main__\n"
    assert text_of(got, 1) == "read 12 1 __main__\n"


def test_rank_environment_as_for_a_job(client):
    got = client.exec("import os\nprint(os.environ['RANK'], os.environ['WORLD_SIZE'], "
                      "os.environ['LOCAL_RANK'], os.environ['MASTER_ADDR'])\n")
    assert text_of(got, 1) == "1 2 1 127.0.0.1\n"


def test_files_of_a_cell(session, client):
    got = client.exec("import sys\nprint('out', rank)\nprint('err', rank, file=sys.stderr)\n")
    done = done_of(got)
    folder = session.job / "cells" / str(done["cell"])
    assert (folder / "rank.1.out").read_text() == "out 1\n"
    assert (folder / "rank.1.err").read_text() == "err 1\n"
    result = json.loads((folder / "result.json").read_text())
    assert result["status"] == "ok" and result["cell"] == done["cell"]


def test_ranks_selects_the_ranks(client):
    got = client.exec("print('only', rank)\n", ranks=[1])
    assert text_of(got, 1) == "only 1\n" and text_of(got, 0) == ""
    assert [r["rank"] for r in done_of(got)["ranks"]] == [1]


def test_a_raising_cell_shows_its_traceback_and_the_next_works(client):
    got = client.exec("def f():\n    raise KeyError('boom')\nif rank == 1:\n    f()\n",
                      name="my_cell.py")
    done = done_of(got)
    assert done["status"] == "error"
    assert done["ranks"][0]["status"] == "ok"
    error = done["ranks"][1]["error"]
    assert error["type"] == "KeyError"
    assert 'File "my_cell.py", line 4' in error["traceback"]
    assert "raise KeyError('boom')" in error["traceback"]
    assert "session.py" not in error["traceback"]
    # Only in `done`: a notebook raises it, and would show a streamed copy too.
    assert "KeyError" not in text_of(got, 1, "stderr")
    assert done_of(client.exec("print('after')\n"))["status"] == "ok"


def test_a_syntax_error_names_the_cell(client):
    done = done_of(client.exec("x = = 1\n", name="bad.py"))
    assert done["ranks"][0]["error"]["type"] == "SyntaxError"
    assert 'File "bad.py", line 1' in done["ranks"][0]["error"]["traceback"]


def test_fd_level_output_of_subprocesses_is_captured(client):
    got = client.exec("import os, subprocess\nos.write(1, b'raw\\n')\n"
                      "subprocess.run(['echo', 'child', str(rank)])\n")
    assert text_of(got, 0) == "raw\nchild 0\n"


def test_output_streams_as_it_comes(client):
    rid = client.request({"op": "exec", "name": "slow.py",
                          "code": "import time\nprint('first', flush=True)\ntime.sleep(1.5)\n"})
    t0 = time.time()
    while True:
        m = client.recv()
        if m["op"] == "output":
            break
    assert m["text"] == "first\n" and time.time() - t0 < 1.0
    assert done_of(client.until_done(rid))["status"] == "ok"


def test_mpi_communicator_across_cells(client):
    client.exec("from mpi4py import MPI\ncomm = MPI.COMM_WORLD\n")
    got = client.exec("print('sum', comm.allreduce(rank + 1))\n")
    assert text_of(got, 0) == "sum 3\n" and text_of(got, 1) == "sum 3\n"
    got = client.exec("print('max', MPI.COMM_WORLD.allreduce(rank, op=MPI.MAX))\n")
    assert text_of(got, 1) == "max 1\n"


@pytest.mark.skipif(not have("torch"), reason="python3-torch is not installed")
def test_torch_process_group_set_up_before_the_first_cell(client):
    got = client.exec("import torch, torch.distributed as dist\n"
                      "print('init', dist.is_initialized(), dist.get_backend())\n")
    assert text_of(got, 0) == "init True gloo\n"
    client.exec("t = torch.tensor([rank + 1.0])\ndist.all_reduce(t)\n")
    got = client.exec("print('sum', t.item())\n")
    assert text_of(got, 1) == "sum 3.0\n"


FAKE_TORCH = {
    "__init__.py": "from . import cuda, distributed\n",
    "cuda.py": "def is_available():\n    return False\n",
    "distributed.py": (
        "calls = []\n"
        "def is_available():\n    return True\n"
        "def is_initialized():\n    return bool(calls)\n"
        "def is_nccl_available():\n    return False\n"
        "def init_process_group(backend, rank, world_size):\n"
        "    import os\n"
        "    if os.environ.get('FAKE_TORCH_FAIL'):\n"
        "        raise RuntimeError('no rendezvous')\n"
        "    calls.append((backend, rank, world_size, os.environ['MASTER_ADDR'],\n"
        "                  os.environ['MASTER_PORT'] != '29500'))\n"
        "def destroy_process_group():\n    pass\n"),
}


def test_torch_process_group_is_initialised_once_where_torch_imports(tmp_path):
    """A stand-in torch (where Debian's is not installed) records what the worker calls."""
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    for name, text in FAKE_TORCH.items():
        (fake / name).write_text(text)
    s = Session(tmp_path / "s", env={"PYTHONPATH": str(tmp_path / "fake")})
    try:
        c = s.client()
        c.exec("pass\n")
        got = c.exec("import torch.distributed as dist\nprint(dist.calls)\n")
        assert text_of(got, 1) == "[('gloo', 1, 2, '127.0.0.1', True)]\n"
    finally:
        s.close()


def test_a_failed_init_fails_the_start_with_a_clear_error(tmp_path):
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    for name, text in FAKE_TORCH.items():
        (fake / name).write_text(text)
    with pytest.raises(AssertionError):
        Session(tmp_path / "s", env={"PYTHONPATH": str(tmp_path / "fake"),
                                     "FAKE_TORCH_FAIL": "1"})
    job = tmp_path / "s" / "job"
    deadline = time.time() + 30
    while json.loads((job / "session.json").read_text())["state"] != "stopped":
        assert time.time() < deadline
        time.sleep(0.1)
    st = json.loads((job / "session.json").read_text())
    assert st["stopped"] == "start"
    assert st["error"] in ("rank %d failed to start: RuntimeError: "
                           "no rendezvous" % r for r in (0, 1))


def test_interrupt_raises_in_the_cell_and_the_session_goes_on(client):
    rid = client.request({"op": "exec", "code": "import time\nprint('sleeping', flush=True)\n"
                          "time.sleep(60)\n", "name": "sleep.py"})
    while client.recv()["op"] != "output":
        pass
    t0 = time.time()
    iid = client.request({"op": "interrupt"})
    got = client.until_done(rid)
    assert time.time() - t0 < 2
    acks = [m for m in got if m.get("id") == iid]
    assert acks and acks[0]["op"] == "done"
    done = done_of(got)
    assert done["status"] == "interrupted"
    assert {r["status"] for r in done["ranks"]} == {"interrupted"}
    # The traceback names the cell's lines (none when the interrupt came
    # before its first), never the worker's signal handler.
    for r in done["ranks"]:
        tb = r["error"]["traceback"]
        assert "KeyboardInterrupt" in tb and "session.py" not in tb, tb
    assert text_of(client.exec("print('next')\n"), 0) == "next\n"


def test_timeout_interrupts_the_cell(client):
    t0 = time.time()
    done = done_of(client.exec("import time\ntime.sleep(30)\n", timeout=0.5))
    assert done["status"] == "timeout" and time.time() - t0 < 3
    assert done_of(client.exec("pass\n"))["status"] == "ok"


def test_push_pull_scatter_gather(client):
    data = pickle.dumps({"a": [1, 2], "b": "text"}, protocol=4)
    assert done_of(client.until_done(client.request({"op": "push", "bytes": len(data)},
                                                    data)))["status"] == "ok"
    got = client.exec("print(a, b)\n")
    assert text_of(got, 1) == "[1, 2] text\n"
    got = client.until_done(client.request({"op": "pull", "names": ["a", "rank", "nope"]}))
    values = [m for m in got if m["op"] == "value"]
    assert [v["rank"] for v in values] == [0, 1]
    assert pickle.loads(values[1]["payload"]) == {"a": [1, 2], "rank": 1}
    assert values[1]["missing"] == ["nope"]
    assert done_of(got)["status"] == "ok"

    seq = pickle.dumps(list(range(7)), protocol=4)
    done = done_of(client.until_done(client.request(
        {"op": "scatter", "name": "part", "bytes": len(seq)}, seq)))
    assert done["status"] == "ok"
    got = client.exec("print(part)\n")
    assert text_of(got, 0) == "[0, 1, 2, 3]\n" and text_of(got, 1) == "[4, 5, 6]\n"

    client.exec("squares = tuple(i * i for i in part)\n")
    got = client.until_done(client.request({"op": "gather", "name": "squares"}))
    values = [m for m in got if m["op"] == "value"]
    assert len(values) == 1 and "rank" not in values[0]
    assert pickle.loads(values[0]["payload"]) == [i * i for i in range(7)]

    got = client.until_done(client.request({"op": "gather", "name": "b"}))
    assert done_of(got)["status"] == "error"
    assert "str" in done_of(got)["message"]
    assert done_of(client.exec("pass\n"))["status"] == "ok"


def test_a_256_mib_value_each_way(session, client):
    size = 256 * MIB
    if have("numpy"):
        client.exec("import numpy\n")
    data = pickle.dumps({"big": b"\x01" * size}, protocol=4)
    t0 = time.time()
    rid = client.request({"op": "push", "bytes": len(data), "ranks": [1]}, data)
    del data
    assert done_of(client.until_done(rid))["status"] == "ok"
    got = client.exec("print(len(big), big[:1], big[-1:])\nbig2 = big[:-1] + b'\\x02'\n",
                      ranks=[1])
    assert text_of(got, 1) == "%d b'\\x01' b'\\x01'\n" % size
    got = client.until_done(client.request({"op": "pull", "names": ["big2"], "ranks": [1]}))
    value = [m for m in got if m["op"] == "value"][0]
    back = pickle.loads(value.pop("payload"))["big2"]
    assert len(back) == size and back[-1:] == b"\x02" and back[:1] == b"\x01"
    del back
    assert time.time() - t0 < 60
    client.exec("del big, big2\n", ranks=[1])
    # The hub relays in chunks: its peak memory stays far below one value.
    with open("/proc/%d/status" % session.proc.pid) as f:
        peak = [int(l.split()[1]) for l in f if l.startswith("VmHWM:")][0] * 1024
    assert peak < 64 * MIB, peak


def test_reconnect_mid_cell_replays_from_offsets(session):
    first = session.client()
    code = ("import sys, time\n"
            "for i in range(30):\n"
            "    print('line', i, flush=True)\n"
            "    print('eline', i, file=sys.stderr, flush=True)\n"
            "    time.sleep(0.04)\n")
    first.request({"op": "exec", "code": code, "name": "loop.py"})
    started = first.recv()
    cell = started["cell"]
    seen = {0: ["", ""], 1: ["", ""]}
    offsets = {0: [0, 0], 1: [0, 0]}
    count = 0
    while count < 6:
        m = first.recv()
        if m["op"] != "output":
            continue
        i = 0 if m["stream"] == "stdout" else 1
        assert m["offset"] == offsets[m["rank"]][i]
        seen[m["rank"]][i] += m["text"]
        offsets[m["rank"]][i] += len(m["text"].encode())
        count += 1
    first.close()
    time.sleep(0.3)
    again = session.client(replay={"cell": cell, "offsets": {
        str(r): offsets[r] for r in offsets}})
    assert again.hello["cell"] == cell
    got = again.until_done(started["id"])
    for m in got:
        if m["op"] == "output":
            i = 0 if m["stream"] == "stdout" else 1
            assert m["offset"] == offsets[m["rank"]][i], m
            seen[m["rank"]][i] += m["text"]
            offsets[m["rank"]][i] += len(m["text"].encode())
    assert done_of(got)["cell"] == cell
    for r in (0, 1):
        assert seen[r][0] == "".join("line %d\n" % i for i in range(30))
        assert seen[r][1] == "".join("eline %d\n" % i for i in range(30))
    again.close()
    # The cell has ended: a replay now comes from the files and result.json alone.
    late = session.client(replay={"cell": cell, "offsets": {"0": [len("line 0\n"), 0]}})
    got = late.until_done(started["id"])
    outs = [m for m in got if m["op"] == "output" and m["rank"] == 0 and
            m["stream"] == "stdout"]
    assert "".join(m["text"] for m in outs) == "".join("line %d\n" % i for i in range(1, 30))
    assert done_of(got)["status"] == "ok"
    late.close()


def test_requests_wait_their_turn(session):
    a = session.client()
    b = session.client()
    ra = a.request({"op": "exec", "code": "import time\ntime.sleep(0.5)\nprint('a')\n"})
    assert a.recv()["op"] == "started"
    rb = b.request({"op": "exec", "code": "print('b')\n"})
    st = session.client()
    st.request({"op": "status"})
    status = st.recv()
    assert status["op"] == "status" and status["state"] == "busy" and status["queued"] == 1
    got_a = a.until_done(ra)
    got_b = b.until_done(rb)
    assert got_b[0]["cell"] == got_a[0]["cell"] + 1
    for c in (a, b, st):
        c.close()


def hello_as(session, token, refs=None):
    c = Client(str(session.job / "hub.sock"))
    msg = {"op": "hello", "id": "h", "client": token}
    if refs is not None:
        msg["refs"] = refs
    c.send(msg)
    c.hello = c.recv()
    assert c.hello["op"] == "hello", c.hello
    return c


def test_a_client_learns_which_of_its_requests_started(session):
    first = hello_as(session, "tok-1")
    first.send({"op": "exec", "id": "a", "ref": 1,
                "code": "import time\ntime.sleep(0.6)\nprint('a ran')\n"})
    first.send({"op": "exec", "id": "b", "ref": 2, "code": "print('b ran')\n"})
    started = first.recv()
    assert started["op"] == "started" and started["id"] == "a"
    first.close()
    # The old connection is ended by the new hello (whether or not the hub
    # saw it close): b, queued, is dropped and said not to have started.
    again = hello_as(session, "tok-1", refs=[1, 2])
    assert again.hello["started"] == [{"ref": 1, "cell": started["cell"]}]
    again.send({"op": "exec", "id": "b", "ref": 2, "code": "print('b ran')\n"})
    got = again.until_done("b")
    assert text_of(got, 0) == "b ran\n" and done_of(got)["cell"] == started["cell"] + 1
    late = hello_as(session, "tok-1", refs=[1, 2, 3])
    assert late.hello["started"] == [{"ref": 1, "cell": started["cell"]},
                                     {"ref": 2, "cell": started["cell"] + 1}]
    other = hello_as(session, "tok-2", refs=[1])
    assert other.hello["started"] == []
    for c in (again, late, other):
        c.close()


def test_a_queued_push_does_not_hold_back_an_interrupt(session, client):
    rid = client.request({"op": "exec", "code": "import time\nprint('busy', flush=True)\n"
                          "time.sleep(60)\n"})
    while client.recv()["op"] != "output":
        pass
    data = pickle.dumps({"queued": b"q" * (20 * MIB)}, protocol=4)
    pid = client.request({"op": "push", "bytes": len(data)}, data)
    t0 = time.time()
    client.request({"op": "interrupt"})
    got = client.until_done(rid)
    assert done_of(got)["status"] == "interrupted" and time.time() - t0 < 3
    assert done_of(client.until_done(pid))["status"] == "ok"
    assert text_of(client.exec("print(len(queued))\ndel queued\n"), 1) == "%d\n" % (20 * MIB)
    assert not os.listdir(str(session.job / "spool"))


def test_unknown_and_bad_requests_get_errors(client):
    rid = client.request({"op": "frobnicate"})
    m = client.recv()
    assert m == {"op": "error", "id": rid, "message": 'unknown op "frobnicate"'}
    rid = client.request({"op": "exec", "code": "pass", "ranks": [5]})
    assert client.recv()["op"] == "error"


def test_permissions(session):
    assert stat.S_IMODE(os.stat(str(session.job)).st_mode) == 0o700
    for name in ("hub.sock", "ranks.sock"):
        mode = os.stat(str(session.job / name)).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(os.stat(str(session.job / "cells")).st_mode) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_another_user_cannot_connect(session):
    probe = ("import socket, sys\n"
             "s = socket.socket(socket.AF_UNIX)\n"
             "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    sys.exit(13)\n")
    r = subprocess.run([PYTHON, "-c", probe, str(session.job / "hub.sock")],
                       preexec_fn=lambda: (os.setgid(65534), os.setuid(65534)))
    assert r.returncode == 13


def load_session_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("pystrib_session",
                                                  os.path.join(SRC, "session.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gather_program(module, kind, pieces):
    prefix, suffix = module.GATHER_PROGRAMS[kind]
    out = prefix
    for piece in pieces:
        out += module.PIECE_HEAD + module.struct.pack("<Q", len(piece)) + piece
        out += module.PIECE_TAIL
    return out + suffix


def test_gather_programs_load_with_the_standard_unpickler(monkeypatch):
    module = load_session_module()
    pieces = [pickle.dumps(v, protocol=4) for v in ([1, 2], (3,), range(4, 6))]
    assert pickle.loads(gather_program(module, "list", pieces)) == [1, 2, 3, 4, 5]
    fake = type(sys)("numpy")
    fake.concatenate = lambda parts: ("concatenated", parts)
    monkeypatch.setitem(sys.modules, "numpy", fake)
    pieces = [pickle.dumps("a", protocol=4), pickle.dumps("b", protocol=4)]
    assert pickle.loads(gather_program(module, "ndarray", pieces)) == \
        ("concatenated", ("a", "b"))


def test_status(session, client):
    rid = client.request({"op": "status"})
    m = client.recv()
    assert m["op"] == "status" and m["id"] == rid and m["np"] == 2
    assert [r["rank"] for r in m["ranks"]] == [0, 1]
    assert all(r["state"] == "idle" and r["pid"] for r in m["ranks"])
    assert m["broken"] is None and m["idle_since"] <= time.time()


def test_trivial_round_trip_is_milliseconds(client):
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        client.exec("pass\n")
        times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    print("trivial exec round trip on 2 ranks: median %.2f ms" % (median * 1000))
    assert median < 0.05


# -- sessions of their own


def gone(pids, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        alive = [p for p in pids if os.path.exists("/proc/%d" % p)]
        if not alive:
            return True
        time.sleep(0.05)
    return False


def assert_clean_end(s, reason):
    st = s.wait_state(("stopped",), 30)
    assert st["stopped"] == reason
    assert s.proc.wait(15) in (0, 1)
    assert gone(s.pids())
    assert not (s.job / "hub.sock").exists() and not (s.job / "ranks.sock").exists()
    # This session's segments (its Open MPI job's tag), not another MPI
    # job's that ran meanwhile on the machine.
    tags = {r["shm"] for r in st["ranks"] if r.get("shm")}
    leftovers = set(os.listdir("/dev/shm")) - s.shm_before
    assert not [n for n in leftovers if "vader" in n and
                (not tags or any(".%s." % t in n or n.endswith(".%s" % t) for t in tags))], leftovers


def test_stop_leaves_no_process(tmp_path):
    s = Session(tmp_path)
    try:
        c = s.client()
        c.exec("from mpi4py import MPI\nMPI.COMM_WORLD.allreduce(1)\n")
        pids = s.pids()
        c.request({"op": "stop"})
        assert c.recv() == {"op": "stopped", "reason": "stop"}
        assert_clean_end(s, "stop")
        assert gone(pids)
        out = subprocess.run(["pgrep", "-f", str(s.job)], stdout=subprocess.PIPE)
        assert out.stdout == b""
    finally:
        s.close()


def test_sigterm_is_a_clean_stop(tmp_path):
    s = Session(tmp_path)
    try:
        c = s.client()
        rid = c.request({"op": "exec", "code": "import time\ntime.sleep(60)\n"})
        assert c.recv()["op"] == "started"
        pids = s.pids()
        s.proc.send_signal(signal.SIGTERM)
        got = c.until_done(rid)
        assert done_of(got)["status"] == "stopped"
        assert c.recv() == {"op": "stopped", "reason": "cancel"}
        assert_clean_end(s, "cancel")
        assert gone(pids)
    finally:
        s.close()


def test_a_second_interrupt_stops_the_session(tmp_path):
    s = Session(tmp_path)
    try:
        c = s.client()
        rid = c.request({"op": "exec", "code": "import signal, time\n"
                         "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                         "print('stuck', flush=True)\ntime.sleep(60)\n"})
        while c.recv()["op"] != "output":
            pass
        c.request({"op": "interrupt"})
        time.sleep(0.3)
        c.request({"op": "interrupt"})
        got = c.until_done(rid)
        assert done_of(got)["status"] == "interrupted"
        while True:
            m = c.recv()
            if m["op"] == "stopped":
                break
        assert m["reason"] == "interrupt"
        assert_clean_end(s, "interrupt")
    finally:
        s.close()


def test_a_rank_that_dies_breaks_the_session(tmp_path):
    s = Session(tmp_path)
    try:
        c = s.client()
        t0 = time.time()
        got = c.exec("import os, time\nif rank == 1:\n    os._exit(3)\ntime.sleep(30)\n")
        assert time.time() - t0 < 15
        broken = [m for m in got if m["op"] == "broken"]
        assert broken and broken[0]["rank"] == 1 and broken[0]["reason"] == "exited 3"
        done = done_of(got)
        assert done["status"] == "broken" and "rank 1 exited 3" in done["message"]
        rid = c.request({"op": "exec", "code": "pass\n"})
        assert c.recv() == {"op": "error", "id": rid,
                            "message": "session is broken: rank 1 exited 3"}
        st = s.status()
        assert st["state"] == "broken" and st["broken"] == {"rank": 1, "reason": "exited 3"}
        c.request({"op": "stop"})
        assert c.recv()["op"] == "stopped"
        assert_clean_end(s, "stop")
    finally:
        s.close()


LAST_WORDS = {
    "flush": "import os\nif rank == 1:\n    print('last words', flush=True)\n    os._exit(3)\n"
             "import time\ntime.sleep(30)\n",
    # Line-buffered as in a job (bootstrap.line_buffered): no flush needed.
    "print": "import os\nif rank == 1:\n    print('last words')\n    os._exit(3)\n"
             "import time\ntime.sleep(30)\n",
    "segfault": "import ctypes, sys\nif rank == 1:\n    sys.stdout.write('last words\\n')\n"
                "    ctypes.string_at(0)\nimport time\ntime.sleep(30)\n",
}


@pytest.mark.parametrize("how", sorted(LAST_WORDS))
def test_a_dying_ranks_last_output_comes_before_broken(tmp_path, how):
    s = Session(tmp_path, env={"PYSTRIB_SESSION_TORCH": "0"})
    try:
        c = s.client()
        for _ in range(3):
            got = c.exec("print('warm', rank)\n")
            assert done_of(got)["status"] == "ok"
        got = c.exec(LAST_WORDS[how])
        ops = [(m["op"], m.get("rank"), m.get("text")) for m in got]
        assert ("output", 1, "last words\n") in ops, ops
        broken = [i for i, m in enumerate(got) if m["op"] == "broken"]
        assert broken and ops.index(("output", 1, "last words\n")) < broken[0], ops
        assert got[broken[0]]["rank"] == 1
        assert done_of(got)["status"] == "broken"
        cell = got[0]["cell"]
        assert (s.job / "cells" / str(cell) / "rank.1.out").read_text() == "last words\n"
    finally:
        s.close()


def test_a_killed_rank_says_which_signal(tmp_path):
    s = Session(tmp_path)
    try:
        c = s.client()
        os.kill(s.pids()[0], signal.SIGKILL)
        m = c.recv()
        assert m == {"op": "broken", "rank": 0, "reason": "killed by SIGKILL"}
    finally:
        s.close()
    assert_clean_end(s, "cancel")


def test_idle_timeout_stops_the_session(tmp_path):
    s = Session(tmp_path, idle_timeout=1.5)
    try:
        c = s.client()
        c.exec("pass\n")
        pids = s.pids()
        t0 = time.time()
        m = c.recv()
        assert m == {"op": "stopped", "reason": "idle"}
        assert 1.0 < time.time() - t0 < 5
        assert_clean_end(s, "idle")
        assert gone(pids)
    finally:
        s.close()


def test_start_failure_is_in_session_json(tmp_path):
    job = tmp_path / "job"
    script = os.path.join(SRC, "session.py")
    r = subprocess.run([PYTHON, script, "hub", "--dir", str(job), "--np", "2",
                        "--start-timeout", "2", "--", "sleep", "30"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert r.returncode == 1
    st = json.loads((job / "session.json").read_text())
    assert st["state"] == "stopped" and st["stopped"] == "start"
    assert st["error"] == "ranks 0,1 not ready within 2 s"


# ---- project files (the `files` request)

def tar_of(entries):
    """A tar of entries: (name, text) files, (name, None) directories,
    (name, "->target") symlinks, as pystrib's client writes them."""
    import io
    import tarfile
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, text in entries:
            info = tarfile.TarInfo(name)
            if text is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif text.startswith("->"):
                info.type, info.linkname = tarfile.SYMTYPE, text[2:]
                tar.addfile(info)
            else:
                data = text.encode()
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def unpack(module, root, entries, removed=()):
    import io
    data = tar_of(entries) if entries else None
    return module.unpack_files(str(root), io.BytesIO(data) if data else None, list(removed))


def test_unpack_writes_files_and_removes_paths(tmp_path):
    module = load_session_module()
    root = tmp_path / "project"
    (root / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text("x = 1\n")
    (root / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"stale")
    (root / "old" / "deep").mkdir(parents=True)
    (root / "old" / "deep" / "f.txt").write_text("gone\n")
    got = unpack(module, root, [("pkg", None), ("pkg/mod.py", "x = 2\n"), ("new.py", "y = 3\n"),
                                ("pkg/link", "->mod.py")], removed=["old/deep/f.txt"])
    assert got == (3, 1)
    assert (root / "pkg" / "mod.py").read_text() == "x = 2\n"
    assert (root / "new.py").read_text() == "y = 3\n"
    assert os.readlink(str(root / "pkg" / "link")) == "mod.py"
    assert not (root / "pkg" / "__pycache__" / "mod.cpython-311.pyc").exists()
    assert not (root / "old").exists()      # the directories it left empty go too
    assert not [n for n in os.listdir(str(root)) if n.startswith(".pystrib-")]


@pytest.mark.parametrize("entries,removed", [
    ([("/etc/evil", "x")], []),
    ([("../evil", "x")], []),
    ([("a/../../evil", "x")], []),
    ([("a/./b", "x")], []),
    ([("out", "->../elsewhere")], []),
    ([("out", "->/etc/passwd")], []),
    ([("a/b/out", "->../../../x")], []),
    ([], ["../evil"]),
    ([], ["/etc/passwd"]),
    ([("ok.py", "fine"), ("through/evil", "x")], []),  # through/ is a symlink out
    ([], ["through/evil"]),
    # x/y is the project itself, so x/y/z -> .. is its parent: nothing under x/y.
    ([("x/y", "->.."), ("x/y/z", "->.."), ("x/y/z/evil", "x")], []),
])
def test_unpack_refuses_unsafe_paths_and_writes_nothing(tmp_path, entries, removed):
    module = load_session_module()
    root = tmp_path / "project"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "evil").write_text("keep\n")
    os.symlink(str(outside), str(root / "through"))
    with pytest.raises(module.Unsafe):
        unpack(module, root, entries, removed)
    assert sorted(os.listdir(str(root))) == ["through"]
    assert (outside / "evil").read_text() == "keep\n"
    assert sorted(os.listdir(str(tmp_path))) == ["outside", "project"]


def test_unpack_refuses_devices_and_hard_links(tmp_path):
    import io
    import tarfile
    module = load_session_module()
    for kind in (tarfile.LNKTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE):
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as tar:
            info = tarfile.TarInfo("x")
            info.type, info.linkname = kind, "y"
            tar.addfile(info)
        with pytest.raises(module.Unsafe):
            module.unpack_files(str(tmp_path), io.BytesIO(out.getvalue()), [])
        assert not os.path.lexists(str(tmp_path / "x"))


def test_files_before_a_cell_reach_the_ranks(tmp_path):
    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    (project / "pkg" / "__init__.py").write_text("")
    (project / "pkg" / "mod.py").write_text("VALUE = 1\n")
    s = Session(tmp_path, env={"PYSTRIB_PROJECT": str(project)})
    c = s.client()
    try:
        got = c.exec("import pkg.mod\nprint(pkg.mod.VALUE)\n")
        assert text_of(got, 0) == "1\n" and text_of(got, 1) == "1\n"
        payload = tar_of([("pkg/mod.py", "VALUE = 2\n"), ("pkg/fresh.py", "NEW = 'new'\n")])
        rid = c.request({"op": "files", "bytes": len(payload), "removed": []}, payload)
        rid2 = c.request({"op": "exec", "name": "cell.py",
                          "code": "import importlib, pkg.mod, pkg.fresh\n"
                                  "print(pkg.mod.VALUE, end=' ')\n"
                                  "importlib.reload(pkg.mod)\n"
                                  "print(pkg.mod.VALUE, pkg.fresh.NEW)\n"})
        got = c.until_done(rid)
        assert got[-1]["op"] == "done" and got[-1]["status"] == "ok", got
        assert got[-1]["files"] == 2
        got = c.until_done(rid2)
        assert done_of(got)["status"] == "ok", got
        assert text_of(got, 0) == "1 2 new\n" and text_of(got, 1) == "1 2 new\n"
        payload = tar_of([("../escape.py", "x")])
        got = c.until_done(c.request({"op": "files", "bytes": len(payload)}, payload))
        assert got[-1]["status"] == "error" and "unsafe path" in got[-1]["message"]
        assert not (tmp_path / "escape.py").exists()
        assert not os.listdir(str(s.job / "spool"))
    finally:
        c.close()
        s.close()


def test_files_without_a_project_is_an_error(client):
    got = client.until_done(client.request({"op": "files", "removed": []}))
    assert got[-1]["op"] == "error" and "no project" in got[-1]["message"]


def test_a_push_still_sending_when_the_session_breaks(tmp_path):
    # Queued behind a cell, spooled; the session breaks before all its bytes came.
    s = Session(tmp_path, env={"PYSTRIB_SESSION_TORCH": "0"})
    try:
        c = s.client()
        rid = c.request({"op": "exec", "code": "import os, time\ntime.sleep(2)\n"
                                               "if rank == 1:\n    os._exit(3)\n"
                                               "time.sleep(30)\n"})
        data = pickle.dumps({"late": b"l" * MIB}, protocol=4)
        pid = c.request({"op": "push", "bytes": len(data)}, data[:len(data) // 2])
        got = c.until_done(rid)
        assert done_of(got)["status"] == "broken"
        assert c.recv()["id"] == pid        # its error: the session is broken
        c.sock.sendall(data[len(data) // 2:])
        sid = c.request({"op": "status"})
        m = c.recv()
        assert m["op"] == "status" and m["id"] == sid and m["state"] == "broken", m
        assert s.proc.poll() is None, s.logtext()
        assert not os.listdir(str(s.job / "spool"))
    finally:
        s.close()


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_cell_that_closes_its_stderr_leaves_the_supervisor_idle(tmp_path):
    s = Session(tmp_path, env={"PYSTRIB_SESSION_TORCH": "0"})
    try:
        c = s.client()
        assert done_of(c.exec("import os\nos.close(2)\n"))["status"] == "ok"
        with open("/proc/%d/stat" % s.pids()[0]) as f:
            supervisor = int(f.read().rsplit(")", 1)[1].split()[1])
        before = cpu_seconds(supervisor)
        time.sleep(1)
        assert cpu_seconds(supervisor) - before < 0.3
        assert text_of(c.exec("print('still', rank)\n"), 0) == "still 0\n"
    finally:
        s.close()
