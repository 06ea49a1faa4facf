# The fixed part of pystrib's job script, run.sh (src/launch.c writes the
# values above it, each one shell-quoted, then this text). Started in its
# job directory as `setsid sh run.sh` (jobctl.sh start); the layout is
# docs/remote-job.md. The values:
#   ps_id ps_np ps_timeout     the job's id, ranks, --timeout (0: none)
#   ps_mode                    docker | podman (run the image here) | engine
#                              (this script runs in the job's container) |
#                              none (the host's own mpirun and python)
#   ps_pidfile                 pid, or cpid in the engine's container, or
#                              spid under Slurm (a pid of the node, not the host's)
#   ps_launcher                mpirun, or srun (Slurm: srun --mpi=pmix in the
#                              allocation; mpirun_args are mpirun's, not used;
#                              docker, podman: one container per task, below)
#   ps_image ps_image_present  what to run; 1: it is on the host already
#   ps_login_registry ps_login_user ps_tls_verify_off   the login before the
#                              pull ('': none); the password is stdin's first line
#   ps_gpus                    '', all, a count or device indexes (0,1)
#   ps_env ps_image_env        KEY=VALUE words, each quoted ([remote] --env;
#                              the image's Env, for none)
#   ps_mpirun_args ps_args     mpirun's extra words, the cell's arguments,
#                              each quoted
#   ps_python ps_bootstrap ps_cell   the interpreter and the two files it runs
#   ps_workdir                 the directory the ranks start in
#   ps_cell_layer ps_project_layer   none: the layers to unpack here
#   ps_setup                   none: [remote] setup, the user's own shell lines
#   ps_session ps_idle_timeout   1 for a session (docs/sessions.md): ps_cell is
#                              session.py, the hub, which runs mpirun of the
#                              workers; its --idle-timeout ('': its default)
#   ps_hosts ps_master_addr    none, podman over several hosts: mpirun's -H
#   ps_other_hosts             list (this host first; '': this host alone),
#                              rank 0's host as the others reach it
#                              (MASTER_ADDR), and the others' names (words,
#                              each quoted)
# Lists are words quoted by pystrib, read back with eval "set -- ...":
# nothing in them is expanded or run.

J=$(pwd -P) || exit 1
umask 022

