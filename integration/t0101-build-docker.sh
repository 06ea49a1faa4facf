#!/usr/bin/env bash
# t0101: `pystrib build` writes a Docker build context that the real dockerd
# builds (`docker build - < ctx.tar`, FROM the bed's base image in the bed's
# registry), and the image runs the cell: one rank as its CMD, two ranks with
# mpirun inside the container. The tarball is byte-identical when built
# twice, and holds the project without .git or ignored files.
. "$(dirname "$0")/lib.sh"

bed_up registry docker base
bed_engines
export DOCKER_BUILDKIT=0

work="$BED_DIR/t0101"
mkdir -p "$work/proj/nb" "$work/proj/pkg" "$work/proj/data" "$work/proj/scratch"
cd "$work/proj"
cat > nb/cell.py <<'EOF'
import os, sys
import pkg.util
if world_size > 1:
    from mpi4py import MPI
    total = MPI.COMM_WORLD.allreduce(rank + 1)
else:
    total = 1
with open(os.path.join(os.environ["PYSTRIB_INPUTS"], "params.txt")) as f:
    params = f.read().strip()
print("cell rank %d of %d sum %d util %s params %s cwd %s" %
      (rank, world_size, total, pkg.util.VALUE, params, os.getcwd()))
EOF
printf 'VALUE = "from-project"\n' > pkg/util.py
: > pkg/__init__.py
head -c 4096 /dev/urandom > data/big.bin
printf 'scratch\n' > scratch/notes.txt
printf '*.bin\n' > .gitignore
printf 'scratch/\n' > .pystribignore
printf 'lr=0.5\n' > "$work/params.txt"
git init -q . && git -c user.name=t -c user.email=t@example.com add -A &&
	git -c user.name=t -c user.email=t@example.com commit -qm init
git config remote.origin.url "https://bob:hunter2@git.example.com/team/proj.git"
rev=$(git rev-parse HEAD)

check "build writes a context tarball" \
	"$PYSTRIB" -c "$BED_CONFIG" build nb/cell.py -o "$work/ctx.tar" --input "$work/params.txt"
check "a second build is byte-identical" bash -c "
	'$PYSTRIB' -c '$BED_CONFIG' build nb/cell.py -o '$work/ctx2.tar' --input '$work/params.txt' &&
	cmp '$work/ctx.tar' '$work/ctx2.tar'"
check "-o - writes the same bytes to stdout" bash -c "
	'$PYSTRIB' -c '$BED_CONFIG' build nb/cell.py -o - --input '$work/params.txt' | cmp - '$work/ctx.tar'"
tar tf "$work/ctx.tar" > "$work/listing"
check "the context has a Dockerfile, the project and the cell" eval '
	grep -qx Dockerfile "$work/listing" && grep -qx project/pkg/util.py "$work/listing" &&
	grep -qx cell/user_code.py "$work/listing" && grep -qx cell/bootstrap.py "$work/listing" &&
	grep -qx cell/inputs/params.txt "$work/listing"' || show "$work/listing"
check_no_grep "no .git, no ignored files, no cell copy in project/" \
	-E '(^|/)\.git(/|$)|big\.bin|scratch|project/nb/cell\.py' "$work/listing"
check "the Dockerfile is FROM the configured base" eval \
	'tar xOf "$work/ctx.tar" Dockerfile | grep -qx "FROM $BED_BASE"'
check_no_grep "no credentials in the context" -a hunter2 "$work/ctx.tar"

tag="pystrib-t0101:$$"
check "docker build - < ctx.tar succeeds" eval '"$DOCKER" build -q -t "$tag" - < "$work/ctx.tar" >"$work/build.log" 2>&1' ||
	show "$work/build.log"

check_eq "docker run runs the cell as one rank" \
	"cell rank 0 of 1 sum 1 util from-project params lr=0.5 cwd /pystrib/project/nb" \
	"$("$DOCKER" run --rm --network none "$tag" 2>&1)"

got=$("$DOCKER" run --rm --network none "$tag" mpirun --allow-run-as-root --oversubscribe -np 2 \
	python3 /pystrib/cell/bootstrap.py /pystrib/cell/user_code.py 2>&1 | sort)
want=$(printf '%s\n' \
	"cell rank 0 of 2 sum 3 util from-project params lr=0.5 cwd /pystrib/project/nb" \
	"cell rank 1 of 2 sum 3 util from-project params lr=0.5 cwd /pystrib/project/nb")
check_eq "mpirun -np 2 inside the container runs two ranks" "$want" "$got"

check_eq "the image is labelled with the git commit" "$rev" \
	"$("$DOCKER" inspect -f '{{index .Config.Labels "org.opencontainers.image.revision"}}' "$tag")"
check_eq "the source label has no credentials" "https://git.example.com/team/proj.git" \
	"$("$DOCKER" inspect -f '{{index .Config.Labels "org.opencontainers.image.source"}}' "$tag")"
check "the image has no .git and no ignored files" \
	"$DOCKER" run --rm --network none "$tag" sh -c \
	'test ! -e /pystrib/project/.git && test ! -e /pystrib/project/data/big.bin && test ! -e /pystrib/project/scratch'

expect_exit 2 "$PYSTRIB" -c "$BED_CONFIG" build
expect_exit 2 "$PYSTRIB" -c "$BED_CONFIG" build "$work/missing.py" -o "$work/x.tar"
expect_exit 2 "$PYSTRIB" -c "$BED_CONFIG" build nb/cell.py --project . --no-project -o "$work/x.tar"
check "a failed build leaves no output behind" test ! -e "$work/x.tar"

"$DOCKER" rmi -f "$tag" >/dev/null 2>&1
