"""pystrib sessions, the remote side: the hub and the rank workers.

    python3 session.py hub --dir JOBDIR --np N [--idle-timeout S]
                           [--start-timeout S] [--forward HOST]... -- MPIRUN_COMMAND...
    python3 session.py worker --dir JOBDIR

The hub listens on JOBDIR/hub.sock (clients) and JOBDIR/ranks.sock (the
workers), starts MPIRUN_COMMAND (which starts the N workers), and runs one
request at a time on the ranks. Each worker keeps one __main__ namespace
from cell to cell. docs/sessions.md is the protocol; this file keeps to it.
Pure standard library, Python 3.7+.
"""

import codecs
import collections
import importlib
import io
import json
import linecache
import os
import pickle
import select
import selectors
import shlex
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import traceback
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bootstrap  # noqa: E402  (beside this file in the image and the job's cell/)

PROTOCOL = 1
MAX_LINE = 1 << 20          # a JSON message, newline included
CHUNK = 1 << 20             # what the hub reads at once
HIGH_WATER = 8 << 20        # queued bytes past which the hub stops reading the source
TEXT_CHUNK = 64 << 10       # the most text in one output message
PARTIAL_DELAY = 0.05        # how long a line without its newline waits for the rest
PICKLE_PROTOCOL = 4
CLIENT_BACKLOG = 64 << 20   # output queued for one client past which it is dropped
HERE = os.path.abspath(__file__)


def encode(msg):
    return json.dumps(msg, separators=(",", ":")).encode("utf-8") + b"\n"


def sock_path(path):
    """A path bind() and connect() accept: sun_path holds about 107 bytes."""
    if len(path.encode()) < 100:
        return path
    # /proc/self/fd/N/name reaches the socket through an open directory.
    fd = os.open(os.path.dirname(path), os.O_RDONLY)
    _kept_dirs.append(fd)
    return "/proc/self/fd/%d/%s" % (fd, os.path.basename(path))


_kept_dirs = []


