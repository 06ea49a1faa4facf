#ifndef PYSTRIB_JOBSTATE_H
#define PYSTRIB_JOBSTATE_H

/*
 * The states in which a job has ended, in one place for the C side.
 *
 * The outcomes are what the job's own scripts write into its `state` file
 * when it ends: src/remote/jobctl.sh's final() and the case patterns of
 * src/remote/follow.sh list exactly these (test_jobstate checks that they
 * agree with this list). `lost` is final too, but no job script writes it:
 * pystrib says it (follow.sh's `E lost` line, remote_job_read) when the job
 * directory is gone or the job script died without an outcome, and a job
 * seen again after that is followed again.
 */
#define JOB_OUTCOMES(X) X(succeeded) X(failed) X(timeout) X(cancelled)
#define JOB_STATE_LOST "lost"

/* The outcomes in the order above, NULL-terminated. */
extern const char *const job_outcomes[];

/* 1 for an outcome (succeeded failed timeout cancelled), else 0 (NULL too). */
int job_state_outcome(const char *state);

/* 1 for the final states, the outcomes and lost; else 0 (NULL too). */
int job_state_final(const char *state);

#endif
