#!/usr/bin/env bash
# bench/push.sh PYSTRIB_BINARY: pystrib's push side by side with skopeo, on
# the bed's loopback registry (not a test: nothing here passes or fails).
#
#   1. A layer of SIZE_MB (default 1024) random bytes, pushed ROUNDS (default
#      3) times by `pystrib push` and, alternating, the very same blob by
#      `skopeo copy` (from an OCI layout holding pystrib's layer file), each
#      round into a fresh repository (and the previous round's blob deleted,
#      so neither tool can mount instead of sending). Throughput (MiB/s of
#      the compressed blob over the whole command's wall time), best and
#      median per tool, their ratio, and both peak RSS (/usr/bin/time -v).
#   2. Re-push of an unchanged cell and push after a one-line edit: wall time
#      and the number of HTTP requests the registry logged for each.
#
# Rows for bench/run go to stdout as "ROW<TAB>bench<TAB>measure<TAB>value<TAB>unit";
# everything else goes to stderr.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: bench/push.sh PYSTRIB_BINARY" >&2; exit 2; }
PYSTRIB=$(realpath "$1")
SIZE_MB=${SIZE_MB:-1024}
ROUNDS=${ROUNDS:-3}
PY=/usr/bin/python3
TIME=/usr/bin/time

row() { printf 'ROW\t%s\t%s\t%s\t%s\n' "$@"; }
say() { echo "bench/push: $*" >&2; }
now() { date +%s.%N; }

# shellcheck source=bench/lib.sh
. "$here/lib.sh"
bench_bed registry base
LOG=$BED_REGISTRY_LOG
requests() { grep -cE '"(GET|HEAD|POST|PUT|PATCH|DELETE) /v2/' "$LOG"; }

# ---- 1. throughput ------------------------------------------------------------
proj=$BED/proj
mkdir -p "$proj"
say "writing $SIZE_MB MiB of random bytes"
head -c $((SIZE_MB << 20)) /dev/urandom > "$proj/random.bin"
printf 'print("bench", rank)\n' > "$proj/cell.py"
sleep 3	# files younger than 2 s are never trusted to the layer cache's index
say "building the layers (gzip of $SIZE_MB MiB, not timed)"
t0=$(now)
# The first push builds and caches the layers; it is not counted.
PYSTRIB_REGISTRY_REPOSITORY=bench/warm "$PYSTRIB" -c "$BED_CONFIG" push "$proj/cell.py" \
	--project "$proj" > "$BED/warm.out" 2> "$BED/warm.err" || { cat "$BED/warm.err" >&2; exit 1; }
row push "context build + first push, ${SIZE_MB} MiB project" "$($PY -c "print('%.1f' % ($(now) - $t0))")" s
layer=$(ls -S "$XDG_CACHE_HOME"/pystrib/layers/sha256-*.tar.gz | head -n 1)
hex=$(basename "$layer" .tar.gz)
hex=${hex#sha256-}
bytes=$(stat -c %s "$layer")
say "the project layer: sha256:$hex, $bytes bytes"

# An OCI layout with the same blob, for skopeo.
oci=$BED/oci
mkdir -p "$oci/blobs/sha256"
ln "$layer" "$oci/blobs/sha256/$hex" 2>/dev/null || cp "$layer" "$oci/blobs/sha256/$hex"
diff_id=$(gzip -dc "$layer" | sha256sum | cut -d' ' -f1)
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$diff_id" \
	> "$BED/config.json"
chex=$(sha256sum < "$BED/config.json" | cut -d' ' -f1)
mv "$BED/config.json" "$oci/blobs/sha256/$chex"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
	"$chex" "$(stat -c %s "$oci/blobs/sha256/$chex")" "$hex" "$bytes" > "$BED/manifest.json"
mhex=$(sha256sum < "$BED/manifest.json" | cut -d' ' -f1)
mv "$BED/manifest.json" "$oci/blobs/sha256/$mhex"
printf '{"imageLayoutVersion":"1.0.0"}' > "$oci/oci-layout"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"bench"}}]}' \
	"$mhex" "$(stat -c %s "$oci/blobs/sha256/$mhex")" > "$oci/index.json"

