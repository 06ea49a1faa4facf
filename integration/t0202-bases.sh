#!/usr/bin/env bash
# t0202: what `pystrib push` accepts as [image] base, each pushed by the real
# tool: a base pushed by docker (Docker schema 2), by podman, by `skopeo copy
# --format oci` (OCI manifest), and an OCI index with two platforms (written
# by hand and PUT through the registry API) from which [image] platform
# picks, with an error listing the platforms when none matches. The cell
# images made on them run. Then the htpasswd+TLS registry: credentials from
# the config (password_file, ca_file), and from ~/.docker/config.json; a
# base on the plain registry is copied across, a base on the TLS registry
# is mounted.
. "$(dirname "$0")/lib.sh"
bed_up registry tls docker podman base

DOCKER=/usr/bin/docker
export DOCKER_HOST="$BED_DOCKER_HOST"
export CONTAINERS_CONF="$BED_CONTAINERS_CONF" CONTAINERS_STORAGE_CONF="$BED_CONTAINERS_STORAGE_CONF"
export HOME=$BED_DIR/home XDG_CACHE_HOME=$BED_DIR/home/.cache
mkdir -p "$HOME"
PY=/usr/bin/python3
out=$BED_DIR/last.out err=$BED_DIR/last.err
check() {
	local what="$1"
	shift
	if "$@"; then ok "$what"; else fail "$what"; fi
}
raw_type() {	# the mediaType of a manifest in the plain registry
	skopeo inspect --raw --tls-verify=false "docker://$1" 2>/dev/null |
		$PY -c 'import json,sys; d=json.load(sys.stdin); print(d.get("mediaType") or ("index" if "manifests" in d else "oci-no-type"))'
}
config_arch() {	# the architecture in an image's config
	skopeo inspect --config --tls-verify=false "docker://$1" 2>/dev/null |
		$PY -c 'import json,sys; print(json.load(sys.stdin)["architecture"])'
}

work=$BED_DIR/t0202
mkdir -p "$work"
cd "$work" || exit 1
printf 'import platform\nprint("on the base", rank, platform.machine())\n' > cell.py
want="on the base 0 x86_64"
push() { "$PYSTRIB" -c "$BED_CONFIG" push cell.py --no-project "$@"; }
pinned() { local r; r=$(cat "$out"); echo "${r%%:cell-*}@${r##*@}"; }

# 1. A base pushed by docker: Docker schema 2.
"$DOCKER" pull -q "$BED_BASE" > /dev/null 2> "$err" &&
	"$DOCKER" tag "$BED_BASE" "$BED_REGISTRY/bases/docker:1" &&
	"$DOCKER" push "$BED_REGISTRY/bases/docker:1" > /dev/null 2>> "$err" ||
	{ fail "docker pushes a base"; cat "$err"; }
check "the docker-pushed base is Docker schema 2" \
	test "$(raw_type "$BED_REGISTRY/bases/docker:1")" = application/vnd.docker.distribution.manifest.v2+json
expect_exit 0 push --base "$BED_REGISTRY/bases/docker:1"
img=$(pinned)
check "on the docker-pushed base, the image is Docker schema 2 too" \
	test "$(raw_type "$img")" = application/vnd.docker.distribution.manifest.v2+json
got=$("$DOCKER" run --rm --network none "$img" 2> "$err")
check "docker runs the image on the docker-pushed base" test "$got" = "$want"

# 2. A base pushed by podman.
podman pull -q --tls-verify=false "$BED_BASE" > /dev/null 2> "$err" &&
	podman push -q --tls-verify=false "$BED_BASE" "$BED_REGISTRY/bases/podman:1" 2>> "$err" ||
	{ fail "podman pushes a base"; cat "$err"; }
ptype=$(raw_type "$BED_REGISTRY/bases/podman:1")
expect_exit 0 push --base "$BED_REGISTRY/bases/podman:1"
img=$(pinned)
check "on the podman-pushed base ($ptype), the image has the same manifest type" \
	test "$(raw_type "$img")" = "$ptype"
got=$(podman run --rm --tls-verify=false --network none "$img" 2> "$err")
check "podman runs the image on the podman-pushed base" test "$got" = "$want"

