/*
 * Unit tests for config.c: sources, precedence, named remotes, errors, the
 * paths looked for; config_init.c: the starter config.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "error.h"
#include "strvec.h"
#include "testutil.h"

static char *tmpdir;
static char oldcwd[4096];

static const char *const env_vars[] = {
	"PYSTRIB_CONFIG", "XDG_CONFIG_HOME", "PYSTRIB_REMOTE_HOST", "PYSTRIB_REMOTE_PORT",
	"PYSTRIB_JOB_NP", "PYSTRIB_REGISTRY_URL",
};

static int setup(void **state)
{
	(void)state;
	tmpdir = test_tmpdir("config");
	assert_non_null(getcwd(oldcwd, sizeof(oldcwd)));
	assert_int_equal(chdir(tmpdir), 0);
	for (size_t i = 0; i < ARRAY_SIZE(env_vars); i++)
		unsetenv(env_vars[i]);
	/* No user config may leak into the tests. */
	setenv("XDG_CONFIG_HOME", tmpdir, 1);
	error_clear();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	assert_int_equal(chdir(oldcwd), 0);
	test_tmpdir_remove(tmpdir);
	tmpdir = NULL;
	return 0;
}

static char *write_file(const char *name, const char *text, mode_t mode)
{
	return test_write_file(tmpdir, name, text, mode);
}

/* Runs config_load with stderr captured into `err`. */
static int load_capturing(struct config *cfg, const char *file, const char *remote, struct buf *err)
{
	char *errpath = xstrfmt("%s/stderr.txt", tmpdir);
	fflush(stderr);
	int saved = dup(2);
	int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 2);
	close(fd);
	int r = config_load(cfg, file, remote);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	buf_reset(err);
	assert_int_equal(buf_read_file(err, errpath), 0);
	free(errpath);
	return r;
}

static void defaults_without_file(void **state)
{
	(void)state;
	struct config cfg;
	assert_int_equal(config_load(&cfg, NULL, NULL), 0);
	assert_null(cfg.file);
	assert_int_equal(cfg.remote.port, 22);
	assert_int_equal(cfg.job.np, 1);
	assert_int_equal(cfg.job.timeout, 0);
	assert_int_equal(cfg.remote.runtime, RUNTIME_DOCKER);
	assert_string_equal(cfg.remote.workdir, "~/.pystrib");
	assert_string_equal(cfg.image.platform, "linux/amd64");
	assert_null(cfg.registry.url);
	assert_string_equal(config_origin(&cfg, "job.np"), "default");
	config_release(&cfg);
}

static void precedence_default_file_env_flag(void **state)
{
	(void)state;
	char *path = write_file("a.ini", "[job]\nnp = 2\n\n[remote]\nhost = filehost\nport = 2200\n", 0600);
	struct config cfg;

	assert_int_equal(config_load(&cfg, path, NULL), 0);
	assert_int_equal(cfg.job.np, 2);
	assert_int_equal(cfg.remote.port, 2200);
	char *origin = xstrfmt("%s:2", path);
	assert_string_equal(config_origin(&cfg, "job.np"), origin);
	free(origin);
	config_release(&cfg);

	setenv("PYSTRIB_JOB_NP", "3", 1);
	assert_int_equal(config_load(&cfg, path, NULL), 0);
	assert_int_equal(cfg.job.np, 3);
	assert_string_equal(config_origin(&cfg, "job.np"), "environment PYSTRIB_JOB_NP");
	/* A key the environment does not set still comes from the file. */
	assert_string_equal(cfg.remote.host, "filehost");

	assert_int_equal(config_set(&cfg, "job.np", "4", "flag -n"), 0);
	assert_int_equal(cfg.job.np, 4);
	assert_string_equal(config_origin(&cfg, "job.np"), "flag -n");
	config_release(&cfg);
	free(path);
}

