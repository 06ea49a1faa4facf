#ifndef PYSTRIB_OUTCOME_H
#define PYSTRIB_OUTCOME_H

#include "follow.h"
#include "reason.h"

/*
 * How a job ended, told the same way by every command that follows one
 * to its end (run, attach): the exit code, the summary on stderr (or the
 * `done` event with --json), a hint for what to do, and the job's local
 * record. One decision each, so that `run` and a later `attach` of the
 * same job agree on every line and on the exit code.
 */
struct outcome {
	const char *id;
	struct follow *f;	/* what was followed: state, reason code, ranks */
	const char *state;	/* the final state, when it is known better than
				 * f->state (a stop this process made); else NULL */
	const char *image;	/* the pinned reference "REGISTRY/REPO@sha256:...", or NULL */
	const char *tag;	/* the image's tag, named beside it; may be NULL */
	const char *results;	/* where results/ and logs/ came back, or NULL */
};

/*
 * The exit code of a job that ended in `state` for `code`: 0 succeeded,
 * PS_EXIT_TIMEOUT, PS_EXIT_INTERRUPTED (cancelled), PS_EXIT_REMOTE (lost,
 * or the host could not run it), PS_EXIT_REGISTRY (the host's pull was
 * refused), else PS_EXIT_RANK. ranks_ran is 0 when no rank has an exit
 * code: a failure then is the job script's, not a rank's.
 */
int outcome_exit_code(const char *state, enum job_reason code, int ranks_ran);

/* What to do about a job that could not run for `code`; NULL when nothing is known. */
const char *outcome_hint(enum job_reason code);

/*
 * Tells the outcome: the summary (or the done event) and the hint, and
 * the job's record updated (a final state known before is never turned
 * into `lost`). Returns the exit code.
 */
int outcome_report(const struct outcome *o);

/*
 * How one rank ended, for a summary line: "exit 3", "killed by SIGKILL
 * (exit 137)", "stopped by pystrib's SIGTERM at the timeout (exit 143)".
 * Into out[n]; returns out.
 */
const char *outcome_rank_text(char *out, size_t n, int exit_code, const char *state);

#endif
