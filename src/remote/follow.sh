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
	# Every rank has exited: the job's end is moments away, so look more
	# often, for a while (not for ever: a job may hang after its ranks).
	if [ "$exited" -ge "$np" ] && [ "$fast" -lt 100 ]; then
		fast=$((fast + 1))
		sleep 0.02
	else
		sleep 0.1
	fi
done
