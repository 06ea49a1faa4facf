"""The IPython magics: %%save_for_remote, %%remote and %pystrib."""

import os
import shlex
import sys
import time

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from . import options, runner
from .binary import find_binary
from .errors import PystribError
from .options import DEFAULT_CELL_FILE

OPTIONS_HELP = options.TABLE.help()


def line_words(line, prog):
    """A magic's line as shell words; UsageError for bad quoting."""
    try:
        return shlex.split(line)
    except ValueError as e:
        raise UsageError("%s: %s" % (prog, e))


def parse_words(table, words, prog, operands=""):
    """(options, the magic's own values) from words by table; UsageError on
    a bad option, naming it, with the list of options, or for -h (the usage
    line ends with operands, e.g. " [-- ARGS]")."""
    try:
        opts, own, asked = table.parse(words, prog)
    except options.OptionsError as e:
        raise UsageError("%s: %s\n%s" % (prog, e, table.help()))
    except ValueError as e:
        raise UsageError("%s: %s" % (prog, e))
    if asked:
        raise UsageError("usage: %s [options]%s\n%s" % (prog, operands, table.help()))
    return opts, own


def parse_options(line, prog="%%remote"):
    """(JobOptions, cell file path or None) from a magic's line; UsageError on
    a bad option, naming it, with the list of options."""
    opts, own = parse_words(options.TABLE, line_words(line, prog), prog, " [-- ARGS]")
    return opts, own["file"]


def _usage(magic, summary):
    """A magic's docstring (what %%remote? shows): summary, usage, the options."""
    def document(f):
        f.__doc__ = "%s\n\n%s [options] [-- ARGS]\n\n%s\n" % (summary, magic, OPTIONS_HELP)
        return f
    return document


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
    @_usage("%%save_for_remote", "Saves the cell, which does not run here, for runner.main().")
    def save_for_remote(self, line, cell):
        opts, path = parse_options(line, "%%save_for_remote")
        saved = save_cell(cell, opts, path)
        _warn_ipython_syntax(saved)
        flags = opts.flags()
        print("pystrib: cell saved to %s%s; run it with runner.main()" % (
            saved.path, (" (options: %s)" % flags) if flags else ""))

    @cell_magic
    @_usage("%%remote", "Saves the cell and runs it remotely as N MPI ranks, in one step.")
    def remote(self, line, cell):
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
