"""The client of a pystrib session (docs/sessions.md): one
`pystrib --json session serve ID` child per session, for the notebook's
life, speaking the hub's protocol on its stdin and stdout.

Requests carry ids; a reader thread reads every message (and the raw
bytes that follow one with "bytes") and hands it to the queue of the
request it names. Messages without an id (broken, stopped) go to every
waiting request. Lines with "event" instead of "op" are pystrib's own
--json events (docs/events.md): errors, warnings and stages of serve.
"""

import collections
import itertools
import json
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time

from .binary import find_binary
from .errors import PystribError, RemoteError

PICKLE_PROTOCOL = 4
# Requests that are answered at once and end with one message of their op.
ANSWER_OPS = {"hello": "hello", "status": "status"}
# How long to wait for serve's answer to hello before giving up.
CONNECT_TIMEOUT = 120.0
# After a stop, how long serve may take to end.
STOP_GRACE = 30.0


class SessionError(PystribError):
    """The session cannot be reached, is broken or was stopped."""


class SessionBroken(SessionError):
    """A rank of the session died: the session must be stopped and started again."""


class CellInterrupted(KeyboardInterrupt):
    """The kernel was interrupted during a cell: the cell was interrupted on
    the ranks and the session is still up (unless the message says otherwise)."""

    def __init__(self, message, result=None):
        self.result = result
        super().__init__(message)

    def _render_traceback_(self):
        return ["%s: %s" % (type(self).__name__, self)]


class CellTimeout(RemoteError):
    """The cell ran past its timeout and was interrupted; the session is still up."""


class CellResult:
    """The end of a cell: cell (SEQ), status (ok, error, interrupted,
    timeout, broken, stopped), ranks ({rank: {"status", "error"}}), message."""

    def __init__(self, done):
        self.done = done
        self.cell = done.get("cell")
        self.status = done.get("status")
        self.message = done.get("message")
        self.ranks = {}
        for r in done.get("ranks") or []:
            if isinstance(r, dict) and "rank" in r:
                self.ranks[r["rank"]] = r

    @property
    def ok(self):
        return self.status == "ok"

    def failed(self):
        """The ranks whose cell raised, in rank order."""
        return [k for k in sorted(self.ranks) if self.ranks[k].get("error")]

    def __repr__(self):
        return "CellResult(cell=%r, status=%r, failed=%r)" % (self.cell, self.status, self.failed())


def cell_error(result, session_id=None):
    """The RemoteError of a cell that raised: the ranks that failed named, the
    first one's remote traceback, and what the other ranks did."""
    failed = result.failed()
    first = result.ranks[failed[0]]["error"] if failed else {}
    head = "rank%s %s raised %s: %s" % (
        "" if len(failed) == 1 else "s", ", ".join(map(str, failed)) or "?",
        first.get("type", "an exception"), first.get("message", ""))
    others = ["rank %s: %s" % (k, result.ranks[k].get("status"))
              for k in sorted(result.ranks) if k not in failed]
    parts = [head]
    if others:
        parts.append("the other ranks: " + ", ".join(others))
    tb = first.get("traceback")
    if tb:
        parts.append("remote traceback (rank %s):\n%s" % (failed[0], str(tb).rstrip("\n")))
    e = RemoteError("\n".join(parts), hint="the session%s is still up; variables are as the "
                    "cell left them" % ((" " + session_id) if session_id else ""))
    e.failed_rank = failed[0] if failed else None
    e.failed_ranks = failed
    e.traceback = tb
    e.cell_result = result
    return e


class Output:
    """Routes output messages: stdout text to out, stderr text to err, each
    line prefixed with its rank ("[1] ..."). Text may end mid-line (the
    hub sends a partial line after 50 ms): the prefix is written only at a
    line's start, tracked per rank and stream."""

    def __init__(self, out=None, err=None, prefix=True):
        self.out = out or (lambda t: _write("stdout", t))
        self.err = err or (lambda t: _write("stderr", t))
        self.prefix = prefix
        self.at_start = collections.defaultdict(lambda: True)
        self.text = collections.defaultdict(str)    # (rank, stream) -> all text, for results

    def __call__(self, msg):
        rank, stream, text = msg.get("rank"), msg.get("stream"), str(msg.get("text", ""))
        if not text:
            return
        key = (rank, stream)
        self.text[key] += text
        if self.prefix:
            tag = "[%s] " % rank
            lines = text.split("\n")
            shown = []
            for i, line in enumerate(lines):
                last = i == len(lines) - 1
                if last and not line:
                    break
                start = self.at_start[key] if i == 0 else True
                shown.append((tag if start else "") + line + ("" if last else "\n"))
            self.at_start[key] = text.endswith("\n")
            text = "".join(shown)
        (self.err if stream == "stderr" else self.out)(text)

    def finish(self):
        """Ends every line left open (so the next output starts on its own)."""
        for (rank, stream), start in list(self.at_start.items()):
            if not start:
                (self.err if stream == "stderr" else self.out)("\n")
                self.at_start[(rank, stream)] = True


