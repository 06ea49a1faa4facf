#!/usr/bin/env bash
# t0301: pystrib doctor against the real registry (plain and TLS with
# credentials), sshd and the host's python3/mpirun: all good exits 0; each
# failure is named on its own line with a fix and exits with its category's
# code (2 config, 3 registry, 4 SSH/remote); an unknown host key is trusted
# only with --trust-host; a changed host key is never accepted. With no
# config file doctor says where it looked; a config with warnings is no ok.
. "$(dirname "$0")/lib.sh"
bed_up registry tls sshd base

doctor() { "$PYSTRIB" -c "$BED_CONFIG" doctor "$@"; }

# 1. Everything in place (runtime none: the host's python3 and mpirun).
expect_exit 0 doctor --remote none
for what in config registry "base image" ssh "host key" login python mpirun workdir; do
	check_grep "doctor: '$what' is ok" "^ok    $what " "$out"
done
check_grep "doctor: gpus skipped when not requested" "^skip  gpus " "$out"
check_grep "doctor: names the host's Open MPI" "^ok    mpirun .*Open MPI" "$out"

# --json: one check event per line.
"$PYSTRIB" -c "$BED_CONFIG" --json doctor --remote none > "$BED_DIR/json.out"
n=$(grep -c '^{"event":"check"' "$BED_DIR/json.out")
bad=$(grep -vc '^{"event":"check"' "$BED_DIR/json.out")
check "doctor --json: at least 10 check events, nothing else" eval '[ "$n" -ge 10 ] && [ "$bad" -eq 0 ]' ||
	show "$BED_DIR/json.out"

# 2. The TLS registry with credentials from a file, verified by its CA.
tls=$BED_DIR/tls.ini
sed "s|^url = .*|url = https://$BED_TLS_REGISTRY\nusername = $BED_TLS_USER\npassword_file = $BED_TLS_PASSWORD_FILE\nca_file = $BED_CA|" \
	"$BED_CONFIG" > "$tls"
PYSTRIB_IMAGE_BASE=$BED_BASE expect_exit 0 "$PYSTRIB" -c "$tls" doctor --remote none
check_grep "TLS registry: credentials accepted" "^ok    registry .*credentials accepted" "$out"
echo wrong-password > "$BED_DIR/wrong"
PYSTRIB_REGISTRY_PASSWORD_FILE=$BED_DIR/wrong expect_exit 3 "$PYSTRIB" -c "$tls" doctor --remote none
check "wrong registry password: refused, with a fix" eval \
	'grep -q "^FAIL  registry .*refused the credentials" "$out" && grep -q "fix: " "$out"' || show "$out"
check_no_grep "the password is never printed" "wrong-password" "$out" "$err"
PYSTRIB_REGISTRY_CA_FILE=/dev/null expect_exit 3 "$PYSTRIB" -c "$tls" doctor --remote none
check_grep "TLS without the right CA: refused" "^FAIL  registry .*cannot reach" "$out"

# 3. Registry failures: down, base image missing.
PYSTRIB_REGISTRY_URL=http://127.0.0.1:$(free_port) expect_exit 3 doctor --remote none
check_grep "registry down: named" "^FAIL  registry .*cannot reach" "$out"
PYSTRIB_IMAGE_BASE=$BED_REGISTRY/pystrib/nosuch:tag expect_exit 3 doctor --remote none
check_grep "missing base image: named" "^FAIL  base image .*is not in its registry" "$out"

# 4. Remote programs: a missing interpreter, GPUs asked for on a host without any.
PYSTRIB_REMOTE_PYTHON=python3-pystrib-nosuch expect_exit 4 doctor --remote none
check_grep "missing remote python: named" "^FAIL  python .*has no 'python3-pystrib-nosuch'" "$out"
PYSTRIB_REMOTE_GPUS=all expect_exit 4 doctor --remote none
check_grep "gpus without nvidia-smi: named" "^FAIL  gpus .*nvidia-smi" "$out"
# The same check run asks before a --gpus job: a host whose nvidia-smi (a
# stand-in on the job's PATH through [remote] setup) lists one GPU.
mkdir -p "$BED_DIR/fakegpu"
printf '#!/bin/sh\necho "GPU 0: Stand-in (UUID: GPU-0)"\n' > "$BED_DIR/fakegpu/nvidia-smi"
chmod +x "$BED_DIR/fakegpu/nvidia-smi"
gpu_setup="PATH=$BED_DIR/fakegpu:\$PATH"
PYSTRIB_REMOTE_SETUP=$gpu_setup PYSTRIB_REMOTE_GPUS=all expect_exit 0 doctor --remote none
check_grep "gpus: one listed, ok" "^ok    gpus .*1 GPU (all requested)" "$out"
PYSTRIB_REMOTE_SETUP=$gpu_setup PYSTRIB_REMOTE_GPUS=2 expect_exit 4 doctor --remote none
check_grep "gpus: more asked for than there are, named" "^FAIL  gpus .*has 1 GPU; '2' asks for 2" "$out"

