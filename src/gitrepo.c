#include "gitrepo.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <git2.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "error.h"
#include "log.h"
#include "strvec.h"
#include "util.h"

/* ---- wildmatch ---------------------------------------------------------- */

/*
 * Return values as in git's wildmatch: the two aborts prune the search
 * (the text ran out; a single '*' met a '/') so that patterns with many
 * stars stay linear instead of exponential.
 */
enum { WM_MATCH = 0, WM_NOMATCH = 1, WM_ABORT_ALL = -1, WM_ABORT_TO_STARSTAR = -2 };

static int class_has(const unsigned char *name, size_t len, unsigned char c)
{
	static const struct { const char *name; int (*fn)(int); } classes[] = {
		{ "alnum", isalnum }, { "alpha", isalpha }, { "blank", isblank },
		{ "cntrl", iscntrl }, { "digit", isdigit }, { "graph", isgraph },
		{ "lower", islower }, { "print", isprint }, { "punct", ispunct },
		{ "space", isspace }, { "upper", isupper }, { "xdigit", isxdigit },
	};
	for (size_t i = 0; i < ARRAY_SIZE(classes); i++)
		if (strlen(classes[i].name) == len && !memcmp(classes[i].name, name, len))
			return classes[i].fn(c) ? 1 : 0;
	return -1;
}

/* Matches a bracket expression at *pp against c; leaves *pp on its ']'. */
static int match_bracket(const unsigned char **pp, unsigned char c)
{
	const unsigned char *p = *pp + 1;
	int negated = 0, matched = 0;
	unsigned char prev = 0, pc;

	if (*p == '!' || *p == '^') {
		negated = 1;
		p++;
	}
	pc = *p;
	do {
		if (!pc)
			return WM_ABORT_ALL;
		if (pc == '\\') {
			pc = *++p;
			if (!pc)
				return WM_ABORT_ALL;
			if (c == pc)
				matched = 1;
		} else if (pc == '-' && prev && p[1] && p[1] != ']') {
			pc = *++p;
			if (pc == '\\' && !(pc = *++p))
				return WM_ABORT_ALL;
			if (c >= prev && c <= pc)
				matched = 1;
			pc = 0;	/* a range cannot start another one */
		} else if (pc == '[' && p[1] == ':') {
			const unsigned char *name = p + 2, *end = name;
			while (*end && *end != ']')
				end++;
			if (!*end)
				return WM_ABORT_ALL;
			if (end - name < 1 || end[-1] != ':') {
				if (c == '[')	/* no ":]": a plain '[' */
					matched = 1;
			} else {
				int has = class_has(name, (size_t)(end - name - 1), c);
				if (has < 0)
					return WM_ABORT_ALL;
				if (has)
					matched = 1;
				p = end;
				pc = 0;
			}
		} else if (c == pc) {
			matched = 1;
		}
		prev = pc;
		pc = *++p;
	} while (pc != ']');
	*pp = p;
	return matched == negated || c == '/' ? WM_NOMATCH : WM_MATCH;
}

static int wild(const unsigned char *p, const unsigned char *t, const unsigned char *start)
{
	for (; *p; p++, t++) {
		unsigned char pc = *p;
		if (!*t && pc != '*')
			return WM_ABORT_ALL;
		switch (pc) {
		case '\\':
			pc = *++p;
			if (!pc || *t != pc)
				return WM_NOMATCH;
			continue;
		case '?':
			if (*t == '/')
				return WM_NOMATCH;
			continue;
		case '[': {
			int r = match_bracket(&p, *t);
			if (r != WM_MATCH)
				return r;
			continue;
		}
		case '*':
			break;
		default:
			if (*t != pc)
				return WM_NOMATCH;
			continue;
		}

		int cross = 0;	/* "**" as a whole component: may match '/' */
		if (p[1] == '*') {
			const unsigned char *first = p;
			while (p[1] == '*')
				p++;
			if ((first == start || first[-1] == '/') && (p[1] == '\0' || p[1] == '/')) {
				/* "**" + "/" also matches no directory at all. */
				if (p[1] == '/' && wild(p + 2, t, start) == WM_MATCH)
					return WM_MATCH;
				cross = 1;
			}
		}
		const unsigned char *rest = p + 1;
		if (!*rest)
			return cross || !strchr((const char *)t, '/') ? WM_MATCH : WM_NOMATCH;
		if (!cross && *rest == '/') {
			/* One '*' then '/': the rest of this component, then the next. */
			const char *slash = strchr((const char *)t, '/');
			if (!slash)
				return WM_NOMATCH;
			p = rest;
			t = (const unsigned char *)slash;
			continue;
		}
		for (;;) {
			int r = wild(rest, t, start);
			if (r != WM_NOMATCH) {
				if (!cross || r != WM_ABORT_TO_STARSTAR)
					return r;
			} else if (!cross && *t == '/') {
				return WM_ABORT_TO_STARSTAR;
			}
			if (!*++t)
				return WM_ABORT_ALL;
		}
	}
	return *t ? WM_NOMATCH : WM_MATCH;
}