def exit_reason(status):
    """'exited 3' or 'killed by SIGKILL' from a wait status."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "signal %d" % sig
        return "killed by %s" % name, 128 + sig
    code = os.WEXITSTATUS(status)
    return "exited %d" % code, code


# ---------------------------------------------------------------- worker


class Wire:
    """The worker's connection to the hub: it reads the hub's messages from
    the rank's socket and writes its own to the supervisor (a socketpair),
    which sends them on (Relay)."""

    def __init__(self, hub, out):
        self.sock = out
        self.rfile = hub.makefile("rb", buffering=CHUNK)
        self.lock = threading.Lock()

    def send(self, msg, payload=None):
        data = encode(msg)
        with self.lock:
            if payload is None or len(payload) < 65536:
                self.sock.sendall(data + bytes(payload or b""))
            else:
                self.sock.sendall(data)
                self.sock.sendall(memoryview(payload))

    def recv(self):
        """(message, payload or None), or (None, None) when the hub is gone."""
        line = self.rfile.readline(MAX_LINE + 1)
        if not line or not line.endswith(b"\n"):
            return None, None
        msg = json.loads(line.decode("utf-8"))
        size = msg.get("bytes")
        if not size:
            return msg, b"" if size == 0 else None
        payload = bytearray(size)
        view = memoryview(payload)
        got = 0
        while got < size:
            n = self.rfile.readinto(view[got:])
            if not n:
                return None, None
            got += n
        return msg, payload


class Capture:
    """The worker's fds 1 and 2 become the write ends of the supervisor's pipes."""

    def __init__(self, writers):
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, w in zip((1, 2), writers):
            os.dup2(w, fd)
            os.close(w)

    def sync(self):
        """Python's buffers to fds 1 and 2: what a message sent after this
        follows (the supervisor reads the pipes before it sends a message on)."""
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass


class Relay:
    """The supervisor's side: the one writer on the rank's connection to the
    hub. It reads the worker's fds 1 and 2 (pipes) and the worker's messages
    (a socketpair); before it sends a message on it sends what the pipes
    hold, so everything written before the worker sent a message (a cell's
    done) comes before it, and after the worker died, what it wrote comes
    before the supervisor's exit. It lives in the process that outlives the
    worker: nothing written to the pipes is lost with the worker."""

    def __init__(self, hub, msgs, readers):
        self.hub, self.msgs = hub, msgs
        self.streams = {}
        self.live = set(readers)  # the pipes not at their end (a cell may close fd 2)
        for r, name in zip(readers, ("stdout", "stderr")):
            os.set_blocking(r, False)
            self.streams[r] = {"name": name, "text": "",
                               "decoder": codecs.getincrementaldecoder("utf-8")("replace")}
        self.inbuf = bytearray()
        self.left = 0             # payload bytes of the message being relayed
        self.greeted = False      # the worker's hello went: output may follow
        self.hub_ok = True

    def send(self, data):
        if self.hub_ok:
            try:
                self.hub.sendall(data)
            except OSError:
                self.hub_ok = False

    def emit(self, stream, text):
        while text:
            part, text = text[:TEXT_CHUNK], text[TEXT_CHUNK:]
            self.send(encode({"op": "output", "stream": stream["name"], "text": part}))

    def feed(self, stream, data, final):
        text = stream["text"] + stream["decoder"].decode(data, final)
        if final:
            cut = len(text)
        else:
            cut = text.rfind("\n") + 1
            if len(text) - cut > TEXT_CHUNK:
                cut = len(text)
        stream["text"] = text[cut:]
        if not self.greeted:
            # Before the hello the hub knows no rank here: the job's log.
            try:
                write_all(1 if stream["name"] == "stdout" else 2, text[:cut].encode("utf-8"))
            except OSError:
                pass
            return
        self.emit(stream, text[:cut])

    def read_pipe(self, fd):
        """What the pipe holds now; False at its end."""
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not data:
                return False
            self.feed(self.streams[fd], data, False)

    def drain(self):
        """Everything the pipes hold, partial lines included, sent now."""
        for fd in list(self.streams):
            self.read_pipe(fd)
        for stream in self.streams.values():
            if stream["text"]:
                self.feed(stream, b"", True)

    def from_worker(self, data):
        self.inbuf += data
        while self.inbuf:
            if self.left:
                n = min(self.left, len(self.inbuf))
                self.send(bytes(self.inbuf[:n]))
                del self.inbuf[:n]
                self.left -= n
                continue
            i = self.inbuf.find(b"\n")
            if i < 0:
                return
            line = bytes(self.inbuf[:i + 1])
            del self.inbuf[:i + 1]
            if self.greeted:
                self.drain()
            size = 0
            if b'"bytes"' in line:
                try:
                    size = json.loads(line.decode("utf-8")).get("bytes") or 0
                except ValueError:
                    size = 0
            self.send(line)
            self.left = size if isinstance(size, int) and size > 0 else 0
            self.greeted = True

    def at_boundary(self):
        return not self.inbuf and not self.left

    def run(self, dead):
        """Relays until the worker ended (dead becomes readable)."""
        open_msgs = True
        while True:
            fds = [dead] + ([self.msgs] if open_msgs else [])
            if self.greeted and self.at_boundary():
                fds += list(self.live)
            partial = any(s["text"] for s in self.streams.values())
            ready, _, _ = select.select(fds, [], [], PARTIAL_DELAY if partial else None)
            if not ready:
                for stream in self.streams.values():
                    if stream["text"]:
                        self.feed(stream, b"", True)
                continue
            if self.msgs in ready:
                data = self.msgs.recv(CHUNK)
                if data:
                    self.from_worker(data)
                else:
                    open_msgs = False
            for fd in ready:
                if fd in self.live and self.at_boundary() and not self.read_pipe(fd):
                    self.live.discard(fd)  # else select says it is readable forever
            if dead in ready:
                return

    def finish(self):
        """After the worker ended: the rest of its messages, then of its output."""
        self.msgs.setblocking(False)
        while True:
            try:
                data = self.msgs.recv(CHUNK)
            except (BlockingIOError, OSError):
                break
            if not data:
                break
            self.from_worker(data)
        if self.left:
            # It died in the middle of a payload: zeros keep the hub's framing.
            while self.left:
                n = min(self.left, CHUNK)
                self.send(bytes(n))
                self.left -= n
        self.inbuf.clear()
        self.drain()


class Worker:
    def __init__(self, jobdir, hub=None, out=None, writers=()):
        self.jobdir = jobdir
        self.hub, self.out, self.writers = hub, out, writers
        self.in_cell = False
        # Between the cell's "begin" and its first line: an interrupt the hub
        # sent then is the cell's, raised as soon as it starts.
        self.armed = False
        self.pending_interrupt = False
        self.namespace = None
        self.wire = None

    def on_sigint(self, signum, frame):
        if self.in_cell:
            raise KeyboardInterrupt
        if self.armed:
            self.pending_interrupt = True

    def setup(self):
        rank, size, local_rank, local_size = bootstrap.topology()
        self.rank, self.size = rank, size
        results, inputs = bootstrap.setup_environment(rank, size, local_rank, local_size)
        module = types.ModuleType("__main__")
        ns = module.__dict__
        ns.update(__builtins__=__builtins__, __cached__=None, __loader__=None,
                  __package__=None, __spec__=None, __file__=None)
        ns.update(bootstrap.load_pushed(inputs))
        ns.update(rank=rank, world_size=size, __process_id__=rank)
        sys.modules["__main__"] = module
        self.namespace = ns
        front = []
        for path in (os.getcwd(), os.environ.get("PYSTRIB_PROJECT")):
            if path and os.path.isdir(path) and path not in front:
                front.append(path)
        sys.path[:1] = front

    def hello(self):
        shm = os.environ.get("OMPI_MCA_ess_base_jobid", "")
        self.wire.send({"op": "hello", "rank": self.rank, "pid": os.getpid(),
                        "ppid": os.getppid(), "host": socket.gethostname(),
                        "gpus": os.environ.get("CUDA_VISIBLE_DEVICES"),
                        "shm": "%x" % int(shm) if shm.isdigit() else None})

    def init_parallel(self):
        """MPI and torch.distributed, once; an error is the rank's error."""
        try:
            try:
                from mpi4py import MPI  # noqa: F401  (MPI_Init_thread on import)
            except ImportError:
                pass
            if os.environ.get("PYSTRIB_SESSION_TORCH", "1") != "0":
                self.init_torch()
            return None
        except BaseException as e:
            error = self.error_of(e)
            try:  # the rank's log says why it could not start
                sys.stderr.write(error["traceback"])
                sys.stderr.flush()
            except Exception:
                pass
            return error

    def init_torch(self):
        try:
            import torch
            import torch.distributed as dist
        except ImportError:
            return
        if not dist.is_available() or dist.is_initialized():
            return
        gpu = bool(os.environ.get("CUDA_VISIBLE_DEVICES")) and torch.cuda.is_available()
        backend = "nccl" if gpu and dist.is_nccl_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(0)
        dist.init_process_group(backend, rank=self.rank, world_size=self.size)

    def error_of(self, e):
        # The cell's frames and its libraries', never the worker's own (an
        # interrupt lands in session.py's signal handler, for one).
        internal = (HERE, os.path.abspath(bootstrap.__file__))
        frames = [f for f in traceback.extract_tb(e.__traceback__)
                  if os.path.abspath(f.filename) not in internal]
        text = "".join(traceback.format_exception_only(type(e), e))
        if frames:
            text = ("Traceback (most recent call last):\n"
                    + "".join(traceback.format_list(frames)) + text)
        # Not written to stderr: the traceback is the `done`'s, which the
        # command line prints and the notebook raises (shown once, not twice).
        return {"type": type(e).__name__, "message": str(e), "traceback": text}

    def run_code(self, msg):
        name = msg.get("name") or "<cell>"
        source = msg.get("code") or ""
        linecache.cache[name] = (len(source), None, source.splitlines(True), name)
        sys.argv = [name] + [str(a) for a in msg.get("argv") or []]
        self.namespace["__file__"] = name
        status, error = "ok", None
        try:
            try:
                code = compile(source, name, "exec", dont_inherit=True)
                self.in_cell = True
                try:
                    if self.pending_interrupt:
                        raise KeyboardInterrupt
                    exec(code, self.namespace)
                finally:
                    self.in_cell = False
                    self.armed = self.pending_interrupt = False
            except KeyboardInterrupt as e:
                status, error = "interrupted", self.error_of(e)
            except SystemExit as e:
                if e.code not in (None, 0):
                    status, error = "error", self.error_of(e)
            except BaseException as e:
                status, error = "error", self.error_of(e)
        except KeyboardInterrupt as e:  # a SIGINT that came as the cell ended
            self.in_cell = False
            status, error = "interrupted", {"type": "KeyboardInterrupt", "message": "",
                                            "traceback": ""}
        return status, error

    def do_exec(self, msg):
        # The hub interrupts a rank only once it has begun (an interrupt that
        # came before would be lost: between cells SIGINT is ignored).
        self.armed = True
        self.wire.send({"op": "begin", "id": msg.get("id")})
        # Project files the hub unpacked since the last cell: new modules are
        # found (the finders' directory caches are dropped), nothing is reloaded.
        importlib.invalidate_caches()
        status, error = self.run_code(msg)
        self.capture.sync()
        self.wire.send({"op": "done", "id": msg.get("id"), "status": status, "error": error})

    def do_push(self, msg, payload):
        status, error = "ok", None
        try:
            value = pickle.loads(payload)
            del payload
            if "slice" in msg:
                value = {msg["name"]: self.slice_of(value, *msg["slice"])}
            if not isinstance(value, dict):
                raise TypeError("a push holds a dict {name: value}, not a %s"
                                % type(value).__name__)
            self.namespace.update((str(k), v) for k, v in value.items())
        except Exception as e:
            status, error = "error", self.error_of(e)
        self.capture.sync()
        self.wire.send({"op": "done", "id": msg.get("id"), "status": status, "error": error})

    def do_files(self, msg, payload):
        """Project files on a host of its own (the hub's are unpacked by it)."""
        status, error = "ok", None
        try:
            fileobj = io.BytesIO(payload) if payload else None
            unpack_files(os.environ["PYSTRIB_PROJECT"], fileobj, msg.get("removed") or [])
        except (Unsafe, OSError) as e:
            status, error = "error", {"type": type(e).__name__, "message": str(e), "traceback": ""}
        self.capture.sync()
        self.wire.send({"op": "done", "id": msg.get("id"), "status": status, "error": error})

    @staticmethod
    def slice_of(seq, k, m):
        q, r = divmod(len(seq), m)
        start = k * q + min(k, r)
        piece = seq[start:start + q + (1 if k < r else 0)]
        if getattr(piece, "base", None) is not None and hasattr(piece, "copy"):
            piece = piece.copy()  # a numpy view would keep the whole array alive
        return piece

    def do_pull(self, msg):
        ns = self.namespace
        if msg.get("gather"):
            self.do_gather(msg["names"][0])
            return
        names = msg.get("names") or []
        if names == ["*"]:
            names = bootstrap.pull_names("*", ns)
        values, missing, errors = {}, [], {}
        for name in names:
            if name in ns:
                values[name] = ns[name]
            else:
                missing.append(name)
        try:
            data = pickle.dumps(values, protocol=PICKLE_PROTOCOL)
        except Exception:
            data = None
        if data is None:
            for name in list(values):
                try:
                    pickle.dumps(values[name], protocol=PICKLE_PROTOCOL)
                except Exception as e:
                    errors[name] = "%s: %s" % (type(e).__name__, e)
                    del values[name]
            data = pickle.dumps(values, protocol=PICKLE_PROTOCOL)
        del values
        self.wire.send({"op": "value", "bytes": len(data), "missing": missing,
                        "errors": errors}, data)

    def do_gather(self, name):
        ns = self.namespace
        if name not in ns:
            self.wire.send({"op": "value", "bytes": 0, "missing": [name], "errors": {}})
            return
        value = ns[name]
        kind = type(value).__name__
        if isinstance(value, (list, tuple, range)):
            kind = "list"
        elif type(value).__module__ == "numpy" and kind == "ndarray":
            kind = "ndarray"
        try:
            data = pickle.dumps(value, protocol=PICKLE_PROTOCOL)
        except Exception as e:
            self.wire.send({"op": "value", "bytes": 0, "missing": [],
                            "errors": {name: "%s: %s" % (type(e).__name__, e)}})
            return
        self.wire.send({"op": "value", "bytes": len(data), "kind": kind, "missing": [],
                        "errors": {}}, data)

    def serve(self):
        while True:
            msg, payload = self.wire.recv()
            if msg is None or msg.get("op") == "stop":
                return
            op = msg.get("op")
            if op == "exec":
                self.do_exec(msg)
            elif op == "push":
                self.do_push(msg, payload)
            elif op == "pull":
                self.do_pull(msg)
            elif op == "files":
                self.do_files(msg, payload)
            del payload

    def main(self):
        bootstrap.line_buffered()
        signal.signal(signal.SIGINT, self.on_sigint)
        signal.signal(signal.SIGTERM, bootstrap._on_sigterm)
        self.setup()
        self.wire = Wire(self.hub, self.out)
        self.capture = Capture(self.writers)
        self.hello()
        error = self.init_parallel()
        self.capture.sync()
        self.wire.send({"op": "ready", "error": error})
        self.serve()
        try:
            import torch.distributed as dist
            if dist.is_initialized():
                dist.destroy_process_group()
        except Exception:
            pass
        return 0


def die_with_parent():
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def report_exit(jobdir, rank, pid, status, relay=None):
    """Says how the worker ended: on the rank's own connection after the
    rest of its output (relay), else on a connection of its own."""
    reason, code = exit_reason(status)
    line = encode({"op": "exit", "rank": rank, "pid": pid, "reason": reason,
                   "code": code, "time": time.time()})
    if relay is not None and relay.greeted:
        relay.send(line)
        if relay.hub_ok:
            return code
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(sock_path(os.path.join(jobdir, "ranks.sock")))
        sock.sendall(line)
        sock.close()
    except OSError:
        pass
    return code


