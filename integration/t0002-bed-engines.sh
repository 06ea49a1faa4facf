#!/usr/bin/env bash
# t0002: through the bed's sshd, as a remote job will, the bed's dockerd and
# podman pull the base image from the bed's registry and run a two-rank
# mpi4py allreduce in it with Open MPI.
. "$(dirname "$0")/lib.sh"
bed_up registry docker podman base sshd

remote() {
	ssh -p "$BED_SSH_PORT" -i "$BED_SSH_KEY" -o BatchMode=yes -o IdentitiesOnly=yes \
		-o StrictHostKeyChecking=yes -o UserKnownHostsFile="$BED_KNOWN_HOSTS" \
		"$BED_SSH_USER@$BED_SSH_HOST" "$@"
}
# shellcheck disable=SC2016
cell='from mpi4py import MPI; c = MPI.COMM_WORLD; print("rank", c.rank, "sum", c.allreduce(c.rank + 1))'
mpi="mpirun --allow-run-as-root --oversubscribe -np 2 python3 -c '$cell'"
want=$(printf 'rank 0 sum 3\nrank 1 sum 3')

out=$(remote "docker run --rm --network host --ipc host $BED_BASE $mpi" 2>"$BED_DIR/docker.err" | sort)
if [ "$out" = "$want" ]; then ok "docker over ssh: 2 ranks, allreduce sum 3"
else fail "docker over ssh: '$out'"; tail -n 5 "$BED_DIR/docker.err"; fi

out=$(remote "podman run --rm --tls-verify=false --network host --ipc host $BED_BASE $mpi" 2>"$BED_DIR/podman.err" | sort)
if [ "$out" = "$want" ]; then ok "podman over ssh: 2 ranks, allreduce sum 3"
else fail "podman over ssh: '$out'"; tail -n 5 "$BED_DIR/podman.err"; fi

left=$(remote 'docker ps -aq; podman ps -aq' 2>/dev/null)
[ -z "$left" ] && ok "no container left behind" || fail "containers left: $left"
