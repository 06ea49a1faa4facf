/*
 * Unit tests for gitrepo.c: gitignore-syntax matching, the project file list
 * in real git repositories (made with the git CLI in temp directories) and
 * in plain directories, revisions and dirty state, URLs without credentials.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "error.h"
#include "gitrepo.h"
#include "testutil.h"
#include "util.h"

static char *tmp_root;

static char *new_dir(const char *name)
{
	char *d = xstrfmt("%s/%s", tmp_root, name);
	assert_int_equal(mkdir_p(d, 0755), 0);
	return d;
}

static int setup(void **state)
{
	(void)state;
	/* Keeps the user's git config (core.excludesFile, ...) out of the tests. */
	tmp_root = test_tmpdir("gitrepo");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_tmpdir_remove(tmp_root);
	tmp_root = NULL;
	return 0;
}

static const struct project_file *find(const struct gitrepo *r, const char *path)
{
	for (size_t i = 0; i < r->nfiles; i++)
		if (!strcmp(r->files[i].path, path))
			return &r->files[i];
	return NULL;
}

static void wildmatch_follows_git(void **state)
{
	(void)state;
	static const struct { const char *p, *t; int m; } cases[] = {
		{ "foo", "foo", 1 }, { "foo", "bar", 0 }, { "", "", 1 },
		{ "???", "foo", 1 }, { "??", "foo", 0 }, { "*", "foo", 1 }, { "f*", "foo", 1 },
		{ "*f", "foo", 0 }, { "*foo*", "foo", 1 }, { "*ob*a*r*", "foobar", 1 },
		{ "*ab", "aaaaaaabababab", 1 }, { "foo\\*", "foo*", 1 }, { "foo\\*bar", "foobar", 0 },
		{ "[ten]", "ten", 0 }, { "[ten]", "t", 1 }, { "**[!te]", "ten", 1 },
		{ "**[!ten]", "ten", 0 }, { "t[a-g]n", "ten", 1 }, { "t[!a-g]n", "ten", 0 },
		{ "t[^a-g]n", "ton", 1 }, { "a[]]b", "a]b", 1 }, { "a[]-]b", "a-b", 1 },
		{ "[[:digit:]]x", "5x", 1 }, { "[[:alpha:]]", "5", 0 }, { "[[:upper:][:digit:]]", "A", 1 },
		/* '*' and '?' stop at '/'; "**" between slashes does not. */
		{ "foo*bar", "foo/baz/bar", 0 }, { "foo?bar", "foo/bar", 0 }, { "foo[/]bar", "foo/bar", 0 },
		{ "foo**bar", "foo/baz/bar", 0 }, { "foo/**/bar", "foo/baz/bar", 1 },
		{ "foo/**/bar", "foo/bar", 1 }, { "foo/**/bar", "foo/b/a/z/bar", 1 },
		{ "**/foo", "foo", 1 }, { "**/foo", "x/y/foo", 1 }, { "**/foo", "x/foox", 0 },
		{ "foo/**", "foo/a/b", 1 }, { "foo/**", "foo", 0 }, { "*/foo", "x/foo", 1 },
		{ "*/foo", "x/y/foo", 0 }, { "data/*.bin", "data/a.bin", 1 },
		{ "data/*.bin", "data/x/a.bin", 0 }, { "a/**/b/**/c", "a/x/b/y/z/c", 1 },
		{ "-*-*-*-*-*-*-12-*-*-*-m-*-*-*", "-adobe-courier-bold-o-normal--12-120-75-75-m-70-iso8859-1", 1 },
		{ "-*-*-*-*-*-*-12-*-*-*-m-*-*-*", "-adobe-courier-bold-o-normal--12-120-75-75-X-70-iso8859-1", 0 },
		{ "**/*a*b*g*n*t", "abcd/abcdefg/abcdefghijk/abcdefghijklmnop.txtz", 0 },
		{ "[abc", "a", 0 }, { "x\\", "x", 0 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		if (ignore_wildmatch(cases[i].p, cases[i].t) != cases[i].m)
			fail_msg("wildmatch('%s', '%s') should be %d", cases[i].p, cases[i].t, cases[i].m);
}

static void ignore_rules_follow_gitignore(void **state)
{
	(void)state;
	struct ignore_rules r = IGNORE_RULES_INIT;
	ignore_rules_add_text(&r, "",
			      "# a comment\n"
			      "\n"
			      "*.log\n"
			      "!keep.log\n"
			      "/top.txt\n"
			      "build/\n"
			      "docs/*.pdf\n"
			      "\\#hash\n"
			      "trailing   \n"
			      "big/\n"
			      "!big/wanted\n");
	ignore_rules_add_text(&r, "sub", "*.tmp\n!important.log\n/only-here\n");

	assert_true(ignore_rules_excluded(&r, "a.log", 0));
	assert_true(ignore_rules_excluded(&r, "x/y/a.log", 0));	/* no slash: any depth */
	assert_false(ignore_rules_excluded(&r, "keep.log", 0));
	assert_false(ignore_rules_excluded(&r, "x/keep.log", 0));
	assert_true(ignore_rules_excluded(&r, "top.txt", 0));
	assert_false(ignore_rules_excluded(&r, "x/top.txt", 0));	/* anchored */
	assert_true(ignore_rules_excluded(&r, "build", 1));
	assert_false(ignore_rules_excluded(&r, "build", 0));	/* dir-only */
	assert_true(ignore_rules_excluded(&r, "x/build/out.o", 0));	/* under an excluded dir */
	assert_true(ignore_rules_excluded(&r, "docs/a.pdf", 0));
	assert_false(ignore_rules_excluded(&r, "x/docs/a.pdf", 0));
	assert_true(ignore_rules_excluded(&r, "#hash", 0));
	assert_true(ignore_rules_excluded(&r, "trailing", 0));
	/* A parent excluded cannot be undone by a later negation. */
	assert_true(ignore_rules_excluded(&r, "big/wanted", 0));
	/* Deeper files apply under their directory only, and win. */
	assert_true(ignore_rules_excluded(&r, "sub/a.tmp", 0));
	assert_true(ignore_rules_excluded(&r, "sub/deep/a.tmp", 0));
	assert_false(ignore_rules_excluded(&r, "a.tmp", 0));
	assert_false(ignore_rules_excluded(&r, "sub/important.log", 0));
	assert_true(ignore_rules_excluded(&r, "sub/other.log", 0));
	assert_true(ignore_rules_excluded(&r, "sub/only-here", 0));
	assert_false(ignore_rules_excluded(&r, "sub/x/only-here", 0));
	assert_false(ignore_rules_excluded(&r, "only-here", 0));
	ignore_rules_release(&r);
}

static void public_url_drops_credentials(void **state)
{
	(void)state;
	static const struct { const char *in, *out; } cases[] = {
		{ "https://user:secret@example.com/org/repo.git", "https://example.com/org/repo.git" },
		{ "https://ghp_token@github.com/org/repo", "https://github.com/org/repo" },
		{ "https://a:b@c@host:8443/r?private_token=x#frag", "https://host:8443/r" },
		{ "ssh://git@host/org/repo.git", "ssh://host/org/repo.git" },
		{ "git@github.com:org/repo.git", "git@github.com:org/repo.git" },
		{ "user:pw@host:org/repo.git", "host:org/repo.git" },
		{ "/srv/git/repo.git", "/srv/git/repo.git" },
		{ "https://example.com/plain", "https://example.com/plain" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *got = gitrepo_public_url(cases[i].in);
		if (strcmp(got, cases[i].out))
			fail_msg("public url of '%s': got '%s', want '%s'", cases[i].in, got, cases[i].out);
		free(got);
	}
}

/* A repository with tracked, untracked, ignored, pystribignored files and a symlink. */
static char *make_repo(const char *name)
{
	char *d = new_dir(name);
	test_sh(d, TEST_GIT "init -q . && mkdir -p src data/raw notes .hidden"
	   " && printf 'print(1)\\n' > src/cell.py && printf 'x = 1\\n' > lib.py"
	   " && printf '#!/bin/sh\\n' > run.sh && chmod 755 run.sh"
	   " && head -c 5000 /dev/zero > data/raw/big.bin && printf 'a' > data/small.csv"
	   " && printf 'n' > notes/todo.txt && printf 'h' > .hidden/x"
	   " && printf '*.bin\\n' > .gitignore && printf 'notes/\\n' > .pystribignore"
	   " && ln -s lib.py alias.py && ln -s /etc/passwd outside"
	   " && " TEST_GIT "add -A && " TEST_GIT "commit -qm init"
	   " && git config remote.origin.url https://u:pw@git.example.com/team/proj.git");
	return d;
}

static void lists_tracked_and_untracked_honouring_ignores(void **state)
{
	(void)state;
	char *d = make_repo("listing");
	struct gitrepo r;
	test_sh(d, "printf 'new' > untracked.txt && printf 'i' > ignored.bin && mkdir -p notes && printf 'u' > notes/new.txt");
	assert_int_equal(gitrepo_scan(&r, d), 0);
	assert_non_null(r.worktree);
	assert_string_equal(r.root, r.worktree);
	assert_non_null(find(&r, "src/cell.py"));
	assert_non_null(find(&r, "lib.py"));
	assert_non_null(find(&r, "untracked.txt"));	/* untracked, not ignored */
	assert_non_null(find(&r, "data/small.csv"));
	assert_non_null(find(&r, ".gitignore"));
	assert_non_null(find(&r, ".pystribignore"));
	assert_non_null(find(&r, ".hidden/x"));
	assert_null(find(&r, "ignored.bin"));		/* .gitignore */
	assert_null(find(&r, "data/raw/big.bin"));
	assert_null(find(&r, "notes/todo.txt"));	/* tracked, but .pystribignore */
	assert_null(find(&r, "notes/new.txt"));
	for (size_t i = 0; i < r.nfiles; i++) {
		assert_true(strncmp(r.files[i].path, ".git/", 5) != 0);
		if (i)
			assert_true(strcmp(r.files[i - 1].path, r.files[i].path) < 0);
	}
	const struct project_file *f = find(&r, "run.sh");
	assert_non_null(f);
	assert_true(f->executable);
	assert_false(find(&r, "lib.py")->executable);
	f = find(&r, "alias.py");
	assert_non_null(f);
	assert_int_equal(f->kind, PROJECT_SYMLINK);
	assert_string_equal(f->link, "lib.py");
	f = find(&r, "outside");	/* stored as a link, never followed */
	assert_int_equal(f->kind, PROJECT_SYMLINK);
	assert_string_equal(f->link, "/etc/passwd");
	assert_int_equal(f->size, 0);
	assert_string_equal(r.source, "https://git.example.com/team/proj.git");
	assert_non_null(r.revision);
	assert_int_equal(strlen(r.revision), 40 + 6);	/* untracked.txt makes it dirty */
	assert_string_equal(r.revision + 40, "-dirty");
	assert_true(r.commit_time > 1600000000);
	gitrepo_release(&r);
	free(d);
}

static void dirty_state(void **state)
{
	(void)state;
	char *d = make_repo("dirty");
	struct gitrepo r;

	assert_int_equal(gitrepo_scan(&r, d), 0);
	assert_int_equal(strlen(r.revision), 40);	/* clean */
	char *clean = xstrdup(r.revision);
	gitrepo_release(&r);

	/* Ignored and pystribignored changes do not count. */
	test_sh(d, "printf 'x' > other.bin && printf 'changed' > notes/todo.txt && printf 'n' > notes/n.txt");
	assert_int_equal(gitrepo_scan(&r, d), 0);
	assert_string_equal(r.revision, clean);
	gitrepo_release(&r);

	test_sh(d, "printf 'y = 2\\n' >> lib.py");
	assert_int_equal(gitrepo_scan(&r, d), 0);
	assert_non_null(strstr(r.revision, "-dirty"));
	assert_int_equal(strncmp(r.revision, clean, 40), 0);
	gitrepo_release(&r);

	test_sh(d, TEST_GIT "checkout -q lib.py && " TEST_GIT "rm -q --cached data/small.csv");	/* staged deletion */
	assert_int_equal(gitrepo_scan(&r, d), 0);
	assert_non_null(strstr(r.revision, "-dirty"));
	gitrepo_release(&r);

	test_sh(d, TEST_GIT "reset -q && rm lib.py");	/* deleted in the work tree */
	assert_int_equal(gitrepo_scan(&r, d), 0);
	assert_non_null(strstr(r.revision, "-dirty"));
	assert_null(find(&r, "lib.py"));
	gitrepo_release(&r);
	free(clean);
	free(d);
}

static void project_in_a_subdirectory(void **state)
{
	(void)state;
	char *d = make_repo("subdir");
	char *sub = xstrfmt("%s/data", d);
	struct gitrepo r;
	test_sh(d, "printf 'x' > lib.py.new");	/* untracked outside data/: not our business */
	assert_int_equal(gitrepo_scan(&r, sub), 0);
	assert_string_equal(r.root + strlen(r.root) - 5, "/data");
	assert_int_equal(r.nfiles, 1);
	assert_string_equal(r.files[0].path, "small.csv");
	assert_int_equal(strlen(r.revision), 40);	/* clean as far as data/ goes */
	gitrepo_release(&r);
	free(sub);
	free(d);
}

static void empty_repository_and_plain_directory(void **state)
{
	(void)state;
	char *d = new_dir("empty");
	struct gitrepo r;
	char *root = NULL;
	test_sh(d, TEST_GIT "init -q . && printf 'a' > a.py");
	assert_int_equal(gitrepo_scan(&r, d), 0);
	assert_non_null(r.worktree);
	assert_null(r.revision);	/* no commit yet */
	assert_int_equal(r.commit_time, 0);
	assert_null(r.source);
	assert_int_equal(r.nfiles, 1);
	assert_string_equal(r.files[0].path, "a.py");
	gitrepo_release(&r);
	free(d);

	d = new_dir("plain");
	test_sh(d, "mkdir -p a/b .git/objects skip keep && printf 1 > a/b/c.py && printf 2 > x.log"
	   " && printf 3 > .git/config && printf 4 > skip/s && printf 5 > keep/k.log"
	   " && printf '*.log\\n' > .gitignore && printf 'skip/\\n' > .pystribignore"
	   " && printf '!k.log\\n' > keep/.gitignore && ln -s a/b ab");
	assert_int_equal(gitrepo_find_worktree(d, &root), 0);
	assert_null(root);
	assert_int_equal(gitrepo_scan(&r, d), 0);
	assert_null(r.worktree);
	assert_null(r.revision);
	assert_non_null(find(&r, "a/b/c.py"));
	assert_non_null(find(&r, "keep/k.log"));	/* re-included by a deeper .gitignore */
	assert_non_null(find(&r, "ab"));		/* a symlink to a directory: a link */
	assert_int_equal(find(&r, "ab")->kind, PROJECT_SYMLINK);
	assert_null(find(&r, "x.log"));
	assert_null(find(&r, "skip/s"));
	assert_null(find(&r, ".git/config"));
	assert_null(find(&r, "a/b"));
	gitrepo_release(&r);
	free(d);
}

static void submodules_and_nested_repositories_are_left_out(void **state)
{
	(void)state;
	char *lib = new_dir("sublib");
	char *d = new_dir("super");
	struct gitrepo r;
	test_sh(lib, TEST_GIT "init -q . && printf 'l' > l.py && " TEST_GIT "add -A && " TEST_GIT "commit -qm l");
	test_sh(d, TEST_GIT "init -q . && printf 'm' > m.py && " TEST_GIT "-c protocol.file.allow=always submodule add -q '%s' ext"
	   " && " TEST_GIT "commit -qm s && mkdir nested && cd nested && " TEST_GIT "init -q . && printf n > n.py", lib);
	assert_int_equal(gitrepo_scan(&r, d), 0);
	assert_non_null(find(&r, "m.py"));
	assert_non_null(find(&r, ".gitmodules"));
	assert_null(find(&r, "ext/l.py"));
	assert_null(find(&r, "ext"));
	assert_null(find(&r, "nested/n.py"));
	assert_int_equal(r.nskipped, 2);
	gitrepo_release(&r);
	free(lib);
	free(d);
}

static void worktree_discovery(void **state)
{
	(void)state;
	char *d = make_repo("discover");
	char *file = xstrfmt("%s/src/cell.py", d);
	char *root = NULL;
	assert_int_equal(gitrepo_find_worktree(file, &root), 0);
	assert_non_null(root);
	char *real = realpath(d, NULL);
	assert_string_equal(root, real);
	free(root);
	free(real);
	assert_int_equal(gitrepo_find_worktree("/nonexistent/x.py", &root), -1);
	error_clear();
	struct gitrepo r;
	assert_int_equal(gitrepo_scan(&r, file), -1);	/* not a directory */
	error_clear();
	gitrepo_release(&r);
	free(file);
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(wildmatch_follows_git),
		cmocka_unit_test(ignore_rules_follow_gitignore),
		cmocka_unit_test(public_url_drops_credentials),
		cmocka_unit_test(lists_tracked_and_untracked_honouring_ignores),
		cmocka_unit_test(dirty_state),
		cmocka_unit_test(project_in_a_subdirectory),
		cmocka_unit_test(empty_repository_and_plain_directory),
		cmocka_unit_test(submodules_and_nested_repositories_are_left_out),
		cmocka_unit_test(worktree_discovery),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
