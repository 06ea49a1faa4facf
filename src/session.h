#ifndef PYSTRIB_SESSION_H
#define PYSTRIB_SESSION_H

#include <jansson.h>

#include "config.h"
#include "jobrec.h"
#include "session_wire.h"

/*
 * The client side of a session (docs/sessions.md): ranks that stay up
 * between cells, reached through their hub's hub.sock by an SSH
 * direct-streamlocal stream (no shell, no TCP port). `session start` is
 * run.h's pipeline (run_session); the rest is here.
 */

struct run;
struct ssh_conn;
struct ssh_stream;

/*
 * After run_session submitted the session's job: waits (one remote
 * command, jobctl.sh session-wait) until the hub says idle, records the
 * absolute job directory and prints the session's id. The exit code: 0,
 * or 4 with the hub's reason when it could not start (the job cancelled).
 */
int session_wait_started(struct run *r);

/* A connection to one session's hub. */
struct session_client {
	struct jobrec rec;
	struct config cfg;
	int have_cfg;
	struct ssh_conn *conn;
	struct ssh_stream *st;
	char *sock;		/* <jobdir>/hub.sock, absolute */
	struct session_reader rd;
	char chunk[65536];
};
void session_client_init(struct session_client *c);
void session_client_release(struct session_client *c);
/*
 * Finds the session arg names (an id, a prefix, 'last' among sessions),
 * connects to its host and opens the stream to its hub. 0, or -1 with the
 * error set (PS_EXIT_REMOTE when it cannot be reached).
 */
int session_client_open(struct session_client *c, const char *arg);
/* Closes the stream and connection and opens both again. 0 or -1. */
int session_client_reopen(struct session_client *c);
/* Sends msg (and then, for "bytes", the caller sends them with session_client_write). 0 or -1. */
int session_client_send(struct session_client *c, const json_t *msg);
int session_client_write(struct session_client *c, const void *data, size_t len);
/*
 * The next item from the hub (session_wire.h's enum session_item), waiting
 * up to timeout_ms, or less when wake_fd is readable or a signal came:
 * SESSION_NEED_MORE then. Negative: the stream ended or the connection
 * went (error set; ssh.h's SSH_R_DROPPED for the latter).
 */
int session_client_next(struct session_client *c, int timeout_ms, int wake_fd, json_t **msg,
			const char **data, size_t *len);

struct session_sync;
/*
 * Before an exec: sends the project files that changed (session_sync.h),
 * said with -v. A local problem (a file that cannot be read) is a warning
 * and 0; -1 only when the stream failed.
 */
int session_sync_files(struct session_client *c, struct session_sync *s);

/* What `session exec` sends. */
struct session_exec {
	const char *file;		/* the cell's file */
	const char *ranks;		/* --ranks SPEC, or NULL: all */
	double timeout;			/* seconds, 0: none */
	char **args;			/* sys.argv[1:], NULL-terminated */
};

/* The subcommands; each returns the exit code (docs/sessions.md). */
int session_exec(const char *arg, const struct session_exec *e);
int session_attach(const char *arg);
int session_stop(const char *arg);
int session_status(const char *arg);
int session_list(void);
int session_serve(const char *arg);

#endif
