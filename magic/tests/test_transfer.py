"""--push and --pull against the real rank bootstrap (src/remote/bootstrap.py):
the push pickle is loaded by it and its pull records are read back here."""

import importlib.util
import os
import pickle
import shutil
import subprocess
import threading

import pytest

from conftest import BOOTSTRAP
from pystributed import transfer
from pystributed.errors import PullError, PushError


def load_bootstrap():
    spec = importlib.util.spec_from_file_location("pystrib_bootstrap", BOOTSTRAP)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Local:
    pass


def test_names_are_checked():
    assert transfer.split_names("a, b,,a", "--push") == ["a", "b"]
    assert transfer.split_names(["x"], "--pull") == ["x"]
    with pytest.raises(ValueError, match="'1x', 'class' are not a Python name"):
        transfer.split_names("ok,1x,class", "--push")


def test_every_problem_is_named_before_anything_is_sent():
    ns = {"good": [1, 2], "lock": threading.Lock(), "obj": Local(), "fn": lambda: 1}
    ns["Local"] = Local
    with pytest.raises(PushError) as e:
        transfer.pickle_push(["good", "lock", "missing", "rank", "fn"], ns)
    msg = str(e.value)
    assert "'lock' cannot be pickled: TypeError" in msg
    assert "'missing' is not defined in the notebook" in msg
    assert "'rank' is set by pystrib on every rank" in msg
    assert "'fn' cannot be pickled" in msg
    assert "'good'" not in msg and "nothing was sent" in msg


def test_values_of_classes_defined_in_the_notebook_are_refused():
    ns = {}
    exec("class Point:\n    pass\np = Point()\ndef f():\n    return 1\n", ns)
    # As in a notebook, the cell's classes live in __main__.
    Point = ns["Point"]
    Point.__module__ = "__main__"
    Point.__qualname__ = "Point"
    import __main__
    __main__.Point = Point
    try:
        with pytest.raises(PushError, match="'p' refers to 'Point', defined in the notebook"):
            transfer.pickle_push(["p"], ns)
        # The same class twice in a list: memoized references are followed too.
        ns["two"] = [Point(), Point()]
        with pytest.raises(PushError, match="'two' refers to 'Point'"):
            transfer.pickle_push(["two"], ns)
    finally:
        del __main__.Point
    assert transfer._main_references(pickle.dumps({"a": [1, "__main__"], "b": os.path.join}, 4)) == []


def test_the_bootstrap_defines_pushed_names_and_pulls_values_back(tmp_path):
    """The real bootstrap, as a rank runs it: cell/bootstrap.py with
    cell/inputs/pystrib_push.pkl, PYSTRIB_PULL and PYSTRIB_RESULTS."""
    cell = tmp_path / "cell"
    (cell / "inputs").mkdir(parents=True)
    shutil.copy(BOOTSTRAP, cell / "bootstrap.py")
    transfer.write_push(["factor", "words"], {"factor": 7, "words": ["a", "b"]}, str(cell / "inputs"))
    (cell / "user_code.py").write_text("total = factor * (rank + 1)\njoined = '-'.join(words)\n"
                                       "import threading\nlock = threading.Lock()\n")
    results = tmp_path / "results"
    for rank in (0, 1):
        env = dict(os.environ, PYSTRIB_PULL="total,joined,lock,nosuch", PYSTRIB_RESULTS=str(results),
                   OMPI_COMM_WORLD_RANK=str(rank), OMPI_COMM_WORLD_SIZE="2")
        subprocess.run(["/usr/bin/python3", str(cell / "bootstrap.py"), str(cell / "user_code.py")],
                       env=env, check=True, cwd=tmp_path)
    values, problems = transfer.collect_pull(str(results), ["total", "joined"], 2, False)
    assert values == {"total": 7, "joined": "a-b"} and problems == []
    values, problems = transfer.collect_pull(str(results), ["total"], 2, True)
    assert values == {"total": [7, 14]}
    values, problems = transfer.collect_pull(str(results), ["total", "nosuch", "lock"], 2, False)
    assert values == {"total": 7}
    assert problems[0] == "the cell did not define 'nosuch' (rank 0)"
    assert problems[1].startswith("'lock': rank 0 could not pickle it (TypeError")
    # The results path may also hold results/ beneath it.
    nested = tmp_path / "job"
    shutil.copytree(results, nested / "results")
    assert transfer.collect_pull(str(nested), ["total"], 2, True)[0] == {"total": [7, 14]}


def test_pull_all_names_with_the_bootstrap_star(tmp_path):
    boot = load_bootstrap()
    for rank in (0, 1):
        ns = {"a": rank, "b": "x" * rank, "rank": rank, "world_size": 2, "os": os, "_hidden": 1}
        if rank == 1:
            ns["only1"] = True
        boot.write_pull("*", ns, str(tmp_path), rank)
    values, problems = transfer.collect_pull(str(tmp_path), "*", 2, True)
    assert values == {"a": [0, 1], "b": ["", "x"]}
    assert problems == ["the cell did not define 'only1' (rank 0)"]
    values, problems = transfer.collect_pull(str(tmp_path), "*", 2, False)
    assert values == {"a": 0, "b": ""} and problems == []


def test_a_rank_without_a_pull_record_is_named(tmp_path):
    load_bootstrap().write_pull("x", {"x": 1}, str(tmp_path), 0)
    with pytest.raises(PullError, match="rank 1 sent no pulled values back"):
        transfer.collect_pull(str(tmp_path), ["x"], 2, True)
