"""What the notebook scenarios' Python drivers share (t0601, t0602, t0603):
checks written for integration/lib.sh to judge, cells, their outputs, and a
headless notebook run by nbclient in a fresh Debian ipykernel.

    from nbdriver import Checks, cell, text, data, error, execute
    checks = Checks(sys.argv[1]); check = checks.check
"""
import os

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook


class Checks:
    """PASS/FAIL lines (and #-indented details) for lib.sh's check_status."""

    def __init__(self, path):
        self.out = open(path, "w")

    def check(self, cond, msg, detail=""):
        self.out.write("%s %s\n" % ("PASS" if cond else "FAIL", msg))
        if not cond and detail:
            self.out.write("".join("#   %s\n" % l for l in str(detail)[-3000:].splitlines()))
        self.out.flush()

    def info(self, msg):
        self.out.write("INFO %s\n" % msg)
        self.out.flush()


def cell(src, raises=False):
    c = new_code_cell(src)
    if raises:
        c.metadata["tags"] = ["raises-exception"]
    return c


def text(c, name="stdout"):
    return "".join(o.get("text", "") for o in c.outputs
                   if o.output_type == "stream" and o.name == name)


def data(c, kind):
    return "".join(o.data.get(kind, "") for o in c.outputs
                   if o.output_type in ("display_data", "execute_result"))


def error(c):
    for o in c.outputs:
        if o.output_type == "error":
            return o.ename, o.evalue
    return None, ""


def execute(check, name, cells, env=None, on_cell=None, **client_kw):
    """Runs the notebook NB_DIR/NAME/NAME.ipynb (its working directory) in a
    fresh Debian ipykernel; env changes the kernel's environment (None:
    unset); check says whether every cell ran. Returns (notebook, directory)."""
    wd = os.path.join(os.environ["NB_DIR"], name)
    os.makedirs(wd, exist_ok=True)
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    kw = dict(timeout=300, kernel_name="python3", resources={"metadata": {"path": wd}})
    kw.update(client_kw)
    client = NotebookClient(nb, **kw)
    if on_cell:
        client.on_cell_execute = lambda cell, cell_index: on_cell(client, cell_index)
    saved = dict(os.environ)
    for k, v in (env or {}).items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        client.execute()
        failed = None
    except Exception as e:      # a cell raised when it should not have
        failed = e
    finally:
        os.environ.clear()
        os.environ.update(saved)
    nbformat.write(nb, os.path.join(wd, name + ".ipynb"))
    check(failed is None, "%s: every cell ran (errors only where expected)" % name, failed)
    return nb, wd