int ignore_wildmatch(const char *pattern, const char *text)
{
	const unsigned char *p = (const unsigned char *)pattern;
	return wild(p, (const unsigned char *)text, p) == WM_MATCH;
}

/* ---- ignore rules ------------------------------------------------------- */

static size_t path_depth(const char *base)
{
	if (!*base)
		return 0;
	size_t n = 1;
	for (const char *s = base; *s; s++)
		n += *s == '/';
	return n;
}

static void add_rule(struct ignore_rules *r, const char *base, char *line)
{
	struct ignore_rule rule = { 0 };
	size_t len = strlen(line);

	if (len && line[len - 1] == '\r')
		line[--len] = '\0';
	/* Trailing spaces go, unless escaped with a backslash. */
	while (len && line[len - 1] == ' ' && !(len >= 2 && line[len - 2] == '\\'))
		line[--len] = '\0';
	if (!len || line[0] == '#')
		return;
	if (line[0] == '!') {
		rule.negate = 1;
		line++;
		len--;
	}
	if (len && line[len - 1] == '/') {
		rule.dir_only = 1;
		line[--len] = '\0';
	}
	if (line[0] == '/') {
		rule.anchored = 1;
		line++;
	} else if (strchr(line, '/')) {
		rule.anchored = 1;
	}
	if (!*line)
		return;
	rule.base = xstrdup(base);
	rule.pattern = xstrdup(line);
	rule.depth = path_depth(base);

	if (r->n == r->alloc) {
		r->alloc = r->alloc ? 2 * r->alloc : 16;
		r->v = xrealloc(r->v, r->alloc * sizeof(*r->v));
	}
	/* Keep rules ordered by depth, file order within a depth: last match wins. */
	size_t at = r->n;
	while (at && r->v[at - 1].depth > rule.depth)
		at--;
	memmove(&r->v[at + 1], &r->v[at], (r->n - at) * sizeof(*r->v));
	r->v[at] = rule;
	r->n++;
}

void ignore_rules_add_text(struct ignore_rules *r, const char *base, const char *text)
{
	char *copy = xstrdup(text);
	for (char *line = copy; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		add_rule(r, base, line);
		line = nl ? nl + 1 : NULL;
	}
	free(copy);
}

int ignore_rules_add_file(struct ignore_rules *r, const char *base, const char *path)
{
	struct buf b;
	struct stat st;
	buf_init(&b, 4 << 20);
	if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return 0;
	if (buf_read_file(&b, path) < 0) {
		int e = errno;
		buf_release(&b);
		return error_set(PS_EXIT_IO, "cannot read '%s': %s", path, strerror(e));
	}
	ignore_rules_add_text(r, base, b.ptr);
	buf_release(&b);
	return 0;
}

static int rule_matches(const struct ignore_rule *rule, const char *path, int is_dir)
{
	size_t bl = strlen(rule->base);
	if (bl) {
		if (strncmp(path, rule->base, bl) || path[bl] != '/')
			return 0;
		path += bl + 1;
	}
	if (rule->dir_only && !is_dir)
		return 0;
	if (!rule->anchored) {
		const char *slash = strrchr(path, '/');
		if (slash)
			path = slash + 1;
	}
	return ignore_wildmatch(rule->pattern, path);
}

static int excluded_here(const struct ignore_rules *r, const char *path, int is_dir)
{
	int excluded = 0;
	for (size_t i = 0; i < r->n; i++)
		if (rule_matches(&r->v[i], path, is_dir))
			excluded = !r->v[i].negate;
	return excluded;
}

