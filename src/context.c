#include "context.h"

#include <archive.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "buf.h"
#include "digest.h"
#include "embedded.h"
#include "error.h"
#include "gitrepo.h"
#include "log.h"
#include "strvec.h"
#include "tarball.h"
#include "util.h"

#define LARGE_FILES 1000
#define LARGE_BYTES (100ULL << 20)
/* Bumped whenever the bytes of a layer for the same inputs would change. */
#define LAYER_FORMAT "pystrib-layer-1"

const char *const context_cmd[] = {
	"python3", "/pystrib/cell/bootstrap.py", "/pystrib/cell/user_code.py", NULL
};

/* Everything both forms of the context are written from. */
struct gathered {
	struct gitrepo proj;
	int has_project;
	char *cell;		/* resolved path of the cell file; a session's: the
				 * current directory */
	int session;		/* context_options.session */
	char *cell_name;	/* its name in tracebacks (user_code.name): path in the project,
				 * else the file's name */
	uint64_t cell_size;
	char **inputs;		/* resolved input paths */
	uint64_t *input_sizes;
	int ninputs;
	char *workdir;
	struct strvec env;	/* "PYSTRIB_...=value" */
};

static void gathered_release(struct gathered *g)
{
	gitrepo_release(&g->proj);
	free(g->cell);
	free(g->cell_name);
	for (int i = 0; i < g->ninputs; i++)
		free(g->inputs[i]);
	free(g->inputs);
	free(g->input_sizes);
	free(g->workdir);
	strvec_release(&g->env);
	memset(g, 0, sizeof(*g));
	strvec_init(&g->env);
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

/* path relative to root, if it lies below it; else NULL. */
static const char *below(const char *path, const char *root)
{
	size_t n = strlen(root);
	if (n == 1 && root[0] == '/')
		return path[0] == '/' && path[1] ? path + 1 : NULL;
	if (strncmp(path, root, n) || path[n] != '/')
		return NULL;
	return path + n + 1;
}

/* Resolves a path that may not exist yet (an output file) through its directory. */
static char *resolve_maybe_missing(const char *path)
{
	char *real = realpath(path, NULL);
	if (real)
		return real;
	const char *slash = strrchr(path, '/');
	char *dir = slash ? xstrndup(path, slash == path ? 1 : (size_t)(slash - path)) : xstrdup(".");
	char *rdir = realpath(dir, NULL);
	free(dir);
	if (!rdir)
		return NULL;
	char *out = xstrfmt("%s/%s", rdir, base_name(path));
	free(rdir);
	return out;
}

static int stat_regular(const char *what, const char *path, char **real, uint64_t *size)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return error_set(PS_EXIT_USAGE, "cannot find the %s '%s': %s", what, path,
				 strerror(errno));
	if (!S_ISREG(st.st_mode))
		return error_set(PS_EXIT_USAGE, "the %s '%s' is not a regular file", what, path);
	*real = realpath(path, NULL);
	if (!*real)
		return error_set(PS_EXIT_USAGE, "cannot resolve '%s': %s", path, strerror(errno));
	*size = (uint64_t)st.st_size;
	return 0;
}

static int gather_inputs(struct gathered *g, const struct context_options *o)
{
	g->inputs = xcalloc((size_t)o->ninputs + 1, sizeof(*g->inputs));
	g->input_sizes = xcalloc((size_t)o->ninputs + 1, sizeof(*g->input_sizes));
	for (int i = 0; i < o->ninputs; i++) {
		if (stat_regular("input", o->inputs[i], &g->inputs[i], &g->input_sizes[i]) < 0)
			return -1;
		g->ninputs = i + 1;
		for (int j = 0; j < i; j++)
			if (!strcmp(base_name(g->inputs[j]), base_name(g->inputs[i])))
				return error_set(PS_EXIT_USAGE,
						 "inputs '%s' and '%s' have the same name '%s'",
						 o->inputs[j], o->inputs[i], base_name(g->inputs[i]));
	}
	return 0;
}

