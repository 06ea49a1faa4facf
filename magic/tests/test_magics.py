"""The magics in a real IPython InteractiveShell. Where a run is needed, the
`fake_pystrib` stand-in replays event lines (event handling only; the real
binary is exercised end to end by integration/t0601-notebook.sh)."""

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time

import pytest
from IPython.utils.capture import capture_output

import pystributed
from conftest import dedent, real_binary
from pystributed import binary
from pystributed.errors import (BinaryNotFound, JobInterrupted, PullError, PushError,
                                PystribError, RemoteError)

JOB = "20261123-101010-00beef"


def run(ip, src):
    with capture_output() as cap:
        res = ip.run_cell(dedent(src))
    return res, cap


def job_events(results, np=2, state="succeeded", extra=(), failed_rank=None, tb=None):
    ranks = [{"rank": r, "exit_code": 0 if r != failed_rank else 1, "duration": 0.1 * (r + 1)}
             for r in range(np)]
    lines = [{"event": "pushed", "reference": "127.0.0.1:1/cells/x@sha256:" + "c" * 64,
              "digest": "sha256:" + "c" * 64, "uploaded_blobs": 1, "uploaded_bytes": 10},
             {"event": "job", "id": JOB, "remote": "none", "host": "127.0.0.1", "np": np,
              "image": "127.0.0.1:1/cells/x@sha256:" + "c" * 64, "runtime": "none"}]
    for r in range(np):
        lines.append({"event": "output", "rank": r, "stream": "stdout", "text": "hi %d\n" % r})
    lines += list(extra)
    for x in ranks:
        lines.append(dict(x, event="rank_exit"))
    lines.append({"event": "results", "path": str(results)})
    lines.append({"event": "done", "id": JOB, "state": state, "exit_code": 0 if state == "succeeded" else 1,
                  "ranks": ranks, "image": "127.0.0.1:1/cells/x@sha256:" + "c" * 64,
                  "results": str(results), "failed_rank": failed_rank, "traceback": tb})
    return lines


def test_load_ext_registers_the_magics(ip):
    magics = ip.magics_manager.magics
    assert "save_for_remote" in magics["cell"] and "remote" in magics["cell"]
    assert "pystrib" in magics["line"]
    ip.run_line_magic("reload_ext", "pystributed")
    ip.run_line_magic("unload_ext", "pystributed")
    assert "remote" not in ip.magics_manager.magics["cell"]
    ip.run_line_magic("load_ext", "pystributed")
    assert "remote" in ip.magics_manager.magics["cell"]


def test_importing_main_registers_save_for_remote(ip):
    ip.magics_manager.magics["cell"].pop("save_for_remote", None)
    sys.modules.pop("pystributed.main", None)
    res, _ = run(ip, "import pystributed.main as runner\n")
    assert res.success
    assert "save_for_remote" in ip.magics_manager.magics["cell"]


def test_save_for_remote_saves_without_running_and_says_where(ip, tmp_path):
    res, cap = run(ip, """
        %%save_for_remote -n 3 --remote gpu2 --gpus 0,1 --timeout 60 --push a,b --pull x --pull-all -- --lr 0.1
        ran_here = True
        print("remote only")
        """)
    assert res.success, res.error_in_exec
    assert "ran_here" not in ip.user_ns and "remote only" not in cap.stdout.replace("saved", "")
    path = tmp_path / "user_code.py"
    assert path.read_text() == 'ran_here = True\nprint("remote only")\n'
    assert "cell saved to %s" % path in cap.stdout and "runner.main()" in cap.stdout
    from pystributed.magics import last_saved
    o = last_saved().options
    assert (o.np, o.remote, o.gpus, o.timeout, o.push, o.pull, o.pull_all, o.args) == \
        (3, "gpu2", "0,1", 60, ["a", "b"], ["x"], True, ["--lr", "0.1"])


def test_save_for_remote_file_option_and_ipython_syntax_warning(ip, tmp_path):
    res, cap = run(ip, """
        %%save_for_remote --file cells/train.py
        !nvidia-smi
        x = 1
        """)
    assert res.success
    assert (tmp_path / "cells" / "train.py").exists()
    assert "line 1 of the cell uses IPython syntax" in cap.stderr


