"""The measuring half of bench/run-notebook.sh: a notebook of 30 cells that
print and bump a counter on 2 ranks, executed by nbclient in Debian's
ipykernel, once with pystributed's %%distributed (a pystrib session on the
bed, reached through one `pystrib session serve`) and once with
ipyparallel's %%px on 2 local engines.

    notebook.py WORKDIR CELLS

Per cell it takes the times nbclient records (record_timing: each cell's
metadata.execution), from iopub.execute_input to shell.execute_reply, i.e.
the kernel's time for the cell without nbclient's own. Writes the ROW lines
of bench/run on stdout, the rest on stderr."""

import datetime
import os
import statistics
import sys

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

workdir, cells = sys.argv[1], int(sys.argv[2])
BODY = "counter += 1\nprint('cell', counter)\n"


def say(text):
    sys.stderr.write("bench/notebook: %s\n" % text)
    sys.stderr.flush()


def stamp(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def run(name, setup, magic, teardown):
    """Per-cell times (ms) of the measured cells of notebook name."""
    wd = os.path.join(workdir, name)
    os.makedirs(wd, exist_ok=True)
    measured = [new_code_cell("%s\n%s" % (magic, BODY)) for _ in range(cells)]
    nb = new_notebook(cells=[new_code_cell(s) for s in setup] + measured +
                      [new_code_cell(s) for s in teardown])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = NotebookClient(nb, timeout=300, kernel_name="python3", record_timing=True,
                            resources={"metadata": {"path": wd}})
    client.execute()
    nbformat.write(nb, os.path.join(wd, name + ".ipynb"))
    times = []
    for c in measured:
        ex = c.metadata["execution"]
        times.append((stamp(ex["shell.execute_reply"]) - stamp(ex["iopub.execute_input"]))
                     .total_seconds() * 1000)
    # pystrib's output is a stream; ipyparallel's %%px shows each engine's
    # as display_data.
    last = "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "")
                   for o in measured[-1].outputs)
    if ("cell %d" % (cells + 1)) not in last:
        raise SystemExit("bench/notebook: %s: the last cell printed %r, not 'cell %d'"
                         % (name, last, cells + 1))
    say("%s: setup %s" % (name, " | ".join(
        "".join(o.get("text", "") for o in c.outputs).strip().replace("\n", " / ")
        for c in nb.cells[:len(setup)])))
    return times


def row(measure, value, unit):
    print("ROW\tnotebook\t%s\t%s\t%s" % (measure, value, unit))


pystrib = run("pystrib", [
    "%load_ext pystributed",
    "%dist_init --num-ranks 2",
    "%%distributed\ncounter = 0\nprint('warm', rank)\n",
    "%%distributed\ncounter += 1\n",
], "%%distributed", ["%dist_shutdown"])
ipp = run("ipyparallel", [
    "import ipyparallel as ipp\ncluster = ipp.Cluster(n=2, log_level=40)\n"
    "rc = cluster.start_and_connect_sync()\nrc.wait_for_engines(2)\n"
    # A DirectView does not wait for its results unless told: %%px would
    # return an AsyncResult at once, before the engines ran the cell.
    "view = rc[:]\nview.block = True\nview.activate()\nprint(rc.ids)",
    "%%px\ncounter = 0\nprint('warm')\n",
    "%%px\ncounter += 1\n",
], "%%px", ["cluster.stop_cluster_sync()"])

for name, t in (("pystrib", pystrib), ("ipyparallel", ipp)):
    say("%s per cell (ms): %s" % (name, " ".join("%.1f" % x for x in t)))
    row("%%distributed cell, median (pystrib)" if name == "pystrib" else
        "%%px cell, median (ipyparallel)", "%.1f" % statistics.median(t), "ms")
    row("%s cell, 90th percentile" % name, "%.1f" % sorted(t)[int(len(t) * 0.9) - 1], "ms")
row("pystrib / ipyparallel, median per cell (target <= 1.0)",
    "%.2f" % (statistics.median(pystrib) / statistics.median(ipp)), "")