static void drop_excluded(struct gathered *g, const struct context_options *o, const char *extra)
{
	for (int i = 0; i <= o->nexclude; i++) {
		const char *path = i < o->nexclude ? o->exclude[i] : extra;
		if (!path)
			continue;
		char *real = resolve_maybe_missing(path);
		const char *rel = real ? below(real, g->proj.root) : NULL;
		if (rel)
			gitrepo_remove(&g->proj, rel);
		free(real);
	}
}

/* Finds and lists the project (if any), and works out WorkingDir and Env. */
static int gather(struct gathered *g, const struct context_options *o, const char *extra_exclude)
{
	char *dir = NULL;
	int ret = -1;

	memset(g, 0, sizeof(*g));
	strvec_init(&g->env);
	if (!o->cell && !o->session)
		return error_set(PS_EXIT_USAGE, "no cell file given");
	if (o->project_dir && o->no_project)
		return error_set(PS_EXIT_USAGE, "--project and --no-project cannot be used together");
	g->session = o->session;
	if (o->session && !(g->cell = getcwd(NULL, 0)))
		return error_set(PS_EXIT_IO, "cannot find the current directory: %s",
				 strerror(errno));
	if ((!o->session && stat_regular("cell", o->cell, &g->cell, &g->cell_size) < 0) ||
	    gather_inputs(g, o) < 0)
		return -1;

	if (o->project_dir) {
		dir = xstrdup(o->project_dir);
	} else if (!o->no_project) {
		if (gitrepo_find_worktree(g->cell, &dir) < 0)
			goto out;
		if (!dir)
			log_info("'%s' is in no git work tree: the image gets no project files "
				 "(--project DIR adds a directory)", o->session ? "." : o->cell);
	}
	if (dir) {
		if (gitrepo_scan(&g->proj, dir) < 0)
			goto out;
		g->has_project = 1;
		const char *cell_rel = below(g->cell, g->proj.root);
		if (cell_rel && !o->session)
			g->cell_name = xstrdup(cell_rel);
		/* The cell lives in the cell layer; keeping it out of the project
		 * layer means editing it changes only the cell layer. */
		if (cell_rel && !o->session)
			gitrepo_remove(&g->proj, cell_rel);
		drop_excluded(g, o, extra_exclude);
		const char *slash = cell_rel ? strrchr(cell_rel, '/') : NULL;
		if (o->session && cell_rel && *cell_rel)
			/* A session starts where the user is (the current directory). */
			g->workdir = xstrfmt("/pystrib/project/%s", cell_rel);
		else
			g->workdir = slash && !o->session
				? xstrfmt("/pystrib/project/%.*s", (int)(slash - cell_rel), cell_rel)
				: xstrdup("/pystrib/project");
	} else {
		g->workdir = xstrdup("/pystrib/cell");
	}
	/*
	 * The name tracebacks give the cell: its path in the project, else its
	 * file name; never where it is on this machine, so that the same cell
	 * elsewhere makes the same layer.
	 */
	if (!o->session && !g->cell_name)
		g->cell_name = xstrdup(base_name(g->cell));
	if (!o->session)
		strvec_push(&g->env, "PYSTRIB_CELL=/pystrib/cell/user_code.py");
	strvec_push(&g->env, "PYSTRIB_INPUTS=/pystrib/cell/inputs");
	if (g->has_project)
		strvec_push(&g->env, "PYSTRIB_PROJECT=/pystrib/project");
	if (g->proj.revision)
		strvec_pushf(&g->env, "PYSTRIB_REVISION=%s", g->proj.revision);
	ret = 0;
out:
	free(dir);
	return ret;
}

/* ---- the large-project warning ----------------------------------------- */

struct dir_total {
	char *dir;
	uint64_t bytes;
	size_t files;
};

static int cmp_dir_name(const void *a, const void *b)
{
	return strcmp(((const struct dir_total *)a)->dir, ((const struct dir_total *)b)->dir);
}

