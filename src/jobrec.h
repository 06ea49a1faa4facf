#ifndef PYSTRIB_JOBREC_H
#define PYSTRIB_JOBREC_H

#include <stddef.h>

struct config;
struct remote_job_state;
struct ssh_conn;
struct ssh_target;

/*
 * Local job records: one JSON file per job (jansson) in
 * $XDG_STATE_HOME/pystrib/jobs/<id>.json (~/.local/state/pystrib/jobs/ when
 * XDG_STATE_HOME is unset or relative). docs/remote-job.md describes the
 * job and its id.
 *
 * Writes are atomic (a temporary file in the same directory, fsync'd, then
 * renamed over the record) and serialised by an flock on
 * <dir>/.lock, so several pystrib processes at once (two notebook cells, a
 * CI job beside a shell) never lose or corrupt a record; readers need no
 * lock. Fields this version does not know are kept on rewrite.
 */

/* "YYYYMMDD-HHMMSS-XXXXXX" and its NUL. */
#define JOBREC_ID_LEN 22
#define JOBREC_ID_SIZE (JOBREC_ID_LEN + 1)

struct jobrec_rank {
	int exit_code;		/* -1: unknown (still running, or never ended) */
	double duration;	/* seconds; < 0: unknown */
};

struct jobrec {
	char *id;
	char *remote;		/* NAME of [remote.NAME]; NULL: the default [remote] */
	char *host;		/* "[USER@]HOST[:PORT]" as given with --host, or NULL:
				 * then the remote's configuration says where */
	char *host_name;	/* "user@host:port" as connected (ssh_conn_name), for display */
	char *jobdir;		/* the remote job directory, "<workdir>/jobs/<id>" (may start "~/") */
	char *runtime;		/* "docker", "podman", "none" */
	char *image;		/* "REGISTRY/REPO:TAG@sha256:..." */
	char *digest;		/* "sha256:..." of the image manifest */
	char *revision;		/* git revision of the project (may end "-dirty"), or NULL */
	char *cell;		/* the cell file as given to run */
	char *results;		/* local results directory (absolute), or NULL */
	char *state;		/* last known state: submitted pulling running succeeded
				 * failed timeout cancelled lost; NULL: unknown */
	char *state_reason;	/* why, for `lost` (and other failures); may be NULL */
	int np;			/* ranks */
	int exit_code;		/* mpirun's exit status; -1: unknown */
	double created;		/* submission time, seconds since the epoch; 0: unknown */
	double started, ended;	/* from the remote's started/ended files; 0: unknown */
	double checked;		/* when `state` was last read from the remote; 0: never */
	struct jobrec_rank *ranks;	/* np entries (or NULL when np is 0) */

	void *extra;		/* private: the JSON object as loaded (unknown fields) */
};

void jobrec_init(struct jobrec *r);
void jobrec_release(struct jobrec *r);
void jobrec_free(struct jobrec *r);

/*
 * Sets r->np and (re)allocates r->ranks to np entries, the new ones unknown
 * (exit_code -1, duration -1); existing entries are kept.
 */
void jobrec_set_np(struct jobrec *r, int np);

/* Replaces the string field *field by a copy of value (NULL allowed). */
void jobrec_set(char **field, const char *value);

/* 1 for the final states (succeeded failed timeout cancelled lost), else 0. */
int jobrec_state_final(const char *state);

/*
 * A new job id for a job submitted now: the UTC time and 6 random lowercase
 * hex digits from getrandom(), never one with a local record already.
 * out must hold JOBREC_ID_SIZE bytes. 0 or -1.
 */
int jobrec_new_id(char *out);

/* 1 if id has the form of a job id (YYYYMMDD-HHMMSS-xxxxxx), else 0. */
int jobrec_id_valid(const char *id);

/* The records directory (absolute, not created). Caller frees. */
char *jobrec_dir(void);

/* The record file of id: "<dir>/<id>.json". Caller frees. */
char *jobrec_path(const char *id);

/*
 * Writes r (r->id must be valid) atomically under the lock, creating the
 * directory (0700) if needed. The file is 0600. 0 or -1 (PS_EXIT_USAGE,
 * with the path and the reason).
 */
int jobrec_save(const struct jobrec *r);

/*
 * Read-modify-write under the lock: loads the record of id, calls fn (which
 * changes r and returns 0, or -1 after error_set to write nothing), then
 * saves it. Use it rather than load + save whenever another process may be
 * updating the same record (run following a job while `jobs` refreshes its
 * state). 0 or -1.
 */
int jobrec_update(const char *id, int (*fn)(struct jobrec *r, void *ctx), void *ctx);

/*
 * Reads the record of id into r (initialised here). 0, or -1: no such
 * record (PS_EXIT_USAGE, "no job 'ID'"), or an unreadable/corrupt one.
 */
int jobrec_load(struct jobrec *r, const char *id);

/*
 * Every record, newest first: by the id's time (to the second), then by
 * the record's creation time (several submissions within one second).
 * Unreadable records are warned about and left out. *out is an array of
 * *n records (free with jobrec_list_free); an empty or missing directory
 * gives 0 records. 0 or -1.
 */
int jobrec_list(struct jobrec **out, size_t *n);
void jobrec_list_free(struct jobrec *v, size_t n);

