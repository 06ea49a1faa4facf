#include "session_sync.h"

#include <errno.h>
#include <fcntl.h>
#include <git2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "digest.h"
#include "error.h"
#include "gitrepo.h"
#include "jobrec.h"
#include "log.h"
#include "session.h"
#include "tarball.h"
#include "util.h"

/* A file whose mtime is this close to the scan may change again within the same tick. */
#define RACY_NS 2000000000LL
#define ID_PREFIX "pystrib-files-"

static char *state_path(const char *id)
{
	char *dir = jobrec_dir();
	char *p = xstrfmt("%s/%s.files.json", dir, id);
	free(dir);
	return p;
}

/* 1 when a symlink at path with that target stays inside the project. */
static int link_inside(const char *path, const char *target)
{
	long depth = 0;
	for (const char *p = path; *p; p++)
		depth += *p == '/';
	if (target[0] == '/')
		return 0;
	for (const char *p = target; *p;) {
		size_t n = strcspn(p, "/");
		if (n == 2 && !strncmp(p, "..", 2))
			depth--;
		else if (n && !(n == 1 && *p == '.'))
			depth++;
		if (depth < 0)
			return 0;
		p += n + (p[n] == '/');
	}
	return 1;
}

/* The state entry of f as it is now (hash: when its mtime is too recent to trust). */
static json_t *entry_of(const struct gitrepo *g, const struct project_file *f, int64_t now_ns)
{
	json_t *e = json_pack("{s:I,s:I,s:b}", "size", (json_int_t)f->size,
			      "mtime", (json_int_t)f->mtime_ns, "x", f->executable);
	char hash[DIGEST_LEN];
	if (f->kind == PROJECT_SYMLINK) {
		json_object_set_new(e, "link", json_string(f->link));
	} else if (f->mtime_ns > now_ns - RACY_NS) {
		char *p = xstrfmt("%s/%s", g->root, f->path);
		if (digest_file(p, hash) == 0)
			json_object_set_new(e, "hash", json_string(hash));
		error_clear();
		free(p);
	}
	return e;
}

/* 1 when f is what the state's entry e says the hub has. */
static int unchanged(const struct gitrepo *g, const struct project_file *f, const json_t *e)
{
	const char *link = json_string_value(json_object_get(e, "link"));
	const char *hash = json_string_value(json_object_get(e, "hash"));
	char now[DIGEST_LEN];

	if (!e || (json_int_t)f->size != json_integer_value(json_object_get(e, "size")) ||
	    (json_int_t)f->mtime_ns != json_integer_value(json_object_get(e, "mtime")) ||
	    f->executable != json_is_true(json_object_get(e, "x")) ||
	    (f->kind == PROJECT_SYMLINK) != !!link)
		return 0;
	if (link)
		return !strcmp(link, f->link);
	if (!hash)
		return 1;
	char *p = xstrfmt("%s/%s", g->root, f->path);
	int same = digest_file(p, now) == 0 && !strcmp(now, hash);
	error_clear();
	free(p);
	return same;
}

static int write_state(const char *id, const json_t *state)
{
	char *path = state_path(id);
	char *text = json_dumps(state, JSON_COMPACT | JSON_SORT_KEYS);
	int ret = write_file_atomic(path, text, strlen(text), 0600);
	free(text);
	free(path);
	return ret;
}

int session_sync_start(const char *id, const char *root, double since)
{
	struct gitrepo g = { 0 };
	/* File times come from the kernel's coarse clock, a tick behind. */
	int64_t trust = (int64_t)((since - 0.05) * 1e9);
	int ret = -1;

	if (!root)
		return 0;
	if (gitrepo_scan(&g, root) < 0)
		goto out;
	json_t *files = json_object();
	for (size_t i = 0; i < g.nfiles; i++)
		if (g.files[i].mtime_ns < trust)
			json_object_set_new(files, g.files[i].path, entry_of(&g, &g.files[i], 0));
	json_t *state = json_pack("{s:s,s:o}", "root", g.root, "files", files);
	ret = write_state(id, state);
	json_decref(state);
out:
	gitrepo_release(&g);
	return ret;
}

void session_sync_forget(const char *id)
{
	char *path = state_path(id);
	if (unlink(path) < 0 && errno != ENOENT)
		log_warn("cannot remove '%s': %s", path, strerror(errno));
	free(path);
}

void session_sync_init(struct session_sync *s)
{
	memset(s, 0, sizeof(*s));
}

void session_sync_release(struct session_sync *s)
{
	json_decref(s->next);
	memset(s, 0, sizeof(*s));
}

int session_sync_is_ours(const char *id)
{
	return id && !strncmp(id, ID_PREFIX, strlen(ID_PREFIX));
}

/* What changed: the tar list l, the removed paths, and the state after. */
struct changes {
	struct tar_list l;
	json_t *removed;
	json_t *next;
	size_t n;
};

/*
 * libgit2 kept initialised for the process: gitrepo_scan's own init and
 * shutdown then cost nothing, where each pair alone is ~3 ms a scan (its
 * TLS and allocators set up and torn down), most of serve's stat pass.
 */
static void keep_libgit2(void)
{
	static int done;
	if (!done++)
		git_libgit2_init();
}

