#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cli.h"
#include "config.h"
#include "error.h"
#include "jobrec.h"
#include "log.h"
#include "remote_job.h"
#include "ssh.h"

/* A record is small; anything bigger is not ours. */
#define JOBREC_MAX_FILE (4u << 20)

void jobrec_init(struct jobrec *r)
{
	memset(r, 0, sizeof(*r));
	r->exit_code = -1;
}

void jobrec_release(struct jobrec *r)
{
	free(r->id);
	free(r->remote);
	free(r->host);
	free(r->host_name);
	free(r->jobdir);
	free(r->runtime);
	free(r->image);
	free(r->digest);
	free(r->revision);
	free(r->cell);
	free(r->results);
	free(r->state);
	free(r->state_reason);
	free(r->ranks);
	json_decref(r->extra);
	jobrec_init(r);
}

void jobrec_free(struct jobrec *r)
{
	if (!r)
		return;
	jobrec_release(r);
	free(r);
}

void jobrec_set(char **field, const char *value)
{
	char *copy = value ? xstrdup(value) : NULL;
	free(*field);
	*field = copy;
}

void jobrec_set_np(struct jobrec *r, int np)
{
	if (np < 0)
		np = 0;
	if (np == 0) {
		free(r->ranks);
		r->ranks = NULL;
	} else {
		r->ranks = xrealloc(r->ranks, (size_t)np * sizeof(*r->ranks));
		for (int i = r->np < 0 ? 0 : r->np; i < np; i++) {
			r->ranks[i].exit_code = -1;
			r->ranks[i].duration = -1;
		}
	}
	r->np = np;
}

int jobrec_state_final(const char *state)
{
	static const char *const finals[] = {
		"succeeded", "failed", "timeout", "cancelled", "lost",
	};
	if (!state)
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(finals); i++)
		if (!strcmp(state, finals[i]))
			return 1;
	return 0;
}

static int make_id(char *out)
{
	unsigned char rnd[3];
	struct tm tm;
	time_t now = time(NULL);
	ssize_t got;

	do
		got = getrandom(rnd, sizeof(rnd), 0);
	while (got < 0 && errno == EINTR);
	if (got != (ssize_t)sizeof(rnd))
		return error_set(PS_EXIT_USAGE, "cannot make a job id: getrandom: %s",
				 got < 0 ? strerror(errno) : "short read");
	if (!gmtime_r(&now, &tm) || !strftime(out, JOBREC_ID_SIZE, "%Y%m%d-%H%M%S", &tm))
		return error_set(PS_EXIT_USAGE, "cannot make a job id: the clock is out of range");
	snprintf(out + 15, JOBREC_ID_SIZE - 15, "-%02x%02x%02x", rnd[0], rnd[1], rnd[2]);
	return 0;
}

int jobrec_new_id(char *out)
{
	/*
	 * 24 random bits within one second make a clash unlikely; one with
	 * a record already here is also avoided (the remote job directory
	 * of an id already used must never be reused).
	 */
	for (int tries = 0;; tries++) {
		char *path;
		int taken;

		if (make_id(out) < 0)
			return -1;
		path = jobrec_path(out);
		taken = access(path, F_OK) == 0;
		free(path);
		if (!taken || tries == 16)
			return 0;
	}
}

int jobrec_id_valid(const char *id)
{
	if (!id || strlen(id) != JOBREC_ID_LEN)
		return 0;
	for (int i = 0; i < JOBREC_ID_LEN; i++) {
		char ch = id[i];
		if (i == 8 || i == 15) {
			if (ch != '-')
				return 0;
		} else if (i < 15) {
			if (ch < '0' || ch > '9')
				return 0;
		} else if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) {
			return 0;
		}
	}
	return 1;
}

char *jobrec_dir(void)
{
	const char *state = getenv("XDG_STATE_HOME");
	const char *home = getenv("HOME");

	if (state && state[0] == '/')
		return xstrfmt("%s/pystrib/jobs", state);
	return xstrfmt("%s/.local/state/pystrib/jobs", home && *home ? home : "/");
}

char *jobrec_path(const char *id)
{
	char *dir = jobrec_dir();
	char *path = xstrfmt("%s/%s.json", dir, id);
	free(dir);
	return path;
}

