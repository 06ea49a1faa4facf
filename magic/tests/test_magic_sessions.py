"""The session client (pystributed/session.py) and the session magics
(dist.py, cluster.py): the transformer and SPEC parsing alone, the rest
against the real hub and real Open MPI ranks through sessionbed.py, the
local stand-in for pystrib's session verbs (conftest.py; no SSH, no image).
integration/t0603-notebook-sessions.sh runs the same magics through the
real pystrib binary and the test bed."""

import json
import os
import signal
import threading
import time

import pytest

from conftest import dedent
from pystributed import dist, notebooks, pool
from pystributed.errors import RemoteError
from pystributed.session import (CellInterrupted, CellTimeout, Output, Session,
                                 parse_ranks, parse_start_output)


# ---------------------------------------------------------------- alone

@pytest.mark.parametrize("spec,ranks", [
    ("0", [0]), ("[0,1,2]", [0, 1, 2]), ("0-2", [0, 1, 2]), ("0,2-4,6", [0, 2, 3, 4, 6]),
    (" 3 , 1 ", [1, 3]), ("1,1,0-1", [0, 1])])
def test_rank_specs(spec, ranks):
    assert parse_ranks(spec) == ranks


@pytest.mark.parametrize("spec", ["", "a", "2-1", "-1", "0,,1", "1-"])
def test_bad_rank_specs(spec):
    with pytest.raises(ValueError):
        parse_ranks(spec)


def test_a_rank_past_the_session_is_named():
    with pytest.raises(ValueError, match="rank 4 past the session's 4 ranks"):
        parse_ranks("0,4", 4)


def test_the_transformer_rewrites_only_a_first_rank_line():
    assert dist.rank_transformer(["%%rank[0,2-4,6]\n", "x = 1\n"]) == ["%%rank 0,2-4,6\n", "x = 1\n"]
    assert dist.rank_transformer(["%%rank[0, 1] --timeout 3\n"]) == ["%%rank 0,1 --timeout 3\n"]
    assert dist.rank_transformer(["x = 1\n", "%%rank[0]\n"]) == ["x = 1\n", "%%rank[0]\n"]
    assert dist.rank_transformer(["%%ranked\n"]) == ["%%ranked\n"]


def test_the_transformer_is_in_the_shell(ip):
    code = ip.transform_cell("%%rank[0-2]\nprint(rank)\n")
    assert "run_cell_magic('rank', '0-2'" in code, code
    # %%rank[...] is not a name IPython would take without it.
    dist.unregister(ip)
    try:
        assert "run_cell_magic('rank', '0-2'" not in ip.transform_cell("%%rank[0-2]\nprint(1)\n")
    finally:
        dist.register(ip)


def test_output_prefixes_at_line_starts_only():
    out, err = [], []
    o = Output(out.append, err.append)
    o({"rank": 0, "stream": "stdout", "text": "a\nb"})
    o({"rank": 1, "stream": "stdout", "text": "x\n"})
    o({"rank": 0, "stream": "stdout", "text": "c\nd\n"})
    o({"rank": 1, "stream": "stderr", "text": "oops\n"})
    o({"rank": 0, "stream": "stdout", "text": "e"})
    o.finish()
    assert "".join(out) == "[0] a\n[0] b[1] x\nc\n[0] d\n[0] e\n"
    assert err == ["[1] oops\n"]


def test_start_output():
    assert parse_start_output('{"event":"status","message":"x"}\n'
                              '{"event":"session","id":"20250101-ab"}\n') == ("20250101-ab", None)
    assert parse_start_output("20250101-ab\n")[0] == "20250101-ab"
    sid, err = parse_start_output('{"event":"error","message":"no host","exit_code":3}\n')
    assert sid is None and err["exit_code"] == 3


# ---------------------------------------------------------------- the client

def test_client_framing_values_and_errors(bed):
    s = Session.start(["-n", "2"])
    try:
        out, err = [], []
        r = s.execute("x = rank * 10\nprint('hi', rank)\nimport sys\nprint('e', file=sys.stderr)\n",
                      output=Output(out.append, err.append))
        assert r.ok and r.cell == 1
        assert sorted("".join(out).splitlines()) == ["[0] hi 0", "[1] hi 1"]
        assert sorted("".join(err).splitlines()) == ["[0] e", "[1] e"]
        big = bytes(range(256)) * (1 << 14)        # 4 MiB through the pipe each way
        s.push({"a": [1, 2], "big": big})
        got = s.pull(["a", "x", "big", "nope"])
        assert got[0][0]["x"] == 0 and got[1][0]["x"] == 10 and got[1][0]["big"] == big
        assert got[0][1] == ["nope"]
        s.scatter("b", list(range(10)))
        assert s.pull(["b"])[1][0]["b"] == [5, 6, 7, 8, 9]
        assert s.gather("b") == list(range(10))
        with pytest.raises(RemoteError) as e:
            s.execute("if rank == 1:\n    raise ValueError('boom')\nprint('ok', rank)\n",
                      output=Output(out.append, err.append))
        assert e.value.failed_rank == 1
        assert "rank 1 raised ValueError: boom" in str(e.value)
        assert "rank 0: ok" in str(e.value)           # the other ranks' results
        assert 'line 2' in e.value.traceback
        assert s.execute("print(x)\n", ranks=[1], output=Output(out.append)).ok
        assert out[-1] == "[1] 10\n"
        assert s.status()["state"] == "idle"
    finally:
        s.stop()
    assert s.stopped == "stop"


