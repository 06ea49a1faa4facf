#ifndef PYSTRIB_SESSION_SYNC_H
#define PYSTRIB_SESSION_SYNC_H

#include <jansson.h>

/*
 * A session's project files, kept in step before each cell
 * (docs/sessions.md, "Project files"). The session remembers the project
 * it started with in a state file beside its record,
 * "<records>/<id>.files.json": {"root": DIR, "files": {PATH: {"size",
 * "mtime" (ns), "x", "link" (symlinks), "hash" (only when the mtime was
 * too recent to trust)}}}, what the hub has of each file. Before a cell,
 * one stat pass of the project (gitrepo.h's rules, those of the project
 * layer) against it: nothing changed, nothing sent; else one `files`
 * request (a tar of the changed files and a list of the removed paths).
 */

struct session_client;

/*
 * At session start: records root (the project's local directory) and the
 * files the project layer has, those last changed before `since` (seconds
 * since the epoch: when the layer was made; later ones are sent with the
 * first cell). root NULL: a session without a project (nothing recorded).
 * 0, or -1 with the error set.
 */
int session_sync_start(const char *id, const char *root, double since);

/* Removes the state file of session id (it stopped); quiet when absent. */
void session_sync_forget(const char *id);

/* A `files` request sent whose answer has not come. */
struct session_sync {
	char id[32];		/* the request's id, "" when none is pending */
	json_t *next;		/* the state to write once it is answered ok */
	unsigned seq;
};
void session_sync_init(struct session_sync *s);
void session_sync_release(struct session_sync *s);

/*
 * Sends the project files of c's session that changed since the state was
 * written (the request and its tar), or nothing when none changed or the
 * session has no project state. *sent: files and removals in it. 0, or -1
 * with the error set (a connection error is that; a local file that cannot
 * be read is said and skipped by the caller).
 */
int session_sync_send(struct session_client *c, struct session_sync *s, int *sent);

/*
 * msg, an answer from the hub: 1 when it was the answer to s's request
 * (session_id's state written when ok; an error said as a warning: the
 * files are sent again before the next cell), else 0.
 * Answers to older requests are also taken (1) and ignored.
 */
int session_sync_answer(struct session_sync *s, const json_t *msg, const char *session_id);

/* 1 when id names a `files` request of this module. */
int session_sync_is_ours(const char *id);

#endif
