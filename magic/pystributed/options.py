"""The options of %%save_for_remote, %%remote and runner.main(), each
defined once, in TABLE: the magics' parser, their help text, JobOptions'
fields (and runner.main()'s keywords), the options written back as magic
flags and their way onto pystrib's command line all come from it. A new
option is one more Option in OPTIONS."""

import argparse
import dataclasses
import os
import shlex
import sys
import textwrap

from . import transfer

DEFAULT_CELL_FILE = "user_code.py"

# Kinds of option: how one is parsed and written back as words.
VALUE = "value"         # FLAG VALUE; None: unset
SWITCH = "switch"       # FLAG; True when given
REPEAT = "repeat"       # FLAG VALUE, repeatable; a list
NAMES = "names"         # FLAG a,b; a list of Python names ('*' too, with star)
REST = "rest"           # -- ARGS; the words after --

# The help text's left column: "  -n, --np N" then the help from here.
HELP_COLUMN = 19
HELP_WIDTH = 84


class OptionsError(ValueError):
    """A magic line the parser refused; the message names the option."""


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


def _path(text):
    return os.path.abspath(os.path.expanduser(text))


def _key_value(kv):
    if "=" not in kv or kv.startswith("="):
        raise ValueError("--env wants KEY=VALUE, not '%s'" % kv)


def _pull_env(opts, push_file):
    spec = opts.pull_spec()
    return ["--env", "PYSTRIB_PULL=" + spec] if spec else []


def _push_input(opts, push_file):
    return ["--input", push_file] if push_file else []


@dataclasses.dataclass(frozen=True)
class Option:
    """One option. name is its JobOptions field and runner.main() keyword;
    flags its spellings on the magic line (the first is the one written
    back); parse turns the magic's text into the value (argparse type);
    check refuses a bad value (or list item) from any source with
    ValueError; pystrib is the `pystrib run` flag the value goes to, or a
    function (opts, push_file) -> words, or None for an option of the magic
    itself; before_verb puts it before `run`; field False keeps it out of
    JobOptions (the magic's own, as --file)."""

    name: str
    flags: tuple
    metavar: str
    help: str
    kind: str = VALUE
    parse: object = None
    check: object = None
    pystrib: object = None
    before_verb: bool = False
    field: bool = True
    star: bool = False
    aliases: tuple = ()

    def empty(self):
        """The value when the option is not given (the config's default)."""
        if self.kind == SWITCH:
            return False
        if self.kind in (REPEAT, REST) or (self.kind == NAMES and not self.star):
            return []
        return None

    def convert(self, value):
        """value, from the parser or a runner.main() keyword, in the field's
        form (always a new list); ValueError when it is not valid."""
        if self.kind == NAMES:
            if value is None or (self.star and value == "*"):
                return value
            names = transfer.split_names(value, self.flags[-1])
            return names or (None if self.star else [])
        if self.kind in (REPEAT, REST):
            if value is None:
                return []
            value = [value] if isinstance(value, str) else list(value)
            for item in value if self.check else ():
                self.check(item)
            return value
        if self.check and value is not None:
            self.check(value)
        return value

    def words(self, flag, value):
        """value as command-line words after flag; [] when unset."""
        if self.kind == SWITCH:
            return [flag] if value else []
        if self.kind == REPEAT:
            return [w for v in value for w in (flag, str(v))]
        if self.kind == REST:
            return ["--"] + [str(v) for v in value] if value else []
        if self.kind == NAMES:
            if not value:
                return []
            return [flag, value if value == "*" else ",".join(value)]
        if value is None or value == "":
            return []
        return [flag, str(value)]

    def synopsis(self):
        """'-n, --np N': the help text's left column."""
        flags = ", ".join(self.flags)
        return flags + (" " + self.metavar if self.metavar else "")