def test_a_kernel_interrupt_interrupts_the_cell_and_the_session_survives(bed):
    s = Session.start(["-n", "2"])
    try:
        said = []
        s.err = said.append
        threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
        t0 = time.monotonic()
        with pytest.raises(CellInterrupted, match="still up"):
            s.execute("import time\nfor i in range(600):\n    time.sleep(0.1)\n",
                      output=Output(lambda t: None, lambda t: None))
        assert time.monotonic() - t0 < 5
        assert any("interrupting the cell" in t for t in said)
        assert s.execute("y = 1\n", output=Output(lambda t: None)).ok
        with pytest.raises(CellTimeout):
            s.execute("import time\ntime.sleep(30)\n", timeout=1,
                      output=Output(lambda t: None, lambda t: None))
        assert s.execute("print(y)\n", output=Output(lambda t: None)).ok
    finally:
        s.stop()


# ---------------------------------------------------------------- the magics

def run(ip, src):
    r = ip.run_cell(dedent(src))
    return r.error_in_exec


def test_jupyter_distributed_quick_start(ip, bed, capsys):
    assert run(ip, "%dist_init --num-ranks 2") is None
    assert run(ip, """
        %%distributed
        value = rank * 100
        print(f"Rank {rank}: {value} of {world_size}")
        """) is None
    assert run(ip, "%%rank[0]\nprint('Only on rank 0', value)\n") is None
    assert run(ip, "%%rank[0-1]\nprint('both', value)\n") is None
    assert run(ip, "%sync") is None
    out = capsys.readouterr().out
    assert "[0] Rank 0: 0 of 2" in out and "[1] Rank 1: 100 of 2" in out
    assert "[0] Only on rank 0 0" in out and "[1] Only on rank 0" not in out
    assert "[1] both 100" in out and "reached the barrier" in out
    assert run(ip, "%%rank[0,5]\nprint(1)\n") is not None      # past the session: refused
    st = dist.Status(pool.get("dist"), pool.get("dist").status())
    assert "<th>cell running</th>" in st._repr_html_()
    assert repr(st).splitlines()[1].split() == ["rank", "host", "GPUs", "state", "cell",
                                                "running", "idle"]
    e = run(ip, """
        %%distributed
        if rank == 1:
            raise ValueError("Error on rank 1")
        else:
            print(f"Rank {rank} success")
        """)
    assert isinstance(e, RemoteError) and e.failed_rank == 1
    assert "[0] Rank 0 success" in capsys.readouterr().out
    assert run(ip, "%dist_shutdown") is None
    assert bed.alive_hubs() == []


def test_a_restarted_kernel_reattaches_with_its_variables(ip, bed, capsys):
    assert run(ip, "%dist_init -n 2") is None
    sid = pool.get("dist").id
    assert run(ip, "%%distributed\nkept = rank + 7\n") is None
    entry = notebooks.find(os.environ["PYSTRIB_NOTEBOOK"], "", "dist")
    assert entry["session"] == sid and entry["np"] == 2
    # What a kernel restart leaves: serve gone, the session running.
    pool.drop(pool.get("dist"), stop=False)
    capsys.readouterr()
    assert run(ip, "%dist_init -n 2") is None
    assert "reattached to session %s" % sid in capsys.readouterr().out
    assert pool.get("dist").id == sid
    assert run(ip, "%%distributed\nprint('kept', kept)\n") is None
    assert "[1] kept 8" in capsys.readouterr().out
    # %dist_attach by id, then a shutdown forgets the record.
    pool.drop(pool.get("dist"), stop=False)
    assert run(ip, "%dist_attach " + sid) is None
    assert run(ip, "%dist_shutdown") is None
    assert notebooks.find(os.environ["PYSTRIB_NOTEBOOK"], "", "dist") is None
    assert bed.alive_hubs() == []


def test_distribute(ip, bed, capsys):
    assert run(ip, """
        %%distribute 2
        process_id = __process_id__
        computation_result = process_id ** 2
        print(f"Hello from process {process_id}!")
        """) is None
    assert run(ip, """
        %%distribute 2 --sync
        if __process_id__ == 0:
            shared_data = "This will be shared across all processes"
            shared_number = 42
        print(f"Process {__process_id__} finished")
        """) is None
    assert run(ip, "%distribute 2 print('got', shared_number, computation_result)") is None
    out = capsys.readouterr().out
    assert "[1] Hello from process 1!" in out
    assert "shared_data, shared_number copied" in out
    assert "[1] got 42 1" in out
    assert isinstance(run(ip, "%%distribute 2 --timeout 1\nimport time\ntime.sleep(20)\n"),
                      CellTimeout)
    assert run(ip, "%distribute 2 print('after', computation_result)") is None
    assert "[1] after 1" in capsys.readouterr().out
    # One session per n, reused.
    starts = [a for a in bed.argv_log() if "start" in a]
    assert len(starts) == 1


