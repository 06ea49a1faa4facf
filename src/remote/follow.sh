# pystrib's log follower, run on the remote host by src/follow.c as
#   sh -c "$(cat follow.sh)" follow.sh DIR MODE NP  OUT ERR SEEN  OUT ERR SEEN ...
# DIR: the job directory; MODE: f (until the job ends), t (the same, then
# the results: a line "R" and a tar of results/ and logs/ until EOF, then
# the mark .collected), T (t without the mark: run in the job's container,
# whose end pystrib sees to), or o (what is there now, without waiting);
# per rank
# the byte offsets already received of logs/rank.N.out and .err (-1: not
# followed) and SEEN (1 if its exit was already reported). It prints, on
# stdout, lines of a small protocol:
#   D RANK o|e OFFSET LEN\n<LEN bytes of that file from OFFSET>
#   X RANK EXIT_CODE MTIME            rank.N.exit appeared
#   S STATE LAUNCHED                  the job's state changed
#   E STATE EXIT STARTED ENDED CODE [WHY]  the job ended (or MODE o: all shown)
# CODE: why it could not run, a word of src/reason.h (the job's `reason`;
# dir-gone, died or disk-full for lost), "-" when none; WHY: for lost, what
# happened, else the job's `error` line, if any.
# Log files only grow, so OFFSET+LEN bytes are always there to send.
# A Slurm job (a `slurm` file: src/slurm.h) runs on a node, its pid not
# one of this host's: Slurm says whether it lives (squeue, every 2 s or
# so), and a job Slurm ended without the directory's final state is lost
# (scancel of a pending job, a node that failed: `host`, with Slurm's
# state and nodes). A failed Slurm job whose first srun error is ranks
# killed on a node (or a node failure) names that node (`host`).
cd "$1" 2>/dev/null || { echo "E lost -1 0 0 dir-gone the job directory is gone"; exit 0; }
mode=$2 np=$3
shift 3
i=0
while [ "$i" -lt "$np" ]; do
	for v in "$1" "$2" "$3"; do
		case $v in ''|*[!0-9-]*) echo "follow.sh: bad offset '$v'" >&2; exit 2;; esac
	done
	eval "o$i=\$1 e$i=\$2 x$i=\$3"
	shift 3
	i=$((i + 1))
done
last='' lastl='' fast=0
sid='' ticks=0 gone=0
[ -f slurm ] && read -r sid < slurm
case $sid in *[!0-9_]*) sid='' ;; esac
# 0 when Slurm no longer runs job $sid (ended, or unknown to it now);
# 1 while it runs or waits, or when Slurm cannot be asked (it may be back).
slurm_ended() {
	s=$(squeue -h -j "$sid" -o %T 2>&1)
	r=$?
	case $s in
	PENDING|RUNNING|CONFIGURING|COMPLETING|SUSPENDED|REQUEUE*|RESIZING|SIGNALING|STAGE_OUT|STOPPED) return 1 ;;
	*"Invalid job id"*) return 0 ;;
	esac
	[ "$r" = 0 ]
}
# Why Slurm ended job $sid, as "CODE WHY" (reason.h's words).
slurm_gone_why() {
	j=$(scontrol -o show job "$sid" 2>/dev/null)
	js=$(printf '%s\n' "$j" | sed -n 's/.*JobState=\([^ ]*\).*/\1/p')
	jn=$(printf '%s\n' "$j" | sed -n 's/.* NodeList=\([^ ]*\).*/\1/p')
	jr=$(printf '%s\n' "$j" | sed -n 's/.* Reason=\([^ ]*\).*/\1/p')
	case $jn in '(null)') jn='' ;; esac
	case $jr in None) jr='' ;; esac
	case $js in
	'') echo "died Slurm job $sid ended without a final state, and Slurm no longer knows it (scancel, or a node failure: its MinJobAge passed)" ;;
	NODE_FAIL|BOOT_FAIL) echo "host Slurm job $sid ended $js${jn:+ on node $jn}${jr:+ ($jr)}: a node of its allocation failed" ;;
	CANCELLED) echo "died Slurm job $sid was cancelled outside pystrib (scancel)${jn:+ on node $jn}, before its job script wrote a final state" ;;
	*) echo "died Slurm job $sid ended $js${jn:+ on node $jn}${jr:+ ($jr)} without a final state (the job script was killed, or its node restarted)" ;;
	esac
}
# For a failed Slurm job: srun's first error on a rank, when it was ranks
# killed on a node ("srun: error: n2: tasks 2-3: Killed": not a rank's own
# failure, the other ranks' exits follow from it) or a node failure, as
# "node 'N' ...". Nothing else.
slurm_node() {
	l=$(grep -m 1 -E '^srun: error: (Node failure on [^ ]+|[^ :]+: tasks? [0-9,-]+: )' logs/job.err 2>/dev/null)
	case $l in
	*": Killed")
		l=${l#srun: error: }
		n=${l%%:*}
		t=${l#*: }
		t=${t%: Killed}
		case $t in tasks*) t="ranks ${t#tasks } were" ;; *) t="rank ${t#task } was" ;; esac
		echo "node '$n' failed under the job: $t killed there (SIGKILL: the node failed, ran out of memory, or someone killed them)" ;;
	*"Node failure on "*)
		n=${l#*Node failure on }
		echo "node '$n' failed under the job (Slurm: Node failure on $n)" ;;
	esac
}
# In a job's container (MODE T), its processes' pids are those of the
# container's own namespace: cpid; pid is the host's (docs/remote-job.md).
pidf=pid
[ "$mode" = T ] && pidf=cpid
while :; do
	alive=1
	if [ -f "$pidf" ]; then
		read -r p < "$pidf" && kill -0 "$p" 2>/dev/null || alive=0
	fi
	st=''
	[ -f state ] && read -r st < state
	l=0
	[ -f launched ] && read -r l < launched
	if [ "$st" != "$last" ] || [ "$l" != "$lastl" ]; then
		printf 'S %s %s\n' "$st" "$l"
		last=$st lastl=$l
	fi
	moved=0 exited=0
	# Every log's size in one process (not one per file: this loop runs
	# beside the ranks, on their cores), as lines "\nNAME SIZE\n".
	nl='
