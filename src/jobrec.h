#ifndef PYSTRIB_JOBREC_H
#define PYSTRIB_JOBREC_H

#include <stddef.h>

#include "jobstate.h"

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
 *
 * This file is the records only. Beside it: jobarg.h (the JOB argument of
 * a command), jobremote.h (reaching the job on its remote host) and
 * jobfmt.h (a record's fields for display).
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
	/*
	 * Where the job was reached at submit, so that it can be reached
	 * again from any directory, with any config or none
	 * (jobrec_set_target, jobrec_target): each NULL (or 0) when unknown,
	 * then the config fills it in.
	 */
	char *ssh_host;		/* a name, address or ~/.ssh/config alias */
	int ssh_port;		/* 0: ~/.ssh/config's, else 22 */
	char *ssh_user;		/* NULL: ~/.ssh/config's, else the local user */
	char *identity;		/* the private key file (absolute) */
	char *known_hosts;	/* the known_hosts file (absolute); NULL: ~/.ssh/known_hosts */
	char *workdir;		/* the remote workdir ("~/.pystrib") */
	char *config_file;	/* the config file read at submit (absolute), or NULL */
	char *runtime;		/* "docker", "podman", "none" */
	char *kind;		/* "session" (docs/sessions.md), or NULL: a job */
	char *name;		/* a session's --name (a JOB argument finds it), or NULL */
	char *image;		/* "REGISTRY/REPO:TAG@sha256:..." */
	char *digest;		/* "sha256:..." of the image manifest */
	char *revision;		/* git revision of the project (may end "-dirty"), or NULL */
	char *cell;		/* the cell file as given to run */
	char *results;		/* local results directory (absolute), or NULL */
	char *state;		/* last known state: submitted pulling running succeeded
				 * failed timeout cancelled lost; NULL: unknown */
	char *state_reason;	/* why, for `lost` (and other failures); may be NULL */
	char *state_code;	/* the code of that (reason.h's names: "dir-gone", ...), or NULL */
	char *slurm_id;		/* scheduler slurm: the Slurm job id ("1234"), else NULL */
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
 * directory (0700) if needed. The file is 0600. 0 or -1 (PS_EXIT_IO,
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
 * record (PS_EXIT_USAGE, "no job 'ID'"), or an unreadable/corrupt one
 * (PS_EXIT_IO).
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

/* Removes the record of id (under the lock). Missing is fine. 0 or -1. */
int jobrec_remove(const char *id);

/*
 * The ids of every record file, sorted by id, newest first (no record is
 * read). *out is an array of *n strings (free with jobrec_ids_free); an
 * empty or missing directory gives 0 ids. 0 or -1.
 */
int jobrec_ids(char ***out, size_t *n);
void jobrec_ids_free(char **ids, size_t n);

/*
 * Reads the newest record (the first jobrec_list would give) into r
 * (initialised here). 0, or -1: no record at all (PS_EXIT_USAGE), or none
 * readable.
 */
int jobrec_load_newest(struct jobrec *r);

#endif
