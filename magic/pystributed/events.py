"""The pystrib binary's --json events (docs/events.md), turned into cell output
and a RunResult. One JSON object per line; unknown events and fields are
ignored, so pystrib may add them freely."""

import json
import os
import sys
from collections import namedtuple

RankResult = namedtuple("RankResult", "rank exit_code duration")

FINAL_STATES = ("succeeded", "failed", "timeout", "cancelled", "lost")

# How much of each rank's output a RunResult keeps (the cell shows all of it).
OUTPUT_CAP = 1 << 20


def _write(stream_name, text):
    # Looked up at each call: ipykernel points sys.stdout at the running cell.
    stream = getattr(sys, stream_name)
    stream.write(text)


def default_out(text):
    _write("stdout", text)


def default_err(text):
    _write("stderr", text)


class RunResult:
    """What a run left behind.

    job_id, state ('succeeded', 'failed', 'timeout', 'cancelled', 'lost', or
    'submitted' for --detach), exit_code (pystrib's), ranks (RankResult list,
    by rank), exit_codes (one per rank), image (the pinned reference),
    digest, results (local results directory), pulled (name -> value, or
    name -> list per rank with --pull-all), failed_rank, traceback (the last
    lines of the failed rank's stderr), stdout/stderr (rank -> text, the
    first OUTPUT_CAP bytes), remote, host, np, runtime, warnings.
    """

    def __init__(self):
        self.job_id = None
        self.state = None
        self.exit_code = None
        self.ranks = []
        self.image = None
        self.digest = None
        self.results = None
        self.pulled = {}
        self.failed_rank = None
        self.traceback = None
        self.stdout = {}
        self.stderr = {}
        self.remote = None
        self.host = None
        self.np = None
        self.runtime = None
        self.warnings = []
        self.error = None       # the `error` event, if any
        self.cell = None        # the cell file that ran

    @property
    def exit_codes(self):
        return [r.exit_code for r in self.ranks]

    @property
    def ok(self):
        return self.state == "succeeded"

    def __repr__(self):
        return ("RunResult(job_id=%r, state=%r, exit_codes=%r, results=%r, pulled=%r)"
                % (self.job_id, self.state, self.exit_codes, self.results,
                   sorted(self.pulled)))


def _human_bytes(n):
    try:
        n = float(n)
    except (TypeError, ValueError):
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1000.0
    return "?"


def _local_path(path):
    """pystrib runs in this process's working directory: a relative path it
    reports is made absolute here, so it stays right if the notebook chdirs."""
    if not path:
        return None
    return os.path.abspath(os.path.expanduser(str(path)))


class EventHandler:
    """Feeds on pystrib's stdout, one line at a time (feed), shows rank output
    as it arrives, prefixed by rank ("[0] ..."), stderr lines on err, stage
    lines ("pystrib: ...") on out unless quiet, and fills `result`."""

    def __init__(self, out=None, err=None, quiet=False):
        self.out = out or default_out
        self.err = err or default_err
        self.quiet = quiet
        self.result = RunResult()
        self.done = None
        self._ranks = {}
        self._kept = {}

    def feed(self, line):
        """One line of pystrib's stdout (str or bytes)."""
        if isinstance(line, bytes):
            line = line.decode("utf-8", "replace")
        if not line.strip():
            return
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict) or "event" not in event:
            # Not an event: show it rather than lose it.
            self.err(line if line.endswith("\n") else line + "\n")
            return
        self.handle(event)

    def handle(self, event):
        method = getattr(self, "on_" + str(event.get("event")), None)
        if method is not None:
            method(event)

    def _stage(self, text):
        if not self.quiet:
            self.out("pystrib: %s\n" % text)

    def on_error(self, ev):
        self.result.error = ev

    def on_warning(self, ev):
        msg = str(ev.get("message", ""))
        self.result.warnings.append(msg)
        self.err("pystrib: warning: %s\n" % msg)

    def on_context(self, ev):
        self._stage("context: %s project files (%s)%s" % (
            ev.get("project_files", "?"), _human_bytes(ev.get("project_bytes")),
            (", revision %s" % ev["revision"]) if ev.get("revision") else ""))

    def on_pushed(self, ev):
        self.result.image = ev.get("reference") or self.result.image
        self.result.digest = ev.get("digest") or self.result.digest
        self._stage("image %s (%s blobs, %s uploaded)" % (
            ev.get("reference", "?"), ev.get("uploaded_blobs", "?"),
            _human_bytes(ev.get("uploaded_bytes"))))

    def on_job(self, ev):
        r = self.result
        r.job_id = ev.get("id")
        r.remote = ev.get("remote")
        r.host = ev.get("host")
        r.np = ev.get("np")
        r.runtime = ev.get("runtime")
        r.image = ev.get("image") or r.image
        r.state = "submitted"
        self._stage("job %s: %s rank%s on %s (runtime %s)" % (
            r.job_id, r.np, "" if r.np == 1 else "s", r.host or r.remote, r.runtime))

    def on_status(self, ev):
        self._stage(str(ev.get("message", "")))

    def on_output(self, ev):
        rank = ev.get("rank")
        text = str(ev.get("text", ""))
        if not text.endswith("\n"):
            text += "\n"
        stream = "stderr" if ev.get("stream") == "stderr" else "stdout"
        line = "[%s] %s" % (rank, text)
        (self.err if stream == "stderr" else self.out)(line)
        store = getattr(self.result, stream)
        kept = self._kept.get((rank, stream), 0)
        if kept < OUTPUT_CAP:
            store[rank] = store.get(rank, "") + text
            self._kept[(rank, stream)] = kept + len(text)

    def on_rank_exit(self, ev):
        rank = ev.get("rank")
        self._ranks[rank] = RankResult(rank, ev.get("exit_code"), ev.get("duration"))

    def on_results(self, ev):
        self.result.results = _local_path(ev.get("path")) or self.result.results
        self._stage("results in %s" % self.result.results)

    def on_done(self, ev):
        self.done = ev
        r = self.result
        r.job_id = ev.get("id") or r.job_id
        r.state = ev.get("state")
        r.image = ev.get("image") or r.image
        r.results = _local_path(ev.get("results")) or r.results
        failed = ev.get("failed_rank")
        r.failed_rank = failed if isinstance(failed, int) and failed >= 0 else None
        r.traceback = ev.get("traceback")
        for item in ev.get("ranks") or []:
            if isinstance(item, dict) and "rank" in item:
                self._ranks[item["rank"]] = RankResult(
                    item["rank"], item.get("exit_code"), item.get("duration"))
        if ev.get("exit_code") is not None:
            r.exit_code = ev.get("exit_code")

    def finish(self, exit_code):
        """Completes `result` once pystrib has exited with exit_code."""
        r = self.result
        if r.exit_code is None:
            r.exit_code = exit_code
        r.ranks = [self._ranks[k] for k in sorted(self._ranks, key=lambda k: (not isinstance(k, int), k))]
        if r.digest is None and r.image and "@" in r.image:
            r.digest = r.image.rsplit("@", 1)[1]
        return r