OPTIONS = (
    # In the order they go to pystrib (then the magic's own ones).
    Option("np", ("-n", "--np"), "N", "ranks (mpirun -np)",
           parse=_positive, pystrib="-n", aliases=("n",)),
    Option("remote", ("--remote",), "NAME", "the [remote.NAME] host of the config",
           pystrib="--remote"),
    Option("gpus", ("--gpus",), "SPEC", "all, a count, or a list of devices (0,1)",
           pystrib="--gpus"),
    Option("timeout", ("--timeout",), "S", "stop the job after S seconds (0: no limit)",
           parse=_seconds, pystrib="--timeout"),
    Option("results", ("--results",), "DIR", "where results come back to (DIR/<job id>/)",
           pystrib="--results"),
    Option("env", ("--env",), "KEY=VALUE", "an environment variable for the ranks (repeatable)",
           kind=REPEAT, check=_key_value, pystrib="--env"),
    Option("pull", ("--pull",), "x,y",
           "variables of rank 0 set in the notebook after the run ('*': all)",
           kind=NAMES, star=True, pystrib=_pull_env),
    Option("pull_all", ("--pull-all",), None,
           "pull from every rank: each name becomes a list, one value per rank "
           "(alone: every variable the cell defined)",
           kind=SWITCH, pystrib=_pull_env),
    Option("push", ("--push",), "a,b",
           "notebook variables defined on every rank before the cell runs",
           kind=NAMES, pystrib=_push_input),
    Option("inputs", ("--input",), "PATH", "a file for the cell, in $PYSTRIB_INPUTS (repeatable)",
           kind=REPEAT, parse=_path, pystrib="--input"),
    Option("detach", ("--detach",), None, "submit and return; %pystrib attach JOB follows it",
           kind=SWITCH, pystrib="--detach"),
    Option("config", ("-c", "--config"), "F", "the pystrib config file",
           pystrib="-c", before_verb=True),
    Option("quiet", ("-q", "--quiet"), None, "only the ranks' output and the summary",
           kind=SWITCH),
    Option("verbose", ("-v", "--verbose"), None, "also show pystrib's own stderr",
           kind=SWITCH),
    Option("file", ("--file",), "PATH",
           "where to save the cell (default: ./%s)" % DEFAULT_CELL_FILE, field=False),
    Option("args", ("--",), "ARGS", "arguments for the cell (sys.argv[1:])",
           kind=REST, pystrib="--"),
)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise OptionsError(message)


class _JobOptionsMethods:
    """The methods of a table's JobOptions; _table is that table."""

    def __post_init__(self):
        for o in self._table.fields():
            setattr(self, o.name, o.convert(getattr(self, o.name)))

    def update(self, **kw):
        for key, value in kw.items():
            o = self._table.field(key)
            setattr(self, o.name, o.convert(value))
        return self

    def copy(self, **kw):
        """A copy (its own lists) with kw changed."""
        return dataclasses.replace(self).update(**kw)

    def pull_spec(self):
        """PYSTRIB_PULL's value, or None: --pull-all alone pulls every name."""
        if self.pull == "*" or (self.pull_all and not self.pull):
            return "*"
        if self.pull:
            return ",".join(self.pull)
        return None

    def flags(self):
        """The options as %%remote flags ("-n 2 --push a"); "" for none."""
        return " ".join(shlex.quote(w) for w in self._table.flag_words(self))

    def pystrib_args(self, push_file=None, before_verb=False):
        """The words for `pystrib run` (before_verb: for pystrib itself)."""
        return self._table.pystrib_words(self, push_file, before_verb)

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, ", ".join(
            "%s=%r" % (f, getattr(self, f)) for f in self.FIELDS
            if getattr(self, f) not in (None, False, [])))


class OptionTable:
    """A sequence of Options and what is built from it."""

    def __init__(self, options, class_name="JobOptions", doc=None):
        self.options = tuple(options)
        self.class_name = class_name
        self.doc = doc or ("What %%save_for_remote / %%remote / runner.main() accept; "
                           "None or empty means the config's default. Fields: the table's.")
        names = [o.name for o in self.options]
        if len(set(names)) != len(names) or "help" in names:
            raise ValueError("option names must be unique and not 'help': %s" % names)
        self.job_options = self._make_class()

    def __iter__(self):
        return iter(self.options)

    def fields(self):
        return [o for o in self.options if o.field]

    def field(self, key):
        """The field option named key (or one of its aliases); TypeError if none."""
        for o in self.fields():
            if key == o.name or key in o.aliases:
                return o
        raise TypeError("unknown option %r (known: %s)" % (
            key, ", ".join(o.name for o in self.fields())))

    def _make_class(self):
        fields = []
        for o in self.fields():
            empty = o.empty()
            f = (dataclasses.field(default_factory=list) if isinstance(empty, list)
                 else dataclasses.field(default=empty))
            fields.append((o.name, object, f))
        namespace = {
            "__module__": __name__,
            "__doc__": self.doc,
            "_table": self,
            "FIELDS": tuple(o.name for o in self.fields()),
        }
        kw = {"kw_only": True} if sys.version_info >= (3, 10) else {}
        return dataclasses.make_dataclass(self.class_name, fields, bases=(_JobOptionsMethods,),
                                          namespace=namespace, repr=False, **kw)

    def parser(self, prog):
        """The argparse parser of a magic's line (the words before --); its
        errors raise OptionsError."""
        p = _Parser(prog=prog, add_help=False, allow_abbrev=False)
        for o in self.options:
            if o.kind == REST:
                continue
            kw = {"dest": o.name, "default": o.empty()}
            if o.kind == SWITCH:
                kw["action"] = "store_true"
            else:
                kw.update(type=o.parse, metavar=o.metavar)
                if o.kind == REPEAT:
                    kw["action"] = "append"
            p.add_argument(*o.flags, **kw)
        p.add_argument("-h", "--help", action="store_true", dest="help")
        return p

    def parse(self, words, prog):
        """(JobOptions, the other options' values by name, help asked) from
        a magic's words; OptionsError for what the parser refused,
        ValueError for a bad value."""
        rest = []
        if "--" in words:
            i = words.index("--")
            words, rest = words[:i], words[i + 1:]
        ns = self.parser(prog).parse_args(words)
        values = {o.name: (rest if o.kind == REST else getattr(ns, o.name)) for o in self.options}
        own = {o.name: values.pop(o.name) for o in self.options if not o.field}
        return self.job_options(**values), own, ns.help

    def help(self):
        """The list of options, one (or more) lines each."""
        lines = ["options (each default comes from the pystrib config):"]
        indent = " " * HELP_COLUMN
        for o in self.options:
            left = "  " + o.synopsis()
            body = textwrap.wrap(o.help, HELP_WIDTH - HELP_COLUMN)
            if len(left) < HELP_COLUMN - 1:
                lines.append(left.ljust(HELP_COLUMN) + body.pop(0))
            else:
                lines.append(left)
            lines += [indent + b for b in body]
        return "\n".join(lines)

    def _in_order(self):
        """The fields in the table's order, but -- ARGS last wherever it is."""
        return sorted(self.fields(), key=lambda o: o.kind == REST)

    def flag_words(self, opts):
        """opts as magic flags, each option by its first spelling."""
        words = []
        for o in self._in_order():
            words += o.words(o.flags[0], getattr(opts, o.name))
        return words

    def pystrib_words(self, opts, push_file=None, before_verb=False):
        """opts as words for pystrib: the options of `pystrib run` or, with
        before_verb, those of pystrib itself. An option with a function
        of its own (pull, pull_all) counts once."""
        words, done = [], []
        for o in self._in_order():
            if o.pystrib is None or o.before_verb != before_verb or o.pystrib in done:
                continue
            if callable(o.pystrib):
                done.append(o.pystrib)
                words += o.pystrib(opts, push_file)
            else:
                words += o.words(o.pystrib, getattr(opts, o.name))
        return words