def test_cluster_and_px(ip, bed, capsys):
    assert run(ip, """
        import pystributed
        c = pystributed.Cluster(n=2)
        c.activate()
        c.push({'a': 10})
        c.push('b', 5, 1)
        c['d'] = 3
        r = (c.pull('a'), c['d'], c[1].pull('b'), c[:]['a'])
        c.scatter('s', range(10))
        g = c.gather('s')
        m = c.map('lambda x: x*x', range(10))
        c.execute('e = a + rank', targets=[1])
        """) is None
    ns = ip.user_ns
    assert ns["r"] == ([10, 10], [3, 3], 5, [10, 10])
    assert ns["g"] == list(range(10)) and ns["m"] == [x * x for x in range(10)]
    assert ns["c"].pull("e", targets=1) == [11]
    with pytest.raises(NameError, match="'e' is not defined on rank 0"):
        ns["c"].pull("e")
    capsys.readouterr()
    assert run(ip, """
        %%px
        from mpi4py import MPI
        import platform
        mpi_rank=MPI.COMM_WORLD.Get_rank()
        mpi_size = MPI.COMM_WORLD.Get_size()
        print ("Process %d out of %d started in %s.\\n" % (mpi_rank, mpi_size, platform.node()))
        """) is None
    assert run(ip, "%px print('px', a)") is None
    assert run(ip, "%%px --targets 1\nprint('only', rank)\n") is None
    assert run(ip, "%autopx") is None
    assert run(ip, "print('auto', rank)") is None
    assert run(ip, "%autopx") is None
    assert run(ip, "here = 1") is None and ip.user_ns["here"] == 1
    out = capsys.readouterr().out
    assert "[1] Process 1 out of 2 started in" in out
    assert "[0] px 10" in out and "[1] only 1" in out and "[0] only" not in out
    assert "[0] auto 0" in out
    assert run(ip, "c.shutdown()") is None
    assert bed.alive_hubs() == []


def test_stop_on_exit_is_read_from_the_config(bed, monkeypatch):
    assert pool.stop_on_exit() is False             # the key is unknown: false
    monkeypatch.setenv("FAKE_STOP_ON_EXIT", "true")
    assert pool.stop_on_exit() is True


# ---------------------------------------------------------------- a real kernel

def _kernel_run(kc, code, timeout=120, interrupt_after=None, km=None):
    """Runs code in the kernel; (stdout, stderr, error name or None)."""
    msg_id = kc.execute(code)
    out, err, ename = [], [], None
    t0 = time.monotonic()
    interrupted = False
    while True:
        if interrupt_after is not None and not interrupted and time.monotonic() - t0 > interrupt_after:
            km.interrupt_kernel()
            interrupted = True
        try:
            msg = kc.get_iopub_msg(timeout=0.5)
        except Exception:   # queue.Empty
            if time.monotonic() - t0 > timeout:
                raise AssertionError("the kernel did not finish: %r" % "".join(out + err))
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            (out if content["name"] == "stdout" else err).append(content["text"])
        elif kind == "error":
            ename = content["ename"]
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(out), "".join(err), ename


def test_in_a_real_kernel_rank_interrupt_and_restart(bed, tmp_path):
    jc = pytest.importorskip("jupyter_client")
    from conftest import MAGIC
    env = dict(os.environ, PYTHONPATH=MAGIC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    km = jc.KernelManager(kernel_name="python3")
    km.start_kernel(env=env, cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        assert _kernel_run(kc, "%load_ext pystributed")[2] is None
        out, err, e = _kernel_run(kc, "%dist_init --num-ranks 3")
        assert e is None, err
        out, err, e = _kernel_run(kc, "%%rank[0,2]\nkept = rank * 11\nprint('r', rank)\n")
        assert e is None and sorted(out.split("\n")[:2]) == ["[0] r 0", "[2] r 2"], (out, err)
        out, err, e = _kernel_run(kc, "%%distributed\nimport time\ntime.sleep(60)\n",
                                  interrupt_after=2, km=km, timeout=30)
        assert e == "CellInterrupted" and "still up" in out + err, (out, err, e)
        km.restart_kernel(now=False)
        kc.wait_for_ready(timeout=60)
        assert _kernel_run(kc, "%load_ext pystributed")[2] is None
        out, err, e = _kernel_run(kc, "%dist_init --num-ranks 3")
        assert e is None and "reattached to session" in out, (out, err)
        out, err, e = _kernel_run(kc, "%%rank[2]\nprint('kept', kept)\n")
        assert e is None and "[2] kept 22" in out, (out, err)
        assert _kernel_run(kc, "%dist_shutdown")[2] is None
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert bed.alive_hubs() == []