@pytest.mark.parametrize("line,why", [
    ("-n 0", "needs at least 1 rank"),
    ("-n two", "'two' is not a whole number"),
    ("--timeout -3", "cannot be negative"),
    ("--push 1a", "'1a' is not a Python name"),
    ("--bogus", "unrecognized arguments: --bogus"),
    ("--env NOEQUALS", "--env wants KEY=VALUE"),
])
def test_bad_options_are_usage_errors(ip, line, why):
    res, cap = run(ip, "%%%%save_for_remote %s\nx = 1\n" % line)
    assert not res.success
    assert why in (cap.stdout + cap.stderr)
    assert not os.path.exists("user_code.py")


def test_main_without_a_saved_cell(ip):
    res, cap = run(ip, "import pystributed.main as runner\nrunner.main()\n")
    assert isinstance(res.error_in_exec, PystribError)
    assert "no cell saved yet" in str(res.error_in_exec)


def test_binary_missing_is_explained(ip, monkeypatch, tmp_path):
    monkeypatch.delenv("PYSTRIB_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(BinaryNotFound) as e:
        binary.find_binary()
    assert "not on PATH" in str(e.value) and "PYSTRIB_BIN" in str(e.value)
    monkeypatch.setenv("PYSTRIB_BIN", str(tmp_path / "nope"))
    with pytest.raises(BinaryNotFound, match="'.*nope' \\(from PYSTRIB_BIN\\) does not exist"):
        binary.find_binary()
    res, cap = run(ip, "%%remote\nx = 1\n")
    assert isinstance(res.error_in_exec, BinaryNotFound)


def test_binary_from_path_config_and_set_binary(monkeypatch, tmp_path):
    monkeypatch.delenv("PYSTRIB_BIN", raising=False)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "pystrib"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    assert binary.find_binary() == str(exe)
    other = tmp_path / "other-pystrib"
    other.write_text("#!/bin/sh\n")
    other.chmod(0o755)
    (tmp_path / "pystrib.ini").write_text("[job]\nnp = 2\n[notebook]\nbinary = %s ; comment\n" % other)
    assert binary.find_binary() == str(other)
    # pystrib's environment name for [notebook] binary wins over the file
    monkeypatch.setenv("PYSTRIB_NOTEBOOK_BINARY", str(exe))
    assert binary.find_binary() == str(exe)
    monkeypatch.setenv("PYSTRIB_NOTEBOOK_BINARY", str(tmp_path / "gone"))
    with pytest.raises(BinaryNotFound, match="from PYSTRIB_NOTEBOOK_BINARY\\) does not exist"):
        binary.find_binary()
    monkeypatch.setenv("PYSTRIB_BIN", str(exe))
    assert binary.find_binary() == str(exe)
    pystributed.set_binary(str(other))
    assert binary.find_binary() == str(other)
    (tmp_path / "noexec").write_text("")
    pystributed.set_binary(str(tmp_path / "noexec"))
    with pytest.raises(BinaryNotFound, match="is not an executable file"):
        binary.find_binary()


def test_remote_streams_output_shows_summary_and_pulls(ip, fake_pystrib, tmp_path):
    results = tmp_path / "res" / JOB
    fake_pystrib.script(*job_events(results, extra=[
        "@pull 0 " + json.dumps({"results": str(results), "values": {"total": 7}}),
        "@pull 1 " + json.dumps({"results": str(results), "values": {"total": 14}}),
    ]))
    ip.user_ns["factor"] = 7
    res, cap = run(ip, """
        %%remote -n 2 --remote none --push factor --pull total --env A=1 --results res -- x y
        total = factor * (rank + 1)
        """)
    assert res.success, res.error_in_exec
    assert "[0] hi 0\n" in cap.stdout and "[1] hi 1\n" in cap.stdout
    assert ip.user_ns["total"] == 7
    argv = fake_pystrib.argv
    cell = str(tmp_path / "user_code.py")
    push = argv[argv.index("--input") + 1]
    assert argv[:3] == ["--json", "run", cell]
    assert argv[3:] == ["-n", "2", "--remote", "none", "--results", "res", "--env", "A=1",
                        "--env", "PYSTRIB_PULL=total", "--input", push, "--", "x", "y"]
    assert push.endswith("/pystrib_push.pkl") and not os.path.exists(push)   # cleaned up
    with open(fake_pystrib.dir / "pushed.pkl", "rb") as f:
        assert pickle.load(f) == {"factor": 7}
    html = [o.data["text/html"] for o in cap.outputs if "text/html" in o.data]
    assert len(html) == 1 and "<th>image digest</th>" in html[0] and str(results) in html[0]
    r = pystributed.last_result()
    assert r.job_id == JOB and r.exit_codes == [0, 0] and r.pulled == {"total": 7}


def test_pull_all_gives_one_value_per_rank(ip, fake_pystrib, tmp_path):
    results = tmp_path / "r"
    fake_pystrib.script(*job_events(results, extra=[
        "@pull 0 " + json.dumps({"results": str(results), "values": {"v": "a"}}),
        "@pull 1 " + json.dumps({"results": str(results), "values": {"v": "b"}}),
    ]))
    res, _ = run(ip, "%%remote -n 2 --pull v --pull-all\nv = 'ab'[rank]\n")
    assert res.success, res.error_in_exec
    assert ip.user_ns["v"] == ["a", "b"]
    assert "--env" in fake_pystrib.argv and "PYSTRIB_PULL=v" in fake_pystrib.argv


def test_a_pulled_name_the_cell_did_not_define_is_named(ip, fake_pystrib, tmp_path):
    results = tmp_path / "r"
    fake_pystrib.script(*job_events(results, extra=[
        "@pull 0 " + json.dumps({"results": str(results), "values": {"x": 1}, "missing": ["nosuch"]}),
    ]))
    res, cap = run(ip, "%%remote -n 2 --pull x,nosuch\nx = 1\n")
    e = res.error_in_exec
    assert isinstance(e, PullError)
    assert "the cell did not define 'nosuch' (rank 0)" in str(e)
    assert "set in the notebook: x" in str(e) and ip.user_ns["x"] == 1


def test_an_unpicklable_push_fails_before_pystrib_runs(ip, fake_pystrib):
    fake_pystrib.script({"event": "done", "id": "x", "state": "succeeded"})
    run(ip, "import threading\nlock = threading.Lock()\n")
    res, cap = run(ip, "%%remote --push lock,nothere\nprint(lock)\n")
    e = res.error_in_exec
    assert isinstance(e, PushError)
    assert "'lock' cannot be pickled" in str(e) and "'nothere' is not defined" in str(e)
    assert not fake_pystrib.ran()


def test_a_failing_rank_raises_with_the_remote_traceback(ip, fake_pystrib, tmp_path):
    tb = 'Traceback (most recent call last):\n  File "user_code.py", line 2\nZeroDivisionError: division by zero\n'
    fake_pystrib.script(*job_events(tmp_path / "r", state="failed", failed_rank=1, tb=tb) + ["@exit 1"])
    res, cap = run(ip, "%%remote -n 2\nx = 1 / (1 - rank)\n")
    e = res.error_in_exec
    assert isinstance(e, RemoteError) and e.failed_rank == 1
    assert "rank 1 exited with code 1" in str(e) and "ZeroDivisionError: division by zero" in str(e)
    assert "ZeroDivisionError" in cap.stdout + cap.stderr      # shown in the notebook
    assert not [o for o in cap.outputs if "text/html" in o.data]   # no summary for a failure


def test_an_error_event_is_raised_with_its_hint(ip, fake_pystrib):
    fake_pystrib.script({"event": "error", "message": "cannot reach '127.0.0.1:9': connection refused",
                         "hint": "start the host", "exit_code": 4},
                        "@stderr pystrib: cannot reach '127.0.0.1:9'", "@exit 4")
    res, _ = run(ip, "%%remote\nx = 1\n")
    e = res.error_in_exec
    assert type(e) is PystribError and e.exit_code == 4 and "hint: start the host" in str(e)


def test_runner_main_runs_the_last_saved_cell_with_overrides(ip, fake_pystrib, tmp_path):
    fake_pystrib.script(*job_events(tmp_path / "r", np=1))
    res, _ = run(ip, "import pystributed.main as runner\n")
    res, _ = run(ip, "%%save_for_remote --remote none\nprint('first')\n")
    res, _ = run(ip, "%%save_for_remote --remote gpu\nprint('second')\n")
    res, cap = run(ip, "r = runner.main(np=4)\n")
    assert res.success, res.error_in_exec
    r = ip.user_ns["r"]
    assert isinstance(r, pystributed.RunResult)
    assert r.job_id == JOB and r.exit_codes == [0] and r.state == "succeeded"
    argv = fake_pystrib.argv
    assert argv[argv.index("-n") + 1] == "4" and argv[argv.index("--remote") + 1] == "gpu"
    assert (tmp_path / "user_code.py").read_text() == "print('second')\n"
    res, _ = run(ip, "runner.main(bogus=1)\n")
    assert "unknown option 'bogus'" in str(res.error_in_exec)


def test_interrupt_sends_sigint_to_pystrib_and_reports_the_cancel(ip, fake_pystrib, tmp_path):
    ev = job_events(tmp_path / "r")
    fake_pystrib.script(ev[0], ev[1], {"event": "output", "rank": 0, "stream": "stdout", "text": "working\n"},
                        "@wait-sigint",
                        {"event": "status", "message": "cancelling"},
                        {"event": "done", "id": JOB, "state": "cancelled", "exit_code": 130, "ranks": [],
                         "image": None, "results": None, "failed_rank": None, "traceback": None},
                        "@exit 130")

    def interrupt_when_working():
        for _ in range(200):
            time.sleep(0.05)
            if (fake_pystrib.dir / "argv.json").exists():
                break
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)

    t = threading.Thread(target=interrupt_when_working)
    t.start()
    with capture_output() as cap:
        res = ip.run_cell("%%remote -n 2\nimport time\ntime.sleep(100)\n")
    t.join()
    assert isinstance(res.error_in_exec, JobInterrupted)
    assert (fake_pystrib.dir / "sigint").exists()     # pystrib itself got SIGINT
    assert "cancelling remote job %s" % JOB in cap.stderr
    assert "remote job %s was cancelled" % JOB in str(res.error_in_exec)