int ignore_rules_excluded(const struct ignore_rules *r, const char *path, int is_dir)
{
	if (!r->n)
		return 0;
	char *p = xstrdup(path);
	int excluded = 0;
	for (char *s = strchr(p, '/'); s && !excluded; s = strchr(s + 1, '/')) {
		*s = '\0';
		excluded = excluded_here(r, p, 1);
		*s = '/';
	}
	if (!excluded)
		excluded = excluded_here(r, p, is_dir);
	free(p);
	return excluded;
}

void ignore_rules_release(struct ignore_rules *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->v[i].base);
		free(r->v[i].pattern);
	}
	free(r->v);
	r->v = NULL;
	r->n = r->alloc = 0;
}

/* ---- file list ---------------------------------------------------------- */

static char *join(const char *dir, const char *rel)
{
	return *rel ? xstrfmt("%s/%s", dir, rel) : xstrdup(dir);
}

static char *read_link(const char *path, size_t hint)
{
	size_t n = hint ? hint + 1 : 256;
	for (;;) {
		char *s = xmalloc(n);
		ssize_t k = readlink(path, s, n);
		if (k < 0) {
			free(s);
			return NULL;
		}
		if ((size_t)k < n) {
			s[k] = '\0';
			return s;
		}
		free(s);
		n *= 2;
	}
}

/*
 * Adds root/rel if it is a regular file or a symlink; anything else (gone,
 * a directory, a socket) is left out. 0, or -1 when it cannot be examined.
 */
static int add_file(struct gitrepo *r, const char *rel)
{
	struct stat st;
	char *full = join(r->root, rel);
	int ret = -1;
	if (lstat(full, &st) < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			ret = 0;
		else
			error_set(PS_EXIT_IO, "cannot examine '%s': %s", full, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) {
		if (!S_ISDIR(st.st_mode))
			log_info("leaving out '%s': not a regular file or a symlink", full);
		ret = 0;
		goto out;
	}
	if (r->nfiles == r->alloc_files) {
		r->alloc_files = r->alloc_files ? 2 * r->alloc_files : 256;
		r->files = xrealloc(r->files, r->alloc_files * sizeof(*r->files));
	}
	struct project_file *f = &r->files[r->nfiles];
	memset(f, 0, sizeof(*f));
	if (S_ISLNK(st.st_mode)) {
		f->link = read_link(full, (size_t)st.st_size);
		if (!f->link) {
			error_set(PS_EXIT_IO, "cannot read the symlink '%s': %s", full, strerror(errno));
			goto out;
		}
		f->kind = PROJECT_SYMLINK;
	} else {
		f->kind = PROJECT_FILE;
		f->size = (uint64_t)st.st_size;
		f->executable = (st.st_mode & 0111) != 0;
	}
	f->path = xstrdup(rel);
	f->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	f->ctime_ns = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
	f->ino = (uint64_t)st.st_ino;
	f->dev = (uint64_t)st.st_dev;
	r->bytes += f->size;
	r->nfiles++;
	ret = 0;
out:
	free(full);
	return ret;
}

static int cmp_file(const void *a, const void *b)
{
	return strcmp(((const struct project_file *)a)->path, ((const struct project_file *)b)->path);
}

static int has_git_component(const char *path)
{
	for (const char *s = path; s; s = strchr(s, '/')) {
		if (*s == '/')
			s++;
		if (!strncmp(s, ".git", 4) && (s[4] == '/' || s[4] == '\0'))
			return 1;
	}
	return 0;
}

/* ---- outside git -------------------------------------------------------- */

static int walk(struct gitrepo *r, struct ignore_rules *rules, const char *rel)
{
	int ret = -1;
	struct strvec names = STRVEC_INIT;
	char *full = join(r->root, rel);
	char *ign = xstrfmt("%s/.gitignore", full);
	char *pign = xstrfmt("%s/.pystribignore", full);
	DIR *d = NULL;

	if (ignore_rules_add_file(rules, rel, ign) < 0 ||
	    ignore_rules_add_file(rules, rel, pign) < 0)
		goto out;
	d = opendir(full);
	if (!d) {
		error_set(PS_EXIT_IO, "cannot list '%s': %s", full, strerror(errno));
		goto out;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    !strcmp(de->d_name, ".git"))
			continue;
		strvec_push(&names, de->d_name);
	}
	strvec_sort_uniq(&names);
	for (size_t i = 0; i < names.nr; i++) {
		struct stat st;
		char *child = *rel ? xstrfmt("%s/%s", rel, names.v[i]) : xstrdup(names.v[i]);
		char *cfull = join(r->root, child);
		int ok = 0;
		if (interrupt_requested())
			ok = error_set(PS_EXIT_INTERRUPTED, "interrupted");
		else if (lstat(cfull, &st) < 0)
			ok = errno == ENOENT ? 0 : error_set(PS_EXIT_IO, "cannot examine '%s': %s",
							       cfull, strerror(errno));
		else if (S_ISDIR(st.st_mode))
			ok = ignore_rules_excluded(rules, child, 1) ? 0 : walk(r, rules, child);
		else if (!ignore_rules_excluded(rules, child, 0))
			ok = add_file(r, child);
		free(child);
		free(cfull);
		if (ok < 0)
			goto out;
	}
	ret = 0;
out:
	if (d)
		closedir(d);
	strvec_release(&names);
	free(full);
	free(ign);
	free(pign);
	return ret;
}