TABLE = OptionTable(OPTIONS)
JobOptions = TABLE.job_options


def _shared(name):
    """The Option of OPTIONS named name: the session tables use the same one."""
    for o in OPTIONS:
        if o.name == name:
            return o
    raise KeyError(name)


def _session_np(o):
    return dataclasses.replace(o, flags=("-n", "--num-ranks", "--np"))


# `pystrib session start`'s options, as %dist_init, Cluster() and
# %%distribute take them (runtime and the timeouts are the sessions' own).
RUNTIME = Option("runtime", ("--runtime",), "R", "docker, podman or none (default: the config's)",
                 pystrib="--runtime")
GPU_IDS = Option("gpus", ("--gpu-ids", "--gpus"), "SPEC",
                 "the GPUs of the ranks: all, a count, or a list of devices (0,1)",
                 pystrib="--gpus")
START_TIMEOUT = Option("start_timeout", ("-t", "--start-timeout"), "S",
                       "give up starting the session after S seconds (0: no limit)",
                       parse=_seconds)
IDLE_TIMEOUT = Option("idle_timeout", ("--idle-timeout",), "S",
                      "the session stops itself after S seconds without a cell "
                      "(default: [session] idle_timeout)",
                      parse=_seconds, pystrib="--idle-timeout")
NAME = Option("name", ("--name",), "NAME", "a name for the session (pystrib session list)",
              pystrib="--name")
CELL_TIMEOUT = Option("timeout", ("--timeout",), "S",
                      "interrupt the cell after S seconds (the session stays up)",
                      parse=_seconds)
SYNC = Option("sync", ("--sync",), None,
              "copy the variables process 0's cell set to every process", kind=SWITCH)
TARGETS = Option("targets", ("--targets",), "SPEC",
                 "the ranks: all, 0, 0,2-3, [0,1] or a slice as ::2")

SESSION_OPTIONS = (
    _session_np(_shared("np")), _shared("remote"), RUNTIME, GPU_IDS,
    _shared("env"), IDLE_TIMEOUT, NAME, START_TIMEOUT, _shared("config"),
)
SESSION_TABLE = OptionTable(SESSION_OPTIONS, "SessionOptions",
                            "What %dist_init and Cluster() accept; None or empty means "
                            "the config's default.")
SessionOptions = SESSION_TABLE.job_options

# %%distribute n's own options (n is the first word), then the session's.
DISTRIBUTE_TABLE = OptionTable(
    (CELL_TIMEOUT, SYNC) + tuple(o for o in SESSION_OPTIONS if o.name not in ("np",)),
    "DistributeOptions", "What %%distribute n accepts after n.")
PX_TABLE = OptionTable((TARGETS, CELL_TIMEOUT), "PxOptions", "What %%px accepts.")
CELL_TABLE = OptionTable((CELL_TIMEOUT,), "CellOptions", "What %%distributed and %%rank accept.")
