"""Runs the pystrib binary as a child process, feeds its --json events to an
EventHandler, and turns the end of a run into a RunResult or an exception."""

import collections
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from . import transfer
from .binary import find_binary
from .display import Summary, show
from .errors import (JobInterrupted, JobTimeout, PullError, PystribError,
                     RemoteError)
from .events import EventHandler, default_err
from .options import JobOptions

# After an interrupt, how long to wait for pystrib to cancel the job and end.
CANCEL_GRACE = 120.0
# Once pystrib has exited, how long its pipes may stay open (held by a child).
PIPE_GRACE = 5.0


def global_args(opts):
    """pystrib's own options (before the verb) from opts."""
    return opts.pystrib_args(before_verb=True)


def run_argv(binary, cell, opts, push_file=None):
    """pystrib's command line for running cell with opts (push_file: the
    pickle of the pushed variables, an input of the job)."""
    return [binary] + global_args(opts) + ["--json", "run", cell] + opts.pystrib_args(push_file)


def _reader(pipe, kind, q):
    try:
        for line in iter(pipe.readline, b""):
            q.put((kind, line))
    finally:
        q.put((kind, None))


def stream(argv, on_stdout, on_stderr, on_interrupt=None, env=None):
    """Runs argv with stdout and stderr read line by line on threads and
    handed, in this thread, to on_stdout / on_stderr (bytes lines).

    The child gets its own session, so a kernel interrupt reaches only this
    process: on KeyboardInterrupt the child is sent SIGINT (pystrib then
    cancels its remote job) and its remaining output is still read, for up
    to CANCEL_GRACE seconds; a second interrupt stops waiting and kills it.
    Returns (exit code, interrupted)."""
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True, env=env)
    except OSError as e:
        raise PystribError("cannot start '%s': %s" % (argv[0], e.strerror or e))
    q = queue.Queue()
    threads = [threading.Thread(target=_reader, args=(proc.stdout, 1, q), daemon=True),
               threading.Thread(target=_reader, args=(proc.stderr, 2, q), daemon=True)]
    for t in threads:
        t.start()
    open_pipes = 2
    interrupted = False
    deadline = None
    exited = None
    while open_pipes:
        try:
            try:
                kind, line = q.get(timeout=0.2)
            except queue.Empty:
                now = time.monotonic()
                if deadline is not None and now > deadline:
                    proc.kill()
                    deadline = None
                # A process pystrib left behind may hold the pipes open.
                if exited is None and proc.poll() is not None:
                    exited = now
                if exited is not None and now - exited > PIPE_GRACE:
                    break
                continue
            if line is None:
                open_pipes -= 1
            elif kind == 1:
                on_stdout(line)
            else:
                on_stderr(line)
        except KeyboardInterrupt:
            if not interrupted:
                interrupted = True
                if on_interrupt:
                    on_interrupt(False)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
                deadline = time.monotonic() + CANCEL_GRACE
            else:
                if on_interrupt:
                    on_interrupt(True)
                proc.kill()
                deadline = None
    while True:
        try:
            code = proc.wait()
            break
        except KeyboardInterrupt:
            proc.kill()
    for t, pipe in zip(threads, (proc.stdout, proc.stderr)):
        t.join(timeout=1)
        if not t.is_alive():    # else a leftover process holds it: leave it to the thread
            pipe.close()
    return code, interrupted


class _Stderr:
    """pystrib's own stderr: kept (last lines) for error messages; shown live
    with verbose."""

    def __init__(self, show_live, err=None):
        self.tail = collections.deque(maxlen=40)
        self.show_live = show_live
        self.err = err or default_err

    def __call__(self, line):
        text = line.decode("utf-8", "replace")
        self.tail.append(text)
        if self.show_live:
            self.err(text)

    def text(self):
        return "".join(self.tail)


def follow(argv, opts=None, out=None, err=None):
    """Runs a pystrib command that emits run events (run, attach) and
    returns (RunResult, interrupted, stderr tail). Rank output is shown as it
    arrives; a kernel interrupt cancels the job."""
    opts = opts or JobOptions()
    handler = EventHandler(out=out, err=err, quiet=opts.quiet)
    errlog = _Stderr(opts.verbose, err=err)
    say = err or default_err

    def on_interrupt(again):
        job = handler.result.job_id
        if again:
            say("pystrib: stopped waiting; %s\n" % (
                ("remote job %s may still be running: %%pystrib cancel %s" % (job, job))
                if job else "nothing was submitted"))
        elif job:
            say("pystrib: interrupted: cancelling remote job %s ...\n" % job)
        else:
            say("pystrib: interrupted before the job was submitted; stopping\n")

    code, interrupted = stream(argv, handler.feed, errlog, on_interrupt=on_interrupt)
    return handler.finish(code), interrupted, errlog.text()