/* ---- inside git --------------------------------------------------------- */

static int git_fail(const char *what, const char *where)
{
	const git_error *e = git_error_last();
	return error_set(PS_EXIT_USAGE, "cannot %s '%s': %s", what, where,
			 e && e->message ? e->message : "unknown libgit2 error");
}

int gitrepo_find_worktree(const char *path, char **root)
{
	struct stat st;
	git_repository *repo = NULL;
	char *dir = NULL;
	int ret = -1;

	if (stat(path, &st) < 0)
		return error_set(PS_EXIT_USAGE, "cannot find '%s': %s", path, strerror(errno));
	if (S_ISDIR(st.st_mode)) {
		dir = xstrdup(path);
	} else {
		const char *slash = strrchr(path, '/');
		dir = slash ? xstrndup(path, slash == path ? 1 : (size_t)(slash - path)) : xstrdup(".");
	}
	git_libgit2_init();
	int e = git_repository_open_ext(&repo, dir, 0, NULL);
	if (e == GIT_ENOTFOUND) {
		*root = NULL;
		ret = 0;
		goto out;
	}
	if (e < 0) {
		git_fail("open the git repository holding", dir);
		error_hint("fix the repository, or pass --no-project or --project DIR");
		goto out;
	}
	const char *wd = git_repository_workdir(repo);
	char *real = wd ? realpath(wd, NULL) : NULL;
	if (wd && !real) {
		error_set(PS_EXIT_IO, "cannot resolve '%s': %s", wd, strerror(errno));
		goto out;
	}
	*root = real;
	ret = 0;
out:
	git_repository_free(repo);
	git_libgit2_shutdown();
	free(dir);
	return ret;
}

/* Paths under prefix ("" or "dir/") with the prefix removed; NULL when outside. */
static const char *under(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);
	return strncmp(path, prefix, n) ? NULL : path + n;
}

static void note_skipped(struct gitrepo *r, const char *what, const char *rel)
{
	log_warn("leaving out %s '%s' from the project (its files are not in the image)", what, rel);
	r->nskipped++;
}

/* Tracked paths (stage 0 or in conflict) under prefix; submodules are noted and left out. */
static int list_index(struct gitrepo *r, git_repository *repo, const char *prefix,
		      struct strvec *paths)
{
	git_index *index = NULL;
	if (git_repository_index(&index, repo) < 0)
		return git_fail("read the git index of", r->worktree);
	size_t n = git_index_entrycount(index);
	for (size_t i = 0; i < n; i++) {
		const git_index_entry *e = git_index_get_byindex(index, i);
		const char *rel = under(e->path, prefix);
		if (!rel || !*rel)
			continue;
		if (e->mode == GIT_FILEMODE_COMMIT) {
			note_skipped(r, "the submodule", rel);
			continue;
		}
		strvec_push(paths, e->path);
	}
	git_index_free(index);
	return 0;
}

