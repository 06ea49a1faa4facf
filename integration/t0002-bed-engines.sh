#!/usr/bin/env bash
# t0002: through the bed's sshd, as a remote job will, the bed's dockerd and
# podman pull the base image from the bed's registry and run a two-rank
# mpi4py allreduce in it with Open MPI.
. "$(dirname "$0")/lib.sh"
bed_up registry docker podman base sshd

# shellcheck disable=SC2016
cell='from mpi4py import MPI; c = MPI.COMM_WORLD; print("rank", c.rank, "sum", c.allreduce(c.rank + 1))'
mpi="mpirun --allow-run-as-root --oversubscribe -np 2 python3 -c '$cell'"
want=$(printf 'rank 0 sum 3\nrank 1 sum 3')

got=$(bed_ssh "docker run --rm --network host --ipc host $BED_BASE $mpi" 2>"$BED_DIR/docker.err" | sort)
check_eq "docker over ssh: 2 ranks, allreduce sum 3" "$want" "$got" || show "$BED_DIR/docker.err"

got=$(bed_ssh "podman run --rm --tls-verify=false --network host --ipc host $BED_BASE $mpi" \
	2>"$BED_DIR/podman.err" | sort)
check_eq "podman over ssh: 2 ranks, allreduce sum 3" "$want" "$got" || show "$BED_DIR/podman.err"

check_eq "no container left behind" "" "$(bed_ssh 'docker ps -aq; podman ps -aq' 2>/dev/null)"
