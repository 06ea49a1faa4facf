/*
 * Unit tests for context.c and tarball.c: layers and the build-context
 * tarball are deterministic (same bytes from the same inputs, wherever and
 * whenever they are built), honour the ignore rules, never carry .git, keep
 * symlinks as symlinks, and warn about large projects. Layers are read back
 * with libarchive and checked entry by entry.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "buf.h"
#include "context.h"
#include "digest.h"
#include "error.h"
#include "tarball.h"
#include "testutil.h"
#include "util.h"

static char *tmp_root;

static char *path_in(const char *name)
{
	return xstrfmt("%s/%s", tmp_root, name);
}

static int setup(void **state)
{
	(void)state;
	tmp_root = test_tmpdir("context");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_tmpdir_remove(tmp_root);
	tmp_root = NULL;
	return 0;
}

/* A project: a committed git repository, with a cell inside it. */
static char *make_project(const char *name)
{
	char *d = path_in(name);
	assert_int_equal(mkdir_p(d, 0755), 0);
	test_sh(d, TEST_GIT "init -q . && mkdir -p nb pkg data .ipynb_checkpoints"
	   " && printf 'import pkg.mod\\nprint(\"cell\", rank)\\n' > nb/cell.py"
	   " && printf 'VALUE = 42\\n' > pkg/mod.py && : > pkg/__init__.py"
	   " && printf '#!/bin/sh\\necho hi\\n' > tool.sh && chmod 755 tool.sh"
	   " && head -c 70000 /dev/urandom > data/weights.bin && printf 'a,b\\n1,2\\n' > data/t.csv"
	   " && printf 'c' > .ipynb_checkpoints/cell-checkpoint.py"
	   " && printf '*.bin\\n' > .gitignore && printf '.ipynb_checkpoints/\\n' > .pystribignore"
	   " && ln -s pkg/mod.py mod_link.py"
	   " && " TEST_GIT "add -A && " TEST_GIT "commit -qm init");
	return d;
}

struct entry_info {
	char path[512];
	int type;
	unsigned mode;
	long long mtime, uid, gid, size;
	char uname[64], gname[64], link[256];
};

/* Reads an archive (gzip or plain) into an array of entries; returns their count. */
static size_t read_archive(const char *file, struct entry_info *out, size_t max,
			   struct buf *content_of, const char *wanted)
{
	struct archive *a = archive_read_new();
	struct archive_entry *e;
	size_t n = 0;
	archive_read_support_filter_gzip(a);
	archive_read_support_format_tar(a);
	assert_int_equal(archive_read_open_filename(a, file, 65536), ARCHIVE_OK);
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		assert_true(n < max);
		struct entry_info *i = &out[n++];
		memset(i, 0, sizeof(*i));
		snprintf(i->path, sizeof(i->path), "%s", archive_entry_pathname(e));
		size_t len = strlen(i->path);
		if (len > 1 && i->path[len - 1] == '/')	/* directories come with a '/' */
			i->path[len - 1] = '\0';
		i->type = (int)archive_entry_filetype(e);
		i->mode = (unsigned)archive_entry_perm(e);
		i->mtime = (long long)archive_entry_mtime(e);
		i->uid = (long long)archive_entry_uid(e);
		i->gid = (long long)archive_entry_gid(e);
		i->size = (long long)archive_entry_size(e);
		snprintf(i->uname, sizeof(i->uname), "%s", archive_entry_uname(e) ? archive_entry_uname(e) : "");
		snprintf(i->gname, sizeof(i->gname), "%s", archive_entry_gname(e) ? archive_entry_gname(e) : "");
		if (archive_entry_symlink(e))
			snprintf(i->link, sizeof(i->link), "%s", archive_entry_symlink(e));
		if (wanted && content_of && !strcmp(i->path, wanted)) {
			char chunk[4096];
			la_ssize_t k;
			while ((k = archive_read_data(a, chunk, sizeof(chunk))) > 0)
				buf_add(content_of, chunk, (size_t)k);
		}
	}
	archive_read_free(a);
	return n;
}

static const struct entry_info *entry(const struct entry_info *v, size_t n, const char *path)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i].path, path))
			return &v[i];
	return NULL;
}

