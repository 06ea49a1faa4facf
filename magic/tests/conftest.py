"""Shared fixtures: the package from this source tree, a real IPython
InteractiveShell, and `fake_pystrib`, a stand-in executable that replays
recorded event lines. The stand-in serves only the unit tests of event
handling and interrupts; the end-to-end test (integration/t0601-notebook.sh)
uses the real pystrib binary against the real test bed."""

import json
import os
import stat
import sys
import textwrap

import pytest

MAGIC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(MAGIC)
sys.path.insert(0, MAGIC)

BOOTSTRAP = os.path.join(REPO, "src", "remote", "bootstrap.py")


@pytest.fixture
def ip():
    """The real IPython shell with the extension loaded and a clean namespace."""
    from IPython.core.interactiveshell import InteractiveShell
    from pystributed import load_ipython_extension
    shell = InteractiveShell.instance()
    load_ipython_extension(shell)
    shell.user_ns.clear()
    shell.init_user_ns()
    yield shell


@pytest.fixture(autouse=True)
def clean_state(tmp_path, monkeypatch):
    """Each test in its own directory, with no binary configured but its own."""
    import pystributed.binary
    import pystributed.magics
    import pystributed.runner
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYSTRIB_CONFIG", raising=False)
    monkeypatch.delenv("PYSTRIB_NOTEBOOK_BINARY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    pystributed.binary.set_binary(None)
    pystributed.magics._saved["last"] = None
    pystributed.runner.set_last_result(None)
    yield


FAKE = r'''#!/usr/bin/python3
# A stand-in for pystrib in unit tests of event handling only: records its
# argv (and a copy of the pushed pickle), then prints the event lines of
# $FAKE_EVENTS. A line "@wait-sigint" waits for SIGINT first; "@pull RANK
# JSON" writes RANK's pull record (values from JSON) into the results
# directory named by the done event; "@exit N" sets the exit code.
import json, os, pickle, shutil, signal, sys, time
state = os.environ["FAKE_STATE"]
with open(os.path.join(state, "argv.json"), "w") as f:
    json.dump(sys.argv[1:], f)
args = sys.argv[1:]
for i, a in enumerate(args):
    if a == "--input" and args[i + 1].endswith("pystrib_push.pkl"):
        shutil.copy(args[i + 1], os.path.join(state, "pushed.pkl"))
got = []
signal.signal(signal.SIGINT, lambda *a: got.append(1))
code = 0
for line in open(os.environ["FAKE_EVENTS"]):
    line = line.rstrip("\n")
    if line == "@wait-sigint":
        sys.stdout.flush()
        for _ in range(200):
            if got:
                break
            time.sleep(0.05)
        open(os.path.join(state, "sigint" if got else "nosigint"), "w").close()
    elif line.startswith("@pull "):
        _, rank, rest = line.split(" ", 2)
        spec = json.loads(rest)
        d = os.path.join(spec.pop("results"), ".pystrib")
        os.makedirs(d, exist_ok=True)
        rec = {"version": 1, "rank": int(rank), "values": spec.get("values", {}),
               "missing": spec.get("missing", []), "errors": spec.get("errors", {})}
        with open(os.path.join(d, "pull.rank.%s.pkl" % rank), "wb") as f:
            pickle.dump(rec, f, protocol=4)
    elif line.startswith("@stderr "):
        sys.stderr.write(line[8:] + "\n")
    elif line.startswith("@exit "):
        code = int(line[6:])
    else:
        print(line, flush=True)
sys.exit(code)
'''


class Fake:
    def __init__(self, tmp_path):
        self.dir = tmp_path / "fake"
        self.dir.mkdir()
        self.path = self.dir / "pystrib"
        self.path.write_text(FAKE)
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR)
        self.events = self.dir / "events"
        self.events.write_text("")

    def script(self, *lines):
        out = []
        for line in lines:
            out.append(line if isinstance(line, str) else json.dumps(line))
        self.events.write_text("\n".join(out) + "\n")

    @property
    def argv(self):
        p = self.dir / "argv.json"
        return json.loads(p.read_text()) if p.exists() else None

    def ran(self):
        return (self.dir / "argv.json").exists()


