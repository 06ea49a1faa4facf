#ifndef PYSTRIB_RUN_H
#define PYSTRIB_RUN_H

#include <stdatomic.h>

#include "buf.h"
#include "config.h"
#include "context.h"
#include "follow.h"
#include "jobrec.h"
#include "push.h"
#include "ssh.h"

/*
 * The run pipeline: what `pystrib run` does once its options are parsed.
 * It builds the cell's context, pushes the image, starts the job on the
 * remote host and follows it to its outcome, by one of three launch
 * strategies, chosen in run_job():
 *
 *   - in turn (run.c): push, connect, submit through a shell, follow; for
 *     runtime none (its layers go up over SSH) and --detach;
 *   - overlapped (run_push.c): the push in a thread while this one logs in
 *     and starts a remote shell that waits for the job's command; the
 *     image pulled through the engine's socket meanwhile, for docker;
 *   - through the engine (run_engine.c): no remote shell at all; the
 *     engine pulls, creates and starts the job's container, and the job
 *     is followed inside it. Whatever keeps it from starting, the job
 *     starts through a shell instead.
 *
 * The outcome (exit code, summary, the record) is outcome.h's, as for
 * `attach`.
 */

/* What the command line gave; the rest of struct run is the pipeline's. */
struct run_options {
	const char *remote;		/* --remote NAME, or NULL */
	const char *host;		/* --host DEST, or NULL */
	const char *results;		/* --results DIR, or NULL */
	const char **env;		/* --env KEY=VALUE values (validated) */
	size_t nenv;
	char **args;			/* the cell's arguments, NULL-terminated */
	int accept_new;			/* --accept-new-host-key */
	int detach;			/* --detach */
	const char *name;		/* session --name, or NULL */
	int session;			/* session start (docs/sessions.md) */
	int idle_timeout;		/* session --idle-timeout; < 0: the hub's default */
};

struct run {
	struct run_options opt;
	struct config cfg;
	struct context_options copts;
	struct context ctx;
	struct pushed_image img;
	int have_img;
	struct ssh_target target;
	struct ssh_conn *conn;
	char id[JOBREC_ID_SIZE];
	char *dir;			/* the remote job directory */
	char *results;			/* where the results come back (absolute) */
	double created;
	struct follow f;
	int have_follow;
	/*
	 * Not detached: the job is started by the follower's own round trip
	 * (start, follow, results in one remote command). start is that
	 * command's first part, start_in its stdin (runtime none's cell
	 * layer, or the registry password: wiped once sent).
	 */
	struct buf start, start_in;
	struct results_unpack *unpack;
	int deferred;		/* the push runs beside the SSH login (run_overlapped) */
	int announced;		/* the job record, event and line are out */
	int pulled;		/* the image was put on the host through the engine */
	atomic_int early_stop;	/* the job is over: an early pull can stop */
	char *slurm_id;		/* scheduler slurm: the Slurm job id, once submitted */
	struct run_hosts *hosts;	/* [remote] hosts: one job over several (run_hosts.c) */
};

/* A setting the command line gave: KEY ("job.np"), its VALUE (NULL: not given), its ORIGIN. */
struct run_flag {
	const char *key, *value, *origin;
};

/*
 * r->cfg: the configuration of r->opt.remote (the global -c FILE), then
 * the flags given (the list ends with a NULL key). 0 or -1.
 */
int run_load_config(struct run *r, const struct run_flag *flags);

/* Adds an --env KEY=VALUE (kv stays the caller's) after checking KEY. 0 or -1. */
int run_add_env(struct run *r, const char *kv);

/* Zeroes r and starts its clock (for the -v timings). */
void run_init(struct run *r);
void run_release(struct run *r);

/*
 * Runs the job r->copts.cell with r->cfg loaded and r->opt set: the whole
 * pipeline, reported once. Returns the command's exit code.
 */
int run_job(struct run *r);

/*
 * `session start`: the same pipeline for a session (r->opt.session): the
 * context with a session's cell layer, the push, the connection, the job
 * submitted through jobctl.sh start, then session_wait_started (session.h).
 * The engine's path (no remote shell) is not taken for sessions. Returns
 * the command's exit code.
 */
int run_session(struct run *r);

/* ---- between the pipeline's files (run.c, run_push.c, run_engine.c) ---- */

/* With -v, when a stage ended, from the start of the command. */
void run_stage(const char *what);
/* Connects to the host. 0, or -1 with the error set. */
int run_open_conn(struct run *r);
/* The follower's settings for this job (f, its callbacks). */
void run_init_follow(struct run *r);
/* The job record, the job event and the line saying where it runs; once. */
void run_announce(struct run *r);
/*
 * Writes the job's start (run.sh, job.json) through a shell: into r->start
 * and r->start_in for the follower's round trip, or submitted on its own
 * (--detach, or too large for one command line). 0 or -1.
 */
int run_submit(struct run *r);
/* Connected, the image pushed: the job started through a shell, followed. */
int run_submit_and_follow(struct run *r);
/* After follow_job returned rc: stop, fetch, the outcome. The exit code. */
int run_after_follow(struct run *r, int rc);
/*
 * The credentials the host logs in to the registry with (auth.h's lookup
 * for the pushed image's registry): 1 with *out filled (a username and
 * password), 0 when there are none, -1 with the error set.
 */
struct credentials;
int run_credentials(const struct run *r, struct credentials *out);
/* job.json's text for this job. Caller frees. */
char *run_job_json(const struct run *r, const char *image);
/* What every runtime's job script takes from the run. */
struct launch_spec;
void run_base_spec(const struct run *r, struct launch_spec *s);

/* run_push.c: the push in a thread beside the login and the follower. */
int run_overlapped(struct run *r);
/*
 * The push in a thread (with pull, for docker, then the engine's pull
 * through its socket, a head start only) while this thread connects: 0
 * once both are done, or the error of the one that failed, reported (exit
 * code).
 */
int run_push_beside_login(struct run *r, int pull);
/*
 * Has the engine pull the image through its socket over conn (a second
 * connection when conn is NULL); sets r->pulled. stop (may be NULL) ends
 * it early. 0 or -1 with the error set.
 */
int run_pull_through_engine(struct run *r, struct ssh_conn *conn, atomic_int *stop);

/*
 * run_hosts.c: one job over several hosts, runtime none or podman. check: with
 * [remote] hosts (and no --host), refuses what cannot run over them
 * (exit 2) and parses the list into r->hosts, the first host as
 * r->target. 0 or -1. place: pushes the image (podman), connects to
 * every host (r->conn the first) and places the cell (runtime none; a
 * session's too) or a job directory (podman) on all but the first, in
 * r->dir; 0 or -1. on_hosts: places, then submits on the first and
 * follows; the exit code.
 */
struct run_hosts;
int run_hosts_check(struct run *r);
int run_hosts_place(struct run *r);
int run_on_hosts(struct run *r);
void run_hosts_spec(const struct run *r, struct launch_spec *s);
void run_hosts_free(struct run_hosts *h);
/* run_engine.c */
int run_engine_eligible(const struct run *r);
int run_through_engine(struct run *r);

#endif