/* Takes the directory's lock (creating the directory). The fd, or -1. */
static int lock_dir(const char *dir)
{
	char *path = NULL;
	int fd = -1;

	if (mkdir_p(dir, 0700) < 0) {
		error_set(PS_EXIT_USAGE, "cannot create the job records directory '%s': %s",
			  dir, strerror(errno));
		goto out;
	}
	path = xstrfmt("%s/.lock", dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		error_set(PS_EXIT_USAGE, "cannot open '%s': %s", path, strerror(errno));
		goto out;
	}
	while (flock(fd, LOCK_EX) < 0) {
		if (errno == EINTR && !interrupted)
			continue;
		error_set(errno == EINTR ? PS_EXIT_INTERRUPTED : PS_EXIT_USAGE,
			  "cannot lock '%s': %s", path, strerror(errno));
		close(fd);
		fd = -1;
		goto out;
	}
out:
	free(path);
	return fd;
}

static void unlock_dir(int fd)
{
	if (fd >= 0)
		close(fd);	/* releases the flock */
}

static void set_string(json_t *o, const char *key, const char *value)
{
	if (value)
		json_object_set_new(o, key, json_string(value));
	else
		json_object_del(o, key);
}

static void set_time(json_t *o, const char *key, double t)
{
	if (t > 0)
		json_object_set_new(o, key, json_real(t));
	else
		json_object_del(o, key);
}

static void set_int_or_null(json_t *o, const char *key, int v)
{
	json_object_set_new(o, key, v >= 0 ? json_integer(v) : json_null());
}

static json_t *to_json(const struct jobrec *r)
{
	json_t *o = r->extra ? json_deep_copy(r->extra) : json_object();
	json_t *ranks = json_array();

	set_string(o, "id", r->id);
	set_string(o, "remote", r->remote);
	set_string(o, "host", r->host);
	set_string(o, "host_name", r->host_name);
	set_string(o, "jobdir", r->jobdir);
	set_string(o, "runtime", r->runtime);
	set_string(o, "image", r->image);
	set_string(o, "digest", r->digest);
	set_string(o, "revision", r->revision);
	set_string(o, "cell", r->cell);
	set_string(o, "results", r->results);
	set_string(o, "state", r->state);
	set_string(o, "state_reason", r->state_reason);
	json_object_set_new(o, "np", json_integer(r->np));
	set_int_or_null(o, "exit_code", r->exit_code);
	set_time(o, "created", r->created);
	set_time(o, "started", r->started);
	set_time(o, "ended", r->ended);
	set_time(o, "checked", r->checked);
	for (int i = 0; i < r->np && r->ranks; i++) {
		json_t *rk = json_pack("{s:i}", "rank", i);
		set_int_or_null(rk, "exit_code", r->ranks[i].exit_code);
		if (r->ranks[i].duration >= 0)
			json_object_set_new(rk, "duration", json_real(r->ranks[i].duration));
		json_array_append_new(ranks, rk);
	}
	json_object_set_new(o, "ranks", ranks);
	return o;
}

static char *get_string(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_string(v) ? xstrdup(json_string_value(v)) : NULL;
}

static double get_number(json_t *o, const char *key, double def)
{
	json_t *v = json_object_get(o, key);
	return json_is_number(v) ? json_number_value(v) : def;
}

static int get_int(json_t *o, const char *key, int def)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_integer(v))
		return def;
	json_int_t n = json_integer_value(v);
	return n < -1 || n > 1000000 ? def : (int)n;
}

