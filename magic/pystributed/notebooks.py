"""Which session a notebook uses, kept across kernel restarts:
$XDG_STATE_HOME/pystrib/notebooks.json (~/.local/state/pystrib/...), one
entry per notebook, remote and use (dist, distribute:N, cluster:N):

    {"version": 1, "sessions": [{"notebook", "remote", "use", "session",
                                 "np", "args", "time"}]}

Written whole to a temporary file and renamed, so a reader never sees
half of it; two kernels writing at once lose at worst one entry, which
only costs a new session."""

import json
import os
import time

VERSION = 1


def path():
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "pystrib", "notebooks.json")


def notebook_path(user_ns=None):
    """This kernel's notebook: $PYSTRIB_NOTEBOOK, the path Jupyter gives the
    kernel ($JPY_SESSION_NAME, __session__, __vsc_ipynb_file__), else the
    working directory (nbclient and nbconvert run a notebook there)."""
    user_ns = user_ns or {}
    for value in (os.environ.get("PYSTRIB_NOTEBOOK"), os.environ.get("JPY_SESSION_NAME"),
                  user_ns.get("__session__"), user_ns.get("__vsc_ipynb_file__")):
        if isinstance(value, str) and value:
            return os.path.abspath(value)
    return os.path.abspath(os.getcwd())


def _load():
    try:
        with open(path(), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict) or not isinstance(data.get("sessions"), list):
        return []
    return [e for e in data["sessions"] if isinstance(e, dict)]


def _save(entries):
    p = path()
    os.makedirs(os.path.dirname(p), mode=0o700, exist_ok=True)
    tmp = "%s.%d.tmp" % (p, os.getpid())
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"version": VERSION, "sessions": entries}, f, indent=1)
        f.write("\n")
    os.replace(tmp, p)


def _same(e, notebook, remote, use):
    return e.get("notebook") == notebook and (e.get("remote") or "") == (remote or "") \
        and e.get("use") == use


def find(notebook, remote, use):
    """The recorded entry, or None."""
    for e in _load():
        if _same(e, notebook, remote, use):
            return e
    return None


def record(notebook, remote, use, session, np=None, args=None):
    entries = [e for e in _load() if not _same(e, notebook, remote, use)]
    entries.append({"notebook": notebook, "remote": remote or "", "use": use,
                    "session": session, "np": np, "args": list(args or []),
                    "time": int(time.time())})
    _save(entries)


def forget(session):
    """Drops every entry of that session id."""
    entries = _load()
    kept = [e for e in entries if e.get("session") != session]
    if len(kept) != len(entries):
        _save(kept)
