"""The session magics, as the notebooks of jupyter_distributed,
%distribute and ipyparallel write them:

    %dist_init --num-ranks N [-n N] [--gpu-ids 0,1] [-t S] [--remote NAME] [--runtime R]
    %dist_status  %dist_shutdown  %dist_reset  %dist_attach [ID]  %sync
    %%distributed                     every rank
    %%rank[0,2-4,6]                   those ranks (an input transformer makes it %%rank 0,2-4,6)
    %%distribute n [--sync] [--timeout S]   (and %distribute n CODE)
    %px CODE  %%px [--targets SPEC]  %autopx

Every cell runs in a pystrib session (session.py): the ranks stay up, with
their variables, from one cell to the next."""

import html
import re
import time

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from . import cluster as clusters
from . import options, pool
from .display import show
from .errors import PystribError
from .magics import line_words, parse_words
from .session import Output, parse_ranks

DIST = "dist"

# %%rank[0,2-4,6] rest  ->  %%rank 0,2-4,6 rest (IPython's names are words).
# %distribute 4 --sync CODE: n, its options, then the code as written.
DISTRIBUTE_LINE = re.compile(r"^\s*(\S+)((?:\s+--sync|\s+--timeout\s+\S+)*)\s*(.*)$", re.S)
RANK_LINE = re.compile(r"^(\s*)%%rank\s*\[([^\]]*)\](.*)$")

BARRIER = ("try:\n"
           "    __import__('torch.distributed', fromlist=['x']).barrier() "
           "if __import__('torch.distributed', fromlist=['x']).is_initialized() "
           "else __import__('mpi4py.MPI', fromlist=['x']).COMM_WORLD.Barrier()\n"
           "except ImportError:\n"
           "    pass\n")

# %%distribute --sync: what process 0's cell set, found by comparing its
# globals before and after (names, ids) and pulled from it.
SYNC_BEFORE = ("__pystrib_before__ = {k: id(v) for k, v in globals().items()}\n")
SYNC_AFTER = ("__pystrib_sync__ = [k for k, v in globals().items() if not k.startswith('_') "
              "and __pystrib_before__.get(k) != id(v) "
              "and type(v).__name__ != 'module' and k not in ('rank', 'world_size')]\n"
              "del __pystrib_before__\n")


def rank_transformer(lines):
    """IPython cleanup transformer: %%rank[SPEC] on a cell's first line
    becomes %%rank SPEC."""
    if lines:
        m = RANK_LINE.match(lines[0])
        if m:
            lines = ["%s%%%%rank %s%s\n" % (m.group(1), m.group(2).replace(" ", ""),
                                            m.group(3))] + lines[1:]
    return lines


_autopx = {"on": False}


def autopx_transformer(lines):
    """With %autopx on, every cell but %autopx itself runs as %%px."""
    if not _autopx["on"] or not lines:
        return lines
    first = "".join(lines).strip()
    if first.startswith("%autopx") or first.startswith("%%px") or first.startswith("%px"):
        return lines
    return ["%%px\n"] + lines



def _parse(table, words, prog):
    return parse_words(table, words, prog)[0]


def _dist_session(prog):
    s = pool.get(DIST, _state["remote"])
    if s is None:
        raise UsageError("%s: no session: start one with %%dist_init --num-ranks N" % prog)
    return s


_state = {"remote": "", "options": None}