/*
 * Finds the job a JOB argument means: "last" (the newest record), an exact
 * id, or a unique prefix of one. On 0, r holds the record (initialised
 * here). An empty argument, no match or several matches are PS_EXIT_USAGE
 * errors listing the candidates (at most 10, newest first). 0 or -1.
 */
int jobrec_resolve(struct jobrec *r, const char *arg);

/* Removes the record of id (under the lock). Missing is fine. 0 or -1. */
int jobrec_remove(const char *id);

/*
 * Loads the configuration of the job's remote and fills t with where to
 * connect: the configuration of r->remote, with r->host (when set) on top.
 * cfg is loaded here (the caller releases it either way). A remote that is
 * no longer configured is PS_EXIT_USAGE: "job 'ID' ran on remote 'NAME',
 * which is no longer configured in FILE", with a hint. 0 or -1.
 */
int jobrec_target(const struct jobrec *r, const char *config_file,
		  struct config *cfg, struct ssh_target *t);

/*
 * The job's remote directory: r->jobdir, else "<workdir>/jobs/<id>" with
 * the configured workdir (remote_job_dir). Caller frees.
 */
char *jobrec_remote_dir(const struct jobrec *r, const struct config *cfg);

/*
 * Where the job's results come back here, as an absolute path: want (a
 * --results flag) when given, else where they went before (r->results),
 * else "<[job] results>/<id>". Caller frees.
 */
char *jobrec_results_dir(const struct jobrec *r, const struct config *cfg, const char *want);

/*
 * jobrec_target, then ssh_conn_open (a new host key is never accepted
 * here: the job's host was known when it was submitted). On 0, *out is
 * the connection (ssh_conn_free) and cfg is loaded; the caller releases
 * cfg either way. 0, -1 (configuration) or an ssh_result.
 */
int jobrec_connect(const struct jobrec *r, const char *config_file, struct config *cfg,
		   struct ssh_conn **out);

/*
 * Copies what remote_job_read said into r: state and reason, exit code,
 * started/ended, per-rank exit codes and durations (rank ended - started),
 * and `checked` = now. Ranks the record does not know yet are added.
 */
void jobrec_apply_state(struct jobrec *r, const struct remote_job_state *st);

/*
 * 1 when the job's remote directory is known to be gone (removed by hand,
 * or by gc elsewhere): the reason jobrec_apply_state recorded says so.
 * The state is then `lost`, or the final state it had reached before.
 */
int jobrec_dir_gone(const struct jobrec *r);

/*
 * Sets the error for a job whose directory is gone (PS_EXIT_REMOTE):
 * "job 'ID' is lost: REASON", or for a job that had ended before,
 * "job 'ID' (STATE) has no directory on the remote any more: REASON";
 * with a hint naming what was fetched before, if anything. Returns -1.
 */
int jobrec_gone_error(const struct jobrec *r);

/*
 * The one JOB argument of `pystrib VERB [options] JOB`, after cli_getopt:
 * argv[optind], or NULL after a usage error (printed; exit PS_EXIT_USAGE)
 * when there is none or more than one.
 */
const char *jobrec_job_arg(int argc, char **argv, const char *verb, const char *help);

/*
 * What attach, fetch and logs do first: jobrec_resolve(arg),
 * jobrec_connect, jobrec_check, and an error (jobrec_gone_error) when the
 * job's remote directory is gone. 0, or -1 with the error set. The caller
 * releases r, cfg and *conn either way.
 */
int jobrec_open(struct jobrec *r, const char *arg, const char *config_file,
		struct config *cfg, struct ssh_conn **conn);

/* jobrec_update with jobrec_apply_state(st). 0 or -1. */
int jobrec_refresh(const char *id, const struct remote_job_state *st);

/*
 * Asks the remote for the job's state (remote_job_read on
 * jobrec_remote_dir), applies it to r and to the record on disk. 0 or < 0
 * (the record is then untouched).
 */
int jobrec_check(struct ssh_conn *c, const struct config *cfg, struct jobrec *r);

/*
 * Connections by remote, for the commands that go over many jobs (jobs,
 * gc): one connection per remote, opened on first use, a failure
 * remembered so that a remote down is tried once.
 */
struct jobrec_conns;
struct jobrec_conns *jobrec_conns_new(const char *config_file);
/*
 * The connection (and its configuration) for r's remote, or NULL with
 * *why set to the reason (owned by the cache) when it cannot be reached
 * or is no longer configured; *kind then gets the exit kind.
 */
struct ssh_conn *jobrec_conns_get(struct jobrec_conns *cc, const struct jobrec *r,
				  const struct config **cfg, const char **why, int *kind);
void jobrec_conns_free(struct jobrec_conns *cc);

/* Display helpers: local time "YYYY-MM-DD HH:MM:SS" ("-" for 0), a
 * duration "4.2s" "3m05s" "2h03m" ("-" for < 0), the tag of an image
 * reference ("REG/REPO:TAG@sha256:..." gives "TAG"; without a tag the
 * first 12 hex digits of the digest; "-" for NULL). Into out[n]. */
const char *jobrec_fmt_time(char *out, size_t n, double t);
const char *jobrec_fmt_duration(char *out, size_t n, double secs);
const char *jobrec_image_tag(char *out, size_t n, const char *image);

/* The display name of the job's remote: NAME, the --host given, or "default". */
const char *jobrec_remote_label(const struct jobrec *r);

#endif