# --- Slurm: one task of a step, on its node ----------------------------
# With a container runtime under Slurm, srun runs this script again as
# each task of a step (PYSTRIB_SLURM_TASK: pull, run or rm), with the
# job's values above; the job script's own part below does not run.
if [ -n "${PYSTRIB_SLURM_TASK:-}" ]; then
	RT=$ps_mode
	node=${SLURMD_NODENAME:-$(hostname)}
	# pull: the image on this node, unless it is here (pinned by digest).
	# pystrib passes no registry password to Slurm: the nodes' engines
	# log in with their own credentials (podman login, docker login).
	task_pull() {
		if ! command -v "$RT" >/dev/null 2>&1; then
			printf "pystrib: node '%s': '%s' is not installed there (or not on the PATH of its jobs: %s)\n" \
				"$node" "$RT" "$PATH" >&2
			exit 127
		fi
		if [ "$RT" = docker ]; then
			docker image inspect --format . "$ps_image" >/dev/null 2>&1 && return 0
			out=$(docker pull -q "$ps_image" 2>&1 >/dev/null)
		else
			podman image exists "$ps_image" >/dev/null 2>&1 && return 0
			tls=''
			[ -z "$ps_tls_verify_off" ] || tls=--tls-verify=false
			out=$(podman pull -q $tls "$ps_image" 2>&1 >/dev/null)
		fi && return 0
		rc=$?
		out=$(printf '%s\n' "$out" | grep -v '^[[:space:]]*$' | tail -n 1 | cut -c1-200)
		printf "pystrib: node '%s': %s could not pull the image: %s\n" "$node" "$RT" "$out" >&2
		exit "$rc"
	}
	# rm: whatever is left of the job's containers on this node.
	task_rm() {
		"$RT" ps -a --format '{{.Names}}' 2>/dev/null | grep -x "$ps_container-[0-9][0-9]*" |
			while read -r n; do
				if [ "$RT" = docker ]; then docker rm -f "$n"; else podman rm -f -t 0 "$n"; fi
			done >/dev/null 2>&1
		return 0
	}
	# run: the task's container, named after the job and the task, with
	# the PMIx connection srun gave the task: host network (the server's
	# tcp URI on this node), host IPC (Open MPI's shared memory between
	# the node's containers), host PIDs and user namespace (the server
	# checks its clients' credentials), the server's rendezvous directory
	# (PMIX_SERVER_TMPDIR: its shared-memory stores) at the same path,
	# and the environment by name only (--env-file of names: the values
	# stay in this process's environment, never on a command line).
	task_run() {
		n=$ps_container-$SLURM_PROCID
		export PYSTRIB_JOB_DIR=/pystrib/job PYSTRIB_RESULTS=/pystrib/job/results PYSTRIB_JOB_ID="$ps_id" \
			OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
		# The rank runs under a watch in its container (host PIDs: it sees
		# this task): if the task is gone, killed before it could remove
		# the container (srun kills its tasks with SIGKILL), so is the rank,
		# and the container ends (--rm).
		set -- "$ps_image" sh -c "$TASK_WATCH" pystrib-task "$$" "$@"
		# GPUs: Slurm deals them to the tasks (CUDA_VISIBLE_DEVICES, by
		# the host's indexes); the container sees all of the node's.
		if [ -n "$ps_gpus" ] && [ "$RT" = docker ]; then
			set -- --gpus all "$@"
		elif [ -n "$ps_gpus" ]; then
			set -- --device nvidia.com/gpu=all "$@"
		fi
		task_env_file || exit 125
		t=${PMIX_SERVER_TMPDIR:-}
		[ -z "$t" ] || [ ! -d "$t" ] || set -- -v "$t:$t" "$@"
		for b in "${PMIX_DSTORE_21_BASE_PATH:-}" "${PMIX_DSTORE_ESH_BASE_PATH:-}"; do
			d=${b%/*}
			[ -n "$b" ] && [ -d "$d" ] || continue
			case $d/ in "${t%/}"/*) [ -n "$t" ] && continue ;; esac
			set -- -v "$d:$d" "$@"
		done
		[ "$RT" = docker ] || set -- --userns host "$@"
		set -- "$RT" run --rm --name "$n" --sig-proxy=false --network host --ipc host --pid host \
			-v "$J/logs:/pystrib/job/logs" -v "$J/results:/pystrib/job/results" \
			--env-file "$f" "$@"
		# srun and slurmd send the task TERM (cancel, timeout, a failed
		# rank): the container goes with it, whether or not what runs in
		# it heeds the signal (the engine's container is no child of the
		# task: Slurm cannot kill it).
		stopped=''
		trap 'stopped=1; task_rm_one' TERM INT HUP
		"$@" &
		p=$!
		while :; do
			wait "$p"
			rc=$?
			kill -0 "$p" 2>/dev/null || break
		done
		rm -f "$f"
		[ -z "$stopped" ] || exit 143
		exit "$rc"
	}
	task_rm_one() {
		if [ "$RT" = docker ]; then docker rm -f "$n"; else podman rm -f -t 0 "$n"; fi >/dev/null 2>&1
	}
	TASK_WATCH='p=$1; shift; "$@" & c=$!
( while kill -0 "$p"; do sleep 1; done; kill -KILL "$c" ) 2>/dev/null & w=$!
wait "$c"; rc=$?; kill "$w" 2>/dev/null; exit "$rc"'
	# The env-file $f: the names of the variables the container gets.
	task_env_file() {
		mkdir -p "$J/.slurm" || return 1
		f=$J/.slurm/env.$SLURM_PROCID
		task_env > "$f.tmp" &&
			env | grep -E '^(PMIX|PMI|OMPI|SLURM|SLURMD|PYSTRIB)_[A-Za-z0-9_]*=|^CUDA_VISIBLE_DEVICES=' |
			cut -d= -f1 >> "$f.tmp" && sort -u "$f.tmp" > "$f" && rm -f "$f.tmp"
	}
	# --env: exported here, their names printed for the env-file.
	task_env() {
		eval "set -- $ps_env"
		for kv; do
			export "$kv"
			printf '%s\n' "${kv%%=*}"
		done
	}
	case $PYSTRIB_SLURM_TASK in
	pull) task_pull ;;
	rm) task_rm ;;
	run) task_run "$@" ;;
	esac
	exit $?
fi
mkdir -p "$J/logs" "$J/results"
set_state() { printf '%s\n' "$1" > "$J/state.tmp" && mv -f "$J/state.tmp" "$J/state"; }
now() { date +%s.%N; }
printf '%s\n' $$ > "$J/$ps_pidfile.tmp" && mv -f "$J/$ps_pidfile.tmp" "$J/$ps_pidfile"
now > "$J/started"
stop=''
child=''
SHM=''
C=''
stop_container() { :; }
cleanup() { :; }
PEER_PIDS=''

# Why the job could not run, for pystrib's summary and exit code: a code
# (src/reason.h, docs/remote-job.md) in `reason`, one line of text in
# `error`.
record() {
	printf '%s\n' "$1" > "$J/reason.tmp" && mv -f "$J/reason.tmp" "$J/reason"
	printf '%s\n' "$2" | cut -c1-300 > "$J/error.tmp" && mv -f "$J/error.tmp" "$J/error"
}
disk_full() { grep -qi 'no space left on device' "$J/logs/job.err" 2>/dev/null; }
# host_error CODE TEXT EXIT: records why, ends the job with EXIT. A full
# disk is the reason whatever failed of it.
host_error() {
	c=$1 m=$2
	if disk_full; then
		c=disk-full m="the disk is full (no space left on device): ${m#registry: }"
	fi
	printf 'pystrib: %s\n' "$m" >&2
	record "$c" "$m"
	finish "$3"
}
need() {
	command -v "$1" >/dev/null 2>&1 ||
		host_error not-installed "'$1' is not installed on this host (or not on the PATH of its SSH sessions: $PATH)" 127
}
# The last line of job.err that says something (not blank, not a rule of
# dashes), at most 300 characters.
last_err() {
	grep -v '^[[:space:]-]*$' "$J/logs/job.err" 2>/dev/null | tail -n 1 | cut -c1-300
}
# step_failed EXIT CODE TEXT: a step failed (unless the job was stopped).
step_failed() {
	[ -z "$stop" ] || finish "$1"
	host_error "$2" "$3: $(last_err)" "$1"
}

# A trapped signal interrupts `wait`, never a foreground command: every long
# step runs in the background and is waited for here.
on_signal() {
	[ "$ps_launcher" != srun ] || slurm_signalled
	[ -n "$stop" ] || stop=cancelled
	[ -f "$J/timedout" ] && stop=timeout
	[ -z "$child" ] || kill -TERM "$child" 2>/dev/null
	stop_container
}
trap on_signal TERM INT HUP
run_bg() {
	[ -z "$stop" ] || return 143
	"$@" &
	child=$!
	while :; do
		wait "$child"
		rc=$?
		kill -0 "$child" 2>/dev/null || break
	done
	child=''
	return "$rc"
}
finish() {
	rc=$1
	cleanup
	[ -z "$SHM" ] || [ "$SHM" = /dev/shm ] || rm -rf "$SHM"
	if [ "$rc" -ne 0 ] && [ -z "$stop" ] && [ ! -f "$J/error" ] && disk_full; then
		record disk-full 'the disk is full (no space left on device)'
	fi
	printf '%s\n' "$rc" > "$J/exit.tmp" && mv -f "$J/exit.tmp" "$J/exit"
	now > "$J/ended"
	[ ! -f "$J/timedout" ] || stop=timeout
	if [ -n "$stop" ]; then set_state "$stop"
	elif [ "$rc" -eq 0 ]; then set_state succeeded
	else set_state failed; fi
	# The container goes after the final state, so that nobody waits for
	# its removal to learn how the job ended.
	stop_container
	# Whatever is left of the job's process group (the watchdog, a rank
	# mpirun left behind) goes with it.
	trap '' TERM
	kill -TERM -$$ 2>/dev/null
	exit "$rc"
}

# The --timeout watchdog: `timedout` holds when it sent the TERM.
if [ "$ps_timeout" -gt 0 ] 2>/dev/null; then
	( trap - TERM; sleep "$ps_timeout"; now > "$J/timedout"; kill -TERM $$ ) </dev/null >/dev/null 2>&1 &
fi

# "/pystrib/rest" as it lies in the job directory for runtime none, in $P.
jpath() {
	case $1 in
	/pystrib) P=$J ;;
	/pystrib/*) P=$J${1#/pystrib} ;;
	*) P=$J/${1#"${1%%[!/]*}"} ;;
	esac
}

# Why mpirun failed (status $1) when the job was not stopped and no rank
# says: too few slots, or no rank ever ran (a rank leaves its files in
# logs/ as it starts). Else a rank's own failure: nothing to record.
mpirun_failed() {
	[ "$1" -ne 0 ] && [ -z "$stop" ] || return 0
	node=''
	[ -z "$ps_hosts" ] ||
		node=$(sed -n 's/^ *Remote daemon: .* on node \(.*\)$/\1/p' "$J/logs/job.err" 2>/dev/null | head -n 1)
	[ -z "$node" ] ||
		host_error host "host '$node' was lost while the job ran (Open MPI lost its daemon there)" "$1"
	if grep -q 'There are not enough slots available' "$J/logs/job.err" 2>/dev/null; then
		cores=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?')
		line=$(sed -n '/There are not enough slots available/{N;s/\n/ /;s/:[[:space:]]*$//;p;q;}' "$J/logs/job.err" | cut -c1-200)
		host_error slots "mpirun has not enough slots for $ps_np ranks (the host has $cores cores; --oversubscribe allows more): $line" "$1"
	fi
	ls "$J"/logs/rank.* >/dev/null 2>&1 && return 0
	host_error launch "${ps_launcher:-mpirun} failed before any rank ran: $(last_err)" "$1"
}

# A session over several hosts: the hub's --forward HOST for each other
# host (ps_other_hosts), as words in FW for eval. The hub forwards its
# ranks.sock to the same path there over ssh (docs/sessions.md).
session_forwards() {
	FW='' i=0
	eval "set -- $ps_other_hosts"
	for h; do
		i=$((i + 1))
		eval "fw$i=\$h"
		FW="$FW --forward \"\$fw$i\""
	done
}

# A node of the allocation failed under srun (status $1): Slurm ends the
# whole job and sends this script the TERM that a cancel would, but the
# job was not cancelled. The node named as follow.sh names it.
slurm_node_failed() {
	[ "$stop" != timeout ] || return 0
	n=$(sed -n 's/^srun: error: Node failure on \([^ ]*\).*/\1/p' "$J/logs/job.err" 2>/dev/null | head -n 1)
	[ -n "$n" ] || return 0
	stop=''
	host_error host "node '$n' failed under the job (Slurm: Node failure on $n)" "$1"
}

# Slurm's TERM of a job whose node failed (a node of the allocation is
# down: Slurm ends the job NODE_FAIL) is no cancel: the job ends failed
# at once, the node named (the script has Slurm's KillWait, not the time
# srun takes to stop the rest of the step).
slurm_signalled() {
	[ -z "$stop" ] && [ ! -f "$J/timedout" ] && [ -n "${SLURM_JOB_NODELIST:-}" ] || return 0
	n=$(sinfo -h -N -t down,fail -n "$SLURM_JOB_NODELIST" -o %N 2>/dev/null | head -n 1)
	[ -n "$n" ] || return 0
	[ -z "$child" ] || kill -TERM "$child" 2>/dev/null
	host_error host "node '$n' failed under the job (Slurm: Node failure on $n)" 143
}

# The words (for eval) of the launcher a session's hub runs its workers
# with: mpirun FLAG, or under Slurm srun in the hub's allocation.
session_launcher() {
	if [ "$ps_launcher" = srun ]; then
		printf '%s' 'srun --mpi=pmix --kill-on-bad-exit=1 --ntasks="$ps_np"'
	else
		printf '%s' "mpirun $1 -np \"\$ps_np\" $HOSTS_FLAGS $ps_mpirun_args"
	fi
}

# ranks FLAG BOOTSTRAP CELL [COMMAND...]: runs COMMAND mpirun FLAG -np N
# MPIRUN_ARGS PYTHON BOOTSTRAP CELL ARGS (COMMAND: docker run ..., or
# nothing), waits for it, and ends the job with its status.
ranks() {
	r_flag=$1 r_boot=$2 r_cell=$3
	shift 3
	if [ -n "$ps_session" ]; then
		# The hub (r_cell is session.py), which runs mpirun of the
		# workers; SD: the job directory as the ranks see it.
		case $ps_mode in none) SD=$J ;; *) SD=/pystrib/job ;; esac
		it=''
		[ -z "$ps_idle_timeout" ] || it='--idle-timeout "$ps_idle_timeout"'
		session_forwards
		eval "set -- \"\$@\" \"\$ps_python\" \"\$r_cell\" hub --dir \"\$SD\" --np \"\$ps_np\" $it $FW -- $(session_launcher "$r_flag") \"\$ps_python\" \"\$r_cell\" worker --dir \"\$SD\""
	elif [ "$ps_launcher" = srun ]; then
		eval "set -- \"\$@\" srun --mpi=pmix --kill-on-bad-exit=1 --ntasks=\"\$ps_np\" $SRUN_TASK \"\$ps_python\" \"\$r_boot\" \"\$r_cell\" $ps_args"
	else
		eval "set -- \"\$@\" mpirun $r_flag -np \"\$ps_np\" $HOSTS_FLAGS $ps_mpirun_args \"\$ps_python\" \"\$r_boot\" \"\$r_cell\" $ps_args"
	fi
	[ -z "$ps_hosts" ] || [ -n "$ps_session" ] || mirror_start
	run_bg "$@"
	rc=$?
	[ -z "$MIRROR_PIDS" ] || mirror_stop
	[ -z "$ps_hosts" ] || gather_hosts
	# A failed node first: its containers' ends are not the image's fault.
	[ "$ps_launcher" != srun ] || slurm_node_failed "$rc"
	[ "$ps_mode" = engine ] || [ "$ps_mode" = none ] || container_failed "$rc"
	# A session that could not start says why in session.json.
	[ -n "$ps_session" ] || mpirun_failed "$rc"
	finish "$rc"
}

