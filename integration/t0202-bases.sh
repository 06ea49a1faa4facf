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

bed_engines
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
pinned() { pinned_ref "$(cat "$out")"; }

# 1. A base pushed by docker: Docker schema 2.
check "docker pushes a base" eval '"$DOCKER" pull -q "$BED_BASE" > /dev/null &&
	"$DOCKER" tag "$BED_BASE" "$BED_REGISTRY/bases/docker:1" &&
	"$DOCKER" push "$BED_REGISTRY/bases/docker:1" > /dev/null'
check_eq "the docker-pushed base is Docker schema 2" \
	application/vnd.docker.distribution.manifest.v2+json "$(raw_type "$BED_REGISTRY/bases/docker:1")"
expect_exit 0 push --base "$BED_REGISTRY/bases/docker:1"
img=$(pinned)
check_eq "on the docker-pushed base, the image is Docker schema 2 too" \
	application/vnd.docker.distribution.manifest.v2+json "$(raw_type "$img")"
got=$("$DOCKER" run --rm --network none "$img" 2> "$err")
check_eq "docker runs the image on the docker-pushed base" "$want" "$got" || show "$err"

# 2. A base pushed by podman.
check "podman pushes a base" eval 'podman pull -q --tls-verify=false "$BED_BASE" > /dev/null &&
	podman push -q --tls-verify=false "$BED_BASE" "$BED_REGISTRY/bases/podman:1"'
ptype=$(raw_type "$BED_REGISTRY/bases/podman:1")
expect_exit 0 push --base "$BED_REGISTRY/bases/podman:1"
img=$(pinned)
check_eq "on the podman-pushed base, the image has the same manifest type" "$ptype" "$(raw_type "$img")"
got=$(podman run --rm --tls-verify=false --network none "$img" 2> "$err")
check_eq "podman runs the image on the podman-pushed base" "$want" "$got" || show "$err"

# 3. A base copied by skopeo as OCI.
check "skopeo copies a base as OCI" skopeo copy -q --format oci --src-tls-verify=false --dest-tls-verify=false \
	"docker://$BED_REGISTRY/bases/docker:1" "docker://$BED_REGISTRY/bases/oci:1"
check_eq "the skopeo-copied base is OCI" \
	application/vnd.oci.image.manifest.v1+json "$(raw_type "$BED_REGISTRY/bases/oci:1")"
expect_exit 0 push --base "$BED_REGISTRY/bases/oci:1"
img=$(pinned)
check_eq "on the OCI base, the image is OCI" application/vnd.oci.image.manifest.v1+json "$(raw_type "$img")"
got=$("$DOCKER" run --rm --network none "$img" 2> "$err")
check_eq "docker runs the image on the OCI base" "$want" "$got" || show "$err"

# 4. An OCI index with two platforms: the bed's amd64 image and an arm64
#    twin (the same layer, a config saying arm64), written with the
#    registry API itself.
check "the two-platform index is written through the registry API" \
	"$PY" - "$BED_REGISTRY" pystrib/base bookworm bases/multi 1 <<'EOF'
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
check_eq "the two-platform base is an OCI index" application/vnd.oci.image.index.v1+json "$(raw_type "$multi")"
expect_exit 0 push --base "$multi"
img=$(pinned)
check_eq "from the index, linux/amd64 (the default platform) is picked" amd64 "$(config_arch "$img")"
got=$("$DOCKER" run --rm --network none "$img" 2> "$err")
check_eq "docker runs the image on the amd64 entry of the index" "$want" "$got" || show "$err"
expect_exit 0 push --base "$multi" --platform linux/arm64
check_eq "--platform linux/arm64 picks the arm64 entry" arm64 "$(config_arch "$(pinned)")"
PYSTRIB_IMAGE_PLATFORM=linux/arm64/v8 expect_exit 0 push --base "$multi"
check_eq "[image] platform linux/arm64/v8 (environment) picks it too" arm64 "$(config_arch "$(pinned)")"
expect_exit 3 push --base "$multi" --platform linux/s390x
check_grep "no such platform: the error lists linux/amd64 and linux/arm64/v8" \
	"has no image for platform 'linux/s390x'; it has linux/amd64, linux/arm64/v8" "$err"
check_grep "... and says what to set" "\[image\] platform" "$err"

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
tls_pinned() { pinned_ref "$(cat "$out")"; }
expect_exit 0 "$PYSTRIB" -c "$tlscfg" push cell.py --no-project
check_grep "TLS+htpasswd, config credentials: pushed" "^pystrib: tagged $BED_TLS_REGISTRY/cells:cell-" "$err"
check "skopeo reads it back from the TLS registry (base layer copied across registries)" tls_inspect "$(tls_pinned)" ||
	show "$err"
check_no_grep "no password in pystrib's output" -F -- "$(cat "$BED_TLS_PASSWORD_FILE")" "$out" "$err"

# 6. Credentials from ~/.docker/config.json; a base on the TLS registry itself (mounted).
check "skopeo copies the base to the TLS registry" \
	skopeo copy -q --src-tls-verify=false --dest-authfile "$auth" --dest-cert-dir "$BED_DIR/certs" \
	"docker://$BED_BASE" "docker://$BED_TLS_REGISTRY/pystrib/base:bookworm"
grep -v '^username\|^password_file' "$tlscfg" | sed -e "s|^base = .*|base = $BED_TLS_REGISTRY/pystrib/base:bookworm|" \
	-e 's|^repository = .*|repository = cells2|' \
	> "$BED_DIR/tls-nocreds.ini"
printf 'print("on the tls base", rank)\n' > cell.py
expect_exit 3 "$PYSTRIB" -c "$BED_DIR/tls-nocreds.ini" push cell.py --no-project
check "without credentials anywhere the TLS registry refuses (exit 3)" test -s "$err"
mkdir -p "$HOME/.docker" && cp "$auth" "$HOME/.docker/config.json"
mounts=$(grep -c '"POST /v2/cells2/blobs/uploads/?mount=' "$BED_TLS_REGISTRY_LOG")
expect_exit 0 "$PYSTRIB" -c "$BED_DIR/tls-nocreds.ini" -v push cell.py --no-project
check_grep "TLS+htpasswd, credentials from ~/.docker/config.json: pushed" "^pystrib: tagged $BED_TLS_REGISTRY/cells2:cell-" "$err"
check "the base layer on the same registry was mounted, not uploaded" \
	test "$(grep -c '"POST /v2/cells2/blobs/uploads/?mount=[^ ]*&from=pystrib/base HTTP[^"]*" 201' "$BED_TLS_REGISTRY_LOG")" -gt "$mounts"
check "skopeo reads it back" tls_inspect "$(tls_pinned)" || show "$err"