static int by_bytes;
static int cmp_dir_size(const void *a, const void *b)
{
	const struct dir_total *x = a, *y = b;
	uint64_t kx = by_bytes ? x->bytes : x->files, ky = by_bytes ? y->bytes : y->files;
	if (kx != ky)
		return kx < ky ? 1 : -1;
	return strcmp(x->dir, y->dir);
}

static int related(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), n = la < lb ? la : lb;
	return !strncmp(a, b, n) && (a[n] == '/' || a[n] == '\0') && (b[n] == '/' || b[n] == '\0');
}

/* Totals per directory (every level), biggest first, for naming in the warning. */
static void largest_dirs(const struct gitrepo *p, struct buf *out)
{
	struct dir_total *t = NULL;
	size_t n = 0, alloc = 0;
	for (size_t i = 0; i < p->nfiles; i++) {
		const char *path = p->files[i].path;
		for (const char *s = strchr(path, '/'); s; s = strchr(s + 1, '/')) {
			if (n == alloc) {
				alloc = alloc ? 2 * alloc : 256;
				t = xrealloc(t, alloc * sizeof(*t));
			}
			t[n++] = (struct dir_total){ xstrndup(path, (size_t)(s - path)),
						     p->files[i].size, 1 };
		}
	}
	qsort(t, n, sizeof(*t), cmp_dir_name);
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		if (m && !strcmp(t[m - 1].dir, t[i].dir)) {
			t[m - 1].bytes += t[i].bytes;
			t[m - 1].files += t[i].files;
			free(t[i].dir);
		} else {
			t[m++] = t[i];
		}
	}
	by_bytes = p->bytes > LARGE_BYTES;
	qsort(t, m, sizeof(*t), cmp_dir_size);
	const char *picked[3];
	size_t npicked = 0;
	for (size_t i = 0; i < m && npicked < ARRAY_SIZE(picked); i++) {
		int skip = 0;
		for (size_t j = 0; j < npicked; j++)
			skip |= related(picked[j], t[i].dir);
		if (skip)
			continue;
		picked[npicked++] = t[i].dir;
		buf_addf(out, "%s%s/ (%.1f MiB, %zu files)", npicked > 1 ? ", " : "", t[i].dir,
			 (double)t[i].bytes / (1 << 20), t[i].files);
	}
	for (size_t i = 0; i < m; i++)
		free(t[i].dir);
	free(t);
}

static void warn_if_large(const struct gitrepo *p)
{
	struct buf msg = BUF_INIT, dirs = BUF_INIT;
	if (p->nfiles <= LARGE_FILES && p->bytes <= LARGE_BYTES)
		return;
	largest_dirs(p, &dirs);
	buf_addf(&msg, "the project '%s' is large: %zu files, %.1f MiB; ", p->root, p->nfiles,
		 (double)p->bytes / (1 << 20));
	if (dirs.len)
		buf_addf(&msg, "largest directories: %s; ", dirs.ptr);
	buf_addf(&msg, "list what the cell does not need in '%s/.pystribignore' "
		 "(gitignore syntax), or pass --no-project", p->root);
	log_warn("%s", msg.ptr);
	event_emit("warning", "{s:s}", "message", msg.ptr);
	buf_release(&msg);
	buf_release(&dirs);
}

/* ---- entries ------------------------------------------------------------ */

static void add_project_entries(struct tar_list *l, const struct gathered *g, const char *prefix)
{
	tar_list_add_dir(l, prefix);
	for (size_t i = 0; i < g->proj.nfiles; i++) {
		const struct project_file *f = &g->proj.files[i];
		char *path = xstrfmt("%s/%s", prefix, f->path);
		if (f->kind == PROJECT_SYMLINK) {
			tar_list_add_symlink(l, path, f->link);
		} else {
			char *src = xstrfmt("%s/%s", g->proj.root, f->path);
			tar_list_add_file(l, path, src, f->size, f->executable);
			free(src);
		}
		free(path);
	}
}

