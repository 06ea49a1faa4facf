#ifndef PYSTRIB_SLURM_H
#define PYSTRIB_SLURM_H

#include <stddef.h>

#include "buf.h"
#include "config.h"
#include "ssh.h"

/*
 * Slurm as the scheduler of a job ([remote] scheduler = slurm): the host is
 * a login host, the job directory (docs/remote-job.md) lies where every
 * node sees it, and `run` submits the job with `sbatch --parsable` of a
 * batch script, slurm.sh, that runs the same run.sh on the first node of
 * the allocation; its ranks start with `srun --mpi=pmix`. The Slurm job id
 * goes to the job directory's `slurm` file and to the record; jobctl.sh
 * asks squeue whether such a job lives, and cancels it with scancel.
 *
 * The parsers are pure functions of what sbatch, squeue and scontrol
 * print; the rest runs one remote command each.
 */

/* What Slurm says of a job. */
struct slurm_state {
	char state[32];		/* "PENDING", "RUNNING", "CANCELLED", ...; "" unknown */
	char reason[128];	/* squeue's %r / scontrol's Reason ("Resources"); "" none */
	char nodes[128];	/* NodeList, when scontrol said; "" else */
};

/*
 * Splits `words` as a POSIX shell would split a line of plain words
 * ('...', "..." with \" \\ \$ \`, \ outside quotes; no expansion) and
 * appends each word, shquote'd, with a space before it, to out. 0, or -1
 * with PS_EXIT_USAGE (an unclosed quote, or $ ` ; | & < > ( ) outside
 * quotes: not plain words).
 */
int slurm_split_words(const char *words, struct buf *out);

/*
 * The sbatch options of the job: --parsable, --no-requeue (a job is one
 * run), --job-name=pystrib-ID, --output=logs/slurm.out, --ntasks=np, then
 * [slurm] nodes, ntasks_per_node, gpus_per_node, partition, account, the
 * time limit (timeout > 0: its seconds plus a minute, so that the job's
 * own watchdog comes first; else [slurm] time) and [slurm] extra, each
 * word quoted, appended to out. 0 or -1 (a bad extra).
 */
int slurm_sbatch_options(const struct slurm_config *sc, const char *id, int np, int timeout,
			 struct buf *out);

/* The batch script slurm.sh for job id, appended to out. */
void slurm_batch_script(const char *id, struct buf *out);

/*
 * The job id from `sbatch --parsable` output ("1234\n" or
 * "1234;cluster\n"), into id (size bytes). 0, or -1 when it is not one.
 */
int slurm_parse_sbatch(const char *out, char *id, size_t size);

/*
 * Parses one line of `squeue -h -o '%T %r'` ("PENDING Resources") or of
 * `scontrol -o show job` ("JobId=12 ... JobState=CANCELLED Reason=None
 * ... NodeList=n[1-2] ..."), whichever `text` is, into st. Pure. 0, or -1
 * when text names no state (the job is unknown to Slurm).
 */
int slurm_parse_state(const char *text, struct slurm_state *st);

/* 1 if a Slurm job state is one of a job not ended yet (PENDING, RUNNING, ...). */
int slurm_state_active(const char *state);

/*
 * The error of a failed sbatch (exit status, its stderr), with Slurm's own
 * message and a fix: an unknown partition or a rejected option is
 * PS_EXIT_USAGE, no sbatch on the host PS_EXIT_REMOTE. Returns -1.
 */
int slurm_submit_error(const char *host, int status, const char *err);

/*
 * Creates the job directory dir, writes job.json, run.sh and slurm.sh into
 * it, state `submitted`, and submits slurm.sh with the options of
 * slurm_sbatch_options, in one remote command (the files on its stdin).
 * The Slurm job id goes to dir/slurm and, on 0, to *slurm_id (caller
 * frees). On failure the directory is removed again. 0 or -1.
 */
int slurm_submit(struct ssh_conn *c, const struct slurm_config *sc, const char *id, int np,
		 int timeout, const char *dir, const char *job_json, const char *run_sh,
		 char **slurm_id);

/*
 * What Slurm says of job slurm_id now (squeue, else scontrol): 0 with st
 * filled, 1 when Slurm no longer knows the job, < 0 on SSH failures.
 */
int slurm_query(struct ssh_conn *c, const char *slurm_id, struct slurm_state *st);

/*
 * Why Slurm job slurm_id, which Slurm ended (st) without its directory's
 * final state, is lost: the reason code ("host" for NODE_FAIL and
 * BOOT_FAIL, else "died") is returned, the text appended to why. The
 * same words as follow.sh's. Pure.
 */
const char *slurm_lost_reason(const char *slurm_id, const struct slurm_state *st, struct buf *why);

/*
 * A node's failure in the text of a failed Slurm job's logs/job.err: when
 * srun's first error on ranks is ranks killed on a node ("srun: error: n2:
 * tasks 2-3: Killed") or "Node failure on n2", appends "node 'n2' failed
 * under the job: ..." (follow.sh's words) to why and returns 1; else 0
 * (a rank's own failure first, or no srun error). Pure.
 */
int slurm_parse_node_failure(const char *job_err, struct buf *why);

/*
 * For `jobs` and `status`: a record of a Slurm job that its directory says
 * is not ended (`submitted`, `running`, ...) or `lost` gets what Slurm
 * says, in memory only: state `pending` with Slurm's reason ("Resources")
 * while it waits; once Slurm ended it, state `lost` with
 * slurm_lost_reason's code and text, as its follower would have said.
 * Errors are dropped (the directory's state stands).
 */
struct jobrec;
void slurm_check_record(struct ssh_conn *c, struct jobrec *r);

/*
 * For `status`: a record of a Slurm job that `failed` with no reason of
 * its own gets the node that failed under it, from its logs/job.err
 * (slurm_parse_node_failure), as reason `host`, in memory only. One
 * remote command; errors are dropped.
 */
void slurm_check_failed(struct ssh_conn *c, struct jobrec *r);

#endif