# --- docker, podman: the image, run here -------------------------------

# Logs in (the password in $PW) and pulls, unless the image is here.
pull_image() {
	if [ "$RT" = docker ]; then
		docker image inspect --format . "$ps_image" >/dev/null 2>&1 && return 0
	else
		podman image exists "$ps_image" >/dev/null 2>&1 && return 0
	fi
	tls=''
	[ -z "$ps_tls_verify_off" ] || [ "$RT" = docker ] || tls=--tls-verify=false
	if [ -n "$ps_login_registry" ]; then
		(umask 077; mkdir -p "$AUTH")
		if [ "$RT" = docker ]; then
			printf '%s\n' "$PW" | DOCKER_CONFIG="$AUTH" docker login --password-stdin \
				--username "$ps_login_user" "$ps_login_registry" >/dev/null
		else
			printf '%s\n' "$PW" | podman login --authfile "$AUTH/auth.json" $tls --password-stdin \
				--username "$ps_login_user" "$ps_login_registry" >/dev/null
		fi || { PW=''; step_failed 125 registry "registry: the registry refused the login of $RT on this host"; }
	fi
	set_state pulling
	if [ "$RT" = docker ] && [ -n "$ps_login_registry" ]; then
		run_bg env DOCKER_CONFIG="$AUTH" docker pull -q "$ps_image" >/dev/null
	elif [ "$RT" = docker ]; then
		run_bg docker pull -q "$ps_image" >/dev/null
	elif [ -n "$ps_login_registry" ]; then
		run_bg podman pull -q $tls --authfile "$AUTH/auth.json" "$ps_image" >/dev/null
	else
		run_bg podman pull -q $tls "$ps_image" >/dev/null
	fi || step_failed $? registry "registry: $RT could not pull the image"
	PW=''
}

