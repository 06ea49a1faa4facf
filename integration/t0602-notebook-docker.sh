#!/usr/bin/env bash
# t0602: the pystributed extension with the docker runtime (the config's
# default remote): a notebook executed headless by nbclient with the Debian
# ipykernel pushes a variable, runs a 2-rank %%remote cell inside the cell's
# image (built and pushed by pystrib to the bed's registry, pulled and run by
# the bed's dockerd through sshd), pulls a value from every rank back, and
# shows the image digest in the summary; then runner.main() runs a saved
# cell in the same image setup. t0601 covers the rest with runtime none.
. "$(dirname "$0")/lib.sh"
require_verbs "the docker runtime needs the cell's image pushed" run push
bed_up registry docker base sshd

notebook_setup
export BED_REGISTRY

checks=$BED_DIR/checks
"$PY" - "$checks" "$INTEGRATION_DIR" <<'PYEOF'
import os, sys, urllib.request
import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

sys.path.insert(0, sys.argv[2])	# integration/: nbdriver.py
from nbdriver import Checks, data, text
checks = Checks(sys.argv[1])
check = checks.check


def html(c):
    return data(c, "text/html")


wd = os.path.join(os.environ["NB_DIR"], "docker")
os.makedirs(wd)
nb = new_notebook(cells=[new_code_cell(s) for s in (
    "%load_ext pystributed",
    "data = {'scale': 3}",
    "%%remote -n 2 --push data --pull got --pull-all\n"
    "import os\n"
    "inside = os.path.exists('/.dockerenv')\n"
    "got = (rank, data['scale'] * (rank + 1), inside)\n"
    "print(f'rank {rank} of {world_size} in a container: {inside}')\n",
    "import pystributed\nr = pystributed.last_result()\n"
    "print('got', got)\nprint('runtime', r.runtime)\nprint('image', r.image)\nprint('digest', r.digest)",
    "import pystributed.main as runner",
    "%%save_for_remote -n 2\nprint('saved cell on rank', rank)\n",
    "result = runner.main()\nprint('state', result.state, result.exit_codes, result.digest)",
)])
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
failed = None
try:
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": wd}}).execute()
except Exception as e:
    failed = e
nbformat.write(nb, os.path.join(wd, "docker.ipynb"))
check(failed is None, "docker: every cell ran", failed)
c = nb.cells
so = text(c[2])
check("[0] rank 0 of 2 in a container: True\n" in so and "[1] rank 1 of 2 in a container: True\n" in so,
      "docker: both ranks ran inside a container, output in the cell", so + text(c[2], "stderr"))
s3 = text(c[3])
check("got [(0, 3, True), (1, 6, True)]\n" in s3, "docker: pushed value used, pulled from every rank", s3)
check("runtime docker\n" in s3, "docker: the run used the docker runtime", s3)
digest = next((l.split()[1] for l in s3.splitlines() if l.startswith("digest ")), "")
image = next((l.split()[1] for l in s3.splitlines() if l.startswith("image ")), "")
check(digest.startswith("sha256:") and image.endswith("@" + digest),
      "docker: the result holds the image reference pinned to its digest", s3)
h = html(c[2])
check("<table" in h and "<code>%s</code>" % digest[:19] in h,
      "docker: the summary table shows the image digest", h)
status = None
if image.startswith(os.environ["BED_REGISTRY"] + "/"):
    repo = image[len(os.environ["BED_REGISTRY"]) + 1:].split("@")[0].rsplit(":", 1)[0]
    req = urllib.request.Request("http://%s/v2/%s/manifests/%s" % (os.environ["BED_REGISTRY"], repo, digest),
                                 method="HEAD", headers={"Accept": "application/vnd.oci.image.manifest.v1+json, "
                                                         "application/vnd.docker.distribution.manifest.v2+json"})
    try:
        status = urllib.request.urlopen(req, timeout=10).status
    except Exception as e:
        status = e
check(status == 200, "docker: that image is in the bed's registry", "%s %s" % (image, status))
s6 = text(c[6])
check("[0] saved cell on rank 0\n" in s6 and "[1] saved cell on rank 1\n" in s6
      and "state succeeded [0, 0] sha256:" in s6,
      "docker: runner.main() runs the saved cell in its image", s6)
checks.out.close()
PYEOF
rc=$?
while IFS= read -r line; do
	case $line in
	"PASS "*) check_status "${line#PASS }" 0 ;;
	"FAIL "*) check_status "${line#FAIL }" 1 ;;
	"#"*) echo "$line" ;;
	esac
done < "$checks"
check_eq "the notebook driver exits 0" 0 "$rc"