'
	sizes="$nl$(stat -c '%n %s' logs/rank.*.out logs/rank.*.err 2>/dev/null)$nl"
	i=0
	while [ "$i" -lt "$np" ]; do
		for s in o e; do
			eval "off=\$$s$i"
			[ "$off" -ge 0 ] || continue
			if [ "$s" = o ]; then f=logs/rank.$i.out; else f=logs/rank.$i.err; fi
			case $sizes in *"$nl$f "*) ;; *) continue;; esac
			size=${sizes#*"$nl$f "}
			size=${size%%"$nl"*}
			case $size in ''|*[!0-9]*) continue;; esac
			[ "$size" -gt "$off" ] || continue
			n=$((size - off))
			[ "$n" -le 1048576 ] || n=1048576
			printf 'D %s %s %s %s\n' "$i" "$s" "$off" "$n"
			tail -c +$((off + 1)) "$f" | head -c "$n"
			eval "$s$i=$((off + n))"
			moved=1
		done
		eval "x=\$x$i"
		if [ "$x" = 0 ] && [ -f "logs/rank.$i.exit" ]; then
			code=''
			read -r code < "logs/rank.$i.exit"
			printf 'X %s %s %s\n' "$i" "${code:--1}" "$(stat -c %.3Y "logs/rank.$i.exit" 2>/dev/null || echo 0)"
			eval "x$i=1"
			x=1
		fi
		[ "$x" = 0 ] || exited=$((exited + 1))
		i=$((i + 1))
	done
	[ "$moved" = 1 ] && continue
	if [ ! -f job.json ]; then
		echo "E lost -1 0 0 dir-gone the job directory was removed"
		exit 0
	fi
	case $st in
	succeeded|failed|timeout|cancelled)
		rc=-1 t0=0 t1=0
		[ -f exit ] && read -r rc < exit
		[ -f started ] && read -r t0 < started
		[ -f ended ] && read -r t1 < ended
		# Why it could not run, when the job script knew (run.sh).
		code='' why=''
		[ -f reason ] && read -r code < reason
		[ -f error ] && read -r why < error
		case $code in ''|*[!a-z-]*) code=- ;; esac
		if [ -n "$sid" ] && [ "$st" = failed ] && [ "$code" = - ] && [ -z "$why" ]; then
			why=$(slurm_node)
			[ -z "$why" ] || code=host
		fi
		# An error without a code: a job script of an older pystrib.
		if [ -n "$why" ] && [ "$code" = - ]; then
			case $why in "registry: "*) code=registry ;; *) code=host ;; esac
		fi
		printf 'E %s %s %s %s %s%s\n' "$st" "$rc" "$t0" "$t1" "$code" "${why:+ $why}"
		if [ "$mode" = t ] || [ "$mode" = T ]; then
			echo R
			# 1: a file changed as it was read (logs of a job just ended).
			tar --ignore-failed-read -cf - results logs
			rc=$?
			[ "$rc" -le 1 ] || exit "$rc"
			# Taken: a job's container (launch.c) waits for this to end.
			[ "$mode" = T ] || : > .collected 2>/dev/null
			exit 0
		fi
		exit 0
		;;
	esac
	if [ "$mode" = o ]; then
		printf 'E %s -1 0 0 -\n' "${st:-submitted}"
		exit 0
	fi
	if [ "$alive" = 0 ]; then
		# It may have written its final state just before it ended.
		[ -f state ] && read -r st < state
		case $st in succeeded|failed|timeout|cancelled) continue;; esac
		code=died why="the job script ended without a final state (killed, or the host restarted)"
		# Or it could not write it: a full disk stops a job's bookkeeping too.
		free=$(df -Pk . 2>/dev/null | awk 'NR == 2 { print $4 }')
		case $free in
		[0-9]*) [ "$free" -ge 64 ] || code=disk-full why="the job could not write its state: the disk is full (no space left on device)" ;;
		esac
		echo "E lost -1 0 0 $code $why"
		exit 0
	fi
	# Slurm's word, every 20 rounds (it asks slurmctld); twice in a row, so
	# that a final state being written as Slurm ends the job is read.
	if [ -n "$sid" ] && [ "$mode" != o ]; then
		ticks=$((ticks + 1))
		if [ "$ticks" -ge 20 ]; then
			ticks=0
			if slurm_ended; then gone=$((gone + 1)); else gone=0; fi
			if [ "$gone" -ge 2 ]; then
				[ -f state ] && read -r st < state
				case $st in succeeded|failed|timeout|cancelled) continue;; esac
				echo "E lost -1 0 0 $(slurm_gone_why)"
				exit 0
			fi
		fi
	fi
	# Every rank has exited: the job's end is moments away, so look more
	# often, for a while (not for ever: a job may hang after its ranks).
	if [ "$exited" -ge "$np" ] && [ "$fast" -lt 100 ]; then
		fast=$((fast + 1))
		sleep 0.02
	else
		sleep 0.1
	fi
done