# GPUS inside a container given the devices $ps_gpus: all, or how many.
container_gpus() {
	case $ps_gpus in
	*,*) n=$(printf '%s' "$ps_gpus" | tr -cd , | wc -c); G=$((n + 1)) ;;
	*) G=$ps_gpus ;;
	esac
}

# docker run --gpus, podman's CDI devices (nvidia.com/gpu=N), as words in $cmd.
gpu_flags() {
	cmd=''
	[ -n "$ps_gpus" ] || return 0
	if [ "$RT" = docker ]; then
		case $ps_gpus in
		*,*) cmd="--gpus '\"device=$ps_gpus\"'" ;;
		*) cmd="--gpus '$ps_gpus'" ;;
		esac
		return 0
	fi
	case $ps_gpus in
	all) cmd="--device 'nvidia.com/gpu=all'" ;;
	*,*)
		for i in $(printf '%s' "$ps_gpus" | tr , ' '); do
			cmd="$cmd --device 'nvidia.com/gpu=$i'"
		done ;;
	*)
		i=0
		while [ "$i" -lt "$ps_gpus" ]; do
			cmd="$cmd --device 'nvidia.com/gpu=$i'"
			i=$((i + 1))
		done ;;
	esac
}

# The container could not run (status $1: 125 the engine's, 127 no mpirun
# in the image before any rank ran).
container_failed() {
	[ -z "$stop" ] || return 0
	if [ "$1" -eq 125 ] && [ -n "$ps_gpus" ] &&
	   grep -qi 'could not select device driver\|CDI device' "$J/logs/job.err" 2>/dev/null; then
		line=$(grep -i 'could not select device driver\|CDI device' "$J/logs/job.err" | tail -n 1 | cut -c1-200)
		host_error no-gpu "$RT on this host cannot give the container the GPUs asked for ($ps_gpus): $line" 125
	fi
	[ "$1" -ne 125 ] || step_failed 125 container "$RT could not start the container"
	if [ "$1" -eq 127 ] && ! ls "$J"/logs/rank.* >/dev/null 2>&1; then
		# Under srun each task's container runs the rank's python, no mpirun.
		[ "$ps_launcher" != srun ] ||
			host_error not-installed "the image has no '$ps_python' on its PATH (a rank's container on a node of the job)" 127
		host_error no-mpirun "the image has no 'mpirun' (Open MPI) on its PATH" 127
	fi
}