/* Takes o (reference stolen). */
static int from_json(struct jobrec *r, json_t *o, const char *path)
{
	json_t *ranks, *rk;
	size_t i;
	int np;

	if (!json_is_object(o)) {
		json_decref(o);
		return error_set(PS_EXIT_USAGE, "job record '%s' is not a JSON object", path);
	}
	r->id = get_string(o, "id");
	if (!jobrec_id_valid(r->id)) {
		json_decref(o);
		return error_set(PS_EXIT_USAGE, "job record '%s' has no valid id", path);
	}
	r->remote = get_string(o, "remote");
	r->host = get_string(o, "host");
	r->host_name = get_string(o, "host_name");
	r->jobdir = get_string(o, "jobdir");
	r->runtime = get_string(o, "runtime");
	r->image = get_string(o, "image");
	r->digest = get_string(o, "digest");
	r->revision = get_string(o, "revision");
	r->cell = get_string(o, "cell");
	r->results = get_string(o, "results");
	r->state = get_string(o, "state");
	r->state_reason = get_string(o, "state_reason");
	r->exit_code = get_int(o, "exit_code", -1);
	r->created = get_number(o, "created", 0);
	r->started = get_number(o, "started", 0);
	r->ended = get_number(o, "ended", 0);
	r->checked = get_number(o, "checked", 0);
	np = get_int(o, "np", 0);
	jobrec_set_np(r, np < 0 ? 0 : np);
	ranks = json_object_get(o, "ranks");
	json_array_foreach(ranks, i, rk) {
		int n = get_int(rk, "rank", -1);
		if (n < 0 || n >= r->np)
			continue;
		r->ranks[n].exit_code = get_int(rk, "exit_code", -1);
		r->ranks[n].duration = get_number(rk, "duration", -1);
	}
	r->extra = o;
	return 0;
}