def worker_main(jobdir):
    """Forks: the child is the worker; this process (the supervisor) relays
    its output and messages to the hub (Relay) and says how it ended."""
    rank = bootstrap.topology()[0]
    forward = {}
    hub = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hub.connect(sock_path(os.path.join(jobdir, "ranks.sock")))
    mine, theirs = socket.socketpair()
    pipes = [os.pipe(), os.pipe()]
    pid = os.fork()
    if pid == 0:
        die_with_parent()
        mine.close()
        for r, _ in pipes:
            os.close(r)
        code = 1
        try:
            code = Worker(jobdir, hub, theirs, [w for _, w in pipes]).main()
        except SystemExit as e:
            code = bootstrap.exit_code_of(e)
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except Exception:
                pass
        sys.exit(code)
    theirs.close()
    for _, w in pipes:
        os.close(w)
    relay = Relay(hub, mine, [r for r, _ in pipes])

    def relay_signal(signum, frame):
        forward["sig"] = signum
        try:
            os.kill(pid, signum)
        except OSError:
            pass

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, relay_signal)
    signal.signal(signal.SIGHUP, relay_signal)
    dead_r, dead_w = os.pipe()
    ended = {}

    def wait():
        while True:
            try:
                ended["status"] = os.waitpid(pid, 0)[1]
                break
            except ChildProcessError:
                break
            except InterruptedError:
                continue
        os.write(dead_w, b"x")

    threading.Thread(target=wait, name="pystrib-wait", daemon=True).start()
    relay.run(dead_r)
    if "status" not in ended:
        return 1
    status = ended["status"]
    relay.finish()
    code = report_exit(jobdir, rank, pid, status, relay)
    hub.close()
    if os.WIFSIGNALED(status):
        signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
        os.kill(os.getpid(), os.WTERMSIG(status))
    return code


# ---------------------------------------------------------------- project files


class Unsafe(ValueError):
    """A `files` request that would write outside the project directory."""


def safe_parts(name):
    """The components of a relative, clean path, or Unsafe."""
    parts = name.rstrip("/").split("/") if isinstance(name, str) else None
    if (not parts or name.startswith("/") or "\0" in name
            or any(p in ("", ".", "..") for p in parts)):
        raise Unsafe("unsafe path %s" % json.dumps(name))
    return parts


def link_inside(parts, target):
    """True when a symlink at parts pointing to target stays in the project."""
    if not target or target.startswith("/"):
        return False
    depth = len(parts) - 1
    for p in target.split("/"):
        if p == "..":
            depth -= 1
        elif p not in ("", "."):
            depth += 1
        if depth < 0:
            return False
    return True


def check_parents(root, parts, going=()):
    """Unsafe when a directory on the way to parts is a symlink (or not a
    directory), unless the request removes it (going: tuples of parts)."""
    path = root
    for i, p in enumerate(parts[:-1]):
        path = os.path.join(path, p)
        if tuple(parts[:i + 1]) in going:
            return
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(st.st_mode):
            raise Unsafe("%s is a %s in the project, not a directory" % (
                json.dumps("/".join(parts[:i + 1])),
                "symlink" if stat.S_ISLNK(st.st_mode) else "file"))


def drop_pycache(path):
    """Removes the cached bytecode of a .py file rewritten: a pyc keyed on a
    whole-second mtime and the size could otherwise outlive a quick edit."""
    folder, base = os.path.split(path)
    cache = os.path.join(folder, "__pycache__")
    stem = base[:-3] + "."
    try:
        names = os.listdir(cache)
    except OSError:
        return
    for n in names:
        if n.startswith(stem) and n.endswith(".pyc"):
            try:
                os.unlink(os.path.join(cache, n))
            except OSError:
                pass


def place(root, parts, member, tar):
    """Writes one member (a file or a symlink) through a temporary name and a rename."""
    dest = os.path.join(root, *parts)
    folder = os.path.dirname(dest)
    os.makedirs(folder, mode=0o755, exist_ok=True)
    if os.path.isdir(dest) and not os.path.islink(dest):
        shutil.rmtree(dest)
    tmp = os.path.join(folder, ".pystrib-%d-%s" % (os.getpid(), parts[-1]))
    if member.issym():
        os.symlink(member.linkname, tmp)
    else:
        src = tar.extractfile(member)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW,
                     0o755 if member.mode & 0o111 else 0o644)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out, CHUNK)
        os.chmod(tmp, 0o755 if member.mode & 0o111 else 0o644)
    os.replace(tmp, dest)
    if dest.endswith(".py"):
        drop_pycache(dest)


def remove_path(root, parts):
    """Removes a file or symlink, then the directories it leaves empty."""
    path = os.path.join(root, *parts)
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            return
        os.unlink(path)
    except FileNotFoundError:
        pass
    for i in range(len(parts) - 1, 0, -1):
        try:
            os.rmdir(os.path.join(root, *parts[:i]))
        except OSError:
            break


def unpack_files(root, fileobj, removed):
    """Applies a `files` request to the project directory root: the tar in
    fileobj (or None) and the removed paths. Everything is checked before
    anything is written: absolute paths, '..', a path through a symlink
    (on disk or in the same tar), a symlink whose target (as written) leaves
    the project, or a member that is not a file, directory or symlink refuse
    the whole request (Unsafe).
    Returns (files written, paths removed)."""
    if not isinstance(removed, list):
        raise Unsafe("removed must be a list of paths")
    gone = [safe_parts(n) for n in removed]
    going = set(tuple(p) for p in gone)
    for parts in gone:
        check_parents(root, parts)
    tar = None
    members = []
    if fileobj is not None:
        try:
            tar = tarfile.open(fileobj=fileobj, mode="r:")
            members = tar.getmembers()
        except (tarfile.TarError, EOFError) as e:
            raise Unsafe("the files are not a tar: %s" % e)
    try:
        todo = []
        # A member under a symlink of the same tar would be written through
        # it (check_parents sees only what is on disk already).
        links = set(tuple(safe_parts(m.name)) for m in members if m.issym())
        for m in members:
            parts = safe_parts(m.name)
            if any(tuple(parts[:i]) in links for i in range(1, len(parts))):
                raise Unsafe("%s is under a symlink of the same files" % json.dumps(m.name))
            if m.issym():
                if not link_inside(parts, m.linkname):
                    raise Unsafe("%s links out of the project" % json.dumps(m.name))
            elif not (m.isreg() or m.isdir()):
                raise Unsafe("%s is not a file, directory or symlink" % json.dumps(m.name))
            check_parents(root, parts + ["x"] if m.isdir() else parts, going)
            todo.append((parts, m))
        for parts in gone:
            remove_path(root, parts)
        written = 0
        for parts, m in todo:
            if m.isdir():
                d = os.path.join(root, *parts)
                if os.path.islink(d) or (os.path.exists(d) and not os.path.isdir(d)):
                    os.unlink(d)
                os.makedirs(d, mode=0o755, exist_ok=True)
            else:
                place(root, parts, m, tar)
                written += 1
        return written, len(gone)
    finally:
        if tar is not None:
            tar.close()


# ---------------------------------------------------------------- hub


class Payload:
    """N raw bytes after a message: held in the socket, relayed to dests, or dropped."""

    def __init__(self, size):
        self.size = size
        self.remaining = size
        self.dests = []           # [] drops the bytes; None holds them
        self.on_done = None

    def ready(self):
        return self.dests is not None and all(d.closed or d.outlen < HIGH_WATER
                                              for d in self.dests)


ZEROS = bytes(CHUNK)