/* Untracked, not ignored paths into `paths`; every changed path into `changed`. */
static int list_status(struct gitrepo *r, git_repository *repo, const char *prefix,
		       struct strvec *paths, struct strvec *changed)
{
	git_status_options opts;
	git_status_list *list = NULL;
	git_status_options_init(&opts, GIT_STATUS_OPTIONS_VERSION);
	opts.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR;
	opts.flags = GIT_STATUS_OPT_INCLUDE_UNTRACKED | GIT_STATUS_OPT_RECURSE_UNTRACKED_DIRS |
		     GIT_STATUS_OPT_EXCLUDE_SUBMODULES;
	if (git_status_list_new(&list, repo, &opts) < 0)
		return git_fail("read the git status of", r->worktree);
	size_t n = git_status_list_entrycount(list);
	for (size_t i = 0; i < n; i++) {
		const git_status_entry *s = git_status_byindex(list, i);
		const git_diff_delta *d = s->index_to_workdir ? s->index_to_workdir : s->head_to_index;
		if (s->status == GIT_STATUS_CURRENT || (s->status & GIT_STATUS_IGNORED) || !d)
			continue;
		const char *path = d->new_file.path ? d->new_file.path : d->old_file.path;
		if (!under(path, prefix))
			continue;
		strvec_push(changed, path);
		if (s->status & GIT_STATUS_WT_NEW)
			strvec_push(paths, path);
	}
	git_status_list_free(list);
	return 0;
}

/* Reads every .pystribignore in a directory that holds a listed path. */
static int load_pystribignore(struct gitrepo *r, const struct strvec *paths, size_t plen,
			      struct ignore_rules *rules)
{
	struct strvec dirs = STRVEC_INIT;
	int ret = 0;
	strvec_push(&dirs, "");
	for (size_t i = 0; i < paths->nr; i++) {
		const char *rel = paths->v[i] + plen;
		for (const char *s = strchr(rel, '/'); s; s = strchr(s + 1, '/'))
			strvec_push_nodup(&dirs, xstrndup(rel, (size_t)(s - rel)));
	}
	strvec_sort_uniq(&dirs);
	for (size_t i = 0; i < dirs.nr && ret == 0; i++) {
		char *dir = join(r->root, dirs.v[i]);
		char *file = xstrfmt("%s/.pystribignore", dir);
		ret = ignore_rules_add_file(rules, dirs.v[i], file);
		free(dir);
		free(file);
	}
	strvec_release(&dirs);
	return ret;
}

static void read_head(struct gitrepo *r, git_repository *repo, int dirty)
{
	git_oid oid;
	git_commit *commit = NULL;
	char hex[GIT_OID_HEXSZ + 1];
	if (git_reference_name_to_id(&oid, repo, "HEAD") < 0)
		return;	/* no commit yet */
	if (git_commit_lookup(&commit, repo, &oid) < 0) {
		log_warn("cannot read HEAD's commit in '%s'; the image gets no revision",
			 r->worktree);
		return;
	}
	git_oid_tostr(hex, sizeof(hex), &oid);
	r->revision = xstrfmt("%s%s", hex, dirty ? "-dirty" : "");
	r->commit_time = (long long)git_commit_time(commit);
	git_commit_free(commit);
}

/*
 * origin's URL straight from the config: git_remote_lookup would do the same
 * plus insteadOf rewriting, but leaks PCRE2 match data in libgit2 1.5.
 */
static void read_origin(struct gitrepo *r, git_repository *repo)
{
	git_config *cfg = NULL;
	const char *url = NULL;
	if (git_repository_config_snapshot(&cfg, repo) < 0)
		return;
	if (git_config_get_string(&url, cfg, "remote.origin.url") == 0 && url && *url)
		r->source = gitrepo_public_url(url);
	git_config_free(cfg);
}