static struct entry_info entries[4096];

/* Every entry normalised, sorted, with its parents before it. */
static void check_normalised(const struct entry_info *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(v[i].mtime, 0);
		assert_int_equal(v[i].uid, 0);
		assert_int_equal(v[i].gid, 0);
		assert_string_equal(v[i].uname, "");
		assert_string_equal(v[i].gname, "");
		if (v[i].type == AE_IFDIR)
			assert_int_equal(v[i].mode, 0755);
		else if (v[i].type == AE_IFREG)
			assert_true(v[i].mode == 0644 || v[i].mode == 0755);
		if (i)
			assert_true(strcmp(v[i - 1].path, v[i].path) < 0);
		const char *slash = strrchr(v[i].path, '/');
		if (slash) {
			char parent[512];
			snprintf(parent, sizeof(parent), "%.*s", (int)(slash - v[i].path), v[i].path);
			const struct entry_info *p = entry(v, i, parent);
			assert_non_null(p);
			assert_int_equal(p->type, AE_IFDIR);
		}
		assert_null(strstr(v[i].path, ".git/"));
		assert_true(strcmp(v[i].path + (slash ? slash - v[i].path + 1 : 0), ".git") != 0);
	}
}

static void build(struct context *ctx, const char *cell, const char *cache)
{
	struct context_options o = { 0 };
	o.cell = cell;
	o.base = "127.0.0.1:5000/pystrib/base:bookworm";
	if (context_build(ctx, &o, cache) < 0)
		fail_msg("context_build: %s", error_message());
}

static void build_tar(const char *cell, const char *out)
{
	struct context_options o = { 0 };
	o.cell = cell;
	o.base = "127.0.0.1:5000/pystrib/base:bookworm";
	if (context_write_build_tar(&o, out) < 0)
		fail_msg("context_write_build_tar: %s", error_message());
}

static int same_file(const char *a, const char *b)
{
	struct buf x = BUF_INIT, y = BUF_INIT;
	assert_int_equal(buf_read_file(&x, a), 0);
	assert_int_equal(buf_read_file(&y, b), 0);
	int same = x.len == y.len && !memcmp(x.ptr, y.ptr, x.len);
	buf_release(&x);
	buf_release(&y);
	return same;
}

static void layers_are_deterministic(void **state)
{
	(void)state;
	char *p1 = make_project("det1");
	char *p2 = path_in("elsewhere/det2");
	char *cell1 = xstrfmt("%s/nb/cell.py", p1), *cell2 = xstrfmt("%s/nb/cell.py", p2);
	char *c1 = path_in("cache1"), *c2 = path_in("cache2"), *c3 = path_in("cache3");
	char *t1 = path_in("ctx1.tar"), *t2 = path_in("ctx2.tar");
	struct context a, b, c;

	build(&a, cell1, c1);
	build_tar(cell1, t1);
	/* Another directory, new inodes, different times: a copy made a second later. */
	sleep(1);
	test_sh(tmp_root, "mkdir -p elsewhere && cp -r '%s' '%s' && touch -d '2001-02-03 04:05:06' '%s/pkg/mod.py'",
	   p1, p2, p2);
	build(&b, cell2, c2);
	build_tar(cell2, t2);

	assert_string_equal(a.project.digest, b.project.digest);
	assert_string_equal(a.project.diff_id, b.project.diff_id);
	assert_string_equal(a.cell.digest, b.cell.digest);
	assert_string_equal(a.cell.diff_id, b.cell.diff_id);
	assert_int_equal(a.project.size, b.project.size);
	assert_string_equal(a.revision, b.revision);
	assert_string_equal(a.workdir, "/pystrib/project/nb");
	assert_true(same_file(a.project.path, b.project.path));
	assert_true(same_file(t1, t2));

	/* The same cache again: found by key, identical result. */
	build(&c, cell1, c1);
	assert_string_equal(a.project.digest, c.project.digest);
	assert_string_equal(a.cell.digest, c.cell.digest);
	context_release(&c);

	/* Only mtimes change: same digests (a fresh cache recomputes them). */
	test_sh(p1, "touch -d '1999-01-01' nb/cell.py pkg/mod.py tool.sh data/t.csv");
	build(&c, cell1, c3);
	assert_string_equal(a.project.digest, c.project.digest);
	assert_string_equal(a.cell.digest, c.cell.digest);
	context_release(&c);

	/* The files on disk are what the digests say. */
	char d[DIGEST_LEN];
	assert_int_equal(digest_file(a.project.path, d), 0);
	assert_string_equal(d, a.project.digest);
	assert_int_equal(digest_file(a.cell.path, d), 0);
	assert_string_equal(d, a.cell.digest);
	struct stat st;
	assert_int_equal(stat(a.cell.path, &st), 0);
	assert_int_equal((uint64_t)st.st_size, a.cell.size);

	context_release(&a);
	context_release(&b);
	free(p1); free(p2); free(cell1); free(cell2);
	free(c1); free(c2); free(c3); free(t1); free(t2);
}