class Spool:
    """A push's bytes kept on disk while the request waits its turn, so the
    client's connection goes on being read (an interrupt must get through)."""

    def __init__(self, path, size):
        self.path, self.size = path, size
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self.complete = False
        self.closed = False
        self.outlen = 0
        self.remaining = size
        self.dests = None

    def send(self, data):
        write_all(self.fd, data)

    def written(self):
        self.complete = True
        os.lseek(self.fd, 0, os.SEEK_SET)

    def discard(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def relay(self):
        """Sends the next chunks to dests while they keep up; True when all is sent."""
        while self.remaining and all(d.closed or d.outlen < HIGH_WATER for d in self.dests):
            data = os.read(self.fd, min(CHUNK, self.remaining))
            if not data:
                data = ZEROS[:min(CHUNK, self.remaining)]
            for d in self.dests:
                d.send(data)
            self.remaining -= len(data)
        return not self.remaining


class Conn:
    """One non-blocking connection: JSON lines in and out, payloads relayed in chunks."""

    def __init__(self, hub, sock, kind):
        self.hub, self.sock, self.kind = hub, sock, kind
        sock.setblocking(False)
        self.rbuf = bytearray()
        self.out = collections.deque()
        self.outlen = 0
        self.payload = None
        self.closed = False
        self.processing = False
        self.rank = None
        self.events = 0
        self.client = None        # the token a client's hello gave (`client`)

    def fileno(self):
        return self.sock.fileno()

    def send(self, data):
        if self.closed or not data:
            return
        self.out.append(data)
        self.outlen += len(data)

    def send_msg(self, msg):
        self.send(encode(msg))

    def flush(self):
        while self.out and not self.closed:
            try:
                n = self.sock.send(self.out[0])
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.hub.lost(self)
                return
            self.outlen -= n
            if n == len(self.out[0]):
                self.out.popleft()
            else:
                self.out[0] = memoryview(self.out[0])[n:]
                return

    def wants_read(self):
        if self.closed:
            return False
        if self.payload is not None:
            return self.payload.ready()
        return len(self.rbuf) <= MAX_LINE

    def on_readable(self):
        direct = self.payload is not None and not self.rbuf and self.payload.ready()
        limit = min(CHUNK, self.payload.remaining) if direct else CHUNK
        try:
            data = self.sock.recv(limit)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.hub.lost(self)
            return
        if direct:
            self.deliver(data)
        else:
            self.rbuf += data
        self.process()

    def deliver(self, data):
        p = self.payload
        for d in p.dests:
            d.send(data)
        p.remaining -= len(data)
        if p.remaining == 0:
            self.payload = None
            if p.on_done:
                p.on_done()

    def activate(self, dests, on_done=None):
        """Lets a held payload go to dests ([] drops it)."""
        self.payload.dests = dests
        self.payload.on_done = on_done
        self.process()

    def process(self):
        if self.processing:
            return
        self.processing = True
        try:
            self.process_buffer()
        finally:
            self.processing = False

    def process_buffer(self):
        while not self.closed:
            if self.payload is not None:
                if self.payload.dests is None or not self.rbuf:
                    return
                n = min(len(self.rbuf), self.payload.remaining)
                chunk = bytes(self.rbuf[:n])
                del self.rbuf[:n]
                self.deliver(chunk)
                continue
            i = self.rbuf.find(b"\n")
            if i < 0:
                if len(self.rbuf) > MAX_LINE:
                    self.send_msg({"op": "error", "message": "message longer than 1 MiB"})
                    self.hub.lost(self)
                return
            line = bytes(self.rbuf[:i])
            del self.rbuf[:i + 1]
            try:
                msg = json.loads(line.decode("utf-8"))
                if not isinstance(msg, dict):
                    raise ValueError("not an object")
            except ValueError as e:
                self.send_msg({"op": "error", "message": "bad message: %s" % e})
                continue
            size = msg.get("bytes")
            payload = None
            if isinstance(size, int) and size > 0:
                payload = self.payload = Payload(size)
            self.hub.on_message(self, msg, payload)

    def pad(self):
        """The source went away mid-payload: zeros keep the receivers' framing."""
        p = self.payload
        if p is None or not p.dests:
            return
        self.payload = None
        while p.remaining:
            n = min(p.remaining, CHUNK)
            for d in p.dests:
                d.send(ZEROS[:n] if n < CHUNK else ZEROS)
            p.remaining -= n
        if p.on_done:
            p.on_done()


# The pickle programs gather sends: each rank's own pickle is embedded as a
# bytes object and loaded by the receiver, so the hub never unpickles a value.
GATHER_PROGRAMS = {
    "list": (b"\x80\x04cbuiltins\nlist\nc" b"itertools\nchain\n(", b"tR\x85R."),
    "ndarray": (b"\x80\x04cnumpy\nconcatenate\n(", b"t\x85R."),
}
PIECE_HEAD = b"cpickle\nloads\n\x8e"
PIECE_TAIL = b"\x85R"


class Job:
    """The one request that has the ranks."""

    def __init__(self, conn, msg, payload, ranks):
        self.conn, self.msg, self.payload, self.ranks = conn, msg, payload, ranks
        self.op = msg["op"]
        self.id = msg.get("id")
        self.pending = set(ranks)
        self.results = {}
        self.values = {}
        self.next = 0
        self.relaying = False
        self.seq = None
        self.spool = None
        self.files = {}
        self.files_done = None	# files over several hosts: this host's done, meanwhile
        self.followers = set()
        self.interrupts = 0
        self.begun = set()	# exec: the ranks that said "begin" (interruptible)
        self.timed_out = False
        self.timers = []


class Hub:
    def __init__(self, jobdir, np, idle_timeout, start_timeout, command, forward=()):
        self.dir = os.path.abspath(jobdir)
        self.forward_hosts = list(forward)
        # Host name (as its workers say it) -> its forward's stdin (kill_pid).
        self.remote_signals = {}
        self.forwards = []
        self.np = np
        self.idle_timeout = idle_timeout
        self.start_timeout = start_timeout
        self.command = command
        self.sel = selectors.DefaultSelector()
        self.conns = set()
        self.ranks = {}
        self.ready = set()
        self.state = "starting"
        self.queue = collections.deque()
        self.job = None
        self.seq = 0
        self.timers = []
        self.started = time.time()
        self.idle_since = None
        self.broken = None
        self.deaths = []
        self.deciding = False
        self.stop_reason = None
        self.error = None
        self.signalled = None
        self.mpirun = None
        self.between = {}
        self.spooled = 0
        self.relays = []
        self.stuck = []
        self.shm_before = set()
        self.started_refs = collections.OrderedDict()   # client token: {ref: cell or None}

    # -- files

    def path(self, *names):
        return os.path.join(self.dir, *names)

    def write_json(self, path, data):
        tmp = "%s.tmp.%d" % (path, os.getpid())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)

    def status(self):
        busy = self.job.pending if self.job else set()
        ranks = []
        for r in range(self.np):
            info = self.ranks.get(r, {})
            if info.get("dead"):
                state = "dead"
            elif r not in self.ready:
                state = "starting"
            else:
                state = "busy" if r in busy else "idle"
            ranks.append({"rank": r, "pid": info.get("pid"), "host": info.get("host"),
                          "gpus": info.get("gpus"), "shm": info.get("shm"), "state": state})
        job = self.job
        return {"np": self.np, "state": self.state,
                "cell": job.seq if job else None, "last_cell": self.seq,
                "started": self.started, "idle_since": self.idle_since,
                "idle_timeout": self.idle_timeout, "hub_pid": os.getpid(),
                "queued": len(self.queue), "ranks": ranks, "broken": self.broken,
                "stopped": self.stop_reason if self.state == "stopped" else None,
                "error": self.error}

    def save(self):
        try:
            self.write_json(self.path("session.json"), self.status())
        except OSError as e:
            print("session: cannot write session.json: %s" % e, file=sys.stderr)

    # -- timers

    def after(self, seconds, fn):
        timer = [time.monotonic() + seconds, fn]
        self.timers.append(timer)
        return timer

    def cancel(self, timer):
        if timer in self.timers:
            self.timers.remove(timer)

    def run_timers(self):
        now = time.monotonic()
        for timer in [t for t in self.timers if t[0] <= now]:
            if timer in self.timers:
                self.timers.remove(timer)
                timer[1]()

    def next_timeout(self):
        deadlines = [t[0] for t in self.timers]
        if self.idle_timeout > 0 and self.state in ("idle", "broken") and self.idle_since:
            deadlines.append(time.monotonic() + self.idle_since + self.idle_timeout
                             - time.time())
        if not deadlines:
            return 1.0
        return max(0.0, min(min(deadlines) - time.monotonic(), 1.0))

    # -- sockets

    def listen(self, name):
        path = self.path(name)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(sock_path(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(64)
        sock.setblocking(False)
        return sock

    def accept(self, sock, kind):
        try:
            conn_sock, _ = sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        conn = Conn(self, conn_sock, kind)
        self.conns.add(conn)
        conn.events = selectors.EVENT_READ
        self.sel.register(conn, conn.events, conn)

    def lost(self, conn):
        if conn.closed:
            return
        conn.closed = True
        try:
            self.sel.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        self.conns.discard(conn)
        conn.out.clear()
        conn.outlen = 0
        conn.pad()
        if conn.kind == "rank":
            if conn.rank is not None and not self.stop_reason:
                self.death(conn.rank, "lost its connection to the hub", time.time(), True)
            return
        if self.job:
            self.job.followers.discard(conn)
        if conn.payload is not None and isinstance(conn.payload.dests, list) and \
                any(isinstance(d, Spool) for d in conn.payload.dests):
            conn.payload = None
        for req in [q for q in self.queue if q[0] is conn]:
            self.queue.remove(req)
            if req[3] is not None:
                req[3].discard()

    # -- client requests

    def on_message(self, conn, msg, payload):
        if conn.kind == "rank":
            self.rank_message(conn, msg, payload)
        else:
            self.client_message(conn, msg, payload)

    def reply_error(self, conn, rid, message):
        conn.send_msg({"op": "error", "id": rid, "message": message})

    def client_message(self, conn, msg, payload):
        op, rid = msg.get("op"), msg.get("id")
        if op == "hello":
            self.hello(conn, msg)
        elif op == "status":
            reply = self.status()
            reply.update(op="status", id=rid)
            conn.send_msg(reply)
        elif op == "interrupt":
            self.interrupt(conn, rid)
        elif op == "stop":
            self.begin_stop("stop")
        elif op in ("exec", "push", "pull", "scatter", "gather", "files"):
            problem = self.check(msg, payload)
            if problem is None and self.broken:
                problem = self.broken_message()
            if problem is None and self.stop_reason:
                problem = "session is stopping"
            if problem:
                self.reply_error(conn, rid, problem)
                return
            spool = None
            if payload is not None:
                payload.dests = None
                if self.job or self.queue or self.state != "idle" or op == "files":
                    spool = self.spool(conn, payload)
            self.queue.append((conn, msg, payload, spool))
            self.pump()
        else:
            self.reply_error(conn, rid, "unknown op %s" % json.dumps(op))

    def spool(self, conn, payload):
        folder = self.path("spool")
        os.makedirs(folder, mode=0o700, exist_ok=True)
        self.spooled += 1
        spool = Spool(os.path.join(folder, str(self.spooled)), payload.size)

        def written():
            spool.written()
            self.pump()

        payload.dests = [spool]
        payload.on_done = written
        return spool

    def check(self, msg, payload):
        op = msg["op"]
        ranks = msg.get("ranks")
        if ranks is not None:
            if (not isinstance(ranks, list) or not ranks
                    or not all(isinstance(r, int) and 0 <= r < self.np for r in ranks)):
                return "ranks must be a non-empty list of ranks 0..%d" % (self.np - 1)
            if len(set(ranks)) != len(ranks):
                return "ranks lists a rank twice"
        if op == "exec" and not isinstance(msg.get("code"), str):
            return "exec needs code (a string)"
        if op in ("push", "scatter") and payload is None:
            return "%s needs bytes and a pickle" % op
        if op == "files" and not os.environ.get("PYSTRIB_PROJECT"):
            return "the session has no project directory"
        if op == "files" and not isinstance(msg.get("removed", []), list):
            return "files needs removed (a list of paths)"
        if op in ("scatter", "gather") and not isinstance(msg.get("name"), str):
            return "%s needs a name" % op
        if op == "pull":
            names = msg.get("names")
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                return "pull needs names (a list of strings)"
        timeout = msg.get("timeout")
        if timeout is not None and not isinstance(timeout, (int, float)):
            return "timeout must be a number"
        return None

    def broken_message(self):
        return "session is broken: %s" % self.what_broke()

    def what_broke(self):
        b = self.broken
        if b["rank"] is None:
            return b["reason"]
        return "rank %d %s" % (b["rank"], b["reason"])

    def hello(self, conn, msg):
        token = msg.get("client")
        if isinstance(token, str) and token:
            # The same client again: its old connection ends here, so what
            # it had queued is dropped before the answer says what started.
            for old in [c for c in self.conns if c is not conn and c.client == token]:
                self.lost(old)
            conn.client = token
        job = self.job
        reply = {"op": "hello", "id": msg.get("id"), "protocol": PROTOCOL,
                 "session": os.path.basename(self.dir), "np": self.np,
                 "state": self.state, "cell": job.seq if job else None,
                 "last_cell": self.seq, "broken": self.broken}
        refs = msg.get("refs")
        if conn.client and isinstance(refs, list):
            known = self.started_refs.get(conn.client, {})
            reply["started"] = [{"ref": r, "cell": known[r]} for r in refs
                                if isinstance(r, (int, str)) and r in known]
        conn.send_msg(reply)
        replay = msg.get("replay")
        if isinstance(replay, dict):
            self.replay(conn, msg.get("id"), replay)

    def replay(self, conn, rid, spec):
        seq = spec.get("cell")
        folder = self.path("cells", str(seq))
        if not isinstance(seq, int) or seq < 1 or not os.path.isdir(folder):
            self.reply_error(conn, rid, "no cell %s to replay" % json.dumps(seq))
            return
        offsets = spec.get("offsets") or {}
        job = self.job if self.job and self.job.seq == seq else None
        done = None
        if job is None:
            try:
                with open(os.path.join(folder, "result.json")) as f:
                    done = json.load(f)
            except (OSError, ValueError):
                done = None
        cell_id = job.id if job else (done or {}).get("id")
        names = sorted(os.listdir(folder))
        for rank in sorted({int(n.split(".")[1]) for n in names if n.startswith("rank.")}):
            given = offsets.get(str(rank)) or [0, 0]
            for i, stream in enumerate(("stdout", "stderr")):
                offset = given[i] if i < len(given) and isinstance(given[i], int) else 0
                self.replay_file(conn, cell_id, seq, rank, stream, offset, job)
        if job:
            job.followers.add(conn)
        elif done:
            conn.send_msg(done)
        else:
            self.reply_error(conn, rid, "cell %d ended without a result" % seq)

    def replay_file(self, conn, cell_id, seq, rank, stream, offset, job):
        name = "rank.%d.%s" % (rank, "out" if stream == "stdout" else "err")
        end = None
        if job and (rank, stream) in job.files:
            end = job.files[(rank, stream)][1]
        try:
            f = open(self.path("cells", str(seq), name), "rb")
        except OSError:
            return
        with f:
            f.seek(offset)
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            left = None if end is None else max(0, end - offset)
            while left is None or left > 0:
                data = f.read(TEXT_CHUNK if left is None else min(TEXT_CHUNK, left))
                if not data:
                    break
                if left is not None:
                    left -= len(data)
                text = decoder.decode(data, False)
                if text:
                    conn.send_msg({"op": "output", "id": cell_id, "cell": seq, "rank": rank,
                                   "stream": stream, "offset": offset, "text": text})
                    offset += len(text.encode("utf-8"))

    def interrupt(self, conn, rid):
        job = self.job
        if job is None or job.op != "exec":
            conn.send_msg({"op": "done", "id": rid, "status": "ok", "cell": None})
            return
        conn.send_msg({"op": "done", "id": rid, "status": "ok", "cell": job.seq})
        self.interrupt_job(job)

    def interrupt_job(self, job):
        job.interrupts += 1
        if job.interrupts >= 2:
            self.begin_stop("interrupt")
            return
        for r in job.pending & job.begun:
            self.signal_rank(r)

    def signal_rank(self, rank):
        self.kill_pid(rank, self.ranks.get(rank, {}).get("pid"), signal.SIGINT)

    def kill_pid(self, rank, pid, sig):
        """Signals one of rank's processes where it runs: a pid of another
        host is that host's (through its forward, never os.kill here)."""
        if not pid:
            return
        host = self.ranks.get(rank, {}).get("host")
        remote = self.remote_signals.get(host) if self.forwards else None
        if remote is None and self.forwards and host != socket.gethostname():
            return  # a host whose forward is gone: mpirun's end takes its ranks
        try:
            if remote is not None:
                remote.write(b"%s %d\n" % (signal.Signals(sig).name[3:].encode(), pid))
                remote.flush()
            else:
                os.kill(pid, sig)
        except (OSError, ValueError):
            pass

    def rank_begun(self, rank):
        job = self.job
        if job is None or job.op != "exec" or rank not in job.pending:
            return
        job.begun.add(rank)
        # Interrupted (or timed out) before this rank began: now it can be.
        if job.interrupts == 1:
            self.signal_rank(rank)

    # -- running requests on the ranks

    def pump(self):
        while (self.job is None and self.state == "idle" and not self.stop_reason
               and self.queue):
            spool = self.queue[0][3]
            if spool is not None and not spool.complete:
                return
            conn, msg, payload, spool = self.queue.popleft()
            if conn.closed:
                if spool is not None:
                    spool.discard()
                continue
            ranks = sorted(msg.get("ranks") or range(self.np))
            job = self.job = Job(conn, msg, payload, ranks)
            job.spool = spool
            self.state = "busy"
            getattr(self, "start_" + job.op)(job)
            self.note_started(conn, msg.get("ref"), job.seq)
            if self.job is job:
                self.save()

    def note_started(self, conn, ref, seq):
        """Remembers that a client's request (its `ref`) started, for the
        hello of that client's next connection (the last 1024 of 64 clients)."""
        if conn.client is None or not isinstance(ref, (int, str)):
            return
        refs = self.started_refs.pop(conn.client, None) or collections.OrderedDict()
        self.started_refs[conn.client] = refs
        refs[ref] = seq
        while len(refs) > 1024:
            refs.popitem(last=False)
        while len(self.started_refs) > 64:
            self.started_refs.popitem(last=False)

    def worker(self, rank):
        return self.ranks[rank]["conn"]

    def start_exec(self, job):
        self.seq += 1
        job.seq = self.seq
        folder = self.path("cells", str(job.seq))
        os.makedirs(folder, mode=0o700, exist_ok=True)
        for r in job.ranks:
            for stream, ext in (("stdout", "out"), ("stderr", "err")):
                fd = os.open(os.path.join(folder, "rank.%d.%s" % (r, ext)),
                             os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                job.files[(r, stream)] = [fd, 0]
        job.followers.add(job.conn)
        job.conn.send_msg({"op": "started", "id": job.id, "cell": job.seq})
        msg = job.msg
        request = {"op": "exec", "id": job.seq, "code": msg["code"],
                   "name": msg.get("name") or "cell-%d.py" % job.seq}
        if isinstance(msg.get("argv"), list):
            request["argv"] = msg["argv"]
        line = encode(request)
        for r in job.ranks:
            self.worker(r).send(line)
        timeout = msg.get("timeout") or 0
        if timeout > 0:
            job.timers.append(self.after(timeout, lambda: self.on_timeout(job)))

    def on_timeout(self, job):
        if self.job is not job:
            return
        job.timed_out = True
        self.interrupt_job(job)
        # A cell that ignores the interrupt: the session cannot go on.
        job.timers.append(self.after(10, lambda: self.job is job and
                                     self.begin_stop("timeout")))

    def output(self, rank, stream, text):
        job = self.job
        if not (job and job.op == "exec" and (rank, stream) in job.files):
            self.stray_output(rank, stream, text)
            return
        data = text.encode("utf-8")
        entry = job.files[(rank, stream)]
        write_all(entry[0], data)
        line = encode({"op": "output", "id": job.id, "cell": job.seq, "rank": rank,
                       "stream": stream, "offset": entry[1], "text": text})
        entry[1] += len(data)
        for conn in list(job.followers):
            conn.send(line)
            if conn.outlen > CLIENT_BACKLOG:
                # A client that cannot keep up reconnects and replays from the files.
                self.lost(conn)

    def stray_output(self, rank, stream, text):
        """Output while no cell runs (a thread a cell left): kept in cells/0."""
        key = (rank, stream)
        if key not in self.between:
            folder = self.path("cells", "0")
            os.makedirs(folder, mode=0o700, exist_ok=True)
            name = "rank.%d.%s" % (rank, "out" if stream == "stdout" else "err")
            self.between[key] = os.open(os.path.join(folder, name),
                                        os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        write_all(self.between[key], text.encode("utf-8"))

    def finish(self, job, status=None, message=None):
        """Sends the job's done and gives the ranks to the next request."""
        if self.job is not job:
            return
        for timer in job.timers:
            self.cancel(timer)
        ranks = []
        for r in job.ranks:
            result = job.results.get(r)
            if result is None:
                result = {"status": status or "error",
                          "error": {"type": status or "error", "message": message or "",
                                    "traceback": ""}}
            ranks.append({"rank": r, "status": result["status"], "error": result["error"]})
        if status is None:
            got = {x["status"] for x in ranks}
            status = "ok"
            for s in ("interrupted", "error"):
                if s in got:
                    status = s
                    break
            if job.timed_out:
                status = "timeout"
        done = {"op": "done", "id": job.id, "status": status, "ranks": ranks}
        if message:
            done["message"] = message
        if job.op == "files":
            done = self.files_finished(job, done)
        if job.op == "exec":
            done["cell"] = job.seq
            for fd, _ in job.files.values():
                os.close(fd)
            try:
                self.write_json(self.path("cells", str(job.seq), "result.json"), done)
            except OSError as e:
                print("session: cannot write result.json: %s" % e, file=sys.stderr)
            line = encode(done)
            for conn in job.followers:
                conn.send(line)
        else:
            job.conn.send_msg(done)
        self.job = None
        if self.state == "busy":
            self.state = "idle"
        self.idle_since = time.time()
        self.save()
        self.pump()

    def start_push(self, job):
        m = len(job.ranks)
        dests = []
        for i, r in enumerate(job.ranks):
            header = {"op": "push", "id": job.id, "bytes": job.payload.size}
            if job.op == "scatter":
                header.update(name=job.msg["name"], slice=[i, m])
            w = self.worker(r)
            w.send_msg(header)
            dests.append(w)
        if job.spool is not None:
            job.spool.dests = dests
            self.relays.append(job.spool)
        else:
            job.conn.activate(dests)

    start_scatter = start_push

    def start_files(self, job):
        """Unpacks project files into the ranks' project directory; the ranks
        of this host are not asked (they share it), but no cell runs
        meanwhile. Over several hosts, one rank on each other host unpacks
        them there too (host_leaders)."""
        root = os.environ["PYSTRIB_PROJECT"]
        fileobj = None
        done = {"op": "done", "id": job.id, "status": "ok", "ranks": []}
        leaders = self.host_leaders()
        try:
            if job.spool is not None:
                fileobj = os.fdopen(os.dup(job.spool.fd), "rb")
            written, gone = unpack_files(root, fileobj, job.msg.get("removed") or [])
            done.update(files=written, removed=gone)
        except (Unsafe, OSError) as e:
            done.update(status="error", message="project files refused: %s" % e)
            leaders = []
        finally:
            if fileobj is not None:
                fileobj.close()
            if job.spool is not None and not leaders:
                job.spool.discard()
        if leaders:
            job.files_done = done
            self.files_to_hosts(job, leaders)
            return
        job.conn.send_msg(done)
        self.job = None
        self.state = "idle"
        self.save()
        self.pump()

    @staticmethod
    def files_finished(job, done):
        """The hub's own `done` of a files request, with the other hosts' say."""
        ours = dict(job.files_done)
        bad = [r for r in done["ranks"] if r["status"] != "ok"]
        if bad or done["status"] != "ok":
            e = (bad[0].get("error") if bad else None) or {}
            ours.update(status="error", message="project files refused on rank %s's host: %s"
                        % (bad[0]["rank"] if bad else "?", e.get("message") or done.get("message")
                           or done["status"]))
        return ours

    def host_leaders(self):
        """Over several hosts: the lowest rank of each host but this one."""
        if not self.forwards:
            return []
        here, seen, leaders = socket.gethostname(), set(), []
        for r in sorted(self.ranks):
            host = self.ranks[r].get("host")
            if host and host != here and host not in seen:
                seen.add(host)
                leaders.append(r)
        return leaders

    def files_to_hosts(self, job, leaders):
        """The same tar (from the spool's start) to each leader; its `done`
        (rank_done), and the hub's, once all have unpacked it."""
        job.ranks, job.pending = leaders, set(leaders)
        size = job.spool.size if job.spool is not None else 0
        dests = []
        for r in leaders:
            w = self.worker(r)
            w.send_msg({"op": "files", "id": job.id, "bytes": size,
                        "removed": job.msg.get("removed") or []})
            dests.append(w)
        if job.spool is not None:
            os.lseek(job.spool.fd, 0, os.SEEK_SET)
            job.spool.remaining = size
            job.spool.dests = dests
            self.relays.append(job.spool)

    def start_pull(self, job):
        request = {"op": "pull", "id": job.id}
        if job.op == "gather":
            request.update(names=[job.msg["name"]], gather=True)
        else:
            request.update(names=job.msg["names"])
        line = encode(request)
        for r in job.ranks:
            self.worker(r).send(line)

    start_gather = start_pull

    def rank_done(self, rank, msg):
        job = self.job
        if job is None or rank not in job.pending or job.op in ("pull", "gather"):
            return
        job.pending.discard(rank)
        job.results[rank] = {"status": msg.get("status") or "error", "error": msg.get("error")}
        if not job.pending:
            self.finish(job)

    def rank_value(self, conn, msg, payload):
        job = self.job
        if job is None or conn.rank not in job.pending or job.op not in ("pull", "gather"):
            if payload:
                conn.activate([])
            return
        if payload is not None:
            payload.dests = None
        job.values[conn.rank] = (conn, msg, payload)
        job.pending.discard(conn.rank)
        if job.op == "pull":
            self.advance_pull(job)
        elif not job.pending:
            self.send_gather(job)

    def advance_pull(self, job):
        while not job.relaying and job.next < len(job.ranks):
            r = job.ranks[job.next]
            if r not in job.values:
                return
            conn, msg, payload = job.values[r]
            job.next += 1
            job.results[r] = {"status": "ok", "error": None}
            job.conn.send_msg({"op": "value", "id": job.id, "rank": r,
                               "bytes": payload.size if payload else 0,
                               "missing": msg.get("missing") or [],
                               "errors": msg.get("errors") or {}})
            if payload is not None:
                job.relaying = True
                conn.activate([job.conn], lambda: self.pull_relayed(job))
        if not job.relaying and job.next == len(job.ranks):
            self.finish(job)

    def pull_relayed(self, job):
        job.relaying = False
        self.advance_pull(job)

    def gather_problem(self, job):
        name = job.msg["name"]
        kinds = {}
        for r in job.ranks:
            _, msg, _ = job.values[r]
            if msg.get("missing"):
                return r, "NameError", "name '%s' is not defined" % name
            if msg.get("errors"):
                return r, "PicklingError", msg["errors"].get(name, "cannot pickle")
            kinds.setdefault(msg.get("kind"), r)
        if len(kinds) == 1 and next(iter(kinds)) in GATHER_PROGRAMS:
            return None
        odd = [k for k in kinds if k not in GATHER_PROGRAMS] or list(kinds)[1:]
        return kinds[odd[0]], "TypeError", (
            "gather joins lists, tuples and ranges, or numpy arrays; rank %d's '%s' is a %s"
            % (kinds[odd[0]], name, odd[0]))

    def send_gather(self, job):
        problem = self.gather_problem(job)
        if problem:
            for conn, _, payload in job.values.values():
                if payload is not None:
                    conn.activate([])
            rank, kind, message = problem
            job.results[rank] = {"status": "error", "error": {
                "type": kind, "message": message, "traceback": ""}}
            for r in job.ranks:
                job.results.setdefault(r, {"status": "ok", "error": None})
            self.finish(job, "error", "rank %d: %s" % (rank, message))
            return
        prefix, suffix = GATHER_PROGRAMS[job.values[job.ranks[0]][1]["kind"]]
        total = len(prefix) + len(suffix)
        for r in job.ranks:
            total += len(PIECE_HEAD) + 8 + job.values[r][2].size + len(PIECE_TAIL)
        job.conn.send_msg({"op": "value", "id": job.id, "bytes": total, "missing": []})
        job.conn.send(prefix)
        job.suffix = suffix
        self.gather_piece(job)

    def gather_piece(self, job):
        if job.next > 0:
            job.conn.send(PIECE_TAIL)
        if job.next == len(job.ranks):
            job.conn.send(job.suffix)
            for r in job.ranks:
                job.results[r] = {"status": "ok", "error": None}
            self.finish(job)
            return
        conn, _, payload = job.values[job.ranks[job.next]]
        job.next += 1
        job.conn.send(PIECE_HEAD + struct.pack("<Q", payload.size))
        conn.activate([job.conn], lambda: self.gather_piece(job))

    # -- the workers

    def rank_message(self, conn, msg, payload):
        op = msg.get("op")
        if op == "exit":
            rank = msg.get("rank")
            if isinstance(rank, int) and not self.stop_reason:
                self.death(rank, msg.get("reason") or "ended", msg.get("time") or time.time(),
                           False)
            return
        if op == "hello":
            rank = msg.get("rank")
            if not isinstance(rank, int) or not 0 <= rank < self.np or rank in self.ranks:
                conn.send_msg({"op": "error", "message": "unexpected rank %r" % rank})
                self.lost(conn)
                return
            conn.rank = rank
            self.ranks[rank] = {"conn": conn, "pid": msg.get("pid"), "ppid": msg.get("ppid"),
                                "host": msg.get("host"), "gpus": msg.get("gpus"),
                                "shm": msg.get("shm")}
            return
        rank = conn.rank
        if rank is None:
            self.lost(conn)
            return
        if op == "output":
            stream = msg.get("stream")
            if stream in ("stdout", "stderr") and isinstance(msg.get("text"), str):
                self.output(rank, stream, msg["text"])
        elif op == "begin":
            self.rank_begun(rank)
        elif op == "ready":
            self.rank_ready(rank, msg)
        elif op == "done":
            self.rank_done(rank, msg)
        elif op == "value":
            self.rank_value(conn, msg, payload)

    def rank_ready(self, rank, msg):
        self.ready.add(rank)
        error = msg.get("error")
        if error:
            self.death(rank, "failed to start: %s: %s" % (error.get("type"),
                                                          error.get("message")),
                       time.time(), False)
            return
        if len(self.ready) == self.np and self.state == "starting":
            self.state = "idle"
            self.idle_since = time.time()
            self.save()
            self.pump()

    def death(self, rank, reason, when, weak):
        if self.broken or self.stop_reason:
            return
        self.deaths.append((weak, when, rank, reason))
        if not self.deciding:
            self.deciding = True
            # Reports of how a rank ended come on their own connection, a moment
            # after its socket closes; the earliest death is the cause.
            self.after(0.5, self.decide_broken)

    def decide_broken(self):
        if self.broken or self.stop_reason:
            return
        strong = [d for d in self.deaths if not d[0]]
        _, _, rank, reason = min(strong or self.deaths, key=lambda d: d[1])
        self.mark_broken(rank, reason)

    def mark_broken(self, rank, reason):
        host = self.ranks.get(rank, {}).get("host") if self.forward_hosts else None
        if host:
            reason = "%s (on host %s)" % (reason, host)
        self.broken = {"rank": rank, "reason": reason}
        if rank in self.ranks:
            self.ranks[rank]["dead"] = True
        starting = self.state == "starting"
        self.state = "broken"
        message = self.broken_message()
        for conn in list(self.conns):
            if conn.kind == "client":
                conn.send_msg({"op": "broken", "rank": rank, "reason": reason})
        if self.job:
            for conn, _, payload in self.job.values.values():
                if payload is not None and payload.dests is None:
                    conn.activate([])
            self.finish(self.job, "broken", message)
        self.fail_queue(message)
        if starting:
            self.error = self.what_broke()
            self.begin_stop("start")
        self.save()

    def fail_queue(self, message):
        while self.queue:
            conn, msg, payload, spool = self.queue.popleft()
            if spool is not None:
                if conn.payload is not None and conn.payload.dests == [spool]:
                    # The rest of its bytes go nowhere, and nothing is told of their end.
                    conn.payload.dests = []
                    conn.payload.on_done = None
                spool.discard()
            elif payload is not None:
                conn.activate([])
            self.reply_error(conn, msg.get("id"), message)

    def mpirun_ended(self, code):
        if self.stop_reason:
            return
        reason = "mpirun %s" % exit_reason(code)[0]
        if self.state == "starting" and not self.deaths:
            self.error = "%s before every rank was ready" % reason
            self.fail_queue(self.error)
            self.begin_stop("start")
        elif not self.broken:
            self.death(None, reason, time.time() + 1e6, True)

    def start_expired(self):
        if self.state != "starting":
            return
        missing = [r for r in range(self.np) if r not in self.ready]
        self.error = "rank%s %s not ready within %g s" % (
            "s" if len(missing) > 1 else "", ",".join(map(str, missing)), self.start_timeout)
        self.fail_queue(self.error)
        self.begin_stop("start")

    # -- several hosts: ranks.sock forwarded to each other host

    def forward_command(self, host):
        sock = self.path("ranks.sock")
        q = shlex.quote(sock)
        # The remote end says ready and its host name once sshd listens at
        # the path there, then holds the connection until its stdin (this
        # hub) closes, signalling there what the hub asks ("INT PID": a
        # rank's pid is its own host's); then removes the socket (sshd
        # leaves a forward's socket behind).
        hold = ("i=0; while [ ! -S %s ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; "
                "[ -S %s ] && echo ready $(hostname) && "
                "while read -r s p; do kill -s \"$s\" \"$p\" 2>/dev/null; done; rm -f %s"
                % (q, q, q))
        return ["ssh", "-T", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes",
                "-o", "StreamLocalBindUnlink=yes", "-o", "ServerAliveInterval=10",
                "-o", "ServerAliveCountMax=3", "-R", "%s:%s" % (sock, sock), host, hold]

    def open_forwards(self):
        """The other hosts' workers reach ranks.sock at the same path there:
        an SSH reverse streamlocal forward to each (the host's own ssh client,
        as Open MPI's launcher uses), never a TCP port. None, or why not."""
        deadline = time.monotonic() + 30
        for host in self.forward_hosts:
            err = tempfile.TemporaryFile()
            try:
                proc = subprocess.Popen(self.forward_command(host), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=err,
                                        start_new_session=True)
            except OSError as e:
                err.close()
                return "cannot forward ranks.sock to host '%s': %s" % (host, e)
            self.forwards.append((host, proc, err))
        for host, proc, err in self.forwards:
            line = self.ready_line(proc, deadline) or b""
            if not line.startswith(b"ready"):
                return "cannot forward ranks.sock to host '%s': %s" % (
                    host, self.forward_error(proc, err))
            name = line[5:].strip().decode("utf-8", "replace")
            if name:
                self.remote_signals[name] = proc.stdin
        return None

    def ready_line(self, proc, deadline):
        data = b""
        fd = proc.stdout.fileno()
        while b"\n" not in data and not self.signalled:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if not select.select([fd], [], [], min(left, 0.2))[0]:
                continue
            chunk = os.read(fd, 64)
            if not chunk:
                return None
            data += chunk
        return data

    def forward_error(self, proc, err):
        if self.signalled:
            return "cancelled"
        try:
            proc.wait(2)
        except subprocess.TimeoutExpired:
            return "no answer within 30 s"
        err.seek(0)
        lines = [l for l in err.read().decode("utf-8", "replace").splitlines() if l.strip()]
        return "ssh %s%s" % (exit_reason(wait_status(proc.returncode))[0],
                             ": " + lines[-1][:300] if lines else "")

    def check_forwards(self):
        """A forward that ended: its host is lost (ssh gave up on it)."""
        for host, proc, err in self.forwards:
            if proc.returncode is None and proc.poll() is not None and not self.stop_reason:
                self.death(None, "host '%s' was lost (the forward of ranks.sock there ended: %s)"
                           % (host, self.forward_error(proc, err)), time.time(), False)

    def close_forwards(self):
        self.remote_signals = {}
        for _, proc, _ in self.forwards:
            try:
                proc.stdin.close()
            except OSError:
                pass
        deadline = time.monotonic() + 2
        for _, proc, err in self.forwards:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            err.close()
        self.forwards = []

    # -- stopping

    def begin_stop(self, reason):
        if self.stop_reason:
            return
        self.stop_reason = reason
        job = self.job
        if job and job.op == "exec":
            self.stuck = [(r, self.ranks[r]["pid"]) for r in job.pending
                          if self.ranks.get(r, {}).get("pid")]
        if job:
            for conn, _, payload in job.values.values():
                if payload is not None and payload.dests is None:
                    conn.activate([])
            self.finish(job, "interrupted" if reason == "interrupt" else "stopped",
                        "session stopped (%s)" % reason)
        self.state = "stopping"
        self.fail_queue("session stopped (%s)" % reason)
        for conn in list(self.conns):
            if conn.kind == "client":
                conn.send_msg({"op": "stopped", "reason": reason})
        self.save()

    def on_signal(self, signum, frame):
        self.signalled = "cancel"

    def run(self):
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o700)
        os.makedirs(self.path("cells"), mode=0o700, exist_ok=True)
        existing = [int(n) for n in os.listdir(self.path("cells")) if n.isdigit()]
        self.seq = max(existing, default=0)
        try:
            self.shm_before = set(os.listdir("/dev/shm"))
        except OSError:
            self.shm_before = set()
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno())
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self.on_signal)
        signal.signal(signal.SIGCHLD, lambda s, f: None)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        self.sel.register(wake_r, selectors.EVENT_READ, "wake")
        clients = self.listen("hub.sock")
        ranks = self.listen("ranks.sock")
        self.sel.register(clients, selectors.EVENT_READ, "client")
        self.sel.register(ranks, selectors.EVENT_READ, "rank")
        self.save()
        env = dict(os.environ)
        if not env.get("PYSTRIB_MASTER_PORT"):
            env["PYSTRIB_MASTER_PORT"] = str(free_port())
        self.error = self.open_forwards()
        if self.error:
            self.stop_reason = "start"
        else:
            try:
                self.mpirun = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, env=env,
                                               start_new_session=True)
            except OSError as e:
                self.error = "cannot start %s: %s" % (self.command[0], e)
                self.stop_reason = "start"
        self.after(self.start_timeout, self.start_expired)
        while not self.stop_reason:
            self.step(wake_r, clients, ranks)
        self.shutdown([clients, ranks])
        return 1 if self.stop_reason == "start" else 0

    def step(self, wake_r, clients, ranks):
        for spool in list(self.relays):
            if spool.relay():
                spool.discard()
                self.relays.remove(spool)
        for conn in list(self.conns):
            if conn.outlen:
                conn.flush()
        for conn in list(self.conns):
            events = selectors.EVENT_READ if conn.wants_read() else 0
            if conn.outlen:
                events |= selectors.EVENT_WRITE
            if events != conn.events:
                if conn.events and events:
                    self.sel.modify(conn, events, conn)
                elif events:
                    self.sel.register(conn, events, conn)
                else:
                    self.sel.unregister(conn)
                conn.events = events
        for key, mask in self.sel.select(self.next_timeout()):
            what = key.data
            if what == "wake":
                try:
                    wake_r.recv(4096)
                except OSError:
                    pass
            elif what == "client":
                self.accept(clients, "client")
            elif what == "rank":
                self.accept(ranks, "rank")
            else:
                if mask & selectors.EVENT_WRITE:
                    what.flush()
                if mask & selectors.EVENT_READ and not what.closed:
                    what.on_readable()
        self.run_timers()
        if self.signalled:
            self.begin_stop(self.signalled)
        if self.mpirun and self.mpirun.returncode is None:
            code = self.mpirun.poll()
            if code is not None:
                self.mpirun_ended(wait_status(code))
        self.check_forwards()
        if (self.idle_timeout > 0 and self.state in ("idle", "broken") and self.idle_since
                and time.time() - self.idle_since >= self.idle_timeout):
            self.begin_stop("idle")

    def shutdown(self, listeners):
        self.state = "stopping"
        for sock in listeners:
            sock.close()
        for name in ("hub.sock", "ranks.sock"):
            try:
                os.unlink(self.path(name))
            except OSError:
                pass
        deadline = time.monotonic() + 2
        for conn in list(self.conns):
            if conn.kind == "rank":
                conn.send_msg({"op": "stop"})
            drain(conn, deadline)
        # Ranks still in a cell cannot read their stop: an interrupt ends the
        # cell, unless the stop came because the cell ignores interrupts.
        sig = signal.SIGTERM if self.stop_reason in ("interrupt", "timeout") else signal.SIGINT
        for rank, pid in self.stuck:
            self.kill_pid(rank, pid, sig)
        self.end_mpirun(5 if self.ranks else 0)
        self.close_forwards()
        for conn in list(self.conns):
            conn.sock.close()
        for fd in self.between.values():
            os.close(fd)
        self.clean_shm()
        for spool in self.relays:
            spool.discard()
        shutil.rmtree(self.path("spool"), ignore_errors=True)
        self.state = "stopped"
        self.save()

    def pids(self):
        """(rank, pid) of every worker and its supervisor."""
        found = []
        for rank, info in self.ranks.items():
            found += [(rank, p) for p in (info.get("pid"), info.get("ppid")) if p]
        return found

    def end_mpirun(self, grace):
        proc = self.mpirun
        if proc is None:
            return
        steps = ((grace, None), (3, signal.SIGTERM), (3, signal.SIGKILL))
        for wait, sig in steps:
            if sig is not None and proc.poll() is None:
                for rank, pid in self.pids():
                    self.kill_pid(rank, pid, sig)
                try:
                    os.killpg(proc.pid, sig)
                except OSError:
                    pass
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                pass
        # The workers' own children, if a cell left any behind in the group.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        deadline = time.monotonic() + 3
        here = socket.gethostname()
        for rank, pid in self.pids():
            if self.ranks[rank].get("host") not in (None, here):
                continue  # another host's: its daemon's end takes it
            while time.monotonic() < deadline and pid_alive(pid):
                time.sleep(0.02)

    def clean_shm(self):
        tags = {info.get("shm") for info in self.ranks.values() if info.get("shm")}
        if not tags:
            return
        try:
            names = os.listdir("/dev/shm")
        except OSError:
            return
        for name in names:
            if name in self.shm_before:
                continue
            if any(".%s." % tag in name or name.endswith(".%s" % tag) for tag in tags):
                try:
                    os.unlink(os.path.join("/dev/shm", name))
                except OSError:
                    pass