static int add_cell_entries(struct tar_list *l, const struct gathered *g, const char *prefix)
{
	const struct embedded *boot = embedded_find("bootstrap.py");
	const struct embedded *sess = embedded_find("session.py");
	char *p;
	if (!boot || (g->session && !sess))
		return error_set(PS_EXIT_USAGE, "internal error: %s is not built in",
				 boot ? "session.py" : "bootstrap.py");
	p = xstrfmt("%s/bootstrap.py", prefix);
	tar_list_add_data(l, p, boot->data, boot->len, 0);
	free(p);
	if (g->session) {
		/* A session's hub and workers; no cell: cells come over hub.sock. */
		p = xstrfmt("%s/session.py", prefix);
		tar_list_add_data(l, p, sess->data, sess->len, 0);
	} else {
		p = xstrfmt("%s/user_code.py", prefix);
		tar_list_add_file(l, p, g->cell, g->cell_size, 0);
		free(p);
		/* The name the user gave, for the tracebacks bootstrap.py prints. */
		p = xstrfmt("%s/user_code.name", prefix);
		tar_list_add_data(l, p, g->cell_name, strlen(g->cell_name), 0);
	}
	free(p);
	p = xstrfmt("%s/inputs", prefix);
	tar_list_add_dir(l, p);
	free(p);
	for (int i = 0; i < g->ninputs; i++) {
		p = xstrfmt("%s/inputs/%s", prefix, base_name(g->inputs[i]));
		tar_list_add_file(l, p, g->inputs[i], g->input_sizes[i], 0);
		free(p);
	}
	return 0;
}

/* ---- layers in the cache ------------------------------------------------ */

/*
 * A key naming a layer's exact inputs without reading them: every entry's
 * path, kind and mode, and for files streamed from disk their lstat
 * identity (size, mtime, ctime, inode, device), as git's index does. With
 * the key, an unchanged project is recognised without re-compressing it.
 */
static int layer_key(const struct tar_list *l, char key[DIGEST_LEN], int *racy)
{
	struct digest d;
	struct buf b = BUF_INIT;
	time_t now = time(NULL);
	digest_init(&d);
	buf_addf(&b, "%s zlib %s %s\n", LAYER_FORMAT, zlibVersion(), archive_version_string());
	digest_update(&d, b.ptr, b.len + 1);
	*racy = 0;
	for (size_t i = 0; i < l->n; i++) {
		const struct tar_entry *e = &l->v[i];
		buf_reset(&b);
		buf_addf(&b, "%d %o %s", (int)e->kind, e->mode, e->path);
		if (e->kind == TAR_SYMLINK) {
			buf_addf(&b, " -> %s", e->link);
		} else if (e->kind == TAR_FILE && e->source) {
			struct stat st;
			if (lstat(e->source, &st) < 0) {
				digest_release(&d);
				buf_release(&b);
				return error_set(PS_EXIT_IO, "cannot examine '%s': %s", e->source,
						 strerror(errno));
			}
			buf_addf(&b, " %s %llu %lld.%09ld %lld.%09ld %llu %llu", e->source,
				 (unsigned long long)e->size, (long long)st.st_mtim.tv_sec,
				 st.st_mtim.tv_nsec, (long long)st.st_ctim.tv_sec, st.st_ctim.tv_nsec,
				 (unsigned long long)st.st_ino, (unsigned long long)st.st_dev);
			/* Changed within the clock's reach of now: it may change again unseen. */
			if (st.st_mtime >= now - 2 || st.st_ctime >= now - 2)
				*racy = 1;
		} else if (e->kind == TAR_FILE) {
			char sum[DIGEST_LEN];
			digest_bytes(e->data, (size_t)e->size, sum);
			buf_addf(&b, " data %s", sum);
		}
		digest_update(&d, b.ptr, b.len + 1);
	}
	buf_release(&b);
	digest_final(&d, key);
	return 0;
}

static char *blob_path(const char *cache_dir, const char *digest)
{
	return xstrfmt("%s/sha256-%s.tar.gz", cache_dir, digest + 7);
}