static void edits_change_only_their_layer(void **state)
{
	(void)state;
	char *p = make_project("edits");
	char *cell = xstrfmt("%s/nb/cell.py", p);
	char *cache = path_in("cache-edits");
	struct context a, b, c, d;

	build(&a, cell, cache);
	/*
	 * One byte of the cell, in place (same inode, same size), mtime put
	 * back: only the ctime tells, and the cell layer changes.
	 */
	test_sh(p, "cp -p nb/cell.py ref && printf '#' | dd of=nb/cell.py bs=1 seek=0 conv=notrunc"
	   " && touch -r ref nb/cell.py && rm ref");
	build(&b, cell, cache);
	assert_string_equal(a.project.digest, b.project.digest);
	assert_string_not_equal(a.cell.digest, b.cell.digest);
	/* The cell is committed, so its edit makes the revision dirty. */
	assert_non_null(strstr(b.revision, "-dirty"));
	assert_null(strstr(a.revision, "-dirty"));

	test_sh(p, "printf 'VALUE = 43\\n' > pkg/mod.py");
	build(&c, cell, cache);
	assert_string_not_equal(b.project.digest, c.project.digest);
	assert_string_equal(b.cell.digest, c.cell.digest);

	/* An executable bit is part of the layer. */
	test_sh(p, "chmod 755 pkg/mod.py");
	build(&d, cell, cache);
	assert_string_not_equal(c.project.digest, d.project.digest);

	context_release(&a);
	context_release(&b);
	context_release(&c);
	context_release(&d);
	free(p);
	free(cell);
	free(cache);
}

static ino_t inode_of(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return st.st_ino;
}

