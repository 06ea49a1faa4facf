# pystrib's job control, run on the remote host by src/remote_job.c as
#   sh -c "$(cat jobctl.sh)" jobctl.sh ACTION DIR [ARG]
#   start DIR [JSON SCRIPT]  create DIR (with logs/ results/), write job.json
#                      and run.sh when given, start run.sh detached
#                      (setsid); stdin goes to it
#   engine DIR JSON SCRIPT   the same as a job's container's main process
#                      (launch.c), then wait for the job and its results
#   read DIR           print the job's files as "KEY VALUE" lines, then
#                      "json" and job.json
#   session-wait DIR SECONDS   a session's start (docs/sessions.md): waits
#                      until its hub's session.json is past "starting" or
#                      the job ended, then prints "dir ABSOLUTE-DIR",
#                      "state STATE" (the job's), "json" and session.json
#   session-ended DIR SECONDS   waits until the job has its final state and
#                      its job script is gone (with its container), prints
#                      the state
#   cancel DIR FINAL [unstarted]   stop it; FINAL is cancelled or timeout;
#                      with unstarted, a job not started yet never will be
#                      (its start may still be on the way)
#   remove DIR         gc: remove an ended job's directory, and over several
#                      hosts the same path on each other host first; prints
#                      "unreached HOST" for one not reached, and then keeps
#                      DIR (a later gc tries again)
# The layout is docs/remote-job.md.
action=$1 dir=$2
final() { case $1 in succeeded|failed|timeout|cancelled) return 0;; esac; return 1; }
set_state() { printf '%s\n' "$1" > state.tmp && mv -f state.tmp state; }
alive() {
	p='' sid=''
	# A Slurm job (slurm.h) runs on a node, not here: Slurm knows.
	if [ -f slurm ] && read -r sid < slurm && [ -n "$sid" ]; then
		case $(squeue -h -j "$sid" -o %T 2>/dev/null) in
		PENDING|RUNNING|CONFIGURING|COMPLETING|SUSPENDED|REQUEUE*|RESIZING|SIGNALING|STAGE_OUT|STOPPED) return 0 ;;
		esac
		return 1
	fi
	[ -f pid ] && read -r p < pid
	[ -n "$p" ] && kill -0 "$p" 2>/dev/null
}
# The start of a job, in its directory (the current one), for `start` and
# `engine`: claims it (atomic: either this or a cancel that came first),
# writes job.json and run.sh when given ($1 $2), state submitted, and starts
# run.sh in a session of its own, its stdin from descriptor 3 (an
# asynchronous list's stdin is /dev/null unless redirected from another
# descriptor: the job script reads the registry password there). Its pid
# in $child. 3: claimed by a cancel first.
launch() {
	mkdir .claimed 2>/dev/null || return 3
	if [ $# -ge 2 ]; then
		printf '%s' "$1" > job.json.tmp && mv -f job.json.tmp job.json || return 1
		printf '%s' "$2" > run.sh.tmp && chmod 755 run.sh.tmp && mv -f run.sh.tmp run.sh || return 1
	fi
	# A session's sockets and cell outputs are its owner's alone (job.json
	# came as an argument, or was uploaded before: a large one).
	if grep -q '"kind":"session"' job.json 2>/dev/null; then chmod 700 . || return 1; fi
	set_state submitted
	if command -v setsid >/dev/null 2>&1; then
		setsid sh run.sh <&3 3<&- >> logs/job.err 2>&1 &
	else
		sh run.sh <&3 3<&- >> logs/job.err 2>&1 &
	fi
	child=$!
	exec 3<&-
}
case $action in
start)
	mkdir -p "$dir/logs" "$dir/results" || exit 1
	cd "$dir" || exit 1
	shift 2
	exec 3<&0
	launch "$@"
	case $? in
	0) ;;
	3) echo "the job was cancelled before it started" >&2; exit 1 ;;
	*) exit 1 ;;
	esac
	i=0
	while [ ! -f pid ] && [ "$i" -lt 400 ]; do
		sleep 0.01
		i=$((i + 1))
	done
	if [ ! -f pid ]; then
		echo "the job script did not start:" >&2
		tail -n 5 logs/job.err >&2
		exit 1
	fi
	;;
engine)
	# The main process of a job's container the engine started
	# (launch_engine_config), DIR its job directory: starts the job as
	# `start` does and, once it ended, stays until the results were
	# taken: `run` kills the container once its follower (in here) is
	# done; a follower through a shell leaves .collected, so does a
	# cancel; else a minute. The container's end takes its processes.
	cd "$dir" || exit 1
	umask 022
	mkdir -p logs results || exit 1
	shift 2
	exec 3</dev/null
	launch "$@"
	case $? in
	0) ;;
	3) exit 0 ;;
	*) exit 1 ;;
	esac
	# The host's pid file names this process: a cancel's TERM goes on to
	# the job script, which stops the ranks and writes the final state.
	trap 'kill -TERM "$child" 2>/dev/null' TERM INT HUP
	while kill -0 "$child" 2>/dev/null; do wait "$child"; done
	i=0
	while [ ! -f .collected ] && [ "$i" -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
	;;
read)
	if [ ! -f "$dir/job.json" ]; then
		echo "gone"
		exit 0
	fi
	cd "$dir" || exit 1
	# Whether it lives, then the state: a job script writes its final
	# state before it ends, so dead + not final means lost.
	if alive; then echo "alive 1"; else echo "alive 0"; fi
	for f in state exit started launched ended runtime container reason error; do
		v=''
		[ -f "$f" ] && read -r v < "$f"
		printf '%s %s\n' "$f" "$v"
	done
	for f in logs/rank.*.exit; do
		[ -f "$f" ] || continue
		n=${f#logs/rank.}
		n=${n%.exit}
		code=''
		read -r code < "$f"
		printf 'rank %s %s %s\n' "$n" "${code:--1}" "$(stat -c %.3Y "$f" 2>/dev/null || echo 0)"
	done
	echo json
	head -c 65536 job.json
	;;
session-wait)
	cd "$dir" 2>/dev/null || { echo gone; exit 0; }
	end=$(( $(date +%s) + ${3:-300} ))
	st=''
	while :; do
		[ -f state ] && read -r st < state
		final "$st" && break
		[ -f session.json ] && ! grep -q '"state": *"starting"' session.json && break
		[ "$(date +%s)" -lt "$end" ] || break
		sleep 0.05
	done
	printf 'dir %s\nstate %s\njson\n' "$(pwd -P)" "$st"
	[ ! -f session.json ] || head -c 1048576 session.json
	;;