# 3. A base copied by skopeo as OCI.
skopeo copy -q --format oci --src-tls-verify=false --dest-tls-verify=false \
	"docker://$BED_REGISTRY/bases/docker:1" "docker://$BED_REGISTRY/bases/oci:1" 2> "$err" ||
	{ fail "skopeo copies a base as OCI"; cat "$err"; }
check "the skopeo-copied base is OCI" \
	test "$(raw_type "$BED_REGISTRY/bases/oci:1")" = application/vnd.oci.image.manifest.v1+json
expect_exit 0 push --base "$BED_REGISTRY/bases/oci:1"
img=$(pinned)
check "on the OCI base, the image is OCI" test "$(raw_type "$img")" = application/vnd.oci.image.manifest.v1+json
got=$("$DOCKER" run --rm --network none "$img" 2> "$err")
check "docker runs the image on the OCI base" test "$got" = "$want"

# 4. An OCI index with two platforms: the bed's amd64 image and an arm64
#    twin (the same layer, a config saying arm64), written with the
#    registry API itself.
$PY - "$BED_REGISTRY" pystrib/base bookworm bases/multi 1 <<'EOF' 2> "$err" || { fail "writing the index"; cat "$err"; }
import hashlib, json, sys, urllib.request
reg, src, srctag, repo, tag = sys.argv[1:]
base = "http://" + reg + "/v2/"
OCI_M, OCI_I = "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json"
def req(method, path, data=None, ctype=None, accept=None):
    r = urllib.request.Request(path if path.startswith("http") else base + path, data=data, method=method)
    if ctype: r.add_header("Content-Type", ctype)
    if accept: r.add_header("Accept", accept)
    return urllib.request.urlopen(r)
def mount(d):
    req("POST", "%s/blobs/uploads/?mount=%s&from=%s" % (repo, d, src), b"")
