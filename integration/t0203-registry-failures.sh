#!/usr/bin/env bash
# t0203: `pystrib push` when the registry fails, against the bed's real
# registry, with integration/faultproxy.py in front of it where a fault has to
# be injected: unreachable registry, wrong credentials (TLS + htpasswd), unknown
# base image and a blob upload dropped every time are exit 3 with one line and
# a hint, and tag nothing (checked in the registry's own tags/list); an upload
# dropped mid-blob once is restarted, a 503 between chunks is resumed from the
# Range the registry reports, and 5xx answers are retried, all ending in a
# good, tagged image; a malformed --tag is exit 2.
. "$(dirname "$0")/lib.sh"
bed_up registry tls base


# Fault proxies started here are stopped on exit, before the bed.
PROXIES=()
stop_proxies() {
	local p
	for p in "${PROXIES[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	PROXIES=()
}
cleanup stop_proxies

# proxy NAME RULE-ARGS...: a fault proxy in front of the bed's registry; sets PROXY, PROXY_LOG.
proxy() {
	local d=$BED_DIR/proxy-$1
	shift
	mkdir -p "$d"
	"$PY" "$INTEGRATION_DIR/faultproxy.py" --target "$BED_REGISTRY" --port-file "$d/port" \
		--log "$d/log" "$@" &
	PROXIES+=($!)
	for _ in $(seq 100); do [ -s "$d/port" ] && break; sleep 0.05; done
	PROXY=127.0.0.1:$(cat "$d/port")
	PROXY_LOG=$d/log
	touch "$PROXY_LOG"
}

# tags URL REPO [CURL-ARGS...]: the repository's tags, sorted, one a line (from the registry itself).
tags() {
	local url=$1 repo=$2
	shift 2
	curl -s "$@" "$url/v2/$repo/tags/list" |
		"$PY" -c 'import json,sys; print("\n".join(sorted(json.load(sys.stdin).get("tags") or [])))'
}
plain_tags() { tags "http://$BED_REGISTRY" cells; }
has_tag() { local t; t=$(plain_tags); grep -qx -- "$1" <<< "$t"; }

# one_error: stderr is one "pystrib: ..." line and one "hint: ..." line.
one_error() {
	[ "$(grep -c '^pystrib: ' "$err")" -eq 1 ] && grep -q '^hint: ' "$err" &&
		[ "$(grep -vc '^pystrib: \|^hint: ' "$err")" -eq 0 ]
}

work=$BED_DIR/t0203
mkdir -p "$work"
cd "$work" || exit 1
printf 'print("rank %%d" %% rank)\n' > cell.py
# A 3 MiB input of random bytes: the cell layer is big enough to be cut mid-body.
head -c 3145728 /dev/urandom > big.bin

push() { "$PYSTRIB" -c "$BED_CONFIG" push cell.py --no-project --input big.bin "$@"; }
# Through the proxy: the registry URL and the base both name it, so base
# layers are mounted rather than copied.
viaproxy() {
	PYSTRIB_REGISTRY_URL=http://$PROXY PYSTRIB_IMAGE_BASE=$PROXY/pystrib/base:bookworm push "$@"
}

# 0. A good push first, so that the repository exists and has a tag.
expect_exit 0 push -t good
check "the good push is tagged" has_tag good || show "$err"
before=$(plain_tags)

# 1. A malformed tag is a usage error, and nothing is sent.
expect_exit 2 push --tag 'Bad Tag!'
check_grep "malformed --tag: exit 2 names the tag" "invalid tag 'Bad Tag!'" "$err"

# 2. Nothing listens at the registry's address.
port=$(free_port)
t0=$(date +%s.%N)
PYSTRIB_REGISTRY_URL=http://127.0.0.1:$port PYSTRIB_IMAGE_BASE=127.0.0.1:$port/pystrib/base:bookworm \
	expect_exit 3 push -t fail-unreachable
check_grep "unreachable: 'cannot reach registry' naming host:port" "cannot reach registry '127.0.0.1:$port'" "$err"
check "unreachable: one line and a hint" one_error || show "$err"
check "unreachable: retried with backoff before giving up (>= 2 s)" \
	"$PY" -c "import sys,time; sys.exit(0 if time.time() - $t0 >= 2.0 else 1)" || show "$err"

# 3. Wrong credentials for the TLS registry (htpasswd): refused, the password never shown.
tls=$BED_DIR/tls.ini
echo 'Wr0ng-Passw0rd-t0203' > "$BED_DIR/wrong"
sed "s|^url = .*|url = https://$BED_TLS_REGISTRY\nusername = $BED_TLS_USER\npassword_file = $BED_DIR/wrong\nca_file = $BED_CA|" \
	"$BED_CONFIG" > "$tls"