run_container() {
	RT=$ps_mode
	C=$ps_container
	need "$RT"
	printf '%s\n' "$RT" > "$J/runtime"
	printf '%s\n' "$C" > "$J/container"
	if [ "$RT" = docker ]; then
		stop_container() { docker rm -f "$C" >/dev/null 2>&1; }
	elif [ -n "$ps_hosts" ]; then
		stop_container() {
			[ -z "$PEER_PIDS" ] || kill $PEER_PIDS 2>/dev/null
			podman rm -f -t 0 "$C" >/dev/null 2>&1 &
			sp=$!
			peers_stop
			wait "$sp"
		}
	else
		stop_container() { podman rm -f -t 0 "$C" >/dev/null 2>&1; }
	fi
	if [ -n "$ps_login_registry" ] && [ -z "$ps_image_present" ]; then
		# The password: first line of stdin, into a file of our own only
		# for as long as the pull takes.
		IFS= read -r PW || PW=''
		AUTH="$J/.auth"
		cleanup() { rm -rf "$AUTH"; }
	fi
	exec </dev/null
	# Over several hosts the others pull and start their containers
	# while this one pulls.
	[ -z "$ps_hosts" ] || peers_start
	# Pinned by digest: an image already there (pulled through the
	# engine's socket by `run`, or by an earlier job) is this one, and
	# neither login nor pull is needed.
	[ -n "$ps_image_present" ] || pull_image
	[ -z "$ps_hosts" ] || peers_wait
	# Host IPC puts every container's Open MPI shared-memory files in the
	# host's /dev/shm, named after mpirun's pid: 1 in every container.
	# Two jobs at once would unlink each other's files (and hang): each
	# job gets a directory of its own there. (podman refuses --shm-size
	# with host IPC; docker ignores it.)
	SHM=/dev/shm/$C
	mkdir -p "$SHM" 2>/dev/null || SHM=/dev/shm
	cleanup
	now > "$J/launched"
	set_state running
	if [ -n "$ps_session" ]; then
		# The hub's sockets and files are in the job directory itself.
		set -- -v "$J:/pystrib/job"
	else
		set -- -v "$J/logs:/pystrib/job/logs" -v "$J/results:/pystrib/job/results"
	fi
	if [ -n "$ps_hosts" ]; then
		peers_flags
		eval "set -- \"\$@\" $PF"
	fi
	set -- "$RT" run --name "$C" --network host --ipc host "$@" \
		-e PYSTRIB_JOB_DIR=/pystrib/job -e PYSTRIB_RESULTS=/pystrib/job/results \
		-e "PYSTRIB_JOB_ID=$ps_id" -e OMPI_ALLOW_RUN_AS_ROOT=1 -e OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
		-e "OMPI_MCA_btl_vader_backing_directory=$SHM"
	if [ -n "$ps_gpus" ]; then
		# Inside, CUDA numbers the devices it was given from 0: the
		# bootstrap deals out that many, not the host's indexes.
		container_gpus
		gpu_flags
		eval "set -- \"\$@\" -e \"PYSTRIB_GPUS=\$G\" $cmd"
	fi
	env_flags
	eval "set -- \"\$@\" $E"
	set -- "$@" "$ps_image"
	ranks --allow-run-as-root "$ps_bootstrap" "$ps_cell" "$@"
}

# --- docker, podman under Slurm: a container per task, on every node ---

# The words srun runs for each rank (ranks): this script as a task (its
# Slurm part, at the top), which runs the rank's container. '' for none.
SRUN_TASK=''

# A step of one task of this script per node of the allocation
# (--overlap: beside a step that still runs), for eval, then
# PYSTRIB_SLURM_TASK=TASK sh run.sh.
NODE_STEP='srun --overlap --mpi=none --nodes="$SLURM_JOB_NUM_NODES" --ntasks="$SLURM_JOB_NUM_NODES" --ntasks-per-node=1 --kill-on-bad-exit=0 env'

# The image pulled on every node first: a node that cannot pull fails the
# job before any rank starts, named.
slurm_pull() {
	set_state pulling
	eval "run_bg $NODE_STEP PYSTRIB_SLURM_TASK=pull sh \"\$J/run.sh\"" && return 0
	rc=$?
	[ -z "$stop" ] || finish "$rc"
	m=$(sed -n "s/^pystrib: \(node '.*\)\$/\1/p" "$J/logs/job.err" 2>/dev/null | head -n 1)
	case $m in *" is not installed there "*) host_error not-installed "$m" 127 ;; esac
	[ -n "$m" ] || m="$RT could not pull the image: $(last_err)"
	host_error registry "registry: $m (pystrib gives Slurm no registry password: the nodes' $RT log in on their own)" "$rc"
}

run_slurm_container() {
	RT=$ps_mode
	C=$ps_container
	exec </dev/null
	need srun
	printf '%s\n' "$RT" > "$J/runtime"
	printf '%s\n' "$C" > "$J/container"
	# srun, sent TERM, kills its tasks at once (SIGKILL) and leaves their
	# containers, which are the engine's children, not the tasks': the
	# tasks get the TERM instead (scancel of the job's steps), and each
	# removes its container.
	on_signal() {
		slurm_signalled
		[ -n "$stop" ] || stop=cancelled
		[ -f "$J/timedout" ] && stop=timeout
		[ -z "$child" ] || [ -n "$signalled" ] || scancel -s TERM "$SLURM_JOB_ID" 2>/dev/null ||
			kill -TERM "$child" 2>/dev/null
		signalled=1
	}
	signalled=''
	# Whatever a task left (one killed before it could remove its
	# container), on every node, while the allocation lives; bounded, for
	# a job Slurm is ending.
	stop_container() {
		[ -n "$C" ] || return 0
		eval "timeout 30 $NODE_STEP PYSTRIB_SLURM_TASK=rm sh \"\$J/run.sh\"" </dev/null >/dev/null 2>&1
		rm -rf "$J/.slurm"
		C=''
	}
	slurm_pull
	now > "$J/launched"
	set_state running
	SRUN_TASK='env PYSTRIB_SLURM_TASK=run sh "$J/run.sh"'
	ranks '' "$ps_bootstrap" "$ps_cell"
}

