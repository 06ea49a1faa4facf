"""Tests of src/remote/bootstrap.py, the per-rank launcher.

Run with Debian's interpreter (it has pytest and mpi4py):
    /usr/bin/python3 -m pytest tests/python/test_bootstrap.py

Most tests run bootstrap.py in a subprocess with a launcher's environment
(OMPI_*, PMI_*, SLURM_*) as mpirun would set it; the last ones run it for
real under Open MPI's mpirun with two ranks.
"""

import importlib.util
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BOOTSTRAP = os.path.join(HERE, "..", "..", "src", "remote", "bootstrap.py")
PYTHON = sys.executable

LAUNCHER_VARS = [
    "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
    "OMPI_COMM_WORLD_LOCAL_SIZE", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID",
    "MPI_LOCALNRANKS", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID",
    "SLURM_NTASKS_PER_NODE", "CUDA_VISIBLE_DEVICES", "PYSTRIB_GPUS", "PYSTRIB_JOB_DIR",
    "PYSTRIB_PULL", "PYSTRIB_RESULTS", "PYSTRIB_MASTER_ADDR", "PYSTRIB_MASTER_PORT",
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
]


def load_module():
    spec = importlib.util.spec_from_file_location("pystrib_bootstrap", BOOTSTRAP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def cell_dir(tmp_path):
    """A copy of bootstrap.py with an inputs/ directory beside it, as in the image."""
    shutil.copy(BOOTSTRAP, tmp_path / "bootstrap.py")
    (tmp_path / "inputs").mkdir()
    (tmp_path / "work").mkdir()
    return tmp_path


def run(cell_dir, code, env=None, args=(), timeout=60):
    cell = cell_dir / "user_code.py"
    cell.write_text(textwrap.dedent(code))
    full_env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    full_env.update(env or {})
    return subprocess.run(
        [PYTHON, str(cell_dir / "bootstrap.py"), str(cell)] + list(args),
        cwd=str(cell_dir / "work"), env=full_env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)


ENV_DUMP = """
    import os, sys
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
              "MASTER_PORT", "CUDA_VISIBLE_DEVICES", "PYSTRIB_RESULTS", "PYSTRIB_INPUTS"):
        print(k, os.environ.get(k))
    print("globals", rank, world_size, __process_id__, __name__)
    print("argv", sys.argv[1:])
"""


def dump(output):
    out = {}
    for line in output.splitlines():
        key, _, value = line.partition(" ")
        out[key] = value
    return out


def test_open_mpi_environment(cell_dir):
    r = run(cell_dir, ENV_DUMP, {
        "OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4",
        "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "2",
        "PYSTRIB_MASTER_ADDR": "10.0.0.1", "PYSTRIB_MASTER_PORT": "1234",
    }, args=["--lr", "0.1"])
    assert r.returncode == 0, r.stderr
    d = dump(r.stdout)
    assert d["RANK"] == "3" and d["WORLD_SIZE"] == "4"
    assert d["LOCAL_RANK"] == "1" and d["LOCAL_WORLD_SIZE"] == "2"
    assert d["MASTER_ADDR"] == "10.0.0.1" and d["MASTER_PORT"] == "1234"
    assert d["globals"] == "3 4 3 __main__"
    assert d["argv"] == "['--lr', '0.1']"
    assert d["CUDA_VISIBLE_DEVICES"] == "None"   # PYSTRIB_GPUS unset: left alone
    assert d["PYSTRIB_RESULTS"] == str(cell_dir / "work" / "results")
    assert (cell_dir / "work" / "results").is_dir()
    assert d["PYSTRIB_INPUTS"] == str(cell_dir / "inputs")


@pytest.mark.parametrize("env,expect", [
    ({"PMI_RANK": "2", "PMI_SIZE": "3"}, ("2", "3", "2", "3")),
    ({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1",
      "SLURM_NTASKS_PER_NODE": "4"}, ("5", "8", "1", "4")),
    ({"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2(x3)"},
     ("1", "2", "1", "2")),
    ({}, ("0", "1", "0", "1")),
])
def test_fallback_launchers(cell_dir, env, expect):
    r = run(cell_dir, ENV_DUMP, env)
    assert r.returncode == 0, r.stderr
    d = dump(r.stdout)
    assert (d["RANK"], d["WORLD_SIZE"], d["LOCAL_RANK"], d["LOCAL_WORLD_SIZE"]) == expect
    assert d["MASTER_ADDR"] == "127.0.0.1" and d["MASTER_PORT"] == "29500"


def test_gpu_assignment():
    b = load_module()
    assert b.gpus_for(None, 0, 1) is None
    assert b.gpus_for("", 0, 1) is None
    assert b.gpus_for("0", 0, 2) == []                       # a count of none
    assert b.gpus_for("4", 0, 2) == ["0", "2"]               # round-robin
    assert b.gpus_for("4", 1, 2) == ["1", "3"]
    assert b.gpus_for("2,5", 1, 2) == ["5"]
    assert b.gpus_for("2", 3, 4) == ["1"]                    # more ranks than devices: shared
    assert b.gpus_for("7", 0, 1) == [str(i) for i in range(7)]


def test_gpus_in_the_environment(cell_dir):
    base = {"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2",
            "OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}
    r = run(cell_dir, ENV_DUMP, dict(base, PYSTRIB_GPUS="0,1,2,3"))
    assert dump(r.stdout)["CUDA_VISIBLE_DEVICES"] == "1,3"
    # "all" splits what is visible already.
    r = run(cell_dir, ENV_DUMP, dict(base, PYSTRIB_GPUS="all", CUDA_VISIBLE_DEVICES="4,5"))
    assert dump(r.stdout)["CUDA_VISIBLE_DEVICES"] == "5"
    r = run(cell_dir, ENV_DUMP, dict(base, PYSTRIB_GPUS="0"))
    assert dump(r.stdout)["CUDA_VISIBLE_DEVICES"] == ""


def test_pushed_inputs_become_globals(cell_dir):
    with open(str(cell_dir / "inputs" / "pystrib_push.pkl"), "wb") as f:
        pickle.dump({"alpha": 5, "names": ["a", "b"]}, f)
    (cell_dir / "inputs" / "data.csv").write_text("1,2\n")
    r = run(cell_dir, """
        import os
        print(alpha, names)
        print(open(os.path.join(os.environ["PYSTRIB_INPUTS"], "data.csv")).read().strip())
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["5 ['a', 'b']", "1,2"]


def test_imports_from_the_working_directory(cell_dir):
    (cell_dir / "work" / "helper.py").write_text("VALUE = 'from cwd'\n")
    r = run(cell_dir, "import helper\nprint(helper.VALUE)\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "from cwd"


def test_imports_from_the_project_root(cell_dir, tmp_path):
    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    (project / "pkg" / "__init__.py").write_text("WHERE = 'project root'\n")
    r = run(cell_dir, "import pkg\nprint(pkg.WHERE)\n", {"PYSTRIB_PROJECT": str(project)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "project root"


def test_exit_codes(cell_dir):
    r = run(cell_dir, "import sys\nsys.exit(3)\n")
    assert r.returncode == 3
    r = run(cell_dir, "import sys\nsys.exit()\n")
    assert r.returncode == 0
    r = run(cell_dir, "import sys\nsys.exit('bad input')\n")
    assert r.returncode == 1 and "bad input" in r.stderr
    r = run(cell_dir, "def f():\n    raise ValueError('boom')\nf()\n")
    assert r.returncode == 1
    assert "ValueError: boom" in r.stderr
    assert "user_code.py" in r.stderr
    assert "bootstrap.py" not in r.stderr     # only the user's frames
    r = run(cell_dir, "x = (\n")
    assert r.returncode == 1 and "SyntaxError" in r.stderr


def test_traceback_names_the_users_file(cell_dir):
    """With user_code.name beside the cell, a traceback says that name and shows its lines."""
    (cell_dir / "user_code.name").write_text("raise1.py\n")
    r = run(cell_dir, "import os\ndef f():\n    raise ValueError('boom')\nf()\n"
            "print(__file__)\n")
    assert r.returncode == 1
    assert 'File "raise1.py", line 3, in f' in r.stderr
    assert "raise ValueError('boom')" in r.stderr     # the source line is shown
    assert "user_code.py" not in r.stderr
    assert "bootstrap.py" not in r.stderr
    r = run(cell_dir, "x = (\n")
    assert r.returncode == 1 and 'File "raise1.py"' in r.stderr and "SyntaxError" in r.stderr
    # __file__ and argv[0] stay the real file, for code that finds files beside it.
    r = run(cell_dir, "import sys\nprint(__file__ == sys.argv[0], __file__.endswith('user_code.py'))\n")
    assert r.stdout.strip() == "True True"
    # An empty or unreadable name is no name.
    (cell_dir / "user_code.name").write_text("")
    r = run(cell_dir, "raise ValueError('boom')\n")
    assert "user_code.py" in r.stderr


def test_job_dir_logs_and_exit_file(cell_dir, tmp_path):
    job = tmp_path / "job"
    env = {"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2", "PYSTRIB_JOB_DIR": str(job)}
    r = run(cell_dir, """
        import os, sys
        print("to stdout")
        print("to stderr", file=sys.stderr)
        os.system("echo from a child; echo child err >&2")
        os.write(1, b"raw fd write\\n")
        raise RuntimeError("failed here")
    """, env)
    assert r.returncode == 1
    assert r.stdout == "" and r.stderr == ""      # everything went to the files
    logs = job / "logs"
    out = (logs / "rank.1.out").read_text()
    err = (logs / "rank.1.err").read_text()
    assert out.splitlines() == ["to stdout", "from a child", "raw fd write"]
    assert "to stderr" in err and "child err" in err and "RuntimeError: failed here" in err
    assert (logs / "rank.1.exit").read_text() == "1\n"
    assert not [n for n in os.listdir(str(logs)) if ".tmp" in n]

    r = run(cell_dir, "print('ok')\n", env)
    assert r.returncode == 0
    assert (logs / "rank.1.exit").read_text() == "0\n"


def test_output_is_line_buffered(cell_dir, tmp_path):
    """A follower sees each line while the rank still runs."""
    job = tmp_path / "job"
    cell = cell_dir / "user_code.py"
    cell.write_text("import time\nprint('first')\ntime.sleep(30)\n")
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    env["PYSTRIB_JOB_DIR"] = str(job)
    p = subprocess.Popen([PYTHON, str(cell_dir / "bootstrap.py"), str(cell)],
                         cwd=str(cell_dir / "work"), env=env)
    try:
        out = job / "logs" / "rank.0.out"
        deadline = time.time() + 20
        while time.time() < deadline:
            if out.exists() and out.read_text() == "first\n":
                break
            time.sleep(0.1)
        assert out.read_text() == "first\n"
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=20) == 143
        assert (job / "logs" / "rank.0.exit").read_text() == "143\n"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_pull_values(cell_dir):
    results = cell_dir / "res"
    env = {"PYSTRIB_PULL": "x,model,lock,fn,nothere", "PYSTRIB_RESULTS": str(results),
           "OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "1"}
    r = run(cell_dir, """
        import threading
        class Model:
            def __init__(self):
                self.w = [1, 2]
        x = 41 + 1
        model = Model()
        lock = threading.Lock()
        fn = lambda: 1
    """, env)
    assert r.returncode == 0, r.stderr
    with open(str(results / ".pystrib" / "pull.rank.0.pkl"), "rb") as f:
        record = pickle.load(f)
    assert record["version"] == 1 and record["rank"] == 0
    assert record["values"]["x"] == 42
    assert record["values"]["model"].w == [1, 2]    # a class of the cell, by reference
    assert record["missing"] == ["nothere"]
    assert set(record["errors"]) == {"lock", "fn"}
    assert "lock" in record["errors"]["lock"]


class Model:  # for unpickling the cell's Model above, which pickles as __main__.Model
    pass


sys.modules["__main__"].Model = Model


def test_pull_star(cell_dir):
    results = cell_dir / "res"
    env = {"PYSTRIB_PULL": "*", "PYSTRIB_RESULTS": str(results)}
    r = run(cell_dir, "import os\na = 1\nb = 'two'\n_private = 3\n", env)
    assert r.returncode == 0, r.stderr
    with open(str(results / ".pystrib" / "pull.rank.0.pkl"), "rb") as f:
        record = pickle.load(f)
    assert record["values"] == {"a": 1, "b": "two"}
    assert record["missing"] == [] and record["errors"] == {}


def test_no_pull_file_when_the_cell_fails(cell_dir):
    results = cell_dir / "res"
    r = run(cell_dir, "a = 1\nraise SystemExit(2)\n",
            {"PYSTRIB_PULL": "a", "PYSTRIB_RESULTS": str(results)})
    assert r.returncode == 2
    assert not (results / ".pystrib" / "pull.rank.0.pkl").exists()


MPIRUN = shutil.which("mpirun")


@pytest.mark.skipif(not MPIRUN, reason="Open MPI's mpirun is not installed")
def test_two_ranks_under_mpirun(cell_dir, tmp_path):
    job = tmp_path / "job"
    cell = cell_dir / "user_code.py"
    cell.write_text(textwrap.dedent("""
        import os
        from mpi4py import MPI
        total = MPI.COMM_WORLD.allreduce(rank)
        print("rank", rank, "of", world_size, "local", os.environ["LOCAL_RANK"], "sum", total)
    """))
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    env["PYSTRIB_JOB_DIR"] = str(job)
    r = subprocess.run([MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", "2",
                        PYTHON, str(cell_dir / "bootstrap.py"), str(cell)],
                       cwd=str(cell_dir / "work"), env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert r.returncode == 0, r.stderr
    logs = job / "logs"
    for rank in (0, 1):
        assert (logs / ("rank.%d.out" % rank)).read_text() == \
            "rank %d of 2 local %d sum 1\n" % (rank, rank)
        assert (logs / ("rank.%d.exit" % rank)).read_text() == "0\n"


@pytest.mark.skipif(not MPIRUN, reason="Open MPI's mpirun is not installed")
def test_a_failing_rank_under_mpirun(cell_dir, tmp_path):
    job = tmp_path / "job"
    cell = cell_dir / "user_code.py"
    cell.write_text("if rank == 1:\n    raise KeyError('rank one broke')\nprint('fine')\n")
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    env["PYSTRIB_JOB_DIR"] = str(job)
    r = subprocess.run([MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", "2",
                        PYTHON, str(cell_dir / "bootstrap.py"), str(cell)],
                       cwd=str(cell_dir / "work"), env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert r.returncode != 0
    logs = job / "logs"
    assert "KeyError: 'rank one broke'" in (logs / "rank.1.err").read_text()
    assert (logs / "rank.1.exit").read_text() == "1\n"
    assert (logs / "rank.0.out").read_text() == "fine\n"