/* The layer recorded under key, if its blob is still in the cache. 1 found, 0 not. */
static int cached_layer(const char *cache_dir, const char *key, struct layer *out)
{
	struct buf b;
	char digest[DIGEST_LEN], diff_id[DIGEST_LEN];
	unsigned long long size;
	struct stat st;
	int found = 0;
	char *idx = xstrfmt("%s/index/%s", cache_dir, key + 7);
	buf_init(&b, 4096);
	if (buf_read_file(&b, idx) < 0 ||
	    sscanf(b.ptr, "%71s %71s %llu", digest, diff_id, &size) != 3 ||
	    !digest_valid(digest) || !digest_valid(diff_id))
		goto out;
	char *blob = blob_path(cache_dir, digest);
	if (stat(blob, &st) == 0 && (unsigned long long)st.st_size == size) {
		/* Used now: what context_cache_prune goes by. */
		utimensat(AT_FDCWD, blob, NULL, 0);
		utimensat(AT_FDCWD, idx, NULL, 0);
		out->path = blob;
		memcpy(out->digest, digest, DIGEST_LEN);
		memcpy(out->diff_id, diff_id, DIGEST_LEN);
		out->size = size;
		found = 1;
	} else {
		free(blob);
	}
out:
	buf_release(&b);
	free(idx);
	return found;
}

static void remember_layer(const char *cache_dir, const char *key, const struct layer *l)
{
	char *dir = xstrfmt("%s/index", cache_dir);
	char *idx = xstrfmt("%s/%s", dir, key + 7);
	char *line = xstrfmt("%s %s %llu\n", l->digest, l->diff_id, (unsigned long long)l->size);
	/* Only a speed-up: a layer not recorded is compressed again next time. */
	if (mkdir_p(dir, 0755) < 0) {
		log_debug("cannot record layer %s in '%s': %s", l->digest, dir, strerror(errno));
	} else if (write_file_atomic(idx, line, strlen(line), 0600) < 0) {
		log_debug("cannot record layer %s: %s", l->digest, error_message());
		error_clear();
	}
	free(dir);
	free(idx);
	free(line);
}

/*
 * Writes the entries as a gzip layer into cache_dir, named by its digest,
 * through a temporary file: a failure leaves no half-written layer.
 */
static int write_layer(struct tar_list *l, const char *cache_dir, struct layer *out)
{
	struct atomic_file f = ATOMIC_FILE_INIT;
	struct tarball_result res;
	char key[DIGEST_LEN];
	int racy = 0, ret = -1;
	/* The name is the digest, known once written: "layer" names the temporary. */
	char *tmp_name = xstrfmt("%s/layer", cache_dir);
	char *path = NULL;

	if (tar_list_finish(l) < 0 || layer_key(l, key, &racy) < 0)
		goto out;
	if (cached_layer(cache_dir, key, out)) {
		log_debug("layer %s: unchanged, from the cache", out->digest);
		ret = 0;
		goto out;
	}
	if (atomic_file_open(&f, tmp_name, 0600) < 0 || tarball_write(l, f.fd, 1, &res) < 0)
		goto out;
	path = blob_path(cache_dir, res.digest);
	if (atomic_file_commit_as(&f, path) < 0)
		goto out;
	out->path = path;
	path = NULL;
	memcpy(out->digest, res.digest, DIGEST_LEN);
	memcpy(out->diff_id, res.diff_id, DIGEST_LEN);
	out->size = res.size;
	if (!racy)
		remember_layer(cache_dir, key, out);
	ret = 0;
out:
	atomic_file_abort(&f);
	free(path);
	free(tmp_name);
	return ret;
}

/* ---- public ------------------------------------------------------------- */

static char *rfc3339(long long t)
{
	struct tm tm;
	char s[32];
	time_t tt = (time_t)t;
	gmtime_r(&tt, &tm);
	strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return xstrdup(s);
}

static void emit_context_event(const struct gathered *g)
{
	event_emit("context", "{s:I,s:I,s:s?,s:s?}",
		   "project_files", (json_int_t)g->proj.nfiles,
		   "project_bytes", (json_int_t)g->proj.bytes,
		   "revision", g->proj.revision,
		   "workdir", g->workdir);
}

