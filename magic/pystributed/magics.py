"""The IPython magics: %%save_for_remote, %%remote and %pystrib."""

import argparse
import os
import shlex
import sys
import time

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from . import runner
from .binary import find_binary
from .errors import PystribError
from .runner import JobOptions

DEFAULT_CELL_FILE = "user_code.py"

OPTIONS_HELP = """\
options (each default comes from the pystrib config):
  -n N             ranks (mpirun -np)
  --remote NAME    the [remote.NAME] host of the config
  --gpus SPEC      all, a count, or a list of devices (0,1)
  --timeout S      stop the job after S seconds (0: no limit)
  --push a,b       notebook variables defined on every rank before the cell runs
  --pull x,y       variables of rank 0 set in the notebook after the run ('*': all)
  --pull-all       pull from every rank: each name becomes a list, one value per
                   rank (alone: every variable the cell defined)
  --env KEY=VALUE  an environment variable for the ranks (repeatable)
  --input PATH     a file for the cell, in $PYSTRIB_INPUTS (repeatable)
  --results DIR    where results come back to (DIR/<job id>/)
  -c, --config F   the pystrib config file
  --detach         submit and return; %pystrib attach JOB follows it
  -q, --quiet      only the ranks' output and the summary
  -v, --verbose    also show pystrib's own stderr
  --file PATH      where to save the cell (default: ./user_code.py)
  -- ARGS          arguments for the cell (sys.argv[1:])"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError("%s: %s\n%s" % (self.prog, message, OPTIONS_HELP))


def _positive(text):
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("'%s' is not a whole number" % text)
    if n < 1:
        raise argparse.ArgumentTypeError("needs at least 1 rank, not %d" % n)
    return n


def _seconds(text):
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("'%s' is not a whole number of seconds" % text)
    if n < 0:
        raise argparse.ArgumentTypeError("cannot be negative")
    return n


def _make_parser(prog):
    p = _Parser(prog=prog, add_help=False, allow_abbrev=False)
    p.add_argument("-n", "--np", type=_positive)
    p.add_argument("--remote")
    p.add_argument("--gpus")
    p.add_argument("--timeout", type=_seconds)
    p.add_argument("--push")
    p.add_argument("--pull")
    p.add_argument("--pull-all", action="store_true")
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--input", action="append", default=[], dest="inputs")
    p.add_argument("--results")
    p.add_argument("-c", "--config")
    p.add_argument("--detach", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--file")
    p.add_argument("-h", "--help", action="store_true")
    return p


def parse_options(line, prog="%%remote"):
    """(JobOptions, cell file path or None) from a magic's line; UsageError on
    a bad option, naming it, with the list of options."""
    try:
        words = shlex.split(line)
    except ValueError as e:
        raise UsageError("%s: %s" % (prog, e))
    args = []
    if "--" in words:
        i = words.index("--")
        words, args = words[:i], words[i + 1:]
    ns = _make_parser(prog).parse_args(words)
    if ns.help:
        raise UsageError("usage: %s [options] [-- ARGS]\n%s" % (prog, OPTIONS_HELP))
    for kv in ns.env:
        if "=" not in kv or kv.startswith("="):
            raise UsageError("%s: --env wants KEY=VALUE, not '%s'" % (prog, kv))
    try:
        opts = JobOptions(np=ns.np, remote=ns.remote, gpus=ns.gpus, timeout=ns.timeout,
                          push=ns.push or [], pull=ns.pull, pull_all=ns.pull_all,
                          env=ns.env, inputs=[os.path.abspath(os.path.expanduser(p)) for p in ns.inputs],
                          results=ns.results, config=ns.config, detach=ns.detach,
                          quiet=ns.quiet, verbose=ns.verbose, args=args)
    except ValueError as e:
        raise UsageError("%s: %s" % (prog, e))
    return opts, ns.file


class SavedCell:
    """A cell saved for remote execution: its file, source and options."""

    def __init__(self, path, source, options):
        self.path = path
        self.source = source
        self.options = options
        self.saved = time.time()

    def __repr__(self):
        return "SavedCell(%r, %r)" % (self.path, self.options)


_saved = {"last": None}


def last_saved():
    """The most recently saved cell, or None."""
    return _saved["last"]


def save_cell(cell, opts, path=None):
    """Writes the cell's source to path (default ./user_code.py) and records
    it, with opts, as the cell runner.main() runs."""
    path = os.path.abspath(os.path.expanduser(path or DEFAULT_CELL_FILE))
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    source = cell if cell.endswith("\n") else cell + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(source)
    os.replace(tmp, path)
    saved = SavedCell(path, source, opts)
    _saved["last"] = saved
    return saved


def _ipython_lines(source):
    """Lines of the cell that only IPython understands (magics, shell escapes)."""
    found = []
    for i, line in enumerate(source.splitlines(), 1):
        s = line.lstrip()
        if s.startswith("%") or (s.startswith("!") and not s.startswith("!=")):
            found.append(i)
    return found


def _warn_ipython_syntax(saved):
    lines = _ipython_lines(saved.source)
    if lines:
        sys.stderr.write("pystrib: warning: line%s %s of the cell use%s IPython syntax (%%magic "
                         "or !shell), which plain Python on the ranks cannot run\n" % (
                             "" if len(lines) == 1 else "s", ", ".join(map(str, lines)),
                             "s" if len(lines) == 1 else ""))


def run_saved(saved, namespace, **overrides):
    """Runs a SavedCell (with overrides of its options); see runner.run_cell_file."""
    __tracebackhide__ = True
    opts = saved.options.copy(**overrides) if overrides else saved.options
    return runner.run_cell_file(saved.path, opts, namespace)


# %pystrib subcommands that print run events with --json.
FOLLOWING = ("attach", "run")


def pystrib_command(line):
    """%pystrib ARGS: runs `pystrib ARGS`, its output shown live. attach (and
    run) follow a job as %%remote does; everything else passes through."""
    __tracebackhide__ = True
    try:
        words = shlex.split(line)
    except ValueError as e:
        raise UsageError("%%pystrib: %s" % e)
    if not words or words[0] in ("-h", "--help"):
        words = ["--help"]
    config = None
    if len(words) >= 2 and words[0] in ("-c", "--config"):
        config = words[1]
    binary = find_binary(config)
    verb, skip = None, False
    for w in words:
        if skip:
            skip = False
        elif w in ("-c", "--config"):
            skip = True
        elif not w.startswith("-"):
            verb = w
            break
    if verb in FOLLOWING:
        i = words.index(verb)
        argv = [binary] + words[:i] + ["--json"] + words[i:]
        result, interrupted, stderr_text = runner.follow(argv)
        runner.set_last_result(result)
        runner.check(result, interrupted, stderr_text)
        if result.state in ("succeeded",):
            runner.show(runner.Summary(result))
        return None
    out = lambda b: (sys.stdout.write(b.decode("utf-8", "replace")), sys.stdout.flush())
    err = lambda b: (sys.stderr.write(b.decode("utf-8", "replace")), sys.stderr.flush())
    code, interrupted = runner.stream([binary] + words, out, err)
    if interrupted:
        raise KeyboardInterrupt("pystrib %s interrupted" % " ".join(words))
    if code != 0:
        raise PystribError("pystrib %s exited with code %d (see its message above)"
                           % (" ".join(words), code), exit_code=code)
    return None


@magics_class
class PystribMagics(Magics):
    """%%save_for_remote, %%remote and %pystrib (pystrib's --json events underneath)."""

    @cell_magic
    def save_for_remote(self, line, cell):
        """Saves the cell, which does not run here, for runner.main().

        %%save_for_remote [-n N] [--remote NAME] [--gpus SPEC] [--timeout S]
                          [--push a,b] [--pull x,y] [--pull-all] [... -- ARGS]
        """
        opts, path = parse_options(line, "%%save_for_remote")
        saved = save_cell(cell, opts, path)
        _warn_ipython_syntax(saved)
        flags = opts.flags()
        print("pystrib: cell saved to %s%s; run it with runner.main()" % (
            saved.path, (" (options: %s)" % flags) if flags else ""))

    @cell_magic
    def remote(self, line, cell):
        """Saves the cell and runs it remotely as N MPI ranks, in one step.

        %%remote [-n N] [--remote NAME] [--gpus SPEC] [--timeout S]
                 [--push a,b] [--pull x,y] [--pull-all] [... -- ARGS]
        """
        __tracebackhide__ = True
        opts, path = parse_options(line, "%%remote")
        saved = save_cell(cell, opts, path)
        _warn_ipython_syntax(saved)
        run_saved(saved, self.shell.user_ns)

    @line_magic
    def pystrib(self, line):
        """%pystrib jobs | status JOB | logs JOB | attach JOB | cancel JOB | fetch JOB | ...

        Runs the pystrib command line with these arguments, its output shown live.
        """
        __tracebackhide__ = True
        return pystrib_command(line)


def register(ip):
    """Registers the magics with the IPython shell ip (idempotent)."""
    ip.register_magics(PystribMagics)
