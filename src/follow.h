#ifndef PYSTRIB_FOLLOW_H
#define PYSTRIB_FOLLOW_H

#include <stdint.h>
#include <stdio.h>

#include "buf.h"
#include "reason.h"
#include "ssh.h"

/*
 * Follows a remote job's per-rank output (logs/rank.N.out and .err, see
 * docs/remote-job.md) until the job ends, as `run`, `attach` and
 * `logs -f` show it: one long-running remote command (src/remote/follow.sh)
 * streams what each file gained since the byte offset already received,
 * and says when a rank exits and when the job's state changes.
 *
 * Lines are printed as they complete, prefixed "[N] " (coloured on a TTY),
 * a rank's stdout to `out`, its stderr to `err`; with --json (log_json)
 * each line is an {"event":"output"} instead, and rank exits are
 * {"event":"rank_exit"}, stages {"event":"status"}.
 *
 * When the connection drops, follow_job says so on stderr, reconnects with
 * backoff for up to reconnect_timeout seconds and continues every file from
 * its offset: no line is lost or shown twice.
 */

enum { FOLLOW_STDOUT = 1, FOLLOW_STDERR = 2 };

struct follow_rank {
	uint64_t off[2];	/* bytes received of rank.N.out, rank.N.err */
	struct buf partial[2];	/* the unfinished last line of each */
	struct buf err_tail;	/* the last lines of its stderr (capped) */
	int exit_code;		/* -1 until rank.N.exit is seen */
	double ended;		/* when it exited (seconds since the epoch), 0 unknown */
	double duration;	/* ended - the job's launch time, -1 unknown */
};

struct follow {
	/* settings (set before follow_job) */
	const char *dir;		/* the job directory (remote_job_dir) */
	int np;				/* ranks */
	int only_rank;			/* -1: every rank */
	int streams;			/* FOLLOW_STDOUT | FOLLOW_STDERR (0: both) */
	int once;			/* 1: print what is there and return, do not wait */
	int no_prefix;			/* 1: no "[N] " (logs --rank N) */
	int reconnect_timeout;		/* seconds; 0: 600 */
	double deadline;		/* now_monotonic() to give up (SSH_R_TIMEOUT); 0 none */
	FILE *out, *err;		/* NULL: stdout, stderr */
	int color;			/* -1: when `out` is a TTY; 0 never; 1 always */
	/*
	 * Optional, for `run`: a remote command to run first, in the same round
	 * trip (remote_job_start_command), with stdin_data as its stdin. Used
	 * for the first connection only.
	 */
	const char *start_cmd;
	const void *stdin_data;
	size_t stdin_len;
	/*
	 * Or: the first round trip's command is not known yet (the image is
	 * still being pushed). The remote login starts at once with a command
	 * that reads the real one from its stdin, which is read from start_fd
	 * until EOF: follow_start_message() is what to write there. -1: none.
	 */
	int start_fd;
	/*
	 * Optional: once the job ended, the same round trip sends a tar of
	 * results/ and logs/, given to on_tar as it arrives. on_tar(ctx, NULL,
	 * 0) marks the start of a tar (again after a reconnection: start over);
	 * return -1 after error_set to stop. f->tar_done is set when the
	 * whole tar arrived.
	 */
	int (*on_tar)(void *ctx, const void *data, size_t len);
	int tar_done;
	/* called when the job's state changes ("pulling", "running"); may be NULL */
	void (*on_state)(void *ctx, const char *state);
	void *ctx;

	/* what was seen (valid after follow_job, also on failure) */
	struct follow_rank *ranks;	/* np of them */
	char *state;			/* the final state (succeeded failed timeout cancelled lost), or the last seen */
	char *reason;			/* for "lost": why; else the job's `error` line
					 * (why it could not run), or NULL */
	enum job_reason code;		/* the code of that (REASON_NONE: none, e.g. a
					 * rank's own failure); for lost REASON_DIR_GONE,
					 * REASON_DIED, REASON_DISK_FULL, or REASON_HOST
					 * (a Slurm node that failed) */
	int exit_code;			/* the job's exit status, -1 unknown */
	double started, launched, ended;	/* seconds since the epoch, 0 unknown */
	int reconnects;			/* how many times the connection was re-made */
	int done;			/* 1 once the job ended (or, with once, all was shown) */

	/* private */
	int mode, cur_rank, cur_stream, started_cmd;
	uint64_t remaining;
	struct buf hdr, ferr;
	int ansi;
};

/* Sets the defaults (both streams, every rank) and allocates the ranks. */
void follow_init(struct follow *f, const char *dir, int np);
void follow_release(struct follow *f);

/*
 * Follows until the job ends (f->done, f->state final): 0. Or < 0 with the
 * error set: SSH_R_INTERRUPTED (`interrupted`), SSH_R_TIMEOUT (deadline),
 * SSH_R_HOSTKEY_CHANGED / SSH_R_AUTH / SSH_R_DROPPED when reconnecting
 * failed or timed out, SSH_R_FAILED. The connection is usable after
 * SSH_R_INTERRUPTED and SSH_R_TIMEOUT (to cancel the job).
 */
int follow_job(struct ssh_conn *c, struct follow *f);

/*
 * As follow_job, for a job whose container the engine started (runtime
 * docker without a remote shell): the follower runs in the container
 * (docker exec through the engine's socket), which has the job directory
 * at dir, and first writes host_pid (the container's main process as the
 * host numbers it; 0: unknown) as the job's pid file for the host's
 * tools. If that cannot go on (the container went, the connection
 * dropped), follow_job goes on from the same offsets.
 */
int follow_job_engine(struct ssh_conn *c, struct follow *f, const char *socket,
		      const char *container, const char *dir, long host_pid);

/*
 * What to write to f->start_fd: the command "START && exec FOLLOWER" for
 * the remote shell that waits for it, then `in` (the job script's stdin).
 * Call it before follow_job has received anything. Caller frees (*len
 * bytes; wipe them when `in` is secret).
 */
char *follow_start_message(struct follow *f, const char *start_cmd, const void *in,
			   size_t in_len, size_t *len);

/*
 * Feeds bytes of the follower protocol (what src/remote/follow.sh prints)
 * to f, as follow_job does; for tests. 0, or -1 on a protocol error.
 */
int follow_feed(struct follow *f, const char *data, size_t len);

/*
 * The last `lines` lines of rank r's stderr as received (for the summary
 * of a failed rank); a pointer into f, "" when none.
 */
const char *follow_err_tail(struct follow *f, int rank, int lines);

#endif
