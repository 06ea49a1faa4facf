"""The summary shown after a run: an HTML table where the front end shows
HTML, the same as plain text elsewhere."""

import html


def _duration(d):
    try:
        return "%.1f s" % float(d)
    except (TypeError, ValueError):
        return "?"


def _short_digest(digest, runtime=None):
    if not digest:
        return "none (runtime none)" if runtime == "none" else "?"
    algo, _, hexpart = str(digest).partition(":")
    return "%s:%s" % (algo, hexpart[:12]) if hexpart else str(digest)[:19]


class Summary:
    """Rank, exit code, duration, image digest and results directory of a run."""

    def __init__(self, result):
        self.result = result

    def _title(self):
        r = self.result
        where = r.host or r.remote or "?"
        return "job %s on %s: %s" % (r.job_id or "?", where, r.state or "?")

    def _pulled(self):
        names = sorted(self.result.pulled)
        return ("pulled: " + ", ".join(names)) if names else ""

    def _repr_html_(self):
        r = self.result
        esc = html.escape
        rows = []
        n = max(len(r.ranks), 1)
        for i, rank in enumerate(r.ranks or [None]):
            cells = ["<td>%s</td>" % esc(str(rank.rank)) if rank else "<td>-</td>",
                     "<td>%s</td>" % esc(str(rank.exit_code)) if rank else "<td>-</td>",
                     "<td>%s</td>" % esc(_duration(rank.duration)) if rank else "<td>-</td>"]
            if i == 0:
                cells.append('<td rowspan="%d" title="%s"><code>%s</code></td>' % (
                    n, esc(str(r.image or r.digest or "")), esc(_short_digest(r.digest, r.runtime))))
                cells.append('<td rowspan="%d"><code>%s</code></td>' % (n, esc(str(r.results or "?"))))
            rows.append("<tr>%s</tr>" % "".join(cells))
        pulled = self._pulled()
        return ('<table class="pystrib-summary">'
                '<caption style="text-align:left">%s</caption>'
                "<thead><tr><th>rank</th><th>exit code</th><th>duration</th>"
                "<th>image digest</th><th>results directory</th></tr></thead>"
                "<tbody>%s</tbody></table>%s" % (
                    esc(self._title()), "".join(rows),
                    ("<p>%s</p>" % esc(pulled)) if pulled else ""))

    def __repr__(self):
        r = self.result
        lines = [self._title(),
                 "  image digest: %s" % (r.digest or _short_digest(None, r.runtime)),
                 "  results:      %s" % (r.results or "?"),
                 "  rank  exit code  duration"]
        for rank in r.ranks:
            lines.append("  %4s  %9s  %8s" % (rank.rank, rank.exit_code, _duration(rank.duration)))
        pulled = self._pulled()
        if pulled:
            lines.append("  " + pulled)
        return "\n".join(lines)

    def _repr_pretty_(self, p, cycle):
        p.text(repr(self))


def show(obj):
    """display() inside IPython (HTML and text both offered), print() elsewhere."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        print(repr(obj))
        return
    if get_ipython() is None:
        print(repr(obj))
    else:
        display(obj)