# 5. SSH: unreachable port, wrong key.
port=$(free_port)
PYSTRIB_REMOTE_PORT=$port expect_exit 4 doctor --remote none
check_grep "unreachable port: host:port named" "^FAIL  ssh .*cannot reach '$BED_SSH_USER@127.0.0.1:$port'" "$out"
ssh-keygen -q -t ed25519 -N '' -f "$BED_DIR/other_key"
PYSTRIB_REMOTE_IDENTITY=$BED_DIR/other_key expect_exit 4 doctor --remote none
check_grep "wrong key: refused, what was tried is listed" "^FAIL  login .*refused every key.*other_key" "$out"

# 6. Unknown host: refused with the fingerprint until --trust-host records it.
fp=$(ssh-keygen -l -E sha256 -f "$BED_DIR/ssh/host_key.pub" | cut -d' ' -f2)
kh=$BED_DIR/home/new_known_hosts
PYSTRIB_REMOTE_KNOWN_HOSTS=$kh expect_exit 4 doctor --remote none
check "unknown host: refused with its fingerprint and the command that trusts it" eval \
	'grep -q "^FAIL  host key .*not known.*$fp" "$out" &&
	grep -q "fix: .*pystrib doctor --trust-host --remote none" "$out"' || show "$out"
check "unknown host: nothing recorded without --trust-host" test ! -s "$kh"
PYSTRIB_REMOTE_KNOWN_HOSTS=$kh expect_exit 0 doctor --remote none --trust-host
check "--trust-host shows and records the key" eval \
	'grep -q "^ok    host key .*$fp recorded" "$out" && grep -q "\[127.0.0.1\]:$BED_SSH_PORT " "$kh"' ||
	show "$out" "$kh"
PYSTRIB_REMOTE_KNOWN_HOSTS=$kh expect_exit 0 doctor --remote none

# 7. A changed host key: refused loudly, --trust-host does not override it.
cp "$BED_KNOWN_HOSTS" "$BED_DIR/kh.before"
sshd_new_host_key
newfp=$(ssh-keygen -l -E sha256 -f "$BED_DIR/ssh/host_key.pub" | cut -d' ' -f2)
expect_exit 4 doctor --remote none --trust-host
check_grep "changed host key: refused, new fingerprint shown" "^FAIL  host key .*CHANGED.*$newfp" "$out"
check_grep "changed host key: no override offered" "fix: no option overrides this" "$out"
check_grep "changed host key: no login attempted" "^skip  login " "$out"
check_cmp "changed host key: known_hosts untouched" "$BED_DIR/kh.before" "$BED_KNOWN_HOSTS"

# 8. A config error is exit 2.
printf '[job]\nnp = many\n' > "$BED_DIR/bad.ini"
expect_exit 2 "$PYSTRIB" -c "$BED_DIR/bad.ini" doctor
check_grep "config error: its own line" "^FAIL  config " "$out"

# 9. No config file at all: where doctor looked, and what to do; warnings are no ok.
mkdir -p "$BED_DIR/noconf"
cd "$BED_DIR/noconf" || exit 1
expect_exit 2 "$PYSTRIB" doctor
cd - > /dev/null || exit 1
check_grep "no config: the paths looked for, in order" \
	"^FAIL  config      no config file; looked for ./pystrib.ini, then $XDG_CONFIG_HOME/pystrib/config.ini" \
	"$out"
check_grep "no config: points to config init" "fix: run 'pystrib config init'" "$out"
check_no_grep "no config: no '(none)' host" "(none)" "$out"
{ cat "$BED_CONFIG"; printf '[job]\nnpp = 2\n'; } > "$BED_DIR/typo.ini"
# (Its exit code is the host key's, changed in 7.)
"$PYSTRIB" -c "$BED_DIR/typo.ini" doctor --remote none > "$BED_DIR/typo.out" 2>&1
check_grep "a config with warnings: warn, not ok" "^warn  config .*with 1 warning" "$BED_DIR/typo.out"
check_no_grep "a config with warnings: no ok config line" "^ok    config" "$BED_DIR/typo.out"
