#!/usr/bin/env bash
# t0201: `pystrib push` puts a cell's image into the bed's real registry with
# no Docker daemon: skopeo inspects it (labels, env, layers, reproducible
# created time); the bed's dockerd and podman pull and run it; pushing it
# again unchanged sends no blob at all, and a one-line edit of the cell sends
# only the cell layer and the config (counted in the registry's own access
# log); `docker build - < OUT.tar` of `pystrib build` gives an image that
# prints the same as the pushed one; --json gives blob and pushed events.
. "$(dirname "$0")/lib.sh"
bed_up registry docker podman base

bed_engines
export DOCKER_BUILDKIT=0
push() { "$PYSTRIB" -c "$BED_CONFIG" push "$@"; }
# Blob upload requests the registry has answered so far: every POST, PUT and
# PATCH under /blobs/ (a cross-repository mount is a POST too).
uploads() { grep -cE '"(POST|PUT|PATCH) /v2/[^ ]*/blobs/' "$BED_REGISTRY_LOG"; }
# Blobs completed by upload so far: their digests, from the final PUTs.
put_digests() { grep -oE '"PUT /v2/[^ ]*/blobs/uploads/[^ ]*digest=sha256(:|%3A)[0-9a-f]{64}' "$BED_REGISTRY_LOG" |
	grep -oE '[0-9a-f]{64}$'; }

work=$BED_DIR/t0201
mkdir -p "$work/proj/nb" "$work/proj/pkg"
cd "$work/proj" || exit 1
cat > nb/cell.py <<'EOF'
import os
import pkg.util
with open(os.path.join(os.environ["PYSTRIB_INPUTS"], "params.txt")) as f:
    params = f.read().strip()
print("cell rank %d of %d util %s params %s cwd %s" %
      (rank, world_size, pkg.util.VALUE, params, os.getcwd()))
EOF
printf 'VALUE = "from-project"\n' > pkg/util.py
: > pkg/__init__.py
printf 'lr=0.5\n' > "$work/params.txt"
git init -q . && git -c user.name=t -c user.email=t@example.com add -A &&
	GIT_COMMITTER_DATE="2024-05-06T07:08:09Z" git -c user.name=t -c user.email=t@example.com commit -qm init
git config remote.origin.url "https://bob:hunter2@git.example.com/team/proj.git"
rev=$(git rev-parse HEAD)
want_out="cell rank 0 of 1 util from-project params lr=0.5 cwd /pystrib/project/nb"