class Status:
    """%dist_status: a table of rank, host, GPUs, state, the cell running and
    idle time (HTML where the front end shows it, text elsewhere)."""

    COLUMNS = ("rank", "host", "GPUs", "state", "cell running", "idle")

    def __init__(self, session, status):
        self.session = session
        self.status = status

    def rows(self):
        st = self.status
        cell = st.get("cell")
        code = (self.session.last_code or "").strip().splitlines()
        running = ("%s: %s" % (cell, code[0][:40]) if code else str(cell)) if cell else "-"
        idle = "-"
        if st.get("idle_since"):
            idle = "%.0f s" % max(0.0, time.time() - float(st["idle_since"]))
        rows = []
        for r in st.get("ranks") or []:
            gpus = r.get("gpus")
            rows.append((str(r.get("rank")), str(r.get("host") or "?"),
                         ",".join(map(str, gpus)) if isinstance(gpus, list) else (gpus or "-"),
                         str(r.get("state") or "?"),
                         running if r.get("state") == "busy" else "-",
                         idle if r.get("state") == "idle" else "-"))
        return rows

    def title(self):
        st = self.status
        text = "session %s: %s, %s ranks" % (self.session.id, st.get("state"), st.get("np"))
        b = st.get("broken")
        if b:
            text += " (broken: rank %s %s)" % (b.get("rank"), b.get("reason"))
        return text

    def _repr_html_(self):
        esc = html.escape
        head = "".join("<th>%s</th>" % esc(c) for c in self.COLUMNS)
        body = "".join("<tr>%s</tr>" % "".join("<td>%s</td>" % esc(v) for v in row)
                       for row in self.rows())
        return ('<table class="pystrib-session"><caption style="text-align:left">%s</caption>'
                "<thead><tr>%s</tr></thead><tbody>%s</tbody></table>" % (
                    esc(self.title()), head, body))

    def __repr__(self):
        rows = [self.COLUMNS] + self.rows()
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.COLUMNS))]
        lines = [self.title()]
        for r in rows:
            lines.append("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
        return "\n".join(lines)

    def _repr_pretty_(self, p, cycle):
        p.text(repr(self))


def _px_target(prog):
    c = clusters.active()
    if c is not None:
        return c
    s = pool.get(DIST, _state["remote"])
    if s is not None:
        return _SessionTarget(s)
    raise UsageError("%s: no cluster: c = pystributed.Cluster(n=4); c.activate(), "
                     "or %%dist_init --num-ranks N" % prog)


class _SessionTarget:
    """The %dist_init session, as %px sees a cluster."""

    def __init__(self, session):
        self.session = session

    def execute(self, code, targets=None, timeout=0):
        ranks = clusters.targets_of(targets, self.session.np)
        return self.session.execute(code, ranks=None if len(ranks) == self.session.np else ranks,
                                    timeout=timeout, output=Output())


@magics_class
class SessionMagics(Magics):
    """The magics of jupyter_distributed, %distribute and ipyparallel, on pystrib sessions."""

    # ------------------------------------------------ jupyter_distributed

    @line_magic
    def dist_init(self, line):
        """%dist_init --num-ranks N [--gpu-ids 0,1] [-t S] [--remote NAME] [--runtime R]

        Starts N ranks in a pystrib session (or reattaches to the one this
        notebook recorded, after a kernel restart)."""
        opts = _parse(options.SESSION_TABLE, line_words(line, "%dist_init"), "%dist_init")
        if opts.np is None:
            raise UsageError("%dist_init: how many ranks? --num-ranks N\n"
                             + options.SESSION_TABLE.help())
        _state["remote"] = opts.remote or ""
        _state["options"] = opts
        s, how = pool.open_session(DIST, opts, self.shell.user_ns)
        if how == "kept":
            print("pystrib: session %s is up with %s ranks (%%dist_reset starts it afresh)"
                  % (s.id, s.np))

    @line_magic
    def dist_status(self, line):
        """%dist_status: each rank's host, GPUs, state, the cell running, idle time."""
        s = _dist_session("%dist_status")
        show(Status(s, s.status()))

    @line_magic
    def dist_shutdown(self, line):
        """%dist_shutdown: stops the session; nothing is left on the host."""
        s = pool.get(DIST, _state["remote"])
        if s is None:
            print("pystrib: no session to shut down")
            return
        pool.drop(s, stop=True)
        print("pystrib: session %s stopped" % s.id)

    @line_magic
    def dist_reset(self, line):
        """%dist_reset: stops the session and starts a fresh one with the same options."""
        opts = _state["options"]
        s = pool.get(DIST, _state["remote"])
        if s is not None:
            pool.drop(s, stop=True)
            print("pystrib: session %s stopped" % s.id)
        if opts is None:
            raise UsageError("%dist_reset: no %dist_init yet")
        pool.open_session(DIST, opts, self.shell.user_ns)

    @line_magic
    def dist_attach(self, line):
        """%dist_attach [ID]: uses session ID (default: the one recorded for
        this notebook) for %%distributed, %%rank and %px."""
        from . import notebooks
        words = line_words(line, "%dist_attach")
        opts = _state["options"] or options.SessionOptions()
        if words:
            sid = words[0]
        else:
            entry = notebooks.find(notebooks.notebook_path(self.shell.user_ns),
                                   _state["remote"], DIST)
            if entry is None:
                raise UsageError("%dist_attach: no session recorded for this notebook; "
                                 "give its id (pystrib session list)")
            sid = entry["session"]
        s = pool.reattach(sid, opts.config)
        if s is None:
            raise PystribError("cannot attach to session %s" % sid,
                               hint="pystrib session list shows the sessions that run")
        pool._adopt(DIST, _state["remote"], s)
        notebooks.record(notebooks.notebook_path(self.shell.user_ns), _state["remote"], DIST,
                         s.id, s.np)
        print("pystrib: attached to session %s (%s ranks, %s)" % (s.id, s.np, s.state))

    @cell_magic
    def distributed(self, line, cell):
        """%%distributed [--timeout S]: runs the cell on every rank."""
        __tracebackhide__ = True
        opts = _parse(options.CELL_TABLE, line_words(line, "%%distributed"), "%%distributed")
        _dist_session("%%distributed").execute(cell, timeout=opts.timeout or 0)

    @cell_magic
    def rank(self, line, cell):
        """%%rank[0,2-4,6] (or %%rank 0,2-4,6): runs the cell on those ranks."""
        __tracebackhide__ = True
        words = line_words(line, "%%rank")
        if not words:
            raise UsageError("%%rank: which ranks? %%rank[0,2-4]")
        s = _dist_session("%%rank")
        try:
            ranks = parse_ranks(words[0], s.np)
        except ValueError as e:
            raise UsageError("%%rank: %s" % e)
        opts = _parse(options.CELL_TABLE, words[1:], "%%rank")
        s.execute(cell, ranks=ranks, timeout=opts.timeout or 0)

    @line_magic
    def sync(self, line):
        """%sync: a barrier on every rank."""
        s = _dist_session("%sync")
        s.execute(BARRIER, name="sync.py")
        print("pystrib: all %s ranks reached the barrier" % s.np)

    # ------------------------------------------------ %distribute

    @line_magic
    def distribute(self, line):
        """%distribute n [--sync] [--timeout S] CODE: as %%distribute, for one line."""
        __tracebackhide__ = True
        m = DISTRIBUTE_LINE.match(line)
        if not m or not m.group(3).strip():
            raise UsageError("%distribute n [--sync] [--timeout S] CODE: no code "
                             "(%%distribute n runs a whole cell)")
        self._distribute(line_words(m.group(1) + m.group(2), "%distribute"), m.group(3).strip() + "\n")

    @cell_magic("distribute")
    def distribute_cell(self, line, cell):
        """%%distribute n [--sync] [--timeout S]: runs the cell in n processes;
        variables persist in later %%distribute n cells; __process_id__ is the rank."""
        __tracebackhide__ = True
        self._distribute(line_words(line, "%%distribute"), cell)

    def _distribute(self, words, cell):
        __tracebackhide__ = True
        if not words:
            raise UsageError("%%distribute: how many processes? %%distribute 4")
        try:
            n = int(words[0])
        except ValueError:
            raise UsageError("%%distribute: '%s' is not a number of processes" % words[0])
        if n < 1:
            raise UsageError("%%distribute: needs at least 1 process")
        opts = _parse(options.DISTRIBUTE_TABLE, words[1:], "%%distribute")
        sess_opts = options.SessionOptions(np=n, **{
            o.name: getattr(opts, o.name) for o in options.SESSION_OPTIONS
            if o.name != "np"})
        s, _ = pool.open_session("distribute:%d" % n, sess_opts, self.shell.user_ns,
                                 say=_quiet_start)
        if opts.sync:
            s.execute(SYNC_BEFORE, ranks=[0], name="sync.py")
        s.execute(cell, timeout=opts.timeout or 0)
        if opts.sync:
            s.execute(SYNC_AFTER, ranks=[0], name="sync.py")
            names = s.pull(["__pystrib_sync__"], [0])[0][0].get("__pystrib_sync__") or []
            if names and n > 1:
                values, missing, errors = s.pull(names, [0])[0]
                s.push(values, list(range(1, n)))
                for name, why in errors.items():
                    print("pystrib: --sync: '%s' cannot be copied: %s" % (name, why))
            print("pystrib: --sync: %s copied from process 0 to every process" % (
                ", ".join(sorted(names)) if names else "nothing"))

    # ------------------------------------------------ ipyparallel

    @line_magic
    def px(self, line):
        """%px CODE: runs CODE on every rank of the active cluster."""
        __tracebackhide__ = True
        _px_target("%px").execute(line + "\n")

    @cell_magic("px")
    def px_cell(self, line, cell):
        """%%px [--targets SPEC] [--timeout S]: runs the cell on the active cluster."""
        __tracebackhide__ = True
        opts = _parse(options.PX_TABLE, line_words(line, "%%px"), "%%px")
        target = _px_target("%%px")
        try:
            target.execute(cell, targets=opts.targets, timeout=opts.timeout or 0)
        except ValueError as e:
            raise UsageError("%%px: --targets: %s" % e)

    @line_magic
    def autopx(self, line):
        """%autopx: every later cell runs as %%px until %autopx again."""
        _autopx["on"] = not _autopx["on"]
        print("%%autopx %s" % ("enabled: cells run on the ranks" if _autopx["on"] else "disabled"))


def _quiet_start(text):
    # %%distribute's pools start silently in the original; a start or a
    # reattach is still worth one line.
    print("pystrib: %s" % text)


def register(ip):
    """The session magics and the input transformers, on ip (idempotent)."""
    ip.register_magics(SessionMagics)
    cleanup = ip.input_transformers_cleanup
    for t in (rank_transformer, autopx_transformer):
        if t not in cleanup:
            cleanup.append(t)


def unregister(ip):
    cleanup = ip.input_transformers_cleanup
    for t in (rank_transformer, autopx_transformer):
        while t in cleanup:
            cleanup.remove(t)
    names = {"line": ("dist_init", "dist_status", "dist_shutdown", "dist_reset", "dist_attach",
                      "sync", "distribute", "px", "autopx"),
             "cell": ("distributed", "rank", "distribute", "px")}
    for kind, ns in names.items():
        table = ip.magics_manager.magics.get(kind, {})
        for n in ns:
            table.pop(n, None)
