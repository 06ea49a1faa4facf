#ifndef PYSTRIB_JOBARG_H
#define PYSTRIB_JOBARG_H

struct jobrec;

/*
 * The JOB argument of the commands that act on one job (attach, cancel,
 * fetch, logs, status): an id, a unique prefix of one, or "last". Most
 * commands get it through cmd_setup (cmdctx.h) with NEED_JOB.
 */

/*
 * The one JOB argument of `pystrib VERB [options] JOB`, after cli_getopt:
 * argv[optind], or NULL after a usage error (printed; exit PS_EXIT_USAGE)
 * when there is none or more than one.
 */
const char *jobrec_job_arg(int argc, char **argv, const char *verb, const char *help);

/*
 * Finds the job a JOB argument means: "last" (the newest record), an exact
 * id, or a unique prefix of one. On 0, r holds the record (initialised
 * here). An empty argument, no match or several matches are PS_EXIT_USAGE
 * errors listing the candidates (at most 10, newest first). 0 or -1.
 */
int jobrec_resolve(struct jobrec *r, const char *arg);

#endif
