#!/usr/bin/env bash
# t0301: pystrib doctor against the real registry (plain and TLS with
# credentials), sshd and the host's python3/mpirun: all good exits 0; each
# failure is named on its own line with a fix and exits with its category's
# code (2 config, 3 registry, 4 SSH/remote); an unknown host key is trusted
# only with --trust-host; a changed host key is never accepted.
. "$(dirname "$0")/lib.sh"
bed_up registry tls sshd base

# Nothing of the real ~/.ssh, no agent.
export HOME=$BED_DIR/home
mkdir -p "$HOME"
unset SSH_AUTH_SOCK

doctor() { "$PYSTRIB" -c "$BED_CONFIG" doctor "$@"; }
out=$BED_DIR/last.out

# 1. Everything in place (runtime none: the host's python3 and mpirun).
expect_exit 0 doctor --remote none
for check in config registry "base image" ssh "host key" login python mpirun workdir; do
	grep -q "^ok    $check " "$out" && ok "doctor: '$check' is ok" || { fail "doctor: '$check'"; cat "$out"; }
done
grep -q "^skip  gpus " "$out" && ok "doctor: gpus skipped when not requested" || fail "gpus line"
grep -q "^ok    mpirun .*Open MPI" "$out" && ok "doctor: names the host's Open MPI" || fail "mpirun version"

# --json: one check event per line.
"$PYSTRIB" -c "$BED_CONFIG" --json doctor --remote none > "$BED_DIR/json.out"
n=$(grep -c '^{"event":"check"' "$BED_DIR/json.out")
bad=$(grep -vc '^{"event":"check"' "$BED_DIR/json.out")
[ "$n" -ge 10 ] && [ "$bad" -eq 0 ] && ok "doctor --json: $n check events" || { fail "json"; cat "$BED_DIR/json.out"; }

# 2. The TLS registry with credentials from a file, verified by its CA.
tls=$BED_DIR/tls.ini
sed "s|^url = .*|url = https://$BED_TLS_REGISTRY\nusername = $BED_TLS_USER\npassword_file = $BED_TLS_PASSWORD_FILE\nca_file = $BED_CA|" \
	"$BED_CONFIG" > "$tls"
PYSTRIB_IMAGE_BASE=$BED_BASE expect_exit 0 "$PYSTRIB" -c "$tls" doctor --remote none
grep -q "^ok    registry .*credentials accepted" "$out" && ok "TLS registry: credentials accepted" || { fail "tls creds"; cat "$out"; }
echo wrong-password > "$BED_DIR/wrong"
PYSTRIB_REGISTRY_PASSWORD_FILE=$BED_DIR/wrong expect_exit 3 "$PYSTRIB" -c "$tls" doctor --remote none
grep -q "^FAIL  registry .*refused the credentials" "$out" && grep -q "fix: " "$out" \
	&& ok "wrong registry password: refused, with a fix" || { fail "wrong password"; cat "$out"; }
grep -q "wrong-password" "$out" "$BED_DIR/last.err" && fail "the password was printed" || ok "the password is never printed"
PYSTRIB_REGISTRY_CA_FILE=/dev/null expect_exit 3 "$PYSTRIB" -c "$tls" doctor --remote none
grep -q "^FAIL  registry .*cannot reach" "$out" && ok "TLS without the right CA: refused" || { fail "tls ca"; cat "$out"; }

# 3. Registry failures: down, base image missing.
PYSTRIB_REGISTRY_URL=http://127.0.0.1:$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])') \
	expect_exit 3 doctor --remote none
grep -q "^FAIL  registry .*cannot reach" "$out" && ok "registry down: named" || { fail "registry down"; cat "$out"; }
PYSTRIB_IMAGE_BASE=$BED_REGISTRY/pystrib/nosuch:tag expect_exit 3 doctor --remote none
grep -q "^FAIL  base image .*is not in its registry" "$out" && ok "missing base image: named" || { fail "missing base"; cat "$out"; }

# 4. Remote programs: a missing interpreter, GPUs asked for on a host without any.
PYSTRIB_REMOTE_PYTHON=python3-pystrib-nosuch expect_exit 4 doctor --remote none
grep -q "^FAIL  python .*has no 'python3-pystrib-nosuch'" "$out" && ok "missing remote python: named" || { fail "python"; cat "$out"; }
PYSTRIB_REMOTE_GPUS=all expect_exit 4 doctor --remote none
grep -q "^FAIL  gpus .*nvidia-smi" "$out" && ok "gpus without nvidia-smi: named" || { fail "gpus"; cat "$out"; }