# The words of $ps_env in $e1, $e2 ..., and E: -e "$e1" -e "$e2" ... for eval.
env_flags() {
	eval "set -- $ps_env"
	E='' i=0
	for kv; do
		i=$((i + 1))
		eval "e$i=\$kv"
		E="$E -e \"\$e$i\""
	done
}

# --- podman over several hosts: a container of the image on each -------

# One long-lived container of the image on every other host (the peers),
# with host networking and IPC and the host's job directory's logs/ and
# results/ at the same paths as here; mpirun in this host's container
# starts its daemon in each through the launch agent (agent_write):
# `ssh HOST podman exec`. Their own PID namespace: when a container ends,
# the kernel ends everything that ran in it.

# $1 shell-quoted, in Q.
quote() { Q="'$(printf '%s' "$1" | sed "s/'/'\\\\''/g")'"; }

# The command that prepares a peer, in PEER: the job directory, the login
# (the password on its stdin) and pull unless the image is there, then
# the container. `.stopped` (peers_stop) wins over a start in flight.
peer_command() {
	quote "$J"; qj=$Q
	quote "$C"; qc=$Q
	quote "$ps_image"; qi=$Q
	quote "/dev/shm/$C"; qs=$Q
	tls=''
	[ -z "$ps_tls_verify_off" ] || tls=--tls-verify=false
	quote "$(cat "$J/launch/agent")"
	PEER="cd $qj && umask 022 && mkdir -p logs results launch && rm -f .stopped && printf '%s\\n' $Q > launch/agent && chmod 755 launch/agent && "
	if [ -n "$ps_login_registry" ] && [ -z "$ps_image_present" ]; then
		quote "$ps_login_user"; qu=$Q
		quote "$ps_login_registry"; qr=$Q
		PEER="$PEER(umask 077; mkdir -p .auth) && IFS= read -r PW && { podman image exists $qi || { printf '%s\\n' \"\$PW\" | podman login --authfile .auth/auth.json $tls --password-stdin --username $qu $qr >/dev/null && podman pull -q $tls --authfile .auth/auth.json $qi >/dev/null; }; }; rc=\$?; rm -rf .auth; [ \$rc -eq 0 ] || exit 3; "
	else
		PEER="$PEER{ podman image exists $qi || podman pull -q $tls $qi >/dev/null || exit 3; }; "
	fi
	eval "set -- $ps_env"
	envs=' -e OMPI_ALLOW_RUN_AS_ROOT=1 -e OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1'
	for kv; do quote "$kv"; envs="$envs -e $Q"; done
	# The same GPUs asked of every host (its words are quoted already).
	gpu_flags
	envs="$envs $cmd"
	PEER="$PEER[ ! -e .stopped ] || exit 5; mkdir -p $qs 2>/dev/null; podman rm -f -t 0 $qc >/dev/null 2>&1; podman run -d --name $qc --network host --ipc host -v $qj/logs:/pystrib/job/logs -v $qj/results:/pystrib/job/results -v $qj/launch:/pystrib/launch:ro$envs --entrypoint sleep $qi infinity >/dev/null || exit 4; [ ! -e .stopped ] || { podman rm -f -t 0 $qc >/dev/null 2>&1; exit 5; }"
}

# Starts preparing every peer, in the background (pids in PEER_PIDS).
peers_start() {
	need ssh
	agent_write
	peer_command
	eval "set -- $ps_other_hosts"
	printf '%s\n' "$@" > "$J/peers"
	for h; do
		printf '%s\n' "${PW:-}" | ssh -o BatchMode=yes -o ConnectTimeout=10 "$h" "$PEER" 2>>"$J/logs/job.err" &
		PEER_PIDS="$PEER_PIDS $!"
	done
}

# Waits for every peer; the first that failed ends the job, named.
peers_wait() {
	eval "set -- $ps_other_hosts"
	for p in $PEER_PIDS; do
		h=$1
		shift
		while :; do
			wait "$p"
			rc=$?
			kill -0 "$p" 2>/dev/null || break
		done
		[ -z "$stop" ] || finish 143
		case $rc in
		0) ;;
		3) step_failed 125 registry "registry: podman on host '$h' could not pull the image" ;;
		4) step_failed 125 container "podman on host '$h' could not start the job's container" ;;
		*) step_failed 125 host "host '$h' could not be prepared for the job (ssh or podman: status $rc)" ;;
		esac
	done
	PEER_PIDS=''
}

# Removes the peers' containers, all at once.
peers_stop() {
	[ -f "$J/peers" ] || return 0
	quote "$J"; qj=$Q
	quote "$C"; qc=$Q
	quote "/dev/shm/$C"; qs=$Q
	pids=''
	while IFS= read -r h; do
		ssh -o BatchMode=yes -o ConnectTimeout=10 "$h" \
			"touch $qj/.stopped 2>/dev/null; podman rm -f -t 0 $qc >/dev/null 2>&1; rm -rf $qs" \
			</dev/null >/dev/null 2>&1 &
		pids="$pids $!"
	done < "$J/peers"
	# Not a bare `wait`: the --timeout watchdog is a child too.
	for p in $pids; do wait "$p"; done
}

