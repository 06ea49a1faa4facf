#ifndef PYSTRIB_REMOTE_JOB_H
#define PYSTRIB_REMOTE_JOB_H

#include <stddef.h>

#include "reason.h"
#include "ssh.h"

/*
 * A job's directory on the remote host, <workdir>/jobs/<id>/ (the layout
 * is docs/remote-job.md): creating it, starting the job detached, reading
 * its state, cancelling it. Used by `run` and by the jobs commands.
 *
 * Paths are remote paths as configured ("~/.pystrib/jobs/<id>"; a leading
 * "~/" is the remote user's home); every command is built with shquote.h.
 * Functions return 0 or an ssh_result (< 0) with the error set.
 */

/*
 * Appends "sh -c <jobctl.sh> jobctl.sh ACTION DIR" (the embedded script,
 * every word quoted): the remote command of one jobctl.sh action. Its
 * further arguments, if any, the caller appends, quoted.
 */
void remote_job_jobctl(struct buf *cmd, const char *action, const char *dir);

/* "<workdir>/jobs/<id>" (workdir NULL: "~/.pystrib"). Caller frees. */
char *remote_job_dir(const char *workdir, const char *id);

/* "<workdir>/layers": where runtime none's layer files are kept by digest. */
char *remote_job_layers_dir(const char *workdir);

/*
 * Uploads a layer file as <workdir>/layers/<hex>.tar.gz unless a file of
 * that name is there already (layers are named by content). digest is
 * "sha256:<hex>". 0 or < 0.
 */
int remote_job_put_layer(struct ssh_conn *c, const char *workdir, const char *digest,
			 const char *local_path);

/*
 * Appends "mkdir -p LAYERS && head -c SIZE > TMP && ... mv TMP LAYER && ":
 * the remote command that stores the layer `digest` from its stdin (size
 * bytes), for callers that send a small layer in the same round trip as
 * the job's start instead of uploading it first. id names the temporary
 * file. 0, or -1 (PS_EXIT_USAGE) for a bad digest.
 */
int remote_job_layer_from_stdin(struct buf *cmd, const char *workdir, const char *digest,
				unsigned long long size, const char *id);

/*
 * Creates dir (and logs/, results/), uploads job.json and run.sh (mode
 * 0755), writes state "submitted", then starts `setsid sh run.sh` in dir,
 * detached from the SSH session, with the job script's stdout and stderr
 * in logs/job.err. stdin_line (may be NULL: none) is given to the script
 * as its first line of stdin (the registry password: never on a command
 * line, never in a file). Returns once the script has written `pid`.
 */
int remote_job_submit(struct ssh_conn *c, const char *dir, const char *job_json,
		      const char *run_sh, const char *stdin_line);

/*
 * The remote command remote_job_submit runs (creates dir, writes job.json
 * and run.sh, starts it detached, exits 0 once it runs), appended to cmd,
 * for callers that chain it with more in one round trip (run: start, then
 * follow). Its stdin goes to the job script. 0, or -1 when job_json and
 * run_sh are too large to pass this way (use remote_job_submit).
 */
int remote_job_start_command(struct buf *cmd, const char *dir, const char *job_json,
			     const char *run_sh);

/* What remote_job_read says about a job. */
struct remote_job_state {
	char *state;		/* submitted pulling running succeeded failed timeout
				 * cancelled, or "lost" (directory gone, or the job
				 * script died without a final state); never NULL on 0 */
	char *reason;		/* for "lost": why; else the job's `error` line (why it
				 * could not run: "registry: ..." for the registry's
				 * side, else the host's), or NULL */
	enum job_reason code;	/* the code of that (the job's `reason` file,
				 * docs/remote-job.md); REASON_DIR_GONE and
				 * REASON_DIED for the two kinds of lost;
				 * REASON_NONE: none (a rank's own failure) */
	int exit_code;		/* mpirun's (or the job script's) exit; -1 unknown */
	double started;		/* seconds since the epoch; 0 unknown */
	double ended;
	int np;			/* ranks known (size of rank_exit); from job.json */
	int *rank_exit;		/* per rank: exit code, -1 when not (yet) known */
	double *rank_ended;	/* per rank: when rank.N.exit was written; 0 unknown */
	char *job_json;		/* the job.json text ("" when unreadable) */
};

void remote_job_state_release(struct remote_job_state *st);

/* Reads the job's files in one round trip. 0 or < 0 (SSH failures only). */
int remote_job_read(struct ssh_conn *c, const char *dir, struct remote_job_state *st);

/*
 * Parses what `jobctl.sh read` printed (len bytes, need not end in NUL)
 * into st (release it after, also on failure). Pure: no I/O; any bytes are
 * taken (unknown lines skipped, rank numbers past job.json's np ignored).
 * For "gone" the reason names no directory (remote_job_read adds it). 0.
 */
int remote_job_parse(const char *text, size_t len, struct remote_job_state *st);

/*
 * Stops the job: TERM to its process group (the job script then stops
 * its container and writes the final state itself); after up to 10 s,
 * KILL to the group, `docker|podman rm -f` of its container, and the state
 * written here. `final` is "cancelled" or "timeout". A job already in a
 * final state is left as it is. *final_state (may be NULL) gets the state
 * the job ended in (caller frees). 0 or < 0.
 */
int remote_job_cancel(struct ssh_conn *c, const char *dir, const char *final,
		      char **final_state);

/*
 * The same for a job whose start may still be on its way (its command was
 * sent, nothing was heard back): if it has not started, it never will (the
 * start and this claim the job directory atomically) and *final_state is
 * `final`; if it has, it is stopped as above.
 */
int remote_job_cancel_unstarted(struct ssh_conn *c, const char *dir, const char *final,
				char **final_state);

#endif