static void named_remote_inherits_from_remote(void **state)
{
	(void)state;
	char *path = write_file("b.ini",
				"[remote]\nhost = base\nruntime = podman\nuser = alice\n"
				"[remote.gpu1]\nhost = gpu1.example\nport = 2022\n"
				"[remote.gpu2]\nhost = gpu2.example\nruntime = none\n", 0600);
	struct config cfg;
	assert_int_equal(config_load(&cfg, path, "gpu1"), 0);
	assert_string_equal(cfg.remote.name, "gpu1");
	assert_string_equal(cfg.remote.host, "gpu1.example");
	assert_int_equal(cfg.remote.port, 2022);
	assert_string_equal(cfg.remote.user, "alice");		/* from [remote] */
	assert_int_equal(cfg.remote.runtime, RUNTIME_PODMAN);	/* from [remote] */
	config_release(&cfg);

	assert_int_equal(config_load(&cfg, path, "gpu2"), 0);
	assert_int_equal(cfg.remote.runtime, RUNTIME_NONE);
	assert_int_equal(cfg.remote.port, 22);
	const char **names = config_remote_names(&cfg);
	assert_string_equal(names[0], "gpu1");
	assert_string_equal(names[1], "gpu2");
	assert_null(names[2]);
	free(names);
	config_release(&cfg);

	/* The environment overrides the selected named remote too. */
	setenv("PYSTRIB_REMOTE_HOST", "envhost", 1);
	assert_int_equal(config_load(&cfg, path, "gpu1"), 0);
	assert_string_equal(cfg.remote.host, "envhost");
	config_release(&cfg);
	free(path);
}

static void unknown_remote_lists_configured_ones(void **state)
{
	(void)state;
	char *path = write_file("c.ini", "[remote.gpu1]\nhost = a\n[remote.gpu2]\nhost = b\n", 0600);
	struct config cfg;
	assert_int_equal(config_load(&cfg, path, "gpu3"), -1);
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	assert_non_null(strstr(error_message(), "'gpu3'"));
	assert_non_null(strstr(error_message(), "gpu1, gpu2"));
	assert_non_null(error_hint_text());
	error_clear();
	config_release(&cfg);
	free(path);
}