/* Compares the project under root with state's files. 0 or -1. */
static int compare(const char *root, const json_t *old, struct changes *ch)
{
	struct gitrepo g = { 0 };
	int64_t now_ns = (int64_t)(now_wall() * 1e9);
	json_t *files = json_object(), *e;
	const char *path;

	keep_libgit2();
	if (gitrepo_scan(&g, root) < 0) {
		json_decref(files);
		gitrepo_release(&g);
		return -1;
	}
	for (size_t i = 0; i < g.nfiles; i++) {
		const struct project_file *f = &g.files[i];
		json_t *was = json_object_get(old, f->path);
		if (f->kind == PROJECT_SYMLINK && !link_inside(f->path, f->link)) {
			log_info("session: '%s' links out of the project: not sent", f->path);
			continue;
		}
		if (unchanged(&g, f, was)) {
			json_object_set(files, f->path, was);
			continue;
		}
		json_object_set_new(files, f->path, entry_of(&g, f, now_ns));
		if (f->kind == PROJECT_SYMLINK) {
			tar_list_add_symlink(&ch->l, f->path, f->link);
		} else {
			char *src = xstrfmt("%s/%s", g.root, f->path);
			tar_list_add_file(&ch->l, f->path, src, f->size, f->executable);
			free(src);
		}
		ch->n++;
	}
	json_object_foreach((json_t *)old, path, e)
		if (!json_object_get(files, path))
			json_array_append_new(ch->removed, json_string(path)), ch->n++;
	ch->next = json_pack("{s:s,s:o}", "root", root, "files", files);
	gitrepo_release(&g);
	return 0;
}

/* Writes the tar of l to a temporary file: *fd (read from 0), *size. 0 or -1. */
static int tar_temp(struct tar_list *l, int *fd, unsigned long long *size)
{
	const char *tmp = getenv("TMPDIR");
	char *path = xstrfmt("%s/pystrib-sync-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	struct tarball_result res;

	*fd = mkstemp(path);
	if (*fd < 0) {
		error_set(PS_EXIT_IO, "cannot create '%s': %s", path, strerror(errno));
		free(path);
		return -1;
	}
	unlink(path);
	free(path);
	if (tarball_write(l, *fd, 0, &res) < 0 || lseek(*fd, 0, SEEK_SET) < 0)
		return -1;
	*size = res.size;
	return 0;
}

/* Sends the request and the tar's bytes (fd, size). 0, or -1: the stream. */
static int send_changes(struct session_client *c, const char *id, const json_t *removed, int fd,
			unsigned long long size)
{
	char chunk[65536];
	json_t *req = json_pack("{s:s,s:s,s:O}", "op", "files", "id", id, "removed", removed);
	if (size)
		json_object_set_new(req, "bytes", json_integer((json_int_t)size));
	int ret = session_client_send(c, req);
	json_decref(req);
	while (ret == 0 && size) {
		ssize_t n = read(fd, chunk, size < sizeof(chunk) ? (size_t)size : sizeof(chunk));
		if (n <= 0) {
			/* The framing must hold: zeros, which the hub refuses as a tar. */
			memset(chunk, 0, sizeof(chunk));
			n = (ssize_t)(size < sizeof(chunk) ? size : sizeof(chunk));
		}
		ret = session_client_write(c, chunk, (size_t)n);
		size -= (unsigned long long)n;
	}
	return ret;
}

/* The project's changes against the state file at path: 0 (ch->n may be 0) or -1. */
static int changes_of(const char *path, struct changes *ch)
{
	struct buf text = BUF_INIT;
	json_t *state = NULL;
	int ret = 0;

	if (buf_read_file(&text, path) < 0)
		goto out;	/* no state: a session without a project */
	state = json_loadb(text.ptr, text.len, 0, NULL);
	const char *root = json_string_value(json_object_get(state, "root"));
	json_t *old = json_object_get(state, "files");
	if (!root || !json_is_object(old))
		ret = error_set(PS_EXIT_IO, "the session's project state '%s' is damaged", path);
	else
		ret = compare(root, old, ch);
out:
	json_decref(state);
	buf_release(&text);
	return ret;
}

int session_sync_send(struct session_client *c, struct session_sync *s, int *sent)
{
	struct changes ch = { .removed = json_array() };
	char *path = state_path(c->rec.id);
	unsigned long long size = 0;
	int fd = -1, ret = 0;

	*sent = 0;
	tar_list_init(&ch.l);
	if (changes_of(path, &ch) < 0 || (ch.l.n && tar_temp(&ch.l, &fd, &size) < 0)) {
		/* A local problem: said, and the cell runs with the files the hub has. */
		log_warn("session %s: the project files were not sent: %s", c->rec.id,
			 error_message());
		error_clear();
		goto out;
	}
	if (!ch.n)
		goto out;
	snprintf(s->id, sizeof(s->id), ID_PREFIX "%u", ++s->seq);
	json_decref(s->next);
	s->next = json_incref(ch.next);
	*sent = (int)ch.n;
	ret = send_changes(c, s->id, ch.removed, fd, size);
out:
	if (fd >= 0)
		close(fd);
	json_decref(ch.removed);
	json_decref(ch.next);
	tar_list_release(&ch.l);
	free(path);
	return ret;
}

int session_sync_answer(struct session_sync *s, const json_t *msg, const char *session_id)
{
	const char *id = json_string_value(json_object_get(msg, "id"));
	const char *op = json_string_value(json_object_get(msg, "op"));
	if (!session_sync_is_ours(id))
		return 0;
	if (!s->id[0] || strcmp(id, s->id))
		return 1;
	s->id[0] = 0;
	if (op && !strcmp(op, "done") &&
	    !strcmp(json_string_value(json_object_get(msg, "status")) ?: "", "ok")) {
		if (write_state(session_id, s->next) < 0) {
			log_warn("%s", error_message());
			error_clear();
		}
	} else {
		log_warn("session %s: the project files were not updated: %s", session_id,
			 json_string_value(json_object_get(msg, "message")) ?: "refused");
	}
	json_decref(s->next);
	s->next = NULL;
	return 1;
}