static void unchanged_layers_come_from_the_cache(void **state)
{
	(void)state;
	char *p = make_project("cached");
	char *cell = xstrfmt("%s/nb/cell.py", p);
	char *cache = path_in("cache-cached");
	struct context a, b, c;

	/* Files changed within 2 s are not trusted to the cache (racy); wait that out. */
	sleep(3);
	build(&a, cell, cache);
	test_sh(cache, "test $(ls index | wc -l) -eq 2");
	ino_t project_ino = inode_of(a.project.path), cell_ino = inode_of(a.cell.path);
	build(&b, cell, cache);
	assert_string_equal(a.project.digest, b.project.digest);
	assert_string_equal(a.cell.digest, b.cell.digest);
	/* Not rewritten: the same files, found through the index. */
	assert_int_equal(inode_of(b.project.path), project_ino);
	assert_int_equal(inode_of(b.cell.path), cell_ino);

	/* An in-place edit that keeps size and mtime still shows (ctime). */
	test_sh(p, "cp -p nb/cell.py ref && printf '#' | dd of=nb/cell.py bs=1 seek=0 conv=notrunc"
	   " && touch -r ref nb/cell.py && rm ref");
	build(&c, cell, cache);
	assert_string_equal(a.project.digest, c.project.digest);
	assert_string_not_equal(a.cell.digest, c.cell.digest);

	/* A blob removed from the cache is rebuilt, the same. */
	unlink(a.project.path);
	context_release(&b);
	build(&b, cell, cache);
	assert_string_equal(a.project.digest, b.project.digest);
	assert_int_equal(access(a.project.path, F_OK), 0);

	/*
	 * Pruning goes by last use: every layer made 10 days old, then the
	 * current cell (c's) and project used again (which renews them),
	 * leaves only a's cell layer older than 5 days; a file of another
	 * name is left alone.
	 */
	test_sh(cache, "touch -d '10 days ago' sha256-*.tar.gz index/* && : > notes.txt && "
		"touch -d '10 days ago' notes.txt");
	context_release(&b);
	build(&b, cell, cache);
	assert_string_equal(c.cell.digest, b.cell.digest);
	struct context_pruned pr;
	context_cache_prune(cache, 5 * 86400.0, 1, &pr);	/* dry run: counts only */
	assert_int_equal(pr.files, 1);
	assert_int_equal(access(a.cell.path, F_OK), 0);
	context_cache_prune(cache, 5 * 86400.0, 0, &pr);
	assert_int_equal(pr.files, 1);
	assert_true(pr.bytes > 0);
	assert_int_equal(access(a.cell.path, F_OK), -1);
	assert_int_equal(access(b.cell.path, F_OK), 0);
	assert_int_equal(access(b.project.path, F_OK), 0);
	test_sh(cache, "test -f notes.txt");
	/* Builds leave no temporary; those a crashed one left (either naming) go by the same rule. */
	test_sh(cache, "test -z \"$(ls -A | grep tmp)\"");
	test_sh(cache, ": > layer.tmp-abc123 && : > .tmp-layer-abc123 && "
		"touch -d '10 days ago' layer.tmp-abc123 .tmp-layer-abc123");
	context_cache_prune(cache, 5 * 86400.0, 0, &pr);
	assert_int_equal(pr.files, 2);
	test_sh(cache, "test ! -e layer.tmp-abc123 && test ! -e .tmp-layer-abc123");
	/* Used within the hour: kept even when asked for 0 days. */
	context_cache_prune(cache, 0, 0, &pr);
	assert_int_equal(pr.files, 0);
	assert_int_equal(access(b.cell.path, F_OK), 0);

	context_release(&a);
	context_release(&b);
	context_release(&c);
	free(p);
	free(cell);
	free(cache);
}