expect_exit 3 "$PYSTRIB" -c "$tls" push cell.py --no-project -t fail-creds
check_grep "wrong credentials: 'refused the credentials'" "refused the credentials" "$err"
check "wrong credentials: one line and a hint" one_error || show "$err"
check_no_grep "wrong credentials: the password is never printed" 'Wr0ng-Passw0rd' "$out" "$err"
tls_tags=$(tags "https://$BED_TLS_REGISTRY" cells --cacert "$BED_CA" -u "$BED_TLS_USER:$(cat "$BED_TLS_PASSWORD_FILE")")
check_eq "wrong credentials: nothing tagged in the TLS registry" "" "$tls_tags"

# 4. A base image the registry does not have.
PYSTRIB_IMAGE_BASE=$BED_REGISTRY/pystrib/nosuch:tag expect_exit 3 push -t fail-base
check_grep "unknown base: named" "pystrib/nosuch:tag" "$err"
check "unknown base: one line and a hint" one_error || show "$err"

# Each case below changes the cell, so that its layer is new to the registry.
variant() { echo "print(\"variant $1\")" >> cell.py; }

# 5. Every blob upload cut after 1000 bytes: gives up after 4 attempts.
variant 5
proxy always --drop 'PUT|PATCH /v2/cells/blobs/uploads/ 1 1000 0'
expect_exit 3 viaproxy -t fail-drop
check_grep "upload always dropped: exit 3 'after 4 attempts'" "after 4 attempts" "$err"
check "upload always dropped: one line and a hint" one_error || show "$err"
check_eq "upload always dropped: 4 attempts seen by the proxy" 4 "$(grep -c 'dropped after' "$PROXY_LOG")" ||
	show "$PROXY_LOG"
stop_proxies

# 6. The tag PUT always answered 503: retried 4 times, then exit 3.
variant 6
proxy tag503 --status 'PUT /v2/cells/manifests/fail-5xx 1 503 0'
expect_exit 3 viaproxy -t fail-5xx
check_grep "tag always 503: exit 3 saying HTTP 503" "HTTP 503" "$err"
check_eq "tag always 503: 4 attempts seen by the proxy" 4 "$(grep -c 'manifests/fail-5xx .*status 503' "$PROXY_LOG")" ||
	show "$PROXY_LOG"
stop_proxies

check_eq "no failure above tagged anything (registry's tags/list unchanged)" "$before" "$(plain_tags)"

# 7. The cell layer's upload cut once after 1 MiB: started over, pushed, tagged.
proxy once --drop 'PUT|PATCH /v2/cells/blobs/uploads/ 1 1048576'
variant 7
expect_exit 0 viaproxy -t ok-drop
check_grep "dropped once mid-blob: the proxy cut it" "dropped after 1048576" "$PROXY_LOG"
check_grep "dropped once mid-blob: then the upload went through" \
	-E 'PUT /v2/cells/blobs/uploads/.*digest=.* -> forwarded' "$PROXY_LOG"
check "dropped once mid-blob: tagged" has_tag ok-drop || show "$err"
stop_proxies

# 8. Chunked upload, a 503 on the second chunk: resumed from the registry's Range.
proxy chunk503 --status 'PATCH /v2/cells/blobs/uploads/ 2 503'
variant 8
PYSTRIB_REGISTRY_CHUNK=1048576 expect_exit 0 viaproxy -t ok-resume
check_grep "503 between chunks: the second chunk was refused once" \
	'content-range=1048576-2097151 -> status 503' "$PROXY_LOG"
check "503 between chunks: the same range sent again after asking the registry" eval \
	'sed -n "/-> status 503/,\$p" "$PROXY_LOG" | grep -q "GET /v2/cells/blobs/uploads/" &&
		sed -n "/-> status 503/,\$p" "$PROXY_LOG" | grep -q "content-range=1048576-2097151 -> forwarded"' ||
	show "$PROXY_LOG"
check "503 between chunks: one upload session, not a restart" \
	test "$(grep -c 'POST /v2/cells/blobs/uploads/ ' "$PROXY_LOG")" -le 2
check "503 between chunks: tagged" has_tag ok-resume || show "$err"
stop_proxies

# 9. 5xx answers retried: a HEAD and the tag's PUT twice.
variant 9
proxy retry --status 'HEAD /v2/cells/blobs/ 1 502' --status 'PUT /v2/cells/manifests/ok-5xx 1 503 2'
expect_exit 0 viaproxy -t ok-5xx
check_eq "5xx retried: the proxy answered 502 and 503 twice" 3 "$(grep -c -- '-> status 50' "$PROXY_LOG")"
check "5xx retried: tagged" has_tag ok-5xx || show "$err"
ref=$(cat "$out")
digest=${ref##*@}
got=$(curl -sI -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
	-H 'Accept: application/vnd.oci.image.manifest.v1+json' \
	"http://$BED_REGISTRY/v2/cells/manifests/ok-5xx" | tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p')
check_eq "5xx retried: the tag names the digest push printed" "$digest" "$got"
stop_proxies