static int scan_git(struct gitrepo *r)
{
	git_repository *repo = NULL;
	struct strvec paths = STRVEC_INIT, changed = STRVEC_INIT;
	struct ignore_rules rules = IGNORE_RULES_INIT;
	char *prefix = NULL;
	int ret = -1, dirty = 0;

	const char *sub = r->root + strlen(r->worktree);
	if (*sub == '/')
		sub++;
	prefix = *sub ? xstrfmt("%s/", sub) : xstrdup("");
	size_t plen = strlen(prefix);
	if (git_repository_open(&repo, r->worktree) < 0) {
		git_fail("open the git repository", r->worktree);
		goto out;
	}
	if (list_index(r, repo, prefix, &paths) < 0 ||
	    list_status(r, repo, prefix, &paths, &changed) < 0)
		goto out;
	strvec_sort_uniq(&paths);
	if (load_pystribignore(r, &paths, plen, &rules) < 0)
		goto out;
	for (size_t i = 0; i < paths.nr; i++) {
		const char *rel = paths.v[i] + plen;
		size_t len = strlen(rel);
		if (len && rel[len - 1] == '/') {
			/* An untracked directory git did not enter: a nested repository. */
			char *dir = xstrndup(rel, len - 1);
			if (!ignore_rules_excluded(&rules, dir, 1))
				note_skipped(r, "the nested repository", dir);
			free(dir);
			continue;
		}
		if (has_git_component(rel) || ignore_rules_excluded(&rules, rel, 0))
			continue;
		if (add_file(r, rel) < 0)
			goto out;
	}
	for (size_t i = 0; i < changed.nr && !dirty; i++) {
		const char *rel = changed.v[i] + plen;
		size_t len = strlen(rel);
		if (len && rel[len - 1] == '/')
			continue;
		dirty = !ignore_rules_excluded(&rules, rel, 0);
	}
	read_head(r, repo, dirty);
	read_origin(r, repo);
	ret = 0;
out:
	git_repository_free(repo);
	strvec_release(&paths);
	strvec_release(&changed);
	ignore_rules_release(&rules);
	free(prefix);
	return ret;
}

int gitrepo_scan(struct gitrepo *r, const char *dir)
{
	struct stat st;
	int ret = -1;
	memset(r, 0, sizeof(*r));
	if (stat(dir, &st) < 0)
		return error_set(PS_EXIT_USAGE, "cannot find the project directory '%s': %s", dir,
				 strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return error_set(PS_EXIT_USAGE, "project '%s' is not a directory", dir);
	r->root = realpath(dir, NULL);
	if (!r->root)
		return error_set(PS_EXIT_USAGE, "cannot resolve '%s': %s", dir, strerror(errno));
	if (gitrepo_find_worktree(r->root, &r->worktree) < 0)
		return -1;
	git_libgit2_init();
	if (r->worktree) {
		ret = scan_git(r);
	} else {
		struct ignore_rules rules = IGNORE_RULES_INIT;
		ret = walk(r, &rules, "");
		ignore_rules_release(&rules);
	}
	git_libgit2_shutdown();
	if (ret == 0)
		qsort(r->files, r->nfiles, sizeof(*r->files), cmp_file);
	return ret;
}

void gitrepo_remove(struct gitrepo *r, const char *path)
{
	size_t out = 0, n = strlen(path);
	for (size_t i = 0; i < r->nfiles; i++) {
		struct project_file *f = &r->files[i];
		if (!strncmp(f->path, path, n) && (f->path[n] == '\0' || f->path[n] == '/')) {
			r->bytes -= f->size;
			free(f->path);
			free(f->link);
			continue;
		}
		r->files[out++] = *f;
	}
	r->nfiles = out;
}

void gitrepo_release(struct gitrepo *r)
{
	for (size_t i = 0; i < r->nfiles; i++) {
		free(r->files[i].path);
		free(r->files[i].link);
	}
	free(r->files);
	free(r->root);
	free(r->worktree);
	free(r->revision);
	free(r->source);
	memset(r, 0, sizeof(*r));
}

char *gitrepo_public_url(const char *url)
{
	const char *scheme_end = strstr(url, "://");
	if (!scheme_end) {
		/* scp-like user@host:path; a "user:secret@" there is a credential too. */
		const char *at = strchr(url, '@');
		const char *colon = strchr(url, ':');
		if (at && colon && colon < at)
			return xstrdup(at + 1);
		return xstrdup(url);
	}
	const char *auth = scheme_end + 3;
	size_t alen = strcspn(auth, "/?#");
	const char *host = auth;
	for (const char *s = auth; s < auth + alen; s++)
		if (*s == '@')
			host = s + 1;
	const char *path = auth + alen;
	size_t plen = strcspn(path, "?#");
	return xstrfmt("%.*s%.*s%.*s", (int)(auth - url), url, (int)(auth + alen - host), host,
		       (int)plen, path);
}