static void layer_contents(void **state)
{
	(void)state;
	char *p = make_project("contents");
	char *cell = xstrfmt("%s/nb/cell.py", p);
	char *cache = path_in("cache-contents");
	char *input = path_in("params.json");
	struct context ctx;
	struct context_options o = { 0 };
	const char *inputs[] = { input };
	struct buf content = BUF_INIT;

	test_sh(tmp_root, "printf '{\"lr\": 0.1}' > params.json");
	test_sh(p, "printf 'u' > untracked.txt && mkdir -p .git/x && printf s > .git/x/secret");
	o.cell = cell;
	o.inputs = inputs;
	o.ninputs = 1;
	assert_int_equal(context_build(&ctx, &o, cache), 0);

	size_t n = read_archive(ctx.project.path, entries, ARRAY_SIZE(entries), &content,
				"pystrib/project/pkg/mod.py");
	check_normalised(entries, n);
	assert_string_equal(content.ptr, "VALUE = 42\n");
	assert_non_null(entry(entries, n, "pystrib/project/untracked.txt"));
	assert_non_null(entry(entries, n, "pystrib/project/data/t.csv"));
	assert_non_null(entry(entries, n, "pystrib/project/nb"));	/* the WorkingDir */
	assert_null(entry(entries, n, "pystrib/project/data/weights.bin"));	/* .gitignore */
	assert_null(entry(entries, n, "pystrib/project/.ipynb_checkpoints/cell-checkpoint.py"));
	assert_null(entry(entries, n, "pystrib/project/nb/cell.py"));	/* in the cell layer */
	assert_int_equal(entry(entries, n, "pystrib/project/tool.sh")->mode, 0755);
	assert_int_equal(entry(entries, n, "pystrib/project/pkg/mod.py")->mode, 0644);
	const struct entry_info *l = entry(entries, n, "pystrib/project/mod_link.py");
	assert_non_null(l);
	assert_int_equal(l->type, AE_IFLNK);
	assert_string_equal(l->link, "pkg/mod.py");
	assert_int_equal(ctx.project_files, 8);	/* see make_project, plus untracked.txt */

	buf_reset(&content);
	n = read_archive(ctx.cell.path, entries, ARRAY_SIZE(entries), &content,
			 "pystrib/cell/inputs/params.json");
	check_normalised(entries, n);
	assert_string_equal(content.ptr, "{\"lr\": 0.1}");
	/* pystrib, pystrib/cell, user_code.py, .name, bootstrap.py, inputs, the input */
	assert_int_equal(n, 7);
	assert_non_null(entry(entries, n, "pystrib/cell/user_code.py"));
	assert_non_null(entry(entries, n, "pystrib/cell/user_code.name"));
	assert_non_null(entry(entries, n, "pystrib/cell/bootstrap.py"));
	buf_reset(&content);
	read_archive(ctx.cell.path, entries, ARRAY_SIZE(entries), &content,
		     "pystrib/cell/user_code.name");
	assert_string_equal(content.ptr, "nb/cell.py");	/* its path in the project */
	assert_string_equal(ctx.env[0], "PYSTRIB_CELL=/pystrib/cell/user_code.py");
	assert_string_equal(context_cmd[1], "/pystrib/cell/bootstrap.py");

	/* The gzip header carries no name and no time. */
	unsigned char head[10];
	int fd = open(ctx.cell.path, O_RDONLY);
	assert_int_equal(read(fd, head, 10), 10);
	close(fd);
	static const unsigned char want[10] = { 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff };
	assert_memory_equal(head, want, 10);

	/* diff_id is the digest of the decompressed tar. */
	gzFile gz = gzopen(ctx.project.path, "rb");
	struct digest dg;
	char buf[65536], diff_id[DIGEST_LEN];
	int k;
	digest_init(&dg);
	while ((k = gzread(gz, buf, sizeof(buf))) > 0)
		digest_update(&dg, buf, (size_t)k);
	gzclose(gz);
	digest_final(&dg, diff_id);
	assert_string_equal(diff_id, ctx.project.diff_id);

	buf_release(&content);
	context_release(&ctx);
	free(p);
	free(cell);
	free(cache);
	free(input);
}

static void build_tarball_layout(void **state)
{
	(void)state;
	char *p = make_project("buildtar");
	char *cell = xstrfmt("%s/nb/cell.py", p);
	char *out = xstrfmt("%s/ctx.tar", p);	/* inside the project: must not include itself */
	struct buf df = BUF_INIT;

	build_tar(cell, out);
	build_tar(cell, out);
	size_t n = read_archive(out, entries, ARRAY_SIZE(entries), &df, "Dockerfile");
	check_normalised(entries, n);
	assert_null(entry(entries, n, "project/ctx.tar"));
	assert_non_null(entry(entries, n, "project/pkg/mod.py"));
	assert_non_null(entry(entries, n, "cell/user_code.py"));
	assert_non_null(entry(entries, n, "cell/bootstrap.py"));
	assert_non_null(strstr(df.ptr, "\nFROM 127.0.0.1:5000/pystrib/base:bookworm\n"));
	assert_non_null(strstr(df.ptr, "\nCOPY project/ /pystrib/project/\n"));
	assert_non_null(strstr(df.ptr, "\nCOPY cell/ /pystrib/cell/\n"));
	assert_non_null(strstr(df.ptr, "\nWORKDIR /pystrib/project/nb\n"));
	assert_non_null(strstr(df.ptr, "ENV PYSTRIB_REVISION=\""));
	assert_non_null(strstr(df.ptr, "LABEL org.opencontainers.image.revision=\""));
	assert_non_null(strstr(df.ptr, "CMD [\"python3\", \"/pystrib/cell/bootstrap.py\", \"/pystrib/cell/user_code.py\"]"));
	assert_null(strstr(df.ptr, "{{"));
	buf_release(&df);

	/* No project: no project/, no COPY of it, WORKDIR in the cell. */
	struct context_options o = { 0 };
	o.cell = cell;
	o.no_project = 1;
	o.base = "base:1";
	assert_int_equal(context_write_build_tar(&o, out), 0);
	n = read_archive(out, entries, ARRAY_SIZE(entries), &df, "Dockerfile");
	assert_null(entry(entries, n, "project"));
	assert_null(strstr(df.ptr, "COPY project/"));
	assert_non_null(strstr(df.ptr, "\nWORKDIR /pystrib/cell\n"));
	assert_null(strstr(df.ptr, "\n\n\n"));
	buf_release(&df);

	/* No base image: a usage error, and nothing written. */
	o.base = NULL;
	unlink(out);
	assert_int_equal(context_write_build_tar(&o, out), -1);
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	error_clear();
	assert_int_equal(access(out, F_OK), -1);

	/* Nowhere to write it: a local I/O error. */
	o.base = "base:1";
	char *bad = xstrfmt("%s/no/such/dir/ctx.tar", p);
	assert_int_equal(context_write_build_tar(&o, bad), -1);
	assert_int_equal(error_kind(), PS_EXIT_IO);
	assert_non_null(strstr(error_message(), bad));
	error_clear();
	free(bad);
	free(p);
	free(cell);
	free(out);
}

