#!/usr/bin/python3
"""A LOCAL STAND-IN for the pystrib binary's session verbs, for the unit
tests of magic/ only: the hub and the ranks are real (src/remote/session.py
and bootstrap.py under real Open MPI, as `pystrib session start` runs them
on a host), but there is no SSH, no image and no remote: `session start`
starts the hub here, `session serve ID` only relays stdin and stdout to
the hub's socket (no reconnect, no replay), `session stop ID` sends a stop.
The end-to-end test with the real binary is integration/t0603-notebook-sessions.sh.

    sessionbed.py [-c F] [--json] session start|serve|stop|list ...
    sessionbed.py config get KEY

$FAKE_SESSIONS is where sessions live (one directory each); $SESSION_SRC
holds session.py and bootstrap.py. Every command line is appended to
$FAKE_SESSIONS/argv.log (one JSON list a line). $FAKE_STOP_ON_EXIT, when
set, is what `config get session.stop_on_exit` prints.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

ROOT = os.environ["FAKE_SESSIONS"]
SRC = os.environ["SESSION_SRC"]
LAUNCHER_VARS = ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_RANK", "PMI_SIZE",
                 "SLURM_PROCID", "SLURM_NTASKS", "PYSTRIB_GPUS", "PYSTRIB_JOB_DIR",
                 "CUDA_VISIBLE_DEVICES", "PYSTRIB_MASTER_PORT")


def event(**ev):
    sys.stdout.write(json.dumps(ev) + "\n")
    sys.stdout.flush()


def fail(message, code=2):
    event(event="error", message=message, exit_code=code)
    sys.stderr.write("pystrib: %s\n" % message)
    sys.exit(code)


def option(args, flag, default=None):
    if flag in args:
        return args[args.index(flag) + 1]
    return default


def start(args):
    np = int(option(args, "-n", "1"))
    idle = option(args, "--idle-timeout")
    n = len([d for d in os.listdir(ROOT) if d.startswith("s")]) + 1
    sid = "s%d-%d" % (n, os.getpid())
    top = os.path.join(ROOT, sid)
    cell, job, work = (os.path.join(top, d) for d in ("cell", "job", "work"))
    for d in (cell, job, work):
        os.makedirs(d)
    os.chmod(job, 0o700)
    for name in ("session.py", "bootstrap.py"):
        shutil.copy(os.path.join(SRC, name), cell)
    script = os.path.join(cell, "session.py")
    cmd = [sys.executable, script, "hub", "--dir", job, "--np", str(np)]
    if idle:
        cmd += ["--idle-timeout", idle]
    cmd += ["--", shutil.which("mpirun"), "--allow-run-as-root", "--oversubscribe", "-np", str(np),
            sys.executable, script, "worker", "--dir", job]
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    env["PYSTRIB_RESULTS"] = os.path.join(top, "results")
    env.setdefault("PYSTRIB_SESSION_TORCH", "0")
    for i, a in enumerate(args):
        if a == "--env":
            k, _, v = args[i + 1].partition("=")
            env[k] = v
    log = open(os.path.join(top, "hub.log"), "wb")
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    with open(os.path.join(top, "hub.pid"), "w") as f:
        f.write(str(proc.pid))
    deadline = time.time() + 120
    while time.time() < deadline:
        st = status_of(sid)
        if st.get("state") == "idle":
            event(event="session", id=sid, np=np, remote=option(args, "--remote"),
                  runtime=option(args, "--runtime"))
            return 0
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    fail("session '%s' did not start: %s" % (sid, status_of(sid)), 4)


def status_of(sid):
    try:
        with open(os.path.join(ROOT, sid, "job", "session.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def connect(sid):
    path = os.path.join(ROOT, sid, "job", "hub.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        fail("cannot reach session '%s': %s" % (sid, e), 4)
    return s


def serve(sid):
    s = connect(sid)

    def up():
        fd = sys.stdin.fileno()
        while True:
            b = os.read(fd, 1 << 16)
            if not b:
                break
            s.sendall(b)
        s.shutdown(socket.SHUT_WR)

    threading.Thread(target=up, daemon=True).start()
    out = sys.stdout.fileno()
    while True:
        b = s.recv(1 << 16)
        if not b:
            break
        os.write(out, b)
    return 0


def stop(sid):
    s = connect(sid)
    s.sendall(b'{"op":"stop","id":1}\n')
    f = s.makefile("rb")
    for line in f:
        if json.loads(line).get("op") == "stopped":
            break
    pid = int(open(os.path.join(ROOT, sid, "hub.pid")).read())
    for _ in range(300):
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.05)
    return 0


def main(argv):
    with open(os.path.join(ROOT, "argv.log"), "a") as f:
        f.write(json.dumps(argv) + "\n")
    args = list(argv)
    if args[:1] == ["-c"]:
        args = args[2:]
    if args[:1] == ["--json"]:
        args = args[1:]
    if args[:2] == ["config", "get"]:
        value = os.environ.get("FAKE_STOP_ON_EXIT")
        if args[2] == "session.stop_on_exit" and value is not None:
            print(value)
            return 0
        sys.stderr.write("pystrib: config: unknown key '%s'\n" % args[2])
        return 2
    if args[:1] != ["session"] or len(args) < 2:
        fail("the stand-in knows only session and config get: %s" % argv)
    verb, rest = args[1], args[2:]
    if verb == "start":
        return start(rest)
    if verb == "serve":
        return serve(rest[0])
    if verb == "stop":
        return stop(rest[0])
    if verb == "list":
        for d in sorted(os.listdir(ROOT)):
            if status_of(d).get("state") in ("idle", "busy", "broken"):
                print(d)
        return 0
    fail("the stand-in has no 'session %s'" % verb)


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main(sys.argv[1:]))