# Open MPI's rsh agent, in launch/ (every container's /pystrib/launch:
# mpirun passes its path on to the daemons, which check that it is there):
# `agent [OPTIONS] HOST COMMAND...` starts COMMAND (a daemon, orted) in
# the job's container on HOST, as the host's user reaches it by ssh.
agent_write() {
	mkdir -p "$J/launch"
	quote "$C"
	{
		printf '#!/bin/sh\n# written by pystrib run.sh: Open MPI'"'"'s rsh agent for job %s\n' "$ps_id"
		printf 'C=%s\n' "$Q"
		cat <<'AGENT'
while [ $# -gt 0 ]; do
	case $1 in -*) shift ;; *) break ;; esac
done
h=$1
shift
q=$(printf '%s' "$*" | sed "s/'/'\\\\''/g")
exec ssh -o BatchMode=yes -x "$h" "podman exec -i $C sh -c '$q'"
AGENT
	} > "$J/launch/agent.tmp" && chmod 755 "$J/launch/agent.tmp" && mv -f "$J/launch/agent.tmp" "$J/launch/agent"
}

# This host's container's extra flags (words, for eval, in the caller's
# "$@" kept as given) and mpirun's, in HOSTS_FLAGS: the agent, the host
# user's ssh settings (read-only, for the agent's ssh), rank 0's address
# and port.
peers_flags() {
	# Seeded by the second and this script's pid: two jobs started in one
	# second on this host get different ports.
	PYSTRIB_MASTER_PORT=$(awk -v s=$$ 'BEGIN { srand(); print 20000 + (int(rand() * 30000) + s) % 30000 }')
	PF="-v \"\$J/launch:/pystrib/launch:ro\" -e \"PYSTRIB_MASTER_ADDR=\$ps_master_addr\" -e \"PYSTRIB_MASTER_PORT=\$PYSTRIB_MASTER_PORT\""
	[ ! -d "$HOME/.ssh" ] || PF="$PF -v \"\$HOME/.ssh:/root/.ssh:ro\""
	HOSTS_FLAGS="-H \"\$ps_hosts\" --mca plm_rsh_agent /pystrib/launch/agent --mca plm_rsh_no_tree_spawn 1 -x PYSTRIB_JOB_DIR -x PYSTRIB_RESULTS -x PYSTRIB_JOB_ID -x PYSTRIB_MASTER_ADDR -x PYSTRIB_MASTER_PORT -x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"
	[ -z "$ps_gpus" ] || HOSTS_FLAGS="$HOSTS_FLAGS -x PYSTRIB_GPUS"
	eval "set -- $ps_env"
	for kv; do HOSTS_FLAGS="$HOSTS_FLAGS -x ${kv%%=*}"; done
}

# --- engine: in the job's container, which the engine started ----------

# The environment and mounts are the container's own
# (launch_engine_config); this script runs mpirun itself.
run_inside() {
	exec </dev/null
	printf 'docker\n' > "$J/runtime"
	C=$ps_container
	printf '%s\n' "$C" > "$J/container"
	SHM=/dev/shm/$C
	mkdir -p "$SHM" 2>/dev/null || SHM=/dev/shm
	export OMPI_MCA_btl_vader_backing_directory="$SHM"
	root_flag=''
	if [ "$(id -u)" = 0 ]; then
		root_flag=--allow-run-as-root
		export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
	fi
	cd "${ps_workdir:-/}" || host_error workdir "the image's working directory is missing" 125
	command -v mpirun >/dev/null 2>&1 ||
		host_error no-mpirun "the image has no 'mpirun' (Open MPI) on its PATH" 127
	now > "$J/launched"
	set_state running
	ranks "$root_flag" "$ps_bootstrap" "$ps_cell"
}

# --- none: the host's own mpirun and python ----------------------------

# Several hosts: mpirun starts the ranks of the others over ssh (from
# here, by the host's own ssh settings), in a directory of the same path
# that pystrib made there with the cell. The environment goes with them
# (-x): the job's variables, the image's, --env, and PATH (setup's). The
# words in HOSTS_FLAGS, for eval.
HOSTS_FLAGS=''
hosts_env() {
	[ -n "$ps_hosts" ] || return 0
	export PYSTRIB_MASTER_ADDR="$ps_master_addr"
	PYSTRIB_MASTER_PORT=$("$ps_python" -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])') ||
		PYSTRIB_MASTER_PORT=29500
	export PYSTRIB_MASTER_PORT
	HOSTS_FLAGS="-H \"\$ps_hosts\" --mca plm_rsh_agent ssh"
	for v in PATH PYTHONPATH LD_LIBRARY_PATH PYSTRIB_JOB_DIR PYSTRIB_RESULTS PYSTRIB_JOB_ID \
		PYSTRIB_GPUS PYSTRIB_MASTER_ADDR PYSTRIB_MASTER_PORT OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM; do
		eval "[ -z \"\${$v+x}\" ]" || HOSTS_FLAGS="$HOSTS_FLAGS -x $v"
	done
	eval "set -- $ps_image_env $ps_env"
	for kv; do HOSTS_FLAGS="$HOSTS_FLAGS -x ${kv%%=*}"; done
}

# The other hosts' ranks' output while the job runs: one ssh to each,
# whose loop (MIRROR) sends what their logs/rank.N.out and .err gained
# ("F NAME OFFSET LENGTH" and the bytes; "H" each round, so that it ends
# once nobody reads), appended here to the same files, which the follower
# streams. gather_hosts then puts the whole files in their place (these
# are prefixes of them). Not when the hosts share this directory
# (.mirror-$$ is seen there).
MIRROR='while :; do
	for f in logs/rank.*.out logs/rank.*.err; do
		b=${f#logs/rank.}; r=${b%%.*}; k=${b#*.}
		case $r in ""|*[!0-9]*) continue ;; esac
		[ -f "$f" ] || continue
		n=$(wc -c < "$f")
		eval "o=\${s_${r}_$k:-0}"
		[ "$n" -gt "$o" ] || continue
		printf "F %s %s %s\n" "${f#logs/}" "$o" "$((n - o))"
		tail -c +$((o + 1)) "$f" | head -c $((n - o))
		eval "s_${r}_$k=$n"
	done
	printf "H\n" || exit 0
	sleep 0.3