rss_of() { sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$1"; }
# Neither tool may mount the blob from where it was pushed before (skopeo
# remembers where it saw blobs): every earlier copy is deleted first.
pushed_to=(bench/warm)
forget() {
	for r in "${pushed_to[@]}"; do
		curl -s -o /dev/null -X DELETE "http://$BED_REGISTRY/v2/$r/blobs/sha256:$hex"
	done
}
: > "$BED/pystrib.tsv"
: > "$BED/skopeo.tsv"
for round in $(seq "$ROUNDS"); do
	forget
	repo=bench/p$round
	t0=$(now)
	PYSTRIB_REGISTRY_REPOSITORY=$repo $TIME -v -o "$BED/time.p" "$PYSTRIB" -c "$BED_CONFIG" push \
		"$proj/cell.py" --project "$proj" > /dev/null 2> "$BED/p.err" || { cat "$BED/p.err" >&2; exit 1; }
	t=$($PY -c "print($(now) - $t0)")
	printf '%s\t%s\n' "$t" "$(rss_of "$BED/time.p")" >> "$BED/pystrib.tsv"
	pushed_to+=("$repo")

	forget
	repo=bench/s$round
	t0=$(now)
	$TIME -v -o "$BED/time.s" skopeo copy -q --dest-tls-verify=false "oci:$oci:bench" \
		"docker://$BED_REGISTRY/$repo:bench" 2> "$BED/s.err" || { cat "$BED/s.err" >&2; exit 1; }
	t=$($PY -c "print($(now) - $t0)")
	printf '%s\t%s\n' "$t" "$(rss_of "$BED/time.s")" >> "$BED/skopeo.tsv"
	pushed_to+=("$repo")
	say "round $round: pystrib $(tail -n1 "$BED/pystrib.tsv" | cut -f1) s, skopeo $(tail -n1 "$BED/skopeo.tsv" | cut -f1) s"
done
$PY - "$BED/pystrib.tsv" "$BED/skopeo.tsv" "$bytes" "$SIZE_MB" <<'EOF'
import statistics, sys
def load(p):
    rows = [l.split("\t") for l in open(p).read().split("\n") if l]
    return [float(r[0]) for r in rows], [int(r[1]) for r in rows]
pt, pr = load(sys.argv[1]); st, sr = load(sys.argv[2])
mib = int(sys.argv[3]) / 2**20
name = "push-%sMiB" % sys.argv[4]
def row(m, v, u): print("ROW\t%s\t%s\t%s\t%s" % (name, m, v, u))
for tool, t, r in (("pystrib", pt, pr), ("skopeo", st, sr)):
    row(tool + " throughput, best", "%.1f" % (mib / min(t)), "MiB/s")
    row(tool + " throughput, median", "%.1f" % (mib / statistics.median(t)), "MiB/s")
    row(tool + " peak RSS, max", "%.1f" % (max(r) / 1024), "MiB")
row("throughput ratio pystrib/skopeo (median)", "%.2f" % (statistics.median(st) / statistics.median(pt)), "x")
row("peak RSS ratio pystrib/skopeo", "%.2f" % (max(pr) / max(sr)), "x")
EOF

# ---- 2. unchanged re-push and one-line edit -------------------------------------
work=$BED/cell
mkdir -p "$work"
cd "$work" || exit 1
printf 'import os\nprint("cell", rank)\n' > cell.py
printf 'VALUE = 1\n' > util.py
git init -q . && git -c user.name=b -c user.email=b@example.com add -A &&
	git -c user.name=b -c user.email=b@example.com commit -qm bench
"$PYSTRIB" -c "$BED_CONFIG" push cell.py > /dev/null 2>&1	# first push, not counted
measure() {	# measure LABEL EDIT: 3 pushes (each after EDIT), median wall time, requests
	local r0 t0 i walls=() parts=() reqs=()
	for i in 1 2 3; do
		eval "$2"
		r0=$(requests)
		t0=$(now)
		"$PYSTRIB" -c "$BED_CONFIG" -v push cell.py > /dev/null 2> "$BED/m.err" || { cat "$BED/m.err" >&2; exit 1; }
		walls+=("$($PY -c "print($(now) - $t0)")")
		parts+=("$(sed -n 's/.* requests, \([0-9.]*\) s$/\1/p' "$BED/m.err")")
		reqs+=("$(( $(requests) - r0 ))")
	done
	med() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
	row push-cell "$1: wall time (median of 3)" "$($PY -c "print('%.3f' % $(med "${walls[@]}"))")" s
	row push-cell "$1: of which registry part" "$(med "${parts[@]}")" s
	row push-cell "$1: requests (registry log)" "$(med "${reqs[@]}")" ""
	row push-cell "$1: bytes uploaded" "$(sed -n 's/.*blobs uploaded (\([0-9]*\) bytes).*/\1/p' "$BED/m.err")" B
}
measure "unchanged re-push" ":"
measure "one-line edit" "echo 'print(\"one more line\")' >> cell.py"
