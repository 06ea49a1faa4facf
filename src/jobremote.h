#ifndef PYSTRIB_JOBREMOTE_H
#define PYSTRIB_JOBREMOTE_H

struct config;
struct jobrec;
struct remote_job_state;
struct ssh_conn;
struct ssh_target;

/*
 * Reaching a job (its record, jobrec.h) on its remote host: the
 * configuration and address of its remote, its directory there, reading
 * its state back into the record, and connections shared by the commands
 * that go over many jobs.
 */

/*
 * Records in r where the job is reached (t, as connected at submit), the
 * remote workdir and the config file read (NULL: none), so that the job
 * can be reached again from any directory with any config or none. Paths
 * are made absolute.
 */
void jobrec_set_target(struct jobrec *r, const struct ssh_target *t, const char *config_file,
		       const char *workdir);

/*
 * Loads the configuration of the job's remote into cfg, from config_file
 * (-c FILE) when given, else from the file the job was submitted with
 * (r->config_file) while it is there, else the usual search: that of
 * r->remote ([remote.NAME]), else the default [remote]. A remote that is
 * no longer configured is fine when the record says where the job is (the
 * default [remote] is loaded then, for the rest); else it is PS_EXIT_USAGE:
 * "job 'ID' ran on remote 'NAME', which is no longer configured in FILE",
 * with a hint. The caller releases cfg either way. 0 or -1.
 */
int jobrec_config(const struct jobrec *r, const char *config_file, struct config *cfg);

/*
 * jobrec_config, and fills t with where to connect: the record's own
 * target when it has one (r->ssh_host: host, port, user, identity,
 * known_hosts as recorded; a recorded file that is gone is PS_EXIT_USAGE,
 * "cannot reach job 'ID': its identity file 'PATH' is gone"); else the
 * configuration's, with r->host (--host) on top when set. 0 or -1.
 */
int jobrec_target(const struct jobrec *r, const char *config_file,
		  struct config *cfg, struct ssh_target *t);

/*
 * The job's remote directory: r->jobdir, else "<workdir>/jobs/<id>" with
 * the recorded workdir, else the configured one (remote_job_dir). Caller
 * frees.
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

/* jobrec_update with jobrec_apply_state(st). 0 or -1. */
int jobrec_refresh(const char *id, const struct remote_job_state *st);

/*
 * Asks the remote for the job's state (remote_job_read on
 * jobrec_remote_dir), applies it to r and to the record on disk. 0 or < 0
 * (the record is then untouched).
 */
int jobrec_check(struct ssh_conn *c, const struct config *cfg, struct jobrec *r);

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

#endif