# 1. The first push.
expect_exit 0 push nb/cell.py --input "$work/params.txt"
ref=$(cat "$out")
pat="^$BED_REGISTRY/cells@sha256:[0-9a-f]{64}\$"
check_grep "prints the pinned REGISTRY/REPO@sha256:... on stdout" -E "$pat" "$out"
digest=${ref##*@}
check_grep "names the tag on stderr: 'cell-' and the digest's first 12 hex digits" \
	-x "pystrib: tagged $BED_REGISTRY/cells:cell-${digest:7:12}" "$err"
pinned="$BED_REGISTRY/cells@$digest"
# The printed line is what a script captures: every tool takes it as it is.
check "skopeo inspect takes the printed reference as it is" \
	skopeo inspect --tls-verify=false "docker://$ref"
check "podman pull takes the printed reference as it is" \
	podman pull -q --tls-verify=false "$ref"

# 2. skopeo reads it.
check "skopeo inspect reads the image and its config" eval \
	'skopeo inspect --tls-verify=false "docker://$pinned" > "$work/inspect.json" &&
	skopeo inspect --config --tls-verify=false "docker://$pinned" > "$work/config.json"'
skopeo inspect --tls-verify=false "docker://$BED_BASE" > "$work/base.json" 2>/dev/null
check "digest, tag, two layers on the base, labels, env, cmd, workdir, created = commit time" \
	"$PY" - "$work/inspect.json" "$work/config.json" "$work/base.json" "$rev" "$digest" <<'EOF'
import json, sys
img, cfg, base = (json.load(open(p)) for p in sys.argv[1:4])
rev, digest = sys.argv[4], sys.argv[5]
assert img["Digest"] == digest, img["Digest"]
assert img["Layers"][:len(base["Layers"])] == base["Layers"], "base layers first"
assert len(img["Layers"]) == len(base["Layers"]) + 2, img["Layers"]
l = img["Labels"]
assert l["org.opencontainers.image.revision"] == rev, l
assert l["org.opencontainers.image.source"] == "https://git.example.com/team/proj.git", l
assert l["org.opencontainers.image.created"] == "2024-05-06T07:08:09Z", l
assert cfg["created"] == "2024-05-06T07:08:09Z", cfg["created"]
c = cfg["config"]
assert c["Cmd"] == ["python3", "/pystrib/cell/bootstrap.py", "/pystrib/cell/user_code.py"], c["Cmd"]
assert c["WorkingDir"] == "/pystrib/project/nb", c["WorkingDir"]
env = dict(e.split("=", 1) for e in c["Env"])
assert env["PYSTRIB_CELL"] == "/pystrib/cell/user_code.py" and env["PYSTRIB_REVISION"] == rev, env
assert env["PATH"].startswith("/usr/local/sbin"), "the base's env is kept"
assert len(cfg["rootfs"]["diff_ids"]) == len(img["Layers"])
EOF
check_no_grep "no credentials in the image's config" hunter2 "$work/config.json"

# 3. docker and podman pull and run it.
got=$("$DOCKER" run --rm --network none "$pinned" 2> "$err")
check_eq "docker pulls and runs the pushed image" "$want_out" "$got" || show "$err"
got=$(podman run --rm --tls-verify=false --network none "$pinned" 2> "$err")
check_eq "podman pulls and runs the pushed image" "$want_out" "$got" || show "$err"
got=$("$DOCKER" run --rm --network none "$pinned" mpirun --allow-run-as-root --oversubscribe -np 2 \
	python3 /pystrib/cell/bootstrap.py /pystrib/cell/user_code.py 2>/dev/null | sort | tr '\n' '|')
check_eq "mpirun -np 2 in the pushed image runs two ranks" \
	"cell rank 0 of 2 util from-project params lr=0.5 cwd /pystrib/project/nb|cell rank 1 of 2 util from-project params lr=0.5 cwd /pystrib/project/nb|" \
	"$got"

# 4. Unchanged: no blob is sent, same reference.
before=$(uploads)
expect_exit 0 push nb/cell.py --input "$work/params.txt"
check_eq "pushing again unchanged gives the same reference" "$ref" "$(cat "$out")"
check_eq "pushing again unchanged sends no blob (upload requests in the registry log)" \
	"$before" "$(uploads)"

# 5. --json and --tag: events, and the same digest under another tag.
before=$(uploads)
"$PYSTRIB" -c "$BED_CONFIG" --json push nb/cell.py --input "$work/params.txt" -t exp-1 > "$work/json.out" 2> "$err"
check "--json: blob events ('exists') and a pushed event with the reference and 0 uploads" \
	"$PY" - "$work/json.out" "$digest" "$BED_REGISTRY/cells:exp-1@$digest" <<'EOF' || show "$work/json.out" "$err"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert all("event" in l for l in lines)
blobs = [l for l in lines if l["event"] == "blob"]
assert blobs and all(b["state"] == "exists" for b in blobs), blobs
pushed = [l for l in lines if l["event"] == "pushed"]
assert len(pushed) == 1 and lines[-1] is pushed[0]
p = pushed[0]
assert p["reference"] == sys.argv[3] and p["digest"] == sys.argv[2], p
assert p["uploaded_blobs"] == 0 and p["uploaded_bytes"] == 0, p
EOF
check_eq "--tag: no blob sent either" "$before" "$(uploads)"

# 6. A one-line edit: only the cell layer and the config go up.
echo 'print("one more line")' >> nb/cell.py
before=$(uploads)
nput=$(put_digests | wc -l)
expect_exit 0 push nb/cell.py --input "$work/params.txt"
ref2=$(cat "$out")
digest2=${ref2##*@}
check "an edited cell gets a new digest" test "$digest2" != "$digest"
check_grep "an edited cell gets a new tag" -x "pystrib: tagged $BED_REGISTRY/cells:cell-${digest2:7:12}" "$err"
skopeo inspect --tls-verify=false "docker://$BED_REGISTRY/cells@$digest2" > "$work/inspect2.json" 2>/dev/null
mapfile -t sent < <(put_digests | tail -n +$((nput + 1)))
check "edit: exactly two blobs uploaded, the new cell layer and the config; the project layer kept" \
	"$PY" - "$work/inspect.json" "$work/inspect2.json" "${sent[@]}" <<'EOF' || echo "#   sent: ${sent[*]}"
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
sent = ["sha256:" + d for d in sys.argv[3:]]
assert a["Layers"][:-1] == b["Layers"][:-1], "base and project layers unchanged"
assert a["Layers"][-1] != b["Layers"][-1], "the cell layer changed"
assert len(sent) == 2, sent
assert sent[0] == b["Layers"][-1], (sent, b["Layers"][-1])
assert sent[1] not in b["Layers"], "the second is the config"
EOF
n=$(( $(uploads) - before ))
check "edit: 4 to 6 upload requests in the registry log (a POST and a PUT per blob, at most 2 per blob more for PATCH)" \
	test "$n" -ge 4 -a "$n" -le 6

# 7. docker build of `pystrib build`'s context prints the same as the pushed image.
expect_exit 0 "$PYSTRIB" -c "$BED_CONFIG" build nb/cell.py -o "$work/ctx.tar" --input "$work/params.txt"
tag="pystrib-t0201:$$"
if check "docker build - < ctx.tar" eval '"$DOCKER" build -q -t "$tag" - < "$work/ctx.tar" > "$work/build.log" 2>&1' ||
	{ show "$work/build.log"; false; }; then
	built=$("$DOCKER" run --rm --network none "$tag" 2>"$err")
	pushed=$("$DOCKER" run --rm --network none "$BED_REGISTRY/cells@$digest2" 2>>"$err")
	check "docker build - < ctx.tar runs the cell exactly as the pushed image does" \
		test "$built" = "$pushed" -a -n "$pushed" || printf '#   built:  %s\n#   pushed: %s\n' "$built" "$pushed"
	check_eq "... which is the edited cell's output" "$(printf '%s\none more line' "$want_out")" "$pushed"
	for key in WorkingDir Env Cmd; do
		a=$("$DOCKER" inspect -f "{{json .Config.$key}}" "$tag")
		b=$("$DOCKER" inspect -f "{{json .Config.$key}}" "$BED_REGISTRY/cells@$digest2")
		check_eq "docker build and push agree on $key" "$a" "$b"
	done
	"$DOCKER" rmi -f "$tag" > /dev/null 2>&1
fi

# 8. A cell with no project (outside git): the cell layer alone on the base.
mkdir -p "$work/loose"
printf 'print("loose", rank)\n' > "$work/loose/c.py"
expect_exit 0 push "$work/loose/c.py"
loose=$(cat "$out")
check_grep "outside git: a tag from the file name" -E "/cells:c-[0-9a-f]{12}\$" "$err"
got=$(podman run --rm --tls-verify=false --network none "$(pinned_ref "$loose")" 2>/dev/null)
check_eq "outside git: podman runs it" "loose 0" "$got"

# 9. Ctrl-C in the middle of an upload: exit 130, and no tag was written.
mkdir -p "$work/big"
head -c $((48 << 20)) /dev/urandom > "$work/big/data.bin"
printf 'print("big")\n' > "$work/big/b.py"
tags() { curl -s "http://$BED_REGISTRY/v2/cells/tags/list"; }
before_tags=$(tags)
PYSTRIB_REGISTRY_CHUNK=262144 "$PYSTRIB" -c "$BED_CONFIG" --json push "$work/big/b.py" \
	--project "$work/big" > "$work/int.out" 2> "$work/int.err" &
pid=$!
for _ in $(seq 600); do grep -q '"state": *"uploading"' "$work/int.out" 2>/dev/null && break; sleep 0.05; done
kill -INT "$pid"
wait "$pid"
code=$?
check_eq "SIGINT during an upload: exit 130" 130 "$code" || show "$work/int.err"
check_eq "SIGINT during an upload: no tag written" "$before_tags" "$(tags)"
check_no_grep "SIGINT: no pushed event" '"pushed"' "$work/int.out"