def check(result, interrupted, stderr_text, err=None):
    """Raises the exception a finished run deserves; returns quietly on success
    (or for a --detach submission)."""
    __tracebackhide__ = True
    say = err or default_err
    if interrupted:
        if result.state == "cancelled":
            msg = "interrupted: remote job %s was cancelled" % result.job_id
        elif result.job_id and result.state not in ("succeeded", "failed", "timeout", "lost"):
            msg = ("interrupted: remote job %s may still be running (pystrib did not confirm "
                   "the cancel); %%pystrib cancel %s stops it" % (result.job_id, result.job_id))
        elif result.job_id:
            msg = "interrupted: remote job %s had already ended (%s)" % (result.job_id, result.state)
        else:
            msg = "interrupted before any job was submitted; nothing runs remotely"
        say("pystrib: %s\n" % msg)
        raise JobInterrupted(msg, result)
    if result.state == "succeeded" or (result.state == "submitted" and result.exit_code == 0):
        return
    if result.state in ("failed", "timeout", "cancelled", "lost"):
        raise _remote_error(result)
    ev = result.error or {}
    if ev.get("message"):
        raise PystribError(str(ev["message"]), hint=ev.get("hint"),
                           exit_code=ev.get("exit_code", result.exit_code), result=result)
    raise PystribError("pystrib exited with code %s without finishing the run" % result.exit_code,
                       exit_code=result.exit_code, stderr=stderr_text or None, result=result)


def _remote_error(result):
    job = result.job_id
    if result.state == "timeout":
        return JobTimeout("job %s ran out of time and was stopped" % job, result,
                          exit_code=result.exit_code,
                          hint="raise --timeout, or 0 for no limit")
    if result.state == "cancelled":
        return RemoteError("job %s was cancelled" % job, result, exit_code=result.exit_code)
    if result.state == "lost":
        return RemoteError("job %s was lost: its remote process ended without a final state"
                           % job, result, exit_code=result.exit_code,
                           hint="see %%pystrib logs %s" % job)
    rank = result.failed_rank
    code = None
    for r in result.ranks:
        if r.rank == rank:
            code = r.exit_code
    if rank is None:
        failed = [r for r in result.ranks if r.exit_code not in (0, None)]
        if failed:
            rank, code = failed[0].rank, failed[0].exit_code
    msg = "job %s failed: rank %s exited with code %s" % (job, "?" if rank is None else rank, code)
    tb = result.traceback
    if not tb and rank is not None:
        tb = result.stderr.get(rank)
    if tb:
        msg += "\n\nremote traceback (rank %s):\n%s" % (rank, str(tb).rstrip("\n"))
    e = RemoteError(msg, result, exit_code=result.exit_code,
                    hint=("logs and results: %s" % result.results) if result.results else None)
    e.failed_rank = rank
    e.rank_exit_code = code
    e.traceback = tb
    return e


def run_cell_file(cell, opts, namespace=None, out=None, err=None, display=True):
    """Runs the saved cell file with opts: pushes opts.push from namespace,
    streams the ranks' output, pulls opts.pull back into namespace and shows
    the summary. Returns the RunResult; raises PushError before anything
    runs, RemoteError (or JobTimeout) when the job did not succeed,
    JobInterrupted on a kernel interrupt, PullError when a pulled name did
    not come back (the others are set), PystribError for anything else."""
    __tracebackhide__ = True
    namespace = namespace if namespace is not None else {}
    if opts.detach and opts.pull_spec():
        raise PystribError("--pull needs the run to finish here; drop --detach, or "
                           "fetch the job later and read its results")
    binary = find_binary(opts.config)
    tmp = None
    try:
        push_file = None
        if opts.push:
            data = transfer.pickle_push(opts.push, namespace)
            tmp = tempfile.mkdtemp(prefix="pystrib-push-")
            push_file = os.path.join(tmp, transfer.PUSH_FILE)
            with open(push_file, "wb") as f:
                f.write(data)
        argv = run_argv(binary, cell, opts, push_file)
        result, interrupted, stderr_text = follow(argv, opts, out=out, err=err)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    result.cell = cell
    set_last_result(result)
    check(result, interrupted, stderr_text, err=err)
    if opts.detach:
        (out or sys.stdout.write)("pystrib: job %s submitted; follow it with %%pystrib attach %s\n"
                                  % (result.job_id, result.job_id))
        return result
    spec = opts.pull_spec()
    problems = []
    if spec:
        if not result.results:
            raise PullError("pystrib reported no results directory to pull from", result=result)
        nranks = result.np or len(result.ranks) or 1
        names = "*" if spec == "*" else opts.pull
        values, problems = transfer.collect_pull(result.results, names, int(nranks), opts.pull_all)
        result.pulled.update(values)
        namespace.update(values)
    if display:
        show(Summary(result))
    if problems:
        got = sorted(result.pulled)
        raise PullError("; ".join(problems),
                        hint=("set in the notebook: %s" % ", ".join(got)) if got else
                        "nothing was set in the notebook", result=result)
    return result


_last = {"result": None}


def set_last_result(result):
    _last["result"] = result


def last_result():
    """The RunResult of the latest run in this kernel, or None."""
    return _last["result"]