static void invalid_values_name_file_and_line(void **state)
{
	(void)state;
	static const struct { const char *text; const char *needle; } cases[] = {
		{ "[remote]\nhost = h\nport = abc\n", ":3" },
		{ "[remote]\nruntime = lxc\n", "docker, podman or none" },
		{ "[job]\nnp = 0\n", "job.np" },
		{ "[job]\ntimeout = -5\n", "job.timeout" },
		{ "[registry]\ninsecure = maybe\n", "true or false" },
		{ "[registry]\nurl = 127.0.0.1:5000\n", "http://" },
		{ "[remote]\ngpus = lots\n", "remote.gpus" },
		{ "[image]\nplatform = amd64\n", "OS/ARCH" },
		{ "[remote]\nport = 70000\n", "port number" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *path = write_file("bad.ini", cases[i].text, 0600);
		struct config cfg;
		assert_int_equal(config_load(&cfg, path, NULL), -1);
		assert_int_equal(error_kind(), PS_EXIT_USAGE);
		if (!strstr(error_message(), cases[i].needle))
			fail_msg("case %zu: '%s' lacks '%s'", i, error_message(), cases[i].needle);
		assert_non_null(strstr(error_message(), path));
		error_clear();
		config_release(&cfg);
		free(path);
	}
}

static void invalid_env_and_flag_values(void **state)
{
	(void)state;
	struct config cfg;
	setenv("PYSTRIB_REMOTE_PORT", "twenty", 1);
	assert_int_equal(config_load(&cfg, NULL, NULL), -1);
	assert_non_null(strstr(error_message(), "environment PYSTRIB_REMOTE_PORT"));
	error_clear();
	config_release(&cfg);
	unsetenv("PYSTRIB_REMOTE_PORT");

	assert_int_equal(config_load(&cfg, NULL, NULL), 0);
	assert_int_equal(config_set(&cfg, "job.np", "x", "flag -n"), -1);
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	assert_non_null(strstr(error_message(), "flag -n"));
	assert_int_equal(cfg.job.np, 1);	/* a rejected flag changes nothing */
	error_clear();
	config_release(&cfg);
}

static void unknown_keys_and_sections_warn_with_suggestion(void **state)
{
	(void)state;
	char *path = write_file("d.ini", "[remote]\nhots = x\n[regsitry]\nurl = http://a\n", 0600);
	struct config cfg;
	struct buf err = BUF_INIT;
	assert_int_equal(load_capturing(&cfg, path, NULL, &err), 0);
	/* "hots" is one letter from [remote] hosts, two from host. */
	assert_non_null(strstr(err.ptr, ":2: unknown key 'hots' in [remote]; did you mean 'hosts'?"));
	assert_non_null(strstr(err.ptr, ":3: unknown section '[regsitry]'; did you mean '[registry]'?"));
	assert_null(cfg.remote.host);
	config_release(&cfg);
	buf_release(&err);
	free(path);
}

static void unparsable_line_is_an_error(void **state)
{
	(void)state;
	char *path = write_file("e.ini", "[job]\nnp = 2\nthis line has no equals sign\n", 0600);
	struct config cfg;
	assert_int_equal(config_load(&cfg, path, NULL), -1);
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	assert_non_null(strstr(error_message(), ":3:"));
	error_clear();
	config_release(&cfg);
	free(path);
}

static void password_in_readable_file_warns(void **state)
{
	(void)state;
	struct config cfg;
	struct buf err = BUF_INIT;
	char *path = write_file("f.ini", "[registry]\nusername = u\npassword = hunter2\n", 0644);
	assert_int_equal(load_capturing(&cfg, path, NULL, &err), 0);
	assert_non_null(strstr(err.ptr, "readable by other users"));
	assert_null(strstr(err.ptr, "hunter2"));
	config_release(&cfg);

	chmod(path, 0600);
	assert_int_equal(load_capturing(&cfg, path, NULL, &err), 0);
	assert_null(strstr(err.ptr, "readable by other users"));
	config_release(&cfg);
	buf_release(&err);
	free(path);
}

static void secrets_are_masked_in_show(void **state)
{
	(void)state;
	char *path = write_file("g.ini", "[registry]\npassword = hunter2\n", 0600);
	struct config cfg;
	assert_int_equal(config_load(&cfg, path, NULL), 0);
	char *outpath = xstrfmt("%s/show.txt", tmpdir);
	for (int json = 0; json <= 1; json++) {
		FILE *out = fopen(outpath, "w");
		config_show(&cfg, out, json);
		fclose(out);
		struct buf text = BUF_INIT;
		assert_int_equal(buf_read_file(&text, outpath), 0);
		assert_null(strstr(text.ptr, "hunter2"));
		assert_non_null(strstr(text.ptr, "***"));
		assert_non_null(strstr(text.ptr, path));
		buf_release(&text);
	}
	free(outpath);
	config_release(&cfg);
	free(path);
}

static void file_search_order(void **state)
{
	(void)state;
	struct config cfg;
	/* XDG_CONFIG_HOME/pystrib/config.ini */
	char *xdgdir = xstrfmt("%s/pystrib", tmpdir);
	assert_int_equal(mkdir_p(xdgdir, 0700), 0);
	char *xdg = write_file("pystrib/config.ini", "[job]\nnp = 5\n", 0600);
	assert_int_equal(config_load(&cfg, NULL, NULL), 0);
	assert_int_equal(cfg.job.np, 5);
	config_release(&cfg);

	/* ./pystrib.ini wins over it */
	char *local = write_file("pystrib.ini", "[job]\nnp = 6\n", 0600);
	assert_int_equal(config_load(&cfg, NULL, NULL), 0);
	assert_int_equal(cfg.job.np, 6);
	assert_string_equal(cfg.file, "pystrib.ini");
	config_release(&cfg);

	/* $PYSTRIB_CONFIG wins over that */
	char *envf = write_file("env.ini", "[job]\nnp = 7\n", 0600);
	setenv("PYSTRIB_CONFIG", envf, 1);
	assert_int_equal(config_load(&cfg, NULL, NULL), 0);
	assert_int_equal(cfg.job.np, 7);
	config_release(&cfg);

	/* and -c FILE over everything */
	char *explicit = write_file("explicit.ini", "[job]\nnp = 8\n", 0600);
	assert_int_equal(config_load(&cfg, explicit, NULL), 0);
	assert_int_equal(cfg.job.np, 8);
	config_release(&cfg);

	/* A file named explicitly must exist. */
	assert_int_equal(config_load(&cfg, "/nonexistent/pystrib.ini", NULL), -1);
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	assert_non_null(strstr(error_message(), "/nonexistent/pystrib.ini"));
	error_clear();
	config_release(&cfg);
	unsetenv("PYSTRIB_CONFIG");
	free(xdgdir);
	free(xdg);
	free(local);
	free(envf);
	free(explicit);
}

/* The documented example must load cleanly: no warning, every key known. */
static void example_config_is_valid(void **state)
{
	(void)state;
	const char *src = getenv("PYSTRIB_SOURCE_DIR");
	if (!src)
		skip();
	char *path = xstrfmt("%s/config.ini.example", src);
	struct config cfg;
	struct buf err = BUF_INIT;
	assert_int_equal(load_capturing(&cfg, path, "gpu2", &err), 0);
	assert_string_equal(err.ptr, "");
	assert_int_equal(cfg.remote.runtime, RUNTIME_PODMAN);
	assert_string_equal(cfg.remote.gpus, "0,1");
	config_release(&cfg);
	buf_release(&err);
	free(path);
}

static void loopback_detection(void **state)
{
	(void)state;
	assert_true(host_is_loopback("http://127.0.0.1:5000"));
	assert_true(host_is_loopback("https://localhost/v2"));
	assert_true(host_is_loopback("http://[::1]:5000"));
	assert_true(host_is_loopback("127.0.0.5"));
	assert_true(host_is_loopback("http://user@127.0.0.1:5000"));
	assert_false(host_is_loopback("https://ghcr.io"));
	assert_false(host_is_loopback("http://127.0.0.1.evil.example:5000"));
	assert_false(host_is_loopback("http://localhost.evil.example"));
	assert_false(host_is_loopback("http://10.0.0.1:5000"));
}

/* The paths looked for are those config_load reads, in its order. */
static void search_paths_in_order(void **state)
{
	(void)state;
	struct strvec v = STRVEC_INIT;
	char *xdg = xstrfmt("%s/pystrib/config.ini", tmpdir);

	assert_int_equal(config_search_paths(&v, NULL), 0);
	assert_int_equal(v.nr, 2);
	assert_string_equal(v.v[0], "pystrib.ini");
	assert_string_equal(v.v[1], xdg);
	strvec_release(&v);
	setenv("PYSTRIB_CONFIG", "/env.ini", 1);
	assert_int_equal(config_search_paths(&v, NULL), 1);
	assert_int_equal(v.nr, 1);
	assert_string_equal(v.v[0], "/env.ini");
	strvec_release(&v);
	assert_int_equal(config_search_paths(&v, "/c.ini"), 1);
	assert_string_equal(v.v[0], "/c.ini");
	strvec_release(&v);
	unsetenv("PYSTRIB_CONFIG");

	/* What show prints when none is found. */
	char *path = xstrfmt("%s/show.txt", tmpdir);
	FILE *f = fopen(path, "w");
	struct buf b = BUF_INIT;
	config_print_searched(f, "# ", NULL);
	fclose(f);
	assert_int_equal(buf_read_file(&b, path), 0);
	assert_non_null(strstr(b.ptr, "#   ./pystrib.ini\n"));
	assert_non_null(strstr(b.ptr, xdg));
	assert_true(strstr(b.ptr, "./pystrib.ini") < strstr(b.ptr, xdg));
	assert_non_null(strstr(b.ptr, "pystrib config init"));
	assert_non_null(strstr(b.ptr, "config.ini.example"));
	buf_release(&b);
	free(path);
	free(xdg);
}

/*
 * config init's starter: valid as written, with the user, a key found in
 * ~/.ssh and the hosts of ~/.ssh/config; never over a file without force.
 */
static void starter_config(void **state)
{
	(void)state;
	struct buf text = BUF_INIT, err = BUF_INIT;
	struct config cfg;
	char *home = getenv("HOME") ? xstrdup(getenv("HOME")) : NULL;
	char *path;

	setenv("HOME", tmpdir, 1);
	setenv("USER", "alice", 1);
	test_sh(tmpdir, "mkdir -p .ssh && : > .ssh/id_rsa && : > .ssh/id_ed25519 && "
		"printf 'Host gpu1 gpu2\\n  HostName 10.0.0.1\\nHost *.corp\\nhost=bastion # x\\n' "
		"> .ssh/config");
	config_starter(&text, NULL);
	assert_non_null(strstr(text.ptr, "\n[remote]\n"));
	assert_non_null(strstr(text.ptr, "\nuser = alice\n"));
	assert_non_null(strstr(text.ptr, "\nidentity = ~/.ssh/id_ed25519\n"));
	assert_non_null(strstr(text.ptr, "\n;[remote.gpu1]\n;host = gpu1\n"));
	assert_non_null(strstr(text.ptr, "\n;[remote.gpu2]\n"));
	assert_non_null(strstr(text.ptr, "\n;[remote.bastion]\n"));
	assert_null(strstr(text.ptr, "corp"));

	path = config_init_path(NULL);
	char *want = xstrfmt("%s/pystrib/config.ini", tmpdir);
	assert_string_equal(path, want);
	free(want);
	assert_int_equal(config_init(path, NULL, 0), 0);
	assert_int_equal(load_capturing(&cfg, NULL, NULL, &err), 0);
	assert_string_equal(err.ptr, "");
	assert_string_equal(cfg.file, path);
	assert_string_equal(cfg.remote.user, "alice");
	assert_null(cfg.remote.host);
	config_release(&cfg);

	/* Never over an existing file, unless forced. */
	assert_int_equal(config_init(path, "gpu1", 0), -1);
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	assert_non_null(strstr(error_message(), "exists already"));
	assert_non_null(strstr(error_hint_text(), "--force"));
	error_clear();
	assert_int_equal(config_init(path, "gpu1", 1), 0);
	assert_int_equal(load_capturing(&cfg, path, "gpu1", &err), 0);
	assert_string_equal(err.ptr, "");
	assert_string_equal(cfg.remote.host, "gpu1");
	config_release(&cfg);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	/* Nothing in ~/.ssh: the agent is said, nothing is set. */
	test_sh(tmpdir, "rm -rf .ssh");
	buf_reset(&text);
	config_starter(&text, "newhost");
	assert_non_null(strstr(text.ptr, "\n[remote.newhost]\n"));
	assert_non_null(strstr(text.ptr, "\n;host = "));
	assert_non_null(strstr(text.ptr, "\n;identity = "));
	assert_null(strstr(text.ptr, ";[remote."));

	if (home)
		setenv("HOME", home, 1);
	free(home);
	free(path);
	buf_release(&text);
	buf_release(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(defaults_without_file, setup, teardown),
		cmocka_unit_test_setup_teardown(precedence_default_file_env_flag, setup, teardown),
		cmocka_unit_test_setup_teardown(named_remote_inherits_from_remote, setup, teardown),
		cmocka_unit_test_setup_teardown(unknown_remote_lists_configured_ones, setup, teardown),
		cmocka_unit_test_setup_teardown(invalid_values_name_file_and_line, setup, teardown),
		cmocka_unit_test_setup_teardown(invalid_env_and_flag_values, setup, teardown),
		cmocka_unit_test_setup_teardown(unknown_keys_and_sections_warn_with_suggestion, setup, teardown),
		cmocka_unit_test_setup_teardown(unparsable_line_is_an_error, setup, teardown),
		cmocka_unit_test_setup_teardown(password_in_readable_file_warns, setup, teardown),
		cmocka_unit_test_setup_teardown(secrets_are_masked_in_show, setup, teardown),
		cmocka_unit_test_setup_teardown(file_search_order, setup, teardown),
		cmocka_unit_test_setup_teardown(example_config_is_valid, setup, teardown),
		cmocka_unit_test_setup_teardown(search_paths_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(starter_config, setup, teardown),
		cmocka_unit_test(loopback_detection),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