@pytest.fixture
def fake_pystrib(tmp_path, monkeypatch):
    fake = Fake(tmp_path)
    monkeypatch.setenv("PYSTRIB_BIN", str(fake.path))
    monkeypatch.setenv("FAKE_STATE", str(fake.dir))
    monkeypatch.setenv("FAKE_EVENTS", str(fake.events))
    return fake


# The real binary scripts/test.sh names (before any test replaces PYSTRIB_BIN).
_REAL = os.environ.get("PYSTRIB_BIN")


def real_binary():
    path = _REAL
    if path and os.path.isfile(path) and os.access(path, os.X_OK):
        return path
    return None


def dedent(s):
    return textwrap.dedent(s).lstrip("\n")


# ---------------------------------------------------------------- sessions

SESSIONBED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sessionbed.py")


def session_src():
    """The directory holding the hub's session.py and bootstrap.py: the
    repository's src/remote once session.py is there, else
    $PYSTRIB_SESSION_SRC (a copy of them from the branch that has it)."""
    if os.path.exists(os.path.join(REPO, "src", "remote", "session.py")):
        return os.path.join(REPO, "src", "remote")
    d = os.environ.get("PYSTRIB_SESSION_SRC")
    if d and os.path.exists(os.path.join(d, "session.py")):
        return d
    return None


class Bed:
    """sessionbed.py (the local stand-in for pystrib's session verbs, with
    the real hub and real Open MPI ranks) as PYSTRIB_BIN."""

    def __init__(self, root):
        self.root = root

    def argv_log(self):
        p = self.root / "argv.log"
        if not p.exists():
            return []
        return [json.loads(line) for line in p.read_text().splitlines()]

    def hub_pids(self):
        pids = []
        for d in self.root.iterdir():
            p = d / "hub.pid"
            if p.exists():
                pids.append(int(p.read_text()))
        return pids

    def alive_hubs(self, wait=15):
        """The hubs still running (after up to wait seconds for them to end:
        a stop is answered before the hub has ended its ranks)."""
        import time
        deadline = time.time() + wait
        while True:
            alive = self._alive_hubs()
            if not alive or time.time() > deadline:
                return alive
            time.sleep(0.1)

    def _alive_hubs(self):
        alive = []
        for pid in self.hub_pids():
            try:
                os.kill(pid, 0)
            except OSError:
                continue
            try:
                with open("/proc/%d/stat" % pid) as f:
                    if f.read().split(") ", 1)[1].startswith("Z"):
                        continue
            except OSError:
                continue
            alive.append(pid)
        return alive


@pytest.fixture
def bed(tmp_path, monkeypatch):
    import shutil
    import signal
    import pystributed.pool
    import pystributed.cluster
    import pystributed.dist
    src = session_src()
    if src is None or not shutil.which("mpirun"):
        pytest.skip("needs session.py (src/remote or $PYSTRIB_SESSION_SRC) and mpirun")
    root = tmp_path / "sessions"
    root.mkdir()
    monkeypatch.setenv("PYSTRIB_BIN", SESSIONBED)
    monkeypatch.setenv("FAKE_SESSIONS", str(root))
    monkeypatch.setenv("SESSION_SRC", src)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("PYSTRIB_NOTEBOOK", str(tmp_path / "nb.ipynb"))
    b = Bed(root)
    yield b
    for _, s in pystributed.pool.live():
        try:
            s.stop()
        except Exception:
            pass
    pystributed.pool._live.clear()
    pystributed.cluster._active["cluster"] = None
    pystributed.dist._autopx["on"] = False
    pystributed.dist._state.update(remote="", options=None)
    for pid in b.alive_hubs():
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