@pytest.mark.skipif(real_binary() is None, reason="PYSTRIB_BIN (the real binary) not set")
def test_pystrib_line_magic_passes_commands_through(ip, monkeypatch, capfd):
    monkeypatch.setenv("PYSTRIB_BIN", real_binary())
    res, cap = run(ip, "%pystrib --help\n")
    assert res.success and "commands:" in cap.stdout
    res, cap = run(ip, "%pystrib nosuchcommand\n")
    e = res.error_in_exec
    assert isinstance(e, PystribError) and e.exit_code == 2
    assert "'nosuchcommand' is not a pystrib command" in cap.stderr


def test_detach_returns_after_submission(ip, fake_pystrib, tmp_path):
    fake_pystrib.script(*job_events(tmp_path / "r")[:2])
    res, cap = run(ip, "%%remote -n 2 --detach\nx = 1\n")
    assert res.success, res.error_in_exec
    assert "--detach" in fake_pystrib.argv
    assert "job %s submitted; follow it with %%pystrib attach %s" % (JOB, JOB) in cap.stdout
    assert pystributed.last_result().state == "submitted"
    res, _ = run(ip, "%%remote --detach --pull x\nx = 1\n")
    assert isinstance(res.error_in_exec, PystribError) and "drop --detach" in str(res.error_in_exec)


def test_pystrib_attach_follows_with_events(ip, fake_pystrib, tmp_path):
    fake_pystrib.script(*job_events(tmp_path / "r"))
    res, cap = run(ip, "%%pystrib -c my.ini attach %s\n" % JOB)
    assert res.success, res.error_in_exec
    assert fake_pystrib.argv == ["-c", "my.ini", "--json", "attach", JOB]
    assert "[1] hi 1\n" in cap.stdout
    assert [o for o in cap.outputs if "text/html" in o.data]