static void outside_git_and_bad_input(void **state)
{
	(void)state;
	char *d = path_in("loose");
	char *cell = xstrfmt("%s/cell.py", d);
	char *cache = path_in("cache-loose");
	struct context ctx;
	struct context_options o = { 0 };

	assert_int_equal(mkdir_p(d, 0755), 0);
	test_sh(d, "printf 'print(1)\\n' > cell.py && printf x > helper.py && mkdir -p a b"
	   " && printf 1 > a/in.txt && printf 2 > b/in.txt");
	o.cell = cell;
	assert_int_equal(context_build(&ctx, &o, cache), 0);
	assert_int_equal(ctx.project.size, 0);	/* outside git: no project unless asked */
	assert_null(ctx.project.path);
	assert_null(ctx.revision);
	assert_string_equal(ctx.workdir, "/pystrib/cell");
	assert_string_equal(ctx.created, "1970-01-01T00:00:00Z");
	context_release(&ctx);

	o.project_dir = d;	/* --project on a plain directory: walked */
	assert_int_equal(context_build(&ctx, &o, cache), 0);
	assert_true(ctx.project.size > 0);
	assert_int_equal(ctx.project_files, 3);	/* helper.py, a/in.txt, b/in.txt */
	assert_string_equal(ctx.workdir, "/pystrib/project");
	context_release(&ctx);

	char *in1 = xstrfmt("%s/a/in.txt", d), *in2 = xstrfmt("%s/b/in.txt", d);
	const char *inputs[] = { in1, in2 };
	o.inputs = inputs;
	o.ninputs = 2;
	assert_int_equal(context_build(&ctx, &o, cache), -1);	/* same base name twice */
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	error_clear();
	o.ninputs = 0;
	o.cell = d;	/* a directory is not a cell */
	assert_int_equal(context_build(&ctx, &o, cache), -1);
	error_clear();
	o.cell = "/nonexistent/cell.py";
	assert_int_equal(context_build(&ctx, &o, cache), -1);
	error_clear();

	/* A failed write leaves nothing behind in the cache. */
	test_sh(cache, "ls -a | grep -c tmp; test $(ls -a | grep -c tmp) -eq 0");
	free(d);
	free(cell);
	free(cache);
	free(in1);
	free(in2);
}

static char *capture_stderr(void (*fn)(void *), void *arg)
{
	char *file = path_in("stderr.txt");
	struct buf b = BUF_INIT;
	fflush(stderr);
	int saved = dup(2);
	int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	dup2(fd, 2);
	close(fd);
	fn(arg);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	assert_int_equal(buf_read_file(&b, file), 0);
	free(file);
	return buf_detach(&b, NULL);
}

static void build_into(void *arg)
{
	const char **a = arg;
	struct context ctx;
	build(&ctx, a[0], a[1]);
	context_release(&ctx);
}