int context_build(struct context *ctx, const struct context_options *opts,
		  const char *cache_dir)
{
	struct gathered g;
	struct tar_list pl = TAR_LIST_INIT, cl = TAR_LIST_INIT;
	int ret = -1;

	memset(ctx, 0, sizeof(*ctx));
	/* A cache inside the project must not end up in its own layers. */
	if (gather(&g, opts, cache_dir) < 0)
		goto out;
	if (g.has_project)
		warn_if_large(&g.proj);
	if (mkdir_p(cache_dir, 0755) < 0) {
		error_set(PS_EXIT_IO, "cannot create the layer cache '%s': %s", cache_dir,
			  strerror(errno));
		goto out;
	}
	if (g.has_project) {
		add_project_entries(&pl, &g, "pystrib/project");
		tar_list_add_dir(&pl, g.workdir);
		if (write_layer(&pl, cache_dir, &ctx->project) < 0)
			goto out;
		ctx->project.created_by = xstrfmt("pystrib: project, %zu files", g.proj.nfiles);
		ctx->project_root = xstrdup(g.proj.root);
	}
	if (add_cell_entries(&cl, &g, "pystrib/cell") < 0 ||
	    write_layer(&cl, cache_dir, &ctx->cell) < 0)
		goto out;
	ctx->cell.created_by = xstrfmt("pystrib: %s, bootstrap and %d input%s",
				       g.session ? "session" : "cell", g.ninputs,
				       g.ninputs == 1 ? "" : "s");
	ctx->workdir = g.workdir;
	g.workdir = NULL;
	ctx->env = strvec_detach(&g.env, &ctx->nenv);
	ctx->revision = g.proj.revision ? xstrdup(g.proj.revision) : NULL;
	ctx->source = g.proj.source ? xstrdup(g.proj.source) : NULL;
	ctx->commit_time = g.proj.commit_time;
	ctx->created = rfc3339(g.proj.commit_time);
	ctx->project_files = g.proj.nfiles;
	ctx->project_bytes = g.proj.bytes;
	emit_context_event(&g);
	log_info("context: %zu project files (%.1f MiB), cell layer %s", g.proj.nfiles,
		 (double)g.proj.bytes / (1 << 20), ctx->cell.digest);
	ret = 0;
out:
	if (ret < 0)
		context_release(ctx);
	tar_list_release(&pl);
	tar_list_release(&cl);
	gathered_release(&g);
	return ret;
}

/* A Dockerfile double-quoted value: no variable expansion, no line breaks. */
static void add_quoted(struct buf *b, const char *s)
{
	buf_addch(b, '"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\' || *s == '$')
			buf_addch(b, '\\');
		buf_addch(b, *s == '\n' || *s == '\r' ? ' ' : *s);
	}
	buf_addch(b, '"');
}

static void fill(struct buf *out, const char *name, const struct gathered *g, const char *base)
{
	if (!strcmp(name, "BASE")) {
		buf_addstr(out, base);
	} else if (!strcmp(name, "WORKDIR")) {
		/* Unquoted, but '$' would be expanded: escape it. */
		for (const char *s = g->workdir; *s; s++) {
			if (*s == '$' || *s == '\\')
				buf_addch(out, '\\');
			buf_addch(out, *s == '\n' ? ' ' : *s);
		}
	} else if (!strcmp(name, "COPY_PROJECT")) {
		if (g->has_project)
			buf_addstr(out, "COPY project/ /pystrib/project/");
	} else if (!strcmp(name, "ENV")) {
		for (size_t i = 0; i < g->env.nr; i++) {
			const char *kv = g->env.v[i], *eq = strchr(kv, '=');
			buf_addf(out, "%sENV %.*s=", i ? "\n" : "", (int)(eq - kv), kv);
			add_quoted(out, eq + 1);
		}
	} else if (!strcmp(name, "LABELS")) {
		if (g->proj.revision) {
			buf_addstr(out, "LABEL org.opencontainers.image.revision=");
			add_quoted(out, g->proj.revision);
			char *created = rfc3339(g->proj.commit_time);
			buf_addstr(out, " org.opencontainers.image.created=");
			add_quoted(out, created);
			free(created);
		}
		if (g->proj.source) {
			buf_addstr(out, g->proj.revision ? " " : "LABEL ");
			buf_addstr(out, "org.opencontainers.image.source=");
			add_quoted(out, g->proj.source);
		}
	}
}