session-ended)
	cd "$dir" 2>/dev/null || { echo gone; exit 0; }
	end=$(( $(date +%s) + ${3:-30} ))
	st=''
	while [ "$(date +%s)" -lt "$end" ]; do
		[ -f state ] && read -r st < state
		final "$st" && ! alive && break
		sleep 0.05
	done
	echo "$st"
	;;
remove)
	# The other hosts are those the job's launch reached (run.sh's header,
	# written quoted by pystrib), through this host's own ssh as then.
	if [ -f "$dir/run.sh" ]; then
		eval "$(grep -m 1 '^ps_other_hosts=' "$dir/run.sh")"
		qd=$(printf '%s' "$dir" | sed "s/'/'\\\\''/g")
		eval "set -- ${ps_other_hosts:-}"
		kept=''
		for h; do
			ssh -o BatchMode=yes -o ConnectTimeout=10 "$h" "rm -rf -- '$qd'" </dev/null >/dev/null 2>&1 ||
				{ echo "unreached $h"; kept=1; }
		done
		# Kept here too, so that a later gc knows the hosts to try again.
		[ -z "$kept" ] || exit 0
	fi
	rm -rf -- "$dir"
	;;
cancel)
	want=$3
	if [ ! -f "$dir/job.json" ] && [ "${4:-}" = unstarted ]; then
		mkdir -p "$dir" 2>/dev/null
		if mkdir "$dir/.claimed" 2>/dev/null; then
			cd "$dir" || exit 1
			set_state "$want"
			echo "$want"
			exit 0
		fi
		# Its start claimed it first: wait until it runs, then stop it.
		i=0
		while [ ! -f "$dir/pid" ] && [ "$i" -lt 100 ]; do
			sleep 0.05
			i=$((i + 1))
		done
	fi
	if [ ! -f "$dir/job.json" ]; then
		echo "gone"
		exit 0
	fi
	cd "$dir" || exit 1
	st=''
	[ -f state ] && read -r st < state
	if final "$st"; then
		echo "$st"
		exit 0
	fi
	[ "$want" = timeout ] && : > timedout
	if alive; then
		# The job script alone: it stops mpirun once, which stops its
		# ranks (a second signal makes mpirun abort without doing so).
		# Slurm's scancel sends TERM to the job script and the steps.
		if [ -n "$sid" ]; then scancel "$sid" 2>/dev/null; else kill -TERM "$p" 2>/dev/null; fi
		i=0
		while [ "$i" -lt 100 ]; do
			[ -f state ] && read -r st < state
			final "$st" && break
			alive || break
			sleep 0.1
			i=$((i + 1))
		done
	fi
	[ -f state ] && read -r st < state
	if ! final "$st"; then
		# Open MPI puts each rank in a process group of its own, but
		# all stay in the job's session.
		if alive && [ -n "$sid" ]; then
			scancel -s KILL "$sid" 2>/dev/null
		elif alive; then
			pkill -KILL -s "$p" 2>/dev/null || kill -KILL -"$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null
		fi
		if [ -f container ] && [ -f runtime ]; then
			read -r rt < runtime
			read -r c < container
			case $rt in
			docker) docker rm -f "$c" >/dev/null 2>&1 ;;
			podman) podman rm -f -t 0 "$c" >/dev/null 2>&1 ;;
			esac
			# Over several hosts: the others' containers (run.sh's peers).
			qc=$(printf '%s' "$c" | sed "s/'/'\\\\''/g")
			[ ! -f peers ] || while IFS= read -r h; do
				ssh -o BatchMode=yes -o ConnectTimeout=10 "$h" "podman rm -f -t 0 '$qc'; rm -rf '/dev/shm/$qc'" </dev/null >/dev/null 2>&1 &
			done < peers
			wait
		fi
		# A registry login the job script had no time to remove, and the
		# job's shared-memory directory (launch.c).
		rm -rf .auth "/dev/shm/pystrib-${PWD##*/}"
		[ -f exit ] || { printf '%s\n' 137 > exit.tmp && mv -f exit.tmp exit; }
		[ -f ended ] || date +%s.%N > ended
		set_state "$want"
		st=$want
	fi
	# Nobody waits for this job's results in its container any more
	# (launch.c): let the container end.
	: > .collected 2>/dev/null
	echo "$st"
	;;
*)
	echo "jobctl.sh: unknown action '$action'" >&2
	exit 2
	;;
esac