# 5. SSH: unreachable port, wrong key.
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PYSTRIB_REMOTE_PORT=$port expect_exit 4 doctor --remote none
grep -q "^FAIL  ssh .*cannot reach '$BED_SSH_USER@127.0.0.1:$port'" "$out" && ok "unreachable port: host:port named" || { fail "unreachable"; cat "$out"; }
ssh-keygen -q -t ed25519 -N '' -f "$BED_DIR/other_key"
PYSTRIB_REMOTE_IDENTITY=$BED_DIR/other_key expect_exit 4 doctor --remote none
grep -q "^FAIL  login .*refused every key.*other_key" "$out" && ok "wrong key: refused, what was tried is listed" || { fail "wrong key"; cat "$out"; }

# 6. Unknown host: refused with the fingerprint until --trust-host records it.
fp=$(ssh-keygen -l -E sha256 -f "$BED_DIR/ssh/host_key.pub" | cut -d' ' -f2)
kh=$BED_DIR/home/new_known_hosts
PYSTRIB_REMOTE_KNOWN_HOSTS=$kh expect_exit 4 doctor --remote none
grep -q "^FAIL  host key .*not known.*$fp" "$out" && grep -q "fix: .*pystrib doctor --trust-host --remote none" "$out" \
	&& ok "unknown host: refused with its fingerprint and the command that trusts it" || { fail "unknown host"; cat "$out"; }
[ ! -s "$kh" ] && ok "unknown host: nothing recorded without --trust-host" || fail "known_hosts written"
PYSTRIB_REMOTE_KNOWN_HOSTS=$kh expect_exit 0 doctor --remote none --trust-host
grep -q "^ok    host key .*$fp recorded" "$out" && grep -q "\[127.0.0.1\]:$BED_SSH_PORT " "$kh" \
	&& ok "--trust-host shows and records the key" || { fail "trust-host"; cat "$out" "$kh"; }
PYSTRIB_REMOTE_KNOWN_HOSTS=$kh expect_exit 0 doctor --remote none

# 7. A changed host key: refused loudly, --trust-host does not override it.
cp "$BED_KNOWN_HOSTS" "$BED_DIR/kh.before"
kill "$(cat "$BED_DIR/ssh/sshd.pid")"
for _ in $(seq 50); do [ -f "$BED_DIR/ssh/sshd.pid" ] && kill -0 "$(cat "$BED_DIR/ssh/sshd.pid")" 2>/dev/null || break; sleep 0.1; done
rm -f "$BED_DIR/ssh/host_key" "$BED_DIR/ssh/host_key.pub"
ssh-keygen -q -t ed25519 -N '' -C "new host" -f "$BED_DIR/ssh/host_key"
/usr/sbin/sshd -f "$BED_DIR/ssh/sshd_config" -E "$BED_DIR/ssh/sshd.log"
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$BED_SSH_PORT") 2>/dev/null && break; sleep 0.1; done
newfp=$(ssh-keygen -l -E sha256 -f "$BED_DIR/ssh/host_key.pub" | cut -d' ' -f2)
expect_exit 4 doctor --remote none --trust-host
grep -q "^FAIL  host key .*CHANGED.*$newfp" "$out" && ok "changed host key: refused, new fingerprint shown" || { fail "changed"; cat "$out"; }
grep -q "fix: no option overrides this" "$out" && ok "changed host key: no override offered" || fail "changed fix"
grep -q "^skip  login " "$out" && ok "changed host key: no login attempted" || fail "login after changed key"
cmp -s "$BED_KNOWN_HOSTS" "$BED_DIR/kh.before" && ok "changed host key: known_hosts untouched" || fail "known_hosts modified"

# 8. A config error is exit 2.
printf '[job]\nnp = many\n' > "$BED_DIR/bad.ini"
expect_exit 2 "$PYSTRIB" -c "$BED_DIR/bad.ini" doctor
grep -q "^FAIL  config " "$out" && ok "config error: its own line" || { fail "config error"; cat "$out"; }