def blob(data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    loc = req("POST", repo + "/blobs/uploads/", b"").headers["Location"]
    loc = ("http://" + reg + loc) if loc.startswith("/") else loc
    req("PUT", loc + ("&" if "?" in loc else "?") + "digest=" + d, data, "application/octet-stream")
    return d
def put_manifest(ref, data, ctype):
    req("PUT", "%s/manifests/%s" % (repo, ref), data, ctype)
amd = req("GET", "%s/manifests/%s" % (src, srctag), accept=OCI_M).read()
m = json.loads(amd)
for l in m["layers"]: mount(l["digest"])
mount(m["config"]["digest"])
cfg = json.loads(req("GET", "%s/blobs/%s" % (src, m["config"]["digest"])).read())
cfg["architecture"] = "arm64"; cfg["variant"] = "v8"
cfgb = json.dumps(cfg).encode()
arm = dict(m); arm["config"] = dict(m["config"], digest=blob(cfgb), size=len(cfgb))
armb = json.dumps(arm).encode()
descs = []
for body, arch, var in ((amd, "amd64", None), (armb, "arm64", "v8")):
    d = "sha256:" + hashlib.sha256(body).hexdigest()
    put_manifest(d, body, OCI_M)
    p = {"os": "linux", "architecture": arch}
    if var: p["variant"] = var
    descs.append({"mediaType": OCI_M, "digest": d, "size": len(body), "platform": p})
put_manifest(tag, json.dumps({"schemaVersion": 2, "mediaType": OCI_I, "manifests": descs}).encode(), OCI_I)
EOF
multi="$BED_REGISTRY/bases/multi:1"
check "the two-platform base is an OCI index" test "$(raw_type "$multi")" = application/vnd.oci.image.index.v1+json
expect_exit 0 push --base "$multi"
img=$(pinned)
check "from the index, linux/amd64 (the default platform) is picked" test "$(config_arch "$img")" = amd64
got=$("$DOCKER" run --rm --network none "$img" 2> "$err")
check "docker runs the image on the amd64 entry of the index" test "$got" = "$want"
expect_exit 0 push --base "$multi" --platform linux/arm64
check "--platform linux/arm64 picks the arm64 entry" test "$(config_arch "$(pinned)")" = arm64
PYSTRIB_IMAGE_PLATFORM=linux/arm64/v8 expect_exit 0 push --base "$multi"
check "[image] platform linux/arm64/v8 (environment) picks it too" test "$(config_arch "$(pinned)")" = arm64
expect_exit 3 push --base "$multi" --platform linux/s390x
check "no such platform: the error lists linux/amd64 and linux/arm64/v8" \
	grep -q "has no image for platform 'linux/s390x'; it has linux/amd64, linux/arm64/v8" "$err"
check "... and says what to set" grep -q "\[image\] platform" "$err"

# 5. The htpasswd+TLS registry, credentials from the config.
tlscfg=$BED_DIR/tls.ini
cat > "$tlscfg" <<EOF
[registry]
url = https://$BED_TLS_REGISTRY
repository = cells
username = $BED_TLS_USER
password_file = $BED_TLS_PASSWORD_FILE
ca_file = $BED_CA
[image]
base = $BED_BASE
EOF
mkdir -p "$BED_DIR/certs" && cp "$BED_CA" "$BED_DIR/certs/ca.crt"
auth=$BED_DIR/auth.json
printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$BED_TLS_REGISTRY" \
	"$(printf '%s:%s' "$BED_TLS_USER" "$(cat "$BED_TLS_PASSWORD_FILE")" | base64 -w0)" > "$auth"
tls_inspect() { skopeo inspect --authfile "$auth" --cert-dir "$BED_DIR/certs" "docker://$1" > "$work/tls.json" 2> "$err"; }
tls_pinned() { local r; r=$(cat "$out"); echo "${r%%:cell-*}@${r##*@}"; }
expect_exit 0 "$PYSTRIB" -c "$tlscfg" push cell.py --no-project
check "TLS+htpasswd, config credentials: pushed ($(cat "$out"))" grep -q "^$BED_TLS_REGISTRY/cells:cell-" "$out"
check "skopeo reads it back from the TLS registry (base layer copied across registries)" tls_inspect "$(tls_pinned)"
check "no password in pystrib's output" bash -c "! grep -qF '$(cat "$BED_TLS_PASSWORD_FILE")' '$out' '$err'"

# 6. Credentials from ~/.docker/config.json; a base on the TLS registry itself (mounted).
skopeo copy -q --src-tls-verify=false --dest-authfile "$auth" --dest-cert-dir "$BED_DIR/certs" \
	"docker://$BED_BASE" "docker://$BED_TLS_REGISTRY/pystrib/base:bookworm" 2> "$err" ||
	{ fail "skopeo copies the base to the TLS registry"; cat "$err"; }
grep -v '^username\|^password_file' "$tlscfg" | sed -e "s|^base = .*|base = $BED_TLS_REGISTRY/pystrib/base:bookworm|" \
	-e 's|^repository = .*|repository = cells2|' \
	> "$BED_DIR/tls-nocreds.ini"
printf 'print("on the tls base", rank)\n' > cell.py
expect_exit 3 "$PYSTRIB" -c "$BED_DIR/tls-nocreds.ini" push cell.py --no-project
check "without credentials anywhere the TLS registry refuses (exit 3)" test -s "$err"
mkdir -p "$HOME/.docker" && cp "$auth" "$HOME/.docker/config.json"
mounts=$(grep -c '"POST /v2/cells2/blobs/uploads/?mount=' "$BED_TLS_REGISTRY_LOG")
expect_exit 0 "$PYSTRIB" -c "$BED_DIR/tls-nocreds.ini" -v push cell.py --no-project
check "TLS+htpasswd, credentials from ~/.docker/config.json: pushed" grep -q "^$BED_TLS_REGISTRY/cells2:cell-" "$out"
check "the base layer on the same registry was mounted, not uploaded" \
	test "$(grep -c '"POST /v2/cells2/blobs/uploads/?mount=[^ ]*&from=pystrib/base HTTP[^"]*" 201' "$BED_TLS_REGISTRY_LOG")" -gt "$mounts"
check "skopeo reads it back" tls_inspect "$(tls_pinned)"