def drain(conn, deadline):
    """Blocking flush of what is queued for conn, until deadline."""
    if conn.closed:
        return
    try:
        conn.sock.setblocking(True)
        while conn.out:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            conn.sock.settimeout(left)
            n = conn.sock.send(conn.out[0])
            if n == len(conn.out[0]):
                conn.out.popleft()
            else:
                conn.out[0] = memoryview(conn.out[0])[n:]
    except OSError:
        pass


def write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def wait_status(returncode):
    """Popen's returncode back as a wait status, for exit_reason."""
    if returncode < 0:
        return -returncode
    return returncode << 8


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------- command line


USAGE = """usage: session.py hub --dir JOBDIR --np N [--idle-timeout S] [--start-timeout S]
                      [--forward HOST]... -- COMMAND...
       session.py worker --dir JOBDIR"""


def parse(argv):
    if not argv or argv[0] not in ("hub", "worker"):
        return None
    opts = {"role": argv[0], "dir": None, "np": None, "idle-timeout": 7200.0,
            "start-timeout": 300.0, "command": [], "forward": []}
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            opts["command"] = argv[i + 1:]
            break
        key = arg[2:] if arg.startswith("--") else None
        if key not in ("dir", "np", "idle-timeout", "start-timeout", "forward") or \
                i + 1 >= len(argv):
            return None
        if key == "forward":
            opts[key].append(argv[i + 1])
        else:
            opts[key] = argv[i + 1]
        i += 2
    try:
        if opts["role"] == "hub":
            opts["np"] = int(opts["np"])
            opts["idle-timeout"] = float(opts["idle-timeout"])
            opts["start-timeout"] = float(opts["start-timeout"])
            if opts["np"] < 1 or not opts["command"]:
                return None
    except (TypeError, ValueError):
        return None
    return opts if opts["dir"] else None


def main(argv):
    opts = parse(argv[1:])
    if opts is None:
        print(USAGE, file=sys.stderr)
        return 2
    if opts["role"] == "worker":
        return worker_main(opts["dir"])
    hub = Hub(opts["dir"], opts["np"], opts["idle-timeout"], opts["start-timeout"],
              opts["command"], opts["forward"])
    return hub.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