int jobrec_load(struct jobrec *r, const char *id)
{
	struct buf b;
	char *path = NULL;
	json_error_t jerr;
	json_t *o;
	int ret = -1;

	jobrec_init(r);
	buf_init(&b, JOBREC_MAX_FILE);
	if (!jobrec_id_valid(id)) {
		error_set(PS_EXIT_USAGE, "'%s' is not a job id", id);
		goto out;
	}
	path = jobrec_path(id);
	if (buf_read_file(&b, path) < 0) {
		if (errno == ENOENT)
			error_set(PS_EXIT_USAGE, "no job '%s'", id);
		else
			error_set(PS_EXIT_USAGE, "cannot read job record '%s': %s", path,
				  errno == EFBIG ? "too large" : strerror(errno));
		goto out;
	}
	o = json_loadb(b.ptr, b.len, 0, &jerr);
	if (!o) {
		error_set(PS_EXIT_USAGE, "job record '%s' is corrupt: %s (line %d)", path,
			  jerr.text, jerr.line);
		goto out;
	}
	if (from_json(r, o, path) < 0)
		goto out;
	if (strcmp(r->id, id)) {
		error_set(PS_EXIT_USAGE, "job record '%s' holds another job ('%s')", path, r->id);
		goto out;
	}
	ret = 0;
out:
	if (ret < 0)
		jobrec_release(r);
	buf_release(&b);
	free(path);
	return ret;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Writes r to its file; the caller holds the lock. */
static int save_locked(const char *dir, const struct jobrec *r)
{
	char *path = xstrfmt("%s/%s.json", dir, r->id);
	char *tmp = xstrfmt("%s/.%s.json.XXXXXX", dir, r->id);
	json_t *o = to_json(r);
	char *text = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
	int fd = -1, ret = -1;

	if (!text) {
		error_set(PS_EXIT_USAGE, "cannot encode job record '%s'", r->id);
		goto out;
	}
	fd = mkstemp(tmp);
	if (fd < 0) {
		error_set(PS_EXIT_USAGE, "cannot write job record in '%s': %s", dir, strerror(errno));
		goto out;
	}
	if (write_all(fd, text, strlen(text)) < 0 || write_all(fd, "\n", 1) < 0 ||
	    fsync(fd) < 0) {
		error_set(PS_EXIT_USAGE, "cannot write '%s': %s", tmp, strerror(errno));
		goto out;
	}
	if (close(fd) < 0) {
		fd = -1;
		error_set(PS_EXIT_USAGE, "cannot write '%s': %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		error_set(PS_EXIT_USAGE, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
		goto out;
	}
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	if (ret < 0)
		unlink(tmp);
	free(text);
	json_decref(o);
	free(tmp);
	free(path);
	return ret;
}

int jobrec_save(const struct jobrec *r)
{
	char *dir;
	int lock, ret;

	if (!jobrec_id_valid(r->id))
		return error_set(PS_EXIT_USAGE, "internal error: saving a job record without a valid id");
	dir = jobrec_dir();
	lock = lock_dir(dir);
	ret = lock < 0 ? -1 : save_locked(dir, r);
	unlock_dir(lock);
	free(dir);
	return ret;
}

int jobrec_update(const char *id, int (*fn)(struct jobrec *r, void *ctx), void *ctx)
{
	struct jobrec r;
	char *dir = jobrec_dir();
	int lock, ret = -1;

	jobrec_init(&r);
	lock = lock_dir(dir);
	if (lock < 0)
		goto out;
	if (jobrec_load(&r, id) < 0 || fn(&r, ctx) < 0)
		goto out;
	ret = save_locked(dir, &r);
out:
	unlock_dir(lock);
	jobrec_release(&r);
	free(dir);
	return ret;
}

int jobrec_remove(const char *id)
{
	char *dir = jobrec_dir();
	char *path = NULL;
	int lock, ret = -1;

	if (!jobrec_id_valid(id)) {
		error_set(PS_EXIT_USAGE, "'%s' is not a job id", id);
		goto out;
	}
	lock = lock_dir(dir);
	if (lock < 0)
		goto out;
	path = xstrfmt("%s/%s.json", dir, id);
	if (unlink(path) < 0 && errno != ENOENT)
		error_set(PS_EXIT_USAGE, "cannot remove '%s': %s", path, strerror(errno));
	else
		ret = 0;
	unlock_dir(lock);
out:
	free(path);
	free(dir);
	return ret;
}

static int cmp_desc(const void *a, const void *b)
{
	return strcmp(*(char *const *)b, *(char *const *)a);
}

/* The ids of every record file, newest first. Caller frees each and the array. */
static int list_ids(char ***out, size_t *n)
{
	char *dir = jobrec_dir();
	DIR *d = opendir(dir);
	struct dirent *de;
	char **ids = NULL;
	size_t count = 0, alloc = 0;

	*out = NULL;
	*n = 0;
	if (!d) {
		int missing = errno == ENOENT;
		if (!missing)
			error_set(PS_EXIT_USAGE, "cannot read the job records in '%s': %s", dir,
				  strerror(errno));
		free(dir);
		return missing ? 0 : -1;
	}
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		if (len != JOBREC_ID_LEN + 5 || strcmp(de->d_name + JOBREC_ID_LEN, ".json"))
			continue;
		char *id = xstrndup(de->d_name, JOBREC_ID_LEN);
		if (!jobrec_id_valid(id)) {
			free(id);
			continue;
		}
		if (count == alloc) {
			alloc = alloc ? 2 * alloc : 16;
			ids = xrealloc(ids, alloc * sizeof(*ids));
		}
		ids[count++] = id;
	}
	closedir(d);
	free(dir);
	if (count)
		qsort(ids, count, sizeof(*ids), cmp_desc);
	*out = ids;
	*n = count;
	return 0;
}

static void free_ids(char **ids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
}

/*
 * Newest first. An id has the submission time to the second only, so
 * within one second the record's creation time orders them (several
 * submissions at once), then the id itself for a total order.
 */
static int cmp_newest(const struct jobrec *a, const struct jobrec *b)
{
	int c = strncmp(b->id, a->id, 15);
	if (c)
		return c;
	if (a->created != b->created)
		return a->created < b->created ? 1 : -1;
	return strcmp(b->id, a->id);
}

static int cmp_newest_qsort(const void *a, const void *b)
{
	return cmp_newest(a, b);
}

int jobrec_list(struct jobrec **out, size_t *n)
{
	char **ids;
	size_t nids, count = 0;
	struct jobrec *v;

	if (list_ids(&ids, &nids) < 0)
		return -1;
	v = xcalloc(nids ? nids : 1, sizeof(*v));
	for (size_t i = 0; i < nids; i++) {
		if (jobrec_load(&v[count], ids[i]) < 0) {
			/* Removed meanwhile by gc: not worth a word. */
			if (strncmp(error_message(), "no job ", 7))
				log_warn("%s", error_message());
			error_clear();
			continue;
		}
		count++;
	}
	free_ids(ids, nids);
	if (count > 1)
		qsort(v, count, sizeof(*v), cmp_newest_qsort);
	*out = v;
	*n = count;
	return 0;
}

void jobrec_list_free(struct jobrec *v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		jobrec_release(&v[i]);
	free(v);
}

static void add_candidates(struct buf *msg, char **ids, size_t n, const char *prefix)
{
	size_t shown = 0;
	for (size_t i = 0; i < n && shown < 10; i++) {
		if (prefix && strncmp(ids[i], prefix, strlen(prefix)))
			continue;
		buf_addf(msg, "%s%s", shown ? ", " : "", ids[i]);
		shown++;
	}
}

/*
 * The newest of ids (sorted by id, newest first): among those of the
 * newest second, the one created last. Records that cannot be read are
 * passed over unless none can.
 */
static int load_newest(struct jobrec *r, char **ids, size_t n)
{
	struct jobrec cand;
	int have = 0;

	for (size_t i = 0; i < n && (!have || !strncmp(ids[i], r->id, 15)); i++) {
		if (jobrec_load(&cand, ids[i]) < 0) {
			error_clear();
			continue;
		}
		if (!have || cmp_newest(&cand, r) < 0) {
			if (have)
				jobrec_release(r);
			*r = cand;
			have = 1;
		} else {
			jobrec_release(&cand);
		}
	}
	return have ? 0 : jobrec_load(r, ids[0]);
}

int jobrec_resolve(struct jobrec *r, const char *arg)
{
	char **ids = NULL;
	size_t n = 0, matches = 0, len, match = 0;
	struct buf msg = BUF_INIT;
	int ret = -1;

	jobrec_init(r);
	if (list_ids(&ids, &n) < 0)
		goto out;
	if (!arg || !*arg) {
		error_set(PS_EXIT_USAGE, "an empty job id");
		goto hint;
	}
	if (!strcmp(arg, "last")) {
		if (!n) {
			error_set(PS_EXIT_USAGE, "no jobs yet: 'last' means nothing");
			error_hint("submit one with 'pystrib run FILE'");
			goto out;
		}
		ret = load_newest(r, ids, n);
		goto out;
	}
	len = strlen(arg);
	for (size_t i = 0; i < n; i++) {
		if (!strncmp(ids[i], arg, len)) {
			if (!strcmp(ids[i], arg)) {	/* exact wins */
				matches = 1;
				match = i;
				break;
			}
			if (!matches++)
				match = i;
		}
	}
	if (matches == 1) {
		ret = jobrec_load(r, ids[match]);
		goto out;
	}
	if (matches > 1) {
		add_candidates(&msg, ids, n, arg);
		error_set(PS_EXIT_USAGE, "job '%s' is ambiguous: %zu jobs match (%s%s)", arg,
			  matches, msg.ptr, matches > 10 ? ", ..." : "");
		error_hint("give more characters of the id");
		goto out;
	}
	error_set(PS_EXIT_USAGE, "no job '%s'", arg);
hint:
	if (n) {
		add_candidates(&msg, ids, n, NULL);
		error_hint("known jobs, newest first: %s%s; 'last' is the newest", msg.ptr,
			   n > 10 ? ", ..." : "");
	} else {
		char *dir = jobrec_dir();
		error_hint("there are no job records in '%s'", dir);
		free(dir);
	}
out:
	buf_release(&msg);
	free_ids(ids, n);
	return ret;
}

int jobrec_target(const struct jobrec *r, const char *config_file,
		  struct config *cfg, struct ssh_target *t)
{
	if (config_load(cfg, config_file, NULL) < 0)
		return -1;
	if (r->remote) {
		const char **names = config_remote_names(cfg);
		int found = 0;
		for (size_t i = 0; names[i] && !found; i++)
			found = !strcmp(names[i], r->remote);
		free(names);
		if (!found) {
			error_set(PS_EXIT_USAGE,
				  "job '%s' ran on remote '%s', which is no longer configured in %s",
				  r->id, r->remote, cfg->file ? cfg->file : "any config file");
			return error_hint("add a [remote.%s] section back to reach the job%s%s%s",
					  r->remote, r->host_name ? " (it was on " : "",
					  r->host_name ? r->host_name : "",
					  r->host_name ? ")" : "");
		}
		config_release(cfg);
		if (config_load(cfg, config_file, r->remote) < 0)
			return -1;
	}
	if (r->host) {
		/* Identity and known_hosts still come from the configuration. */
		if (ssh_target_from_config(t, cfg) < 0)
			error_clear();
		return ssh_target_parse(t, r->host);
	}
	return ssh_target_from_config(t, cfg);
}

char *jobrec_remote_dir(const struct jobrec *r, const struct config *cfg)
{
	if (r->jobdir && *r->jobdir)
		return xstrdup(r->jobdir);
	return remote_job_dir(cfg ? cfg->remote.workdir : NULL, r->id);
}

/* An absolute form of path (relative to the working directory). Caller frees. */
static char *absolute(const char *path)
{
	char cwd[4096];
	if (path[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		return xstrdup(path);
	return xstrfmt("%s/%s", cwd, path);
}

char *jobrec_results_dir(const struct jobrec *r, const struct config *cfg, const char *want)
{
	char *rel, *home, *dest;

	if (want)
		return absolute(want);
	if (r->results)
		return xstrdup(r->results);
	rel = xstrfmt("%s/%s", cfg->job.results ? cfg->job.results : "pystrib-results", r->id);
	home = expand_home(rel);
	dest = absolute(home);
	free(home);
	free(rel);
	return dest;
}

int jobrec_connect(const struct jobrec *r, const char *config_file, struct config *cfg,
		   struct ssh_conn **out)
{
	struct ssh_target t = SSH_TARGET_INIT;
	int ret;

	ret = jobrec_target(r, config_file, cfg, &t);
	if (ret == 0)
		ret = ssh_conn_open(out, &t, 0);
	ssh_target_release(&t);
	return ret;
}

void jobrec_apply_state(struct jobrec *r, const struct remote_job_state *st)
{
	/*
	 * A job known to have ended keeps its outcome when its directory is
	 * removed afterwards; only the reason says it is gone. And a state
	 * never goes back from an outcome: a read that began before another
	 * process recorded the end (`jobs` beside `run`) may be applied after
	 * it. (`lost` is no outcome: a directory seen again is followed again.)
	 */
	int ended = jobrec_state_final(r->state) && strcmp(r->state, "lost");
	int gone = ended && !strcmp(st->state, "lost");
	int stale = ended && !jobrec_state_final(st->state);

	if (stale)
		return;
	if (!gone)
		jobrec_set(&r->state, st->state);
	jobrec_set(&r->state_reason, st->reason);
	if (st->exit_code >= 0)
		r->exit_code = st->exit_code;
	if (st->started > 0)
		r->started = st->started;
	if (st->ended > 0)
		r->ended = st->ended;
	if (st->np > r->np)
		jobrec_set_np(r, st->np);
	for (int i = 0; i < st->np && i < r->np; i++) {
		if (st->rank_exit[i] < 0)
			continue;
		r->ranks[i].exit_code = st->rank_exit[i];
		if (st->rank_ended[i] > 0 && r->started > 0 && st->rank_ended[i] >= r->started)
			r->ranks[i].duration = st->rank_ended[i] - r->started;
	}
	r->checked = now_wall();
}

int jobrec_dir_gone(const struct jobrec *r)
{
	const char *why = r->state_reason;
	return why && strstr(why, "job directory") &&
	       (strstr(why, "is gone") || strstr(why, "was removed"));
}

int jobrec_gone_error(const struct jobrec *r)
{
	if (r->state && strcmp(r->state, "lost"))
		error_set(PS_EXIT_REMOTE, "job '%s' (%s) has no directory on the remote any more: %s",
			  r->id, r->state, r->state_reason);
	else
		error_set(PS_EXIT_REMOTE, "job '%s' is lost: %s", r->id,
			  r->state_reason ? r->state_reason : "its directory is gone");
	if (r->results)
		error_hint("what was fetched before is in '%s'", r->results);
	return -1;
}

static int apply_cb(struct jobrec *r, void *ctx)
{
	jobrec_apply_state(r, ctx);
	return 0;
}

int jobrec_refresh(const char *id, const struct remote_job_state *st)
{
	return jobrec_update(id, apply_cb, (void *)st);
}

int jobrec_check(struct ssh_conn *c, const struct config *cfg, struct jobrec *r)
{
	struct remote_job_state st;
	char *dir = jobrec_remote_dir(r, cfg);
	int ret;

	ret = remote_job_read(c, dir, &st);
	free(dir);
	if (ret < 0)
		return ret;
	jobrec_apply_state(r, &st);
	if (jobrec_refresh(r->id, &st) < 0) {
		/* The table still shows the fresh state; the record stays as it was. */
		log_warn("%s", error_message());
		error_clear();
	}
	remote_job_state_release(&st);
	return 0;
}

struct conn_slot {
	char *remote, *host;
	struct config cfg;
	struct ssh_conn *conn;
	char *why;
	int kind;
};

struct jobrec_conns {
	char *config_file;
	struct conn_slot *v;
	size_t n;
};

struct jobrec_conns *jobrec_conns_new(const char *config_file)
{
	struct jobrec_conns *cc = xcalloc(1, sizeof(*cc));
	cc->config_file = config_file ? xstrdup(config_file) : NULL;
	return cc;
}

static int same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

struct ssh_conn *jobrec_conns_get(struct jobrec_conns *cc, const struct jobrec *r,
				  const struct config **cfg, const char **why, int *kind)
{
	struct conn_slot *s = NULL;

	for (size_t i = 0; i < cc->n && !s; i++)
		if (same(cc->v[i].remote, r->remote) && same(cc->v[i].host, r->host))
			s = &cc->v[i];
	if (!s) {
		cc->v = xrealloc(cc->v, (cc->n + 1) * sizeof(*cc->v));
		s = &cc->v[cc->n++];
		memset(s, 0, sizeof(*s));
		s->remote = r->remote ? xstrdup(r->remote) : NULL;
		s->host = r->host ? xstrdup(r->host) : NULL;
		if (jobrec_connect(r, cc->config_file, &s->cfg, &s->conn) < 0) {
			s->conn = NULL;
			s->kind = error_kind();
			s->why = xstrdup(error_message());
			error_clear();
		}
	}
	*cfg = &s->cfg;
	*why = s->why;
	*kind = s->kind;
	return s->conn;
}

void jobrec_conns_free(struct jobrec_conns *cc)
{
	if (!cc)
		return;
	for (size_t i = 0; i < cc->n; i++) {
		ssh_conn_free(cc->v[i].conn);
		config_release(&cc->v[i].cfg);
		free(cc->v[i].remote);
		free(cc->v[i].host);
		free(cc->v[i].why);
	}
	free(cc->v);
	free(cc->config_file);
	free(cc);
}

const char *jobrec_fmt_time(char *out, size_t n, double t)
{
	time_t secs = (time_t)t;
	struct tm tm;

	if (t <= 0 || !localtime_r(&secs, &tm) || !strftime(out, n, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(out, n, "-");
	return out;
}

const char *jobrec_fmt_duration(char *out, size_t n, double secs)
{
	long s = (long)(secs + 0.5);

	if (secs < 0)
		snprintf(out, n, "-");
	else if (secs < 60)
		snprintf(out, n, "%.1fs", secs);
	else if (s < 3600)
		snprintf(out, n, "%ldm%02lds", s / 60, s % 60);
	else
		snprintf(out, n, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
	return out;
}

const char *jobrec_image_tag(char *out, size_t n, const char *image)
{
	const char *at, *slash, *colon;
	size_t len;

	if (!image || !*image) {
		snprintf(out, n, "-");
		return out;
	}
	at = strchr(image, '@');
	len = at ? (size_t)(at - image) : strlen(image);
	slash = memrchr(image, '/', len);
	colon = memrchr(slash ? slash : image, ':', len - (size_t)(slash ? slash - image : 0));
	if (colon)
		snprintf(out, n, "%.*s", (int)(len - (size_t)(colon + 1 - image)), colon + 1);
	else if (at && !strncmp(at + 1, "sha256:", 7))
		snprintf(out, n, "%.12s", at + 8);
	else
		snprintf(out, n, "-");
	return out;
}

const char *jobrec_remote_label(const struct jobrec *r)
{
	return r->remote ? r->remote : r->host ? r->host : "default";
}

const char *jobrec_job_arg(int argc, char **argv, const char *verb, const char *help)
{
	if (optind + 1 == argc)
		return argv[optind];
	if (optind < argc)
		cli_usage_error(help, "%s takes one JOB", verb);
	else
		cli_usage_error(help, "%s needs a JOB (an id, a prefix, or 'last')", verb);
	return NULL;
}

int jobrec_open(struct jobrec *r, const char *arg, const char *config_file,
		struct config *cfg, struct ssh_conn **conn)
{
	if (jobrec_resolve(r, arg) < 0 || jobrec_connect(r, config_file, cfg, conn) < 0 ||
	    jobrec_check(*conn, cfg, r) < 0)
		return -1;
	if (jobrec_dir_gone(r))
		return jobrec_gone_error(r);
	return 0;
}
