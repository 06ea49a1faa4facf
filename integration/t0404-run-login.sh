#!/usr/bin/env bash
# t0404: pystrib run against a registry that wants a password (htpasswd,
# basic auth). The remote docker and podman are logged in with the password
# on standard input: the job runs, and the password is nowhere afterwards:
# not in the job's directory (run.sh, job.json, logs, no .auth left), not in
# the local job record or results, not in the sshd log. Without the login
# the remote cannot pull the image at all.
. "$(dirname "$0")/lib.sh"
bed_up registry sshd base docker podman

export HOME=$BED_DIR/home
mkdir -p "$HOME"
unset SSH_AUTH_SOCK
export PYSTRIB_REMOTE_MPIRUN_ARGS=--oversubscribe

# A second registry over the bed's storage (so the base is there), with
# basic auth; a fresh random password in a file of mode 600.
auth=$BED_DIR/authreg
mkdir -p "$auth"
(umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$auth/password")
password=$(cat "$auth/password")
htpasswd -B -i -c "$auth/htpasswd" cellbot < "$auth/password" 2>/dev/null
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$auth/config.yml" <<EOF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $BED_DIR/registry/data
http:
  addr: 127.0.0.1:$port
auth:
  htpasswd:
    realm: pystrib-t0404
    path: $auth/htpasswd
EOF
docker-registry serve "$auth/config.yml" > "$auth/registry.log" 2>&1 &
echo $! > "$auth/pid"
stop_authreg() { kill "$(cat "$auth/pid")" 2>/dev/null; }
trap 'stop_authreg; lib_exit' EXIT
for _ in $(seq 100); do
	[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/")" = 401 ] && break
	sleep 0.1
done
reg=127.0.0.1:$port
config=$BED_DIR/auth.ini
sed -e "s|^url = .*|url = http://$reg|" -e "s|^base = .*|base = $reg/pystrib/base:bookworm|" \
	"$BED_CONFIG" > "$config"
sed -i "/^\[registry\]/a username = cellbot\npassword_file = $auth/password" "$config"

work=$BED_DIR/work
mkdir -p "$work"
cd "$work" || exit 1
cat > cell.py <<'EOF'
from mpi4py import MPI
c = MPI.COMM_WORLD
print("rank", c.rank, "sum", c.allreduce(c.rank + 1))
EOF
out=$BED_DIR/last.out err=$BED_DIR/last.err
jobs_dir=$BED_DIR/remote/jobs
# docker: pulled through the engine's socket with the credentials in the
# API request (the job gets no password); docker-login: without the socket,
# the job script logs docker in; podman: the job script logs podman in.
for engine in docker docker-login podman; do
	remote=() socket=()
	[ "$engine" = podman ] && remote=(--remote podman)
	[ "$engine" = docker-login ] && socket=(env PYSTRIB_REMOTE_DOCKER_SOCKET=)
	printf '# %s\n' "$engine" >> cell.py	# an image of its own, not on the host yet
	expect_exit 0 "${socket[@]}" "$PYSTRIB" -c "$config" -v run --no-project "${remote[@]}" cell.py -n 2 \
		--results "$work/res-$engine"
	grep -qx "\[1\] rank 1 sum 3" "$out" && ok "$engine: logged in, pulled and ran" || { fail "$engine: run"; cat "$out" "$err"; }
	if [ "$engine" = docker ]; then
		grep -q "image pulled through the engine's socket" "$err" && ! grep -q "pulling the image" "$err" \
			&& ok "docker: pulled through the engine's socket, before the job started" \
			|| { fail "docker: no pull through the socket"; grep -E "pull|socket" "$err"; }
	else
		grep -q "^pystrib: pulling the image" "$err" && ok "$engine: the job pulled the image itself" \
			|| { fail "$engine: the job did not pull"; grep -E "pull|socket" "$err"; }
	fi
	grep -qF -- "$password" "$out" "$err" && fail "$engine: the password is in pystrib's output (-v)" \
		|| ok "$engine: not in pystrib's output either (-v)"
	id=$(sed -n 's/^pystrib: job \([0-9a-f-]*\):.*/\1/p' "$err")
	[ -n "$id" ] && [ ! -e "$jobs_dir/$id/.auth" ] && ok "$engine: no login file left in the job directory" \
		|| fail "$engine: .auth left"
	ref=$(sed -n 's/^  image:   //p' "$err")
	case $ref in "$reg"/*@sha256:*) ok "$engine: the image is in the registry with a password" ;;
	*) fail "$engine: image '$ref'" ;; esac
done
found=$(grep -rlF -- "$password" "$jobs_dir" "$work" "$HOME/.local/state" "$BED_SSHD_LOG" "$BED_DIR/remote" 2>/dev/null)
[ -z "$found" ] && ok "the password is in no file of the jobs, records, results or sshd log" \
	|| fail "the password is in: $found"

# The login was needed: the registry refuses the image anonymously.
repo=${ref#"$reg"/}
repo=${repo%%:*}
digest=${ref##*@}
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$reg/v2/$repo/manifests/$digest")
[ "$code" = 401 ] && ok "without the login the registry refuses the image ($code)" \
	|| fail "anonymous access to the image gives $code: the test proves nothing"