/*
 * Fills the {{NAME}} placeholders of the cell.Dockerfile template; a line
 * that held only a placeholder which came out empty is dropped.
 */
static int render_dockerfile(struct buf *out, const struct gathered *g, const char *base)
{
	const struct embedded *t = embedded_find("cell.Dockerfile");
	if (!t)
		return error_set(PS_EXIT_USAGE, "internal error: cell.Dockerfile is not built in");
	const char *s = (const char *)t->data, *end = s + t->len;
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		const char *eol = nl ? nl : end;
		size_t start = out->len;
		const char *p = s;
		while (p < eol) {
			const char *open = memmem(p, (size_t)(eol - p), "{{", 2);
			const char *close = open ? memmem(open, (size_t)(eol - open), "}}", 2) : NULL;
			if (!close) {
				buf_add(out, p, (size_t)(eol - p));
				break;
			}
			buf_add(out, p, (size_t)(open - p));
			char *name = xstrndup(open + 2, (size_t)(close - open - 2));
			fill(out, name, g, base);
			free(name);
			p = close + 2;
		}
		int only_placeholder = eol > s && s[0] == '{' && eol[-1] == '}';
		if (only_placeholder && out->len == start)
			;	/* drop the empty line */
		else if (nl)
			buf_addch(out, '\n');
		s = nl ? nl + 1 : end;
	}
	return 0;
}

/* Standard output, or a temporary file committed over out_path once written. */
static int open_output(const char *out_path, struct atomic_file *f, int *fd)
{
	if (!strcmp(out_path, "-")) {
		if (isatty(1)) {
			error_set(PS_EXIT_USAGE, "refusing to write a tarball to a terminal");
			return error_hint("redirect it: pystrib build FILE -o - > context.tar");
		}
		*fd = 1;
		return 0;
	}
	if (atomic_file_open(f, out_path, 0644) < 0)
		return -1;
	*fd = f->fd;
	return 0;
}

int context_write_build_tar(const struct context_options *opts, const char *out_path)
{
	struct gathered g;
	struct tar_list l = TAR_LIST_INIT;
	struct buf dockerfile = BUF_INIT;
	struct tarball_result res;
	struct atomic_file f = ATOMIC_FILE_INIT;
	int fd = -1, ret = -1;

	if (gather(&g, opts, strcmp(out_path, "-") ? out_path : NULL) < 0)
		goto out;
	if (!opts->base || !*opts->base) {
		error_set(PS_EXIT_USAGE, "no base image for the Dockerfile's FROM");
		error_hint("set [image] base in the config, or pass --base IMAGE");
		goto out;
	}
	if (g.has_project)
		warn_if_large(&g.proj);
	if (render_dockerfile(&dockerfile, &g, opts->base) < 0)
		goto out;
	tar_list_add_data(&l, "Dockerfile", dockerfile.ptr, dockerfile.len, 0);
	if (g.has_project) {
		add_project_entries(&l, &g, "project");
		/* The WorkingDir, as in the project layer. */
		tar_list_add_dir(&l, g.workdir + strlen("/pystrib/"));
	}
	if (add_cell_entries(&l, &g, "cell") < 0 || open_output(out_path, &f, &fd) < 0)
		goto out;
	if (tarball_write(&l, fd, 0, &res) < 0 || (f.path && atomic_file_commit(&f) < 0))
		goto out;
	emit_context_event(&g);
	log_info("wrote '%s': %zu project files (%.1f MiB), %llu bytes", out_path, g.proj.nfiles,
		 (double)g.proj.bytes / (1 << 20), (unsigned long long)res.size);
	ret = 0;
out:
	atomic_file_abort(&f);
	buf_release(&dockerfile);
	tar_list_release(&l);
	gathered_release(&g);
	return ret;
}

