#!/usr/bin/env bash
# t0404: pystrib run against a registry that wants a password (htpasswd,
# basic auth). The remote docker and podman are logged in with the password
# on standard input: the job runs, and the password is nowhere afterwards:
# not in the job's directory (run.sh, job.json, logs, no .auth left), not in
# the local job record or results, not in the sshd log. Without the login
# the remote cannot pull the image at all.
. "$(dirname "$0")/lib.sh"
bed_up registry sshd base docker podman

export PYSTRIB_REMOTE_MPIRUN_ARGS=--oversubscribe

# A second registry over the bed's storage (so the base is there), with
# basic auth; a fresh random password in a file of mode 600.
auth=$BED_DIR/authreg
mkdir -p "$auth"
(umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$auth/password")
password=$(cat "$auth/password")
htpasswd -B -i -c "$auth/htpasswd" cellbot < "$auth/password" 2>/dev/null
port=$(free_port)
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
cleanup stop_authreg
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
	check_grep "$engine: logged in, pulled and ran" -x "\[1\] rank 1 sum 3" "$out" || show "$err"
	if [ "$engine" = docker ]; then
		check "docker: pulled through the engine's socket, before the job started" eval \
			'grep -q "image pulled through the engine'"'"'s socket" "$err" && ! grep -q "pulling the image" "$err"' ||
			grep -E "pull|socket" "$err" | sed "s/^/#   /"
	else
		check_grep "$engine: the job pulled the image itself" "^pystrib: pulling the image" "$err"
	fi
	check_no_grep "$engine: not in pystrib's output either (-v)" -F -- "$password" "$out" "$err"
	# The text output is what this run checks: its id from stderr.
	id=$(job_id_from_err "$err")
	check "$engine: no login file left in the job directory" eval '[ -n "$id" ] && [ ! -e "$jobs_dir/$id/.auth" ]'
	ref=$(sed -n 's/^  image:   \([^ ]*\).*/\1/p' "$err")	# the pinned reference, before "(tag ...)"
	check "$engine: the image is in the registry with a password ($ref)" eval '[[ $ref == "$reg"/*@sha256:* ]]'
done
found=$(grep -rlF -- "$password" "$jobs_dir" "$work" "$HOME/.local/state" "$BED_SSHD_LOG" "$BED_DIR/remote" 2>/dev/null)
check_eq "the password is in no file of the jobs, records, results or sshd log" "" "$found"

# The login was needed: the registry refuses the image anonymously.
# REPO from REGISTRY/REPO:TAG@sha256:... or REGISTRY/REPO@sha256:...
repo=${ref#"$reg"/}
repo=${repo%%@*}
repo=${repo%%:*}
digest=${ref##*@}
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$reg/v2/$repo/manifests/$digest")
check_eq "without the login the registry refuses the image (else the test proves nothing)" 401 "$code"
