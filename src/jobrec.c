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
#include "error.h"
#include "jobrec.h"
#include "log.h"

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
	free(r->ssh_host);
	free(r->ssh_user);
	free(r->identity);
	free(r->known_hosts);
	free(r->workdir);
	free(r->config_file);
	free(r->runtime);
	free(r->kind);
	free(r->name);
	free(r->image);
	free(r->digest);
	free(r->revision);
	free(r->cell);
	free(r->results);
	free(r->state);
	free(r->state_reason);
	free(r->state_code);
	free(r->slurm_id);
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
		return error_set(PS_EXIT_IO, "cannot make a job id: getrandom: %s",
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
		error_set(PS_EXIT_IO, "cannot create the job records directory '%s': %s",
			  dir, strerror(errno));
		goto out;
	}
	path = xstrfmt("%s/.lock", dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		error_set(PS_EXIT_IO, "cannot open '%s': %s", path, strerror(errno));
		goto out;
	}
	while (flock(fd, LOCK_EX) < 0) {
		if (errno == EINTR && !interrupt_requested())
			continue;
		error_set(errno == EINTR ? PS_EXIT_INTERRUPTED : PS_EXIT_IO,
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
	set_string(o, "ssh_host", r->ssh_host);
	if (r->ssh_port > 0)
		json_object_set_new(o, "ssh_port", json_integer(r->ssh_port));
	else
		json_object_del(o, "ssh_port");
	set_string(o, "ssh_user", r->ssh_user);
	set_string(o, "identity", r->identity);
	set_string(o, "known_hosts", r->known_hosts);
	set_string(o, "workdir", r->workdir);
	set_string(o, "config_file", r->config_file);
	set_string(o, "runtime", r->runtime);
	set_string(o, "kind", r->kind);
	set_string(o, "name", r->name);
	set_string(o, "image", r->image);
	set_string(o, "digest", r->digest);
	set_string(o, "revision", r->revision);
	set_string(o, "cell", r->cell);
	set_string(o, "results", r->results);
	set_string(o, "state", r->state);
	set_string(o, "state_reason", r->state_reason);
	set_string(o, "state_code", r->state_code);
	set_string(o, "slurm_id", r->slurm_id);
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
		return error_set(PS_EXIT_IO, "job record '%s' is not a JSON object", path);
	}
	r->id = get_string(o, "id");
	if (!jobrec_id_valid(r->id)) {
		json_decref(o);
		return error_set(PS_EXIT_IO, "job record '%s' has no valid id", path);
	}
	r->remote = get_string(o, "remote");
	r->host = get_string(o, "host");
	r->host_name = get_string(o, "host_name");
	r->jobdir = get_string(o, "jobdir");
	r->ssh_host = get_string(o, "ssh_host");
	r->ssh_port = get_int(o, "ssh_port", 0);
	if (r->ssh_port < 0 || r->ssh_port > 65535)
		r->ssh_port = 0;
	r->ssh_user = get_string(o, "ssh_user");
	r->identity = get_string(o, "identity");
	r->known_hosts = get_string(o, "known_hosts");
	r->workdir = get_string(o, "workdir");
	r->config_file = get_string(o, "config_file");
	r->runtime = get_string(o, "runtime");
	r->kind = get_string(o, "kind");
	r->name = get_string(o, "name");
	r->image = get_string(o, "image");
	r->digest = get_string(o, "digest");
	r->revision = get_string(o, "revision");
	r->cell = get_string(o, "cell");
	r->results = get_string(o, "results");
	r->state = get_string(o, "state");
	r->state_reason = get_string(o, "state_reason");
	r->state_code = get_string(o, "state_code");
	r->slurm_id = get_string(o, "slurm_id");
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
			error_set(PS_EXIT_IO, "cannot read job record '%s': %s", path,
				  errno == EFBIG ? "too large" : strerror(errno));
		goto out;
	}
	o = json_loadb(b.ptr, b.len, 0, &jerr);
	if (!o) {
		error_set(PS_EXIT_IO, "job record '%s' is corrupt: %s (line %d)", path,
			  jerr.text, jerr.line);
		goto out;
	}
	if (from_json(r, o, path) < 0)
		goto out;
	if (strcmp(r->id, id)) {
		error_set(PS_EXIT_IO, "job record '%s' holds another job ('%s')", path, r->id);
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

/* Writes r to its file; the caller holds the lock. */
static int save_locked(const char *dir, const struct jobrec *r)
{
	char *path = xstrfmt("%s/%s.json", dir, r->id);
	json_t *o = to_json(r);
	char *text = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
	struct buf b = BUF_INIT;
	int ret = -1;

	if (!text) {
		error_set(PS_EXIT_USAGE, "cannot encode job record '%s'", r->id);
		goto out;
	}
	buf_addstr(&b, text);
	buf_addch(&b, '\n');
	ret = write_file_atomic(path, b.ptr, b.len, 0600);
out:
	buf_release(&b);
	free(text);
	json_decref(o);
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
		error_set(PS_EXIT_IO, "cannot remove '%s': %s", path, strerror(errno));
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

int jobrec_ids(char ***out, size_t *n)
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
			error_set(PS_EXIT_IO, "cannot read the job records in '%s': %s", dir,
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

void jobrec_ids_free(char **ids, size_t n)
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

	if (jobrec_ids(&ids, &nids) < 0)
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
	jobrec_ids_free(ids, nids);
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


int jobrec_load_newest(struct jobrec *r)
{
	char **ids;
	size_t n;
	int ret;

	jobrec_init(r);
	if (jobrec_ids(&ids, &n) < 0)
		return -1;
	if (n) {
		ret = load_newest(r, ids, n);
	} else {
		char *dir = jobrec_dir();
		ret = error_set(PS_EXIT_USAGE, "no job records in '%s'", dir);
		free(dir);
	}
	jobrec_ids_free(ids, n);
	return ret;
}