void context_release(struct context *ctx)
{
	layer_release(&ctx->project);
	layer_release(&ctx->cell);
	free(ctx->workdir);
	free(ctx->revision);
	free(ctx->source);
	free(ctx->project_root);
	free(ctx->created);
	for (size_t i = 0; i < ctx->nenv; i++)
		free(ctx->env[i]);
	free(ctx->env);
	memset(ctx, 0, sizeof(*ctx));
}

int context_option(struct context_options *o, int c, const char *arg)
{
	switch (c) {
	case CONTEXT_OPT_PROJECT:
	case CONTEXT_OPT_NO_PROJECT:
		if (c == CONTEXT_OPT_PROJECT)
			o->project_dir = arg;
		else
			o->no_project = 1;
		if (o->project_dir && o->no_project)
			return error_set(PS_EXIT_USAGE,
					 "--project and --no-project cannot be used together");
		return 1;
	case CONTEXT_OPT_INPUT:
		if (o->ninputs == o->input_alloc) {
			o->input_alloc = o->input_alloc ? 2 * o->input_alloc : 8;
			o->input_list = xrealloc(o->input_list,
						 (size_t)o->input_alloc * sizeof(*o->input_list));
		}
		o->input_list[o->ninputs++] = arg;
		o->inputs = o->input_list;
		return 1;
	default:
		return 0;
	}
}

void context_options_release(struct context_options *o)
{
	free(o->input_list);
	o->input_list = NULL;
	o->input_alloc = 0;
	o->inputs = NULL;
	o->ninputs = 0;
}

char *context_cache_dir(void)
{
	const char *xdg = getenv("XDG_CACHE_HOME");
	if (xdg && *xdg == '/')
		return xstrfmt("%s/pystrib/layers", xdg);
	char *home = expand_home("~/.cache/pystrib/layers");
	return home;
}

/*
 * Removes the files of dir that match (by name) and were last used before
 * cutoff, counted in out (if not NULL).
 */
static void prune_dir(const char *dir, int (*match)(const char *name), time_t cutoff,
		      int dry_run, struct context_pruned *out)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	struct stat st;

	while (d && (de = readdir(d))) {
		if (!match(de->d_name) || fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode) || st.st_mtime >= cutoff)
			continue;
		if (!dry_run && unlinkat(dirfd(d), de->d_name, 0) < 0) {
			log_warn("cannot remove '%s/%s': %s", dir, de->d_name, strerror(errno));
			continue;
		}
		if (out) {
			out->files++;
			out->bytes += (unsigned long long)st.st_size;
		}
	}
	if (d)
		closedir(d);
}

/*
 * A layer ("sha256-<hex>.tar.gz") or one a build left half-written
 * ("layer.tmp-*", or ".tmp-layer-*" as an earlier pystrib named it).
 */
static int is_layer_file(const char *name)
{
	size_t n = strlen(name);
	return (!strncmp(name, "sha256-", 7) && n == 7 + 64 + 7 && !strcmp(name + n - 7, ".tar.gz")) ||
	       !strncmp(name, "layer.tmp-", 10) || !strncmp(name, ".tmp-layer-", 11);
}

/* An index entry: 64 hex digits, or one being written. */
static int is_index_file(const char *name)
{
	return strlen(name) == 64 || strstr(name, ".tmp-") != NULL;
}

void context_cache_prune(const char *cache_dir, double unused_for, int dry_run,
			 struct context_pruned *out)
{
	double keep = unused_for > CONTEXT_PRUNE_MIN_AGE ? unused_for : CONTEXT_PRUNE_MIN_AGE;
	time_t cutoff = time(NULL) - (time_t)keep;
	char *index = xstrfmt("%s/index", cache_dir);

	memset(out, 0, sizeof(*out));
	prune_dir(cache_dir, is_layer_file, cutoff, dry_run, out);
	/* Index entries cost a few bytes each; an entry whose layer is gone
	 * is only a miss, so they go by the same rule without being counted. */
	prune_dir(index, is_index_file, cutoff, dry_run, NULL);
	free(index);
}