done'
MIRROR_PIDS=''
mirror_one() {	# mirror_one HOST QUOTED_DIR
	ssh -o BatchMode=yes -o ConnectTimeout=10 "$1" "cd '$2' && [ ! -e .mirror-$$ ] && $MIRROR" </dev/null 2>/dev/null |
	while read -r t f off len; do
		case $t in H) continue ;; F) ;; *) return 0 ;; esac
		case $f in */*) return 0 ;; rank.[0-9]*.out|rank.[0-9]*.err) ;; *) return 0 ;; esac
		have=0
		[ ! -f "$J/logs/$f" ] || have=$(wc -c < "$J/logs/$f")
		if [ "$have" -eq "$off" ]; then
			head -c "$len" >> "$J/logs/$f"
		else
			head -c "$len" > /dev/null
		fi
	done
}
mirror_start() {
	: > "$J/.mirror-$$"
	qj=$(printf '%s' "$J" | sed "s/'/'\\\\''/g")
	eval "set -- $ps_other_hosts"
	for h; do
		mirror_one "$h" "$qj" &
		MIRROR_PIDS="$MIRROR_PIDS $!"
	done
}
# The mirrors end (their ssh too: the group of each background pipeline).
mirror_stop() {
	for p in $MIRROR_PIDS; do
		pkill -TERM -P "$p" 2>/dev/null
		kill "$p" 2>/dev/null
	done
	for p in $MIRROR_PIDS; do wait "$p" 2>/dev/null; done
	MIRROR_PIDS=''
	rm -f "$J/.mirror-$$"
}

# The other hosts' logs and results, into this job directory: the ranks
# there wrote them into theirs. logs/ are per rank (no names collide);
# results/ are merged unless a name is here already, then they go to
# results/HOST/.
gather_hosts() {
	qj=$(printf '%s' "$J" | sed "s/'/'\\\\''/g")
	eval "set -- $ps_other_hosts"
	for h; do
		g="$J/.hosts/$h"
		rm -rf "$g" && mkdir -p "$g" || continue
		ssh -o BatchMode=yes -o ConnectTimeout=10 "$h" "cd '$qj' && tar -cf - logs results" 2>>"$J/logs/job.err" |
			tar -xf - -C "$g" --no-same-owner 2>>"$J/logs/job.err" || continue
		for f in "$g"/logs/rank.*; do
			[ -e "$f" ] || continue
			# A rank runs on one host: its .out and .err here are the
			# mirror's prefixes of these.
			case $f in
			*.out|*.err) ;;
			*) [ ! -e "$J/logs/${f##*/}" ] || continue ;;
			esac
			mv -f "$f" "$J/logs/"
		done
		clash=''
		for f in "$g"/results/* "$g"/results/.[!.]*; do
			[ -e "$f" ] || continue
			[ "${f##*/}" = .pystrib ] && continue
			[ ! -e "$J/results/${f##*/}" ] || clash=1
		done
		if [ -n "$clash" ]; then
			mkdir -p "$J/results/$h" && cp -R "$g/results/." "$J/results/$h/"
		else
			cp -R "$g/results/." "$J/results/"
		fi
		rm -rf "$g"
	done
	rmdir "$J/.hosts" 2>/dev/null
}

run_host() {
	exec </dev/null
	printf 'none\n' > "$J/runtime"
	set_state running
	tar -xzf "$ps_cell_layer" --strip-components=1 ||
		step_failed 125 setup "cannot unpack the cell's layer '$ps_cell_layer'"
	if [ -n "$ps_project_layer" ]; then
		tar -xzf "$ps_project_layer" --strip-components=1 ||
			step_failed 125 setup "cannot unpack the project's layer '$ps_project_layer'"
	fi
	export PYSTRIB_JOB_DIR="$J" PYSTRIB_RESULTS="$J/results" PYSTRIB_JOB_ID="$ps_id"
	eval "set -- $ps_image_env"
	for kv; do
		v=${kv#*=}
		case $v in /pystrib*) jpath "$v"; v=$P ;; esac
		export "${kv%%=*}=$v"
	done
	[ -z "$ps_gpus" ] || export PYSTRIB_GPUS="$ps_gpus"
	eval "set -- $ps_env"
	for kv; do export "$kv"; done
	root_flag=''
	if [ "$(id -u)" = 0 ]; then
		root_flag=--allow-run-as-root
		export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
	fi
	if [ -n "$ps_setup" ]; then
		sh -n -c "$ps_setup" 2>>"$J/logs/job.err" ||
			host_error setup "[remote] setup is not valid shell: $(last_err)" 2
		# [remote] setup, as written in the configuration, in this shell:
		# what it exports or where it goes, the ranks get.
		eval "$ps_setup"
	fi
	jpath "${ps_workdir:-/pystrib/cell}"
	cd "$P" || host_error workdir "the image's working directory '${ps_workdir:-/pystrib/cell}' is missing" 125
	need "${ps_launcher:-mpirun}"
	need "$ps_python"
	hosts_env
	now > "$J/launched"
	jpath "$ps_bootstrap"
	boot=$P
	jpath "$ps_cell"
	ranks "$root_flag" "$boot" "$P"
}

case $ps_mode in
docker|podman) if [ "$ps_launcher" = srun ]; then run_slurm_container; else run_container; fi ;;
engine) run_inside ;;
none) run_host ;;
*) host_error host "unknown runtime '$ps_mode'" 2 ;;
esac
