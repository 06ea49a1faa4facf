"""The sessions of this kernel, by use: "dist" (%dist_init), "distribute:N"
(%%distribute N), "cluster:N" (Cluster(n=N)). Each is found, in order, among
the kernel's own, in the notebook's record (notebooks.py: a kernel restart
reattaches), or started anew."""

import atexit
import subprocess
import sys
import time

from . import notebooks
from .binary import find_binary
from .errors import PystribError
from .session import Session, SessionError

_live = {}              # (use, remote) -> Session
_exit = {"registered": False, "stop": None}


def _say(text):
    sys.stdout.write("pystrib: %s\n" % text)
    sys.stdout.flush()


def get(use, remote=None):
    """The kernel's live session for use, or None."""
    s = _live.get((use, remote or ""))
    if s is not None and s.alive:
        return s
    return None


def live():
    return [((use, remote), s) for (use, remote), s in _live.items() if s.alive]


def open_session(use, opts, user_ns=None, say=_say):
    """The session for use with opts (a SessionOptions): the kernel's own if
    it has as many ranks, else the notebook's recorded one (reattached,
    variables intact), else a new one."""
    remote = opts.remote or ""
    s = get(use, remote)
    if s is not None and (opts.np is None or s.np == opts.np):
        return s, "kept"
    notebook = notebooks.notebook_path(user_ns)
    entry = notebooks.find(notebook, remote, use)
    if entry and (opts.np is None or entry.get("np") in (None, opts.np)):
        s = reattach(entry["session"], opts.config, say=None)
        if s is not None:
            _adopt(use, remote, s)
            say("reattached to session %s (%s ranks, %s; cell %s last) recorded for this "
                "notebook: its variables are as they were" % (
                    s.id, s.np, s.state, s.hello.get("last_cell") or "none"))
            return s, "reattached"
        say("the session %s recorded for this notebook is gone: starting a new one"
            % entry["session"])
        notebooks.forget(entry["session"])
    t0 = time.monotonic()
    args = opts.pystrib_args()
    say("starting a session of %s ranks%s ..." % (
        opts.np or "the config's", (" on " + remote) if remote else ""))
    s = Session.start(args, config=opts.config, timeout=opts.start_timeout, np=opts.np)
    _adopt(use, remote, s)
    notebooks.record(notebook, remote, use, s.id, s.np, args)
    say("session %s: %s ranks up in %.1f s" % (s.id, s.np, time.monotonic() - t0))
    return s, "started"


def reattach(session_id, config=None, say=_say):
    """Session session_id connected, or None when it cannot be reached or
    is no longer usable."""
    s = Session(session_id, config=config)
    try:
        s.connect()
    except (SessionError, PystribError) as e:
        s.close()
        if say:
            say("cannot reach session %s: %s" % (session_id, e.message))
        return None
    if s.state in ("stopped", "stopping") or s.stopped:
        s.close()
        return None
    return s


def _adopt(use, remote, s):
    old = _live.get((use, remote))
    if old is not None and old is not s:
        old.close()
    _live[(use, remote)] = s
    _register_exit()


def drop(s, stop=True):
    """Stops (or only disconnects from) s and forgets it."""
    for key, value in list(_live.items()):
        if value is s:
            del _live[key]
    if stop:
        s.stop()
        notebooks.forget(s.id)
    else:
        s.close()


def stop_on_exit(config=None):
    """[session] stop_on_exit, through `pystrib config get` (false when
    pystrib does not know the key)."""
    try:
        argv = [find_binary(config)] + (["-c", config] if config else []) + \
            ["config", "get", "session.stop_on_exit"]
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, timeout=20)
    except (OSError, PystribError, subprocess.TimeoutExpired):
        return False
    if r.returncode != 0:
        return False
    return r.stdout.decode("utf-8", "replace").strip().lower() in ("true", "yes", "1", "on")


def _register_exit():
    if _exit["registered"]:
        return
    _exit["registered"] = True
    # Read now: at exit the config may have gone with the working directory.
    _exit["stop"] = stop_on_exit()
    atexit.register(_at_exit)


def _at_exit():
    for _, s in live():
        try:
            if _exit["stop"]:
                s.stop()
                notebooks.forget(s.id)
            else:
                s.close()
        except Exception:  # noqa: BLE001 (the kernel is going; nothing to tell)
            pass