def _write(name, text):
    stream = getattr(sys, name)
    stream.write(text)
    stream.flush()


class Session:
    """A running session and the serve process that reaches it.

    Session.start(...) starts a new one (`pystrib session start`);
    Session(ID).connect() reaches an existing one. Then execute(), push(),
    pull(), scatter(), gather(), status(), interrupt(), stop(), close()."""

    def __init__(self, session_id, config=None, binary=None, np=None, err=None):
        self.id = session_id
        self.config = config
        self.binary = binary
        self.np = np
        self.err = err or (lambda t: _write("stderr", t))
        self.proc = None
        self.hello = None
        self.state = None           # the hub's last word: idle, busy, broken, stopped...
        self.broken = None          # {"rank", "reason"}
        self.stopped = None         # the reason
        self.last_code = None       # the first line of the cell this client ran last
        self._ids = itertools.count(1)
        self._waiting = {}          # id -> queue
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stderr = collections.deque(maxlen=40)
        self._reader = None
        self._closed = False

    # ------------------------------------------------------------ starting

    @classmethod
    def start_argv(cls, binary, args, config=None):
        """pystrib's command line for `session start` with args (a list)."""
        return [binary] + (["-c", config] if config else []) + ["--json", "session", "start"] + list(args)

    @classmethod
    def start(cls, args, config=None, timeout=None, err=None, np=None):
        """Starts a session (`pystrib --json session start ARGS`), connects to
        it and returns the Session. timeout bounds the start (seconds)."""
        binary = find_binary(config)
        argv = cls.start_argv(binary, args, config)
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, timeout=timeout or None,
                                  start_new_session=True)
        except subprocess.TimeoutExpired:
            raise SessionError("pystrib session start took more than %s seconds" % timeout,
                               hint="raise -t, or see pystrib session list for a half-started one")
        except OSError as e:
            raise PystribError("cannot start '%s': %s" % (binary, e.strerror or e))
        sid, error = parse_start_output(proc.stdout.decode("utf-8", "replace"))
        if proc.returncode != 0 or not sid:
            err_text = proc.stderr.decode("utf-8", "replace")
            if error and error.get("message"):
                raise PystribError(str(error["message"]), hint=error.get("hint"),
                                   exit_code=error.get("exit_code", proc.returncode))
            raise PystribError("pystrib session start exited with code %d%s" % (
                proc.returncode, "" if sid else " without a session id"),
                exit_code=proc.returncode, stderr=err_text[-4000:] or None)
        s = cls(sid, config=config, binary=binary, np=np, err=err)
        s.connect()
        return s

    def serve_argv(self):
        binary = self.binary or find_binary(self.config)
        self.binary = binary
        return [binary] + (["-c", self.config] if self.config else []) + \
            ["--json", "session", "serve", self.id]

    def connect(self, timeout=CONNECT_TIMEOUT):
        """Starts serve and says hello; returns the hub's hello (np, state,
        cell). SessionError when the session cannot be reached."""
        argv = self.serve_argv()
        try:
            # Its own session: a kernel interrupt must not reach serve (the
            # cell is interrupted by a request instead).
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, start_new_session=True,
                                         bufsize=0)
        except OSError as e:
            raise PystribError("cannot start '%s': %s" % (argv[0], e.strerror or e))
        self._closed = False
        self._reader = threading.Thread(target=self._read, name="pystrib-serve", daemon=True)
        self._reader.start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        hello = self.request({"op": "hello"}, timeout=timeout)
        self.hello = hello
        self.np = hello.get("np", self.np)
        self.state = hello.get("state")
        if hello.get("broken"):
            self.broken = hello["broken"]
        return hello

    @property
    def alive(self):
        return (self.proc is not None and self.proc.poll() is None and not self._closed
                and self.stopped is None)

    # ------------------------------------------------------------ the wire

    def _send(self, msg, payload=None):
        data = json.dumps(msg, separators=(",", ":")).encode("utf-8") + b"\n"
        if payload is not None:
            msg["bytes"] = len(payload)
            data = json.dumps(msg, separators=(",", ":")).encode("utf-8") + b"\n"
        with self._write_lock:
            try:
                self.proc.stdin.write(data)
                if payload:
                    view = memoryview(payload)
                    for i in range(0, len(view), 1 << 20):
                        self.proc.stdin.write(view[i:i + (1 << 20)])
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                raise self._lost()

    def _lost(self):
        code = self.proc.poll() if self.proc else None
        tail = "".join(self._stderr)
        if self.stopped:
            return SessionError("session %s was stopped (%s)" % (self.id, self.stopped))
        return SessionError("lost the connection to session %s: pystrib session serve %s" % (
            self.id, "exited with code %s" % code if code is not None else "closed its output"),
            hint="%%dist_attach %s reconnects; pystrib session status %s shows it" % (self.id, self.id),
            stderr=tail or None)

    def _read_stderr(self):
        for line in iter(self.proc.stderr.readline, b""):
            self._stderr.append(line.decode("utf-8", "replace"))

    def _read(self):
        f = self.proc.stdout
        try:
            while True:
                line = f.readline()
                if not line:
                    break
                try:
                    msg = json.loads(line)
                except ValueError:
                    self._stderr.append(line.decode("utf-8", "replace"))
                    continue
                if not isinstance(msg, dict):
                    continue
                n = msg.get("bytes")
                if isinstance(n, int) and n > 0 and "op" in msg:
                    msg["payload"] = _read_exactly(f, n)
                    if msg["payload"] is None:
                        break
                self._dispatch(msg)
        finally:
            self._closed = True
            self._broadcast({"op": "_eof"})

    def _dispatch(self, msg):
        op = msg.get("op")
        if op is None and "event" in msg:
            self._event(msg)
            return
        if op == "broken":
            self.broken = {"rank": msg.get("rank"), "reason": msg.get("reason")}
            self.state = "broken"
        elif op == "stopped":
            self.stopped = msg.get("reason") or "stop"
            self.state = "stopped"
        elif op in ("hello", "status") and msg.get("state"):
            self.state = msg.get("state")
        rid = msg.get("id")
        if rid is None or op in ("broken", "stopped"):
            if op in ("broken", "stopped"):
                self._broadcast(msg)
            return
        with self._lock:
            q = self._waiting.get(rid)
        if q is not None:
            q.put(msg)

    def _event(self, ev):
        kind = ev.get("event")
        if kind == "error":
            self._broadcast({"op": "_error", "message": ev.get("message"), "hint": ev.get("hint"),
                             "exit_code": ev.get("exit_code")})
        elif kind == "warning":
            self.err("pystrib: warning: %s\n" % ev.get("message", ""))
        elif kind == "status":
            self.err("pystrib: %s\n" % ev.get("message", ""))

    def _broadcast(self, msg):
        with self._lock:
            queues = list(self._waiting.values())
        for q in queues:
            q.put(msg)

    def _register(self):
        rid = next(self._ids)
        q = queue.Queue()
        with self._lock:
            self._waiting[rid] = q
        return rid, q

    def _forget(self, rid):
        with self._lock:
            self._waiting.pop(rid, None)

    def begin(self, msg, payload=None):
        """Sends msg (with a new id) and returns its Pending: the messages
        about it, one next() at a time, until its end."""
        if not self.alive:
            raise self._lost()
        rid, q = self._register()
        msg = dict(msg, id=rid)
        try:
            self._send(msg, payload)
        except BaseException:
            self._forget(rid)
            raise
        return Pending(self, rid, q, ANSWER_OPS.get(msg["op"], "done"))

    def messages(self, msg, payload=None, timeout=None):
        """Every message about msg, the last being its done (or its one
        answer, for hello and status), an error, or the end of the session
        or connection. timeout: SessionError when no message comes in time."""
        pending = self.begin(msg, payload)
        try:
            while not pending.ended:
                yield pending.next(timeout, msg["op"])
        finally:
            pending.forget()

    def request(self, msg, payload=None, timeout=None):
        """Sends msg and returns its last answer; raises SessionError for an
        error, a lost connection, a stop or a break."""
        last = None
        values = []
        for m in self.messages(msg, payload, timeout=timeout):
            last = m
            if m.get("op") == "value":
                values.append(m)
        self._raise_for(last, msg.get("op"))
        last["values"] = values
        return last

    def _raise_for(self, m, op):
        kind = m.get("op") if m else "_eof"
        if kind == "error":
            raise SessionError("session %s: %s: %s" % (self.id, op, m.get("message")))
        if kind == "_error":
            raise PystribError(str(m.get("message")), hint=m.get("hint"), exit_code=m.get("exit_code"))
        if kind == "_eof":
            raise self._lost()
        if kind == "broken":
            raise SessionBroken("session %s is broken: rank %s %s" % (
                self.id, m.get("rank"), m.get("reason")),
                hint="%%dist_shutdown (or pystrib session stop %s), then start a new one" % self.id)
        if kind == "stopped":
            raise SessionError("session %s stopped (%s)" % (self.id, m.get("reason")))
        if kind == "done" and m.get("status") not in ("ok", None):
            raise SessionError("session %s: %s: %s" % (
                self.id, op, m.get("message") or m.get("status")))

    # ------------------------------------------------------------ requests

    def execute(self, code, ranks=None, timeout=0, name=None, output=None, raise_error=True):
        """Runs code on ranks (None: all), showing its output live through
        output (an Output). Returns the CellResult. raise_error: a rank that
        raised is a RemoteError, a timeout a CellTimeout; a kernel interrupt
        interrupts the cell on the ranks and raises CellInterrupted once the
        cell has ended."""
        __tracebackhide__ = True
        output = output or Output()
        msg = {"op": "exec", "code": code, "timeout": timeout or 0}
        if ranks is not None:
            msg["ranks"] = list(ranks)
        if name:
            msg["name"] = name
        self.last_code = code
        interrupts = 0
        pending = self.begin(msg)
        last = None
        try:
            while not pending.ended:
                try:
                    m = pending.next(None, "exec")
                except KeyboardInterrupt:
                    interrupts += 1
                    self._on_kernel_interrupt(interrupts)
                    continue
                last = m
                if m.get("op") == "output":
                    output(m)
        finally:
            pending.forget()
        output.finish()
        if last is None or last.get("op") != "done":
            self._raise_for(last, "exec")
        result = CellResult(last)
        if interrupts or result.status == "interrupted":
            text = self._interrupted_text(result, interrupts)
            self.err("pystrib: %s\n" % text)
            raise CellInterrupted(text, result)
        if raise_error:
            self.check(result)
        return result

    def _on_kernel_interrupt(self, n):
        if n == 1:
            self.err("pystrib: interrupting the cell on the ranks of session %s ...\n" % self.id)
            self.interrupt()
        elif n == 2:
            self.err("pystrib: interrupted again: the cell ignores the interrupt; "
                     "stopping session %s\n" % self.id)
            self.interrupt()
        else:
            self.err("pystrib: stopped waiting; session %s may still be running\n" % self.id)
            self.close()

    def _interrupted_text(self, result, interrupts):
        if self.stopped or result.status == "stopped":
            return "interrupted: the cell ignored the interrupt and session %s was stopped" % self.id
        return ("interrupted: cell %s was interrupted on the ranks; session %s is still up "
                "and its variables are kept" % (result.cell, self.id))

    def check(self, result):
        __tracebackhide__ = True
        if result.status == "ok":
            return
        if result.status == "timeout":
            e = CellTimeout("cell %s ran out of time and was interrupted on the ranks" % result.cell,
                            hint="the session %s is still up; raise --timeout" % self.id)
            e.cell_result = result
            raise e
        if result.status == "error" and result.failed():
            raise cell_error(result, self.id)
        if result.status == "broken" or self.broken:
            b = self.broken or {}
            why = result.message or "rank %s %s" % (b.get("rank"), b.get("reason"))
            if why.startswith("session is broken: "):
                why = why[len("session is broken: "):]
            raise SessionBroken("session %s is broken: %s" % (self.id, why),
                hint="%%dist_shutdown, then %%dist_init starts a new session")
        raise SessionError("cell %s: %s%s" % (result.cell, result.status,
                                               (": " + result.message) if result.message else ""))

    def interrupt(self):
        """Asks the hub to interrupt the running cell (answered at once)."""
        rid, q = self._register()
        try:
            self._send({"op": "interrupt", "id": rid})
        finally:
            self._forget(rid)

    def push(self, values, ranks=None):
        """Defines each name of the dict values in the ranks' namespaces."""
        payload = pickle.dumps(dict(values), protocol=PICKLE_PROTOCOL)
        msg = {"op": "push"}
        if ranks is not None:
            msg["ranks"] = list(ranks)
        self.request(msg, payload)

    def pull(self, names, ranks=None):
        """{rank: ({name: value}, missing names, errors)} from the ranks."""
        msg = {"op": "pull", "names": list(names)}
        if ranks is not None:
            msg["ranks"] = list(ranks)
        done = self.request(msg)
        got = {}
        for v in done["values"]:
            data = pickle.loads(v["payload"]) if v.get("payload") else {}
            got[v.get("rank")] = (data, list(v.get("missing") or []), dict(v.get("errors") or {}))
        return got

    def scatter(self, name, sequence, ranks=None):
        payload = pickle.dumps(sequence, protocol=PICKLE_PROTOCOL)
        msg = {"op": "scatter", "name": name}
        if ranks is not None:
            msg["ranks"] = list(ranks)
        self.request(msg, payload)

    def gather(self, name, ranks=None):
        msg = {"op": "gather", "name": name}
        if ranks is not None:
            msg["ranks"] = list(ranks)
        done = self.request(msg)
        for v in done["values"]:
            return pickle.loads(v["payload"]) if v.get("payload") else None
        raise SessionError("session %s: gather of '%s' sent no value" % (self.id, name))

    def status(self):
        """The hub's status (session.json's fields)."""
        return self.request({"op": "status"}, timeout=CONNECT_TIMEOUT)

    def stop(self):
        """Stops the session (the ranks, the hub) and serve."""
        if self.alive:
            try:
                for m in self.messages({"op": "stop"}, timeout=STOP_GRACE):
                    if m.get("op") == "stopped":
                        break
            except SessionError:
                pass
        self.close()

    def close(self):
        """Ends serve (the session goes on)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        self._closed = True
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._broadcast({"op": "_eof"})


class Pending:
    """The messages of one request, as they come."""

    def __init__(self, session, rid, q, final):
        self.session, self.rid, self.q, self.final = session, rid, q, final
        self.ended = False

    def next(self, timeout=None, what="request"):
        # In short waits, so a kernel interrupt (SIGINT) is seen at once.
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = 0.25 if deadline is None else min(0.25, deadline - time.monotonic())
            try:
                m = self.q.get(timeout=max(wait, 0))
                break
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise SessionError("session %s did not answer '%s' within %s seconds"
                                       % (self.session.id, what, timeout))
        op = m.get("op")
        mine = m.get("id") == self.rid
        if (mine and op in (self.final, "error")) or op in ("_eof", "_error", "stopped"):
            self.ended = True
        return m

    def forget(self):
        self.session._forget(self.rid)


def _read_exactly(f, n):
    chunks = []
    while n > 0:
        b = f.read(min(n, 1 << 20))
        if not b:
            return None
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def parse_start_output(text):
    """(session id, the error event or None) from `pystrib --json session
    start`'s stdout: the id of a `session` (or `job`, or `started`) event,
    else a line that is only an id."""
    sid, error = None, None
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            ev = None
        if isinstance(ev, dict):
            if ev.get("event") == "error":
                error = ev
            elif ev.get("event") in ("session", "job", "started") and (ev.get("id") or ev.get("session")):
                sid = str(ev.get("session") or ev.get("id"))
            continue
        if " " not in line and sid is None:
            sid = line
    return sid, error


def parse_ranks(spec, world_size=None):
    """[0, 2, 3, 4, 6] from '0,2-4,6' (also '[0,2-4,6]', ' 1 '); ValueError
    for anything else, or for a rank past world_size."""
    text = str(spec).strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    ranks = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise ValueError("empty rank in '%s'" % spec)
        lo, sep, hi = part.partition("-")
        try:
            a = int(lo)
            b = int(hi) if sep else a
        except ValueError:
            raise ValueError("'%s' is not a rank or a range of ranks (as 0,2-4,6)" % part)
        if a < 0 or b < a:
            raise ValueError("'%s' is not a range of ranks (as 2-4)" % part)
        for r in range(a, b + 1):
            if r not in ranks:
                ranks.append(r)
    if world_size is not None:
        past = [r for r in ranks if r >= world_size]
        if past:
            raise ValueError("rank%s %s past the session's %d ranks (0-%d)" % (
                "" if len(past) == 1 else "s", ",".join(map(str, past)), world_size, world_size - 1))
    return sorted(ranks)