static void large_project_warning(void **state)
{
	(void)state;
	char *p = make_project("large");
	char *cell = xstrfmt("%s/nb/cell.py", p);
	char *cache = path_in("cache-large");
	const char *args[] = { cell, cache };

	char *err = capture_stderr(build_into, args);
	assert_null(strstr(err, "is large"));
	free(err);

	test_sh(p, "mkdir -p assets/img small && for i in $(seq 1 1005); do : > assets/img/$i.png; done"
	   " && for i in 1 2 3; do : > small/$i; done");
	err = capture_stderr(build_into, args);
	assert_non_null(strstr(err, "is large: 1015 files"));
	assert_non_null(strstr(err, "assets/ (0.0 MiB, 1005 files)"));
	assert_non_null(strstr(err, ".pystribignore"));
	assert_null(strstr(err, "assets/img/"));	/* a parent already named covers it */
	free(err);

	/* Ignoring it, as the warning says, silences it. */
	test_sh(p, "printf 'assets/\\n' >> .pystribignore");
	err = capture_stderr(build_into, args);
	assert_null(strstr(err, "is large"));
	free(err);
	free(p);
	free(cell);
	free(cache);
}

static void tar_list_rules(void **state)
{
	(void)state;
	struct tar_list l = TAR_LIST_INIT;
	struct tarball_result r;
	int fd = open("/dev/null", O_WRONLY);

	tar_list_add_data(&l, "a/b", "x", 1, 0);
	tar_list_add_data(&l, "a/b", "y", 1, 0);
	assert_int_equal(tarball_write(&l, fd, 1, &r), -1);	/* the same path twice */
	error_clear();
	tar_list_release(&l);

	tar_list_add_data(&l, "a", "x", 1, 0);
	tar_list_add_data(&l, "a/b", "y", 1, 0);
	assert_int_equal(tarball_write(&l, fd, 0, &r), -1);	/* a file and a directory */
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	error_clear();
	tar_list_release(&l);

	tar_list_add_data(&l, "a/../b", "x", 1, 0);
	assert_int_equal(tarball_write(&l, fd, 0, &r), -1);
	error_clear();
	tar_list_release(&l);
	close(fd);

	/* A write error (disk full) is reported, not ignored: a local I/O error. */
	fd = open("/dev/full", O_WRONLY);
	tar_list_add_data(&l, "./x/y", "data", 4, 1);
	assert_int_equal(tarball_write(&l, fd, 1, &r), -1);
	assert_non_null(strstr(error_message(), "cannot write"));
	assert_int_equal(error_kind(), PS_EXIT_IO);
	error_clear();
	close(fd);
	/* So are a descriptor not open for writing (EBADF) and a source file that is gone. */
	fd = open("/dev/null", O_RDONLY);
	assert_int_equal(tarball_write(&l, fd, 0, &r), -1);
	assert_int_equal(error_kind(), PS_EXIT_IO);
	error_clear();
	tar_list_release(&l);
	close(fd);
	fd = open("/dev/null", O_WRONLY);
	tar_list_add_file(&l, "gone", "/nonexistent/pystrib-test-gone", 4, 0);
	assert_int_equal(tarball_write(&l, fd, 0, &r), -1);
	assert_int_equal(error_kind(), PS_EXIT_IO);
	assert_non_null(strstr(error_message(), "/nonexistent/pystrib-test-gone"));
	error_clear();
	tar_list_release(&l);
	close(fd);

	/* An empty list is a valid (empty) archive, the same every time. */
	char d1[DIGEST_LEN];
	fd = open("/dev/null", O_WRONLY);
	assert_int_equal(tarball_write(&l, fd, 1, &r), 0);
	memcpy(d1, r.digest, DIGEST_LEN);
	assert_int_equal(tarball_write(&l, fd, 1, &r), 0);
	assert_string_equal(d1, r.digest);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(layers_are_deterministic),
		cmocka_unit_test(edits_change_only_their_layer),
		cmocka_unit_test(unchanged_layers_come_from_the_cache),
		cmocka_unit_test(layer_contents),
		cmocka_unit_test(build_tarball_layout),
		cmocka_unit_test(outside_git_and_bad_input),
		cmocka_unit_test(large_project_warning),
		cmocka_unit_test(tar_list_rules),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
