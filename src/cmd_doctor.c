#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "cli.h"
#include "commands.h"
#include "config.h"
#include "engine.h"
#include "error.h"
#include "gpucheck.h"
#include "log.h"
#include "ref.h"
#include "registry.h"
#include "shquote.h"
#include "strvec.h"
#include "ssh.h"
#include "util.h"

const char cmd_doctor_help[] =
	"usage: pystrib doctor [--remote NAME] [--trust-host]\n"
	"\n"
	"Checks everything a run needs, one line each, with what to do about each\n"
	"failure: the config, the registry (reachable, credentials accepted, base\n"
	"image present), the SSH host (reachable, host key known, login works), the\n"
	"container runtime (or python3 and mpirun for runtime none), the remote work\n"
	"directory, and the GPUs when [remote] gpus is set (nvidia-smi, and the\n"
	"NVIDIA container toolkit for docker or a CDI spec for podman).\n"
	"\n"
	"The exit code is 0 when everything is fine, else that of the first failed\n"
	"check: 2 config, 3 registry, 4 SSH or remote host.\n"
	"\n"
	"options:\n"
	"  -r, --remote NAME   check the [remote.NAME] section instead of [remote]\n"
	"      --trust-host    if the host's key is not known yet, show its\n"
	"                      fingerprint and record it in known_hosts (a CHANGED\n"
	"                      key is never accepted)\n"
	"  -h, --help          show this help\n"
	"\n"
	"examples:\n"
	"  pystrib doctor\n"
	"  pystrib doctor --remote gpu1 --trust-host\n";

struct doctor {
	int code;		/* exit code of the first failure, 0 if none */
	int warned;		/* checks that said warn */
	int tty;
};

/* WARN: not ok, yet no failure (the exit code stays 0). */
enum state { OK, FAIL, SKIP, INFO, WARN };

/* One line of the report; fix is shown under a failure. */
static void report(struct doctor *d, enum state st, int code, const char *check,
		   const char *fix, const char *fmt, ...) PRINTF_LIKE(6, 7);
static void report(struct doctor *d, enum state st, int code, const char *check,
		   const char *fix, const char *fmt, ...)
{
	static const char *const names[] = { "ok", "FAIL", "skip", "info", "warn" };
	static const char *const json_names[] = { "ok", "fail", "skip", "info", "warn" };
	static const char *const colors[] = { "\033[32m", "\033[31;1m", "\033[33m", "\033[36m",
					      "\033[33;1m" };
	struct buf msg = BUF_INIT;
	va_list ap;

	va_start(ap, fmt);
	buf_vaddf(&msg, fmt, ap);
	va_end(ap);
	if (st == FAIL && !d->code)
		d->code = code;
	d->warned += st == WARN;
	if (log_json) {
		event_emit("check", "{s:s,s:s,s:s,s:s?}", "check", check, "state", json_names[st],
			   "message", msg.ptr, "fix", st == FAIL ? fix : NULL);
	} else {
		printf("%s%-4s%s  %-11s %s\n", d->tty ? colors[st] : "", names[st],
		       d->tty ? "\033[0m" : "", check, msg.ptr);
		if (st == FAIL && fix)
			printf("      %-11s fix: %s\n", "", fix);
		fflush(stdout);
	}
	buf_release(&msg);
}

/* ---- registry (through registry.h) --------------------------------- */

/* "host[:port]" of the configured registry URL. Caller frees. */
static char *url_host(const char *url)
{
	const char *p = strstr(url, "://");
	p = p ? p + 3 : url;
	return xstrndup(p, strcspn(p, "/?#"));
}

static const char *hint_or(const char *fallback)
{
	const char *h = error_hint_text();
	return h ? h : fallback;
}

/* Opens and pings the configured registry: the client when it answered, else NULL. */
static struct registry *check_registry(struct doctor *d, const struct config *cfg)
{
	const struct registry_config *rc = &cfg->registry;
	struct registry *r = NULL;
	const char *origin = NULL;
	char *host;

	if (!rc->url) {
		report(d, FAIL, PS_EXIT_USAGE, "registry", "set [registry] url in the config "
		       "(pystrib config show explains what is set)", "no registry is configured");
		return NULL;
	}
	host = url_host(rc->url);
	if (registry_open(&r, cfg, host) < 0 || registry_ping(r) < 0) {
		report(d, FAIL, error_kind(), "registry", hint_or("check [registry] url"), "%s",
		       error_message());
		registry_free(r);
		r = NULL;
	} else if (registry_authenticated(r)) {
		registry_has_credentials(r, &origin);
		report(d, OK, 0, "registry", NULL, "'%s' answers, credentials accepted (from %s)",
		       rc->url, origin);
	} else {
		report(d, OK, 0, "registry", NULL, "'%s' answers%s", rc->url,
		       registry_has_credentials(r, NULL) ? " (it asked for no credentials)" : "");
	}
	error_clear();
	free(host);
	return r;
}

/* The base image's manifest, from its registry (own when it is the configured one). */
static void check_base(struct doctor *d, const struct config *cfg, struct registry *own)
{
	const char *base = cfg->image.base;
	struct image_ref ref;
	struct registry *r = NULL;
	struct buf body = BUF_INIT;
	char *media_type = NULL, digest[DIGEST_LEN];

	if (!base) {
		report(d, FAIL, PS_EXIT_USAGE, "base image", "set [image] base to a reference "
		       "(REGISTRY/REPO:TAG) of an image with Python 3, Open MPI and mpi4py",
		       "no base image is configured");
		return;
	}
	if (image_ref_parse(&ref, base) < 0) {
		report(d, FAIL, PS_EXIT_USAGE, "base image", "write [image] base as REGISTRY/REPO:TAG",
		       "%s", error_message());
		error_clear();
		return;
	}
	if (own && !strcasecmp(registry_host(own), ref.registry))
		r = own;
	else if (registry_open(&r, cfg, ref.registry) < 0)
		goto fail;
	if (registry_get_manifest(r, ref.repository, ref.digest ? ref.digest : ref.tag, &body,
				  &media_type, digest) < 0)
		goto fail;
	report(d, OK, 0, "base image", NULL, "'%s' is present (%s)", base, digest);
	goto out;
fail:
	report(d, FAIL, error_kind(), "base image", hint_or("check [image] base and that its "
	       "registry is reachable"), "%s", error_message());
out:
	error_clear();
	if (r != own)
		registry_free(r);
	image_ref_release(&ref);
	buf_release(&body);
	free(media_type);
}

/* ---- SSH and the remote host --------------------------------------- */

static struct ssh_conn *check_ssh(struct doctor *d, const struct config *cfg, int trust)
{
	struct ssh_target t = SSH_TARGET_INIT;
	struct ssh_conn *c = NULL;
	int rc;

	if (ssh_target_from_config(&t, cfg) < 0) {
		const char *hint = error_hint_text();
		report(d, FAIL, error_kind(), "ssh", hint, "%s", error_message());
		error_clear();
		goto out;
	}
	rc = ssh_conn_open(&c, &t, 0);
	if (rc == SSH_R_HOSTKEY_UNKNOWN && trust) {
		error_clear();
		rc = ssh_conn_open(&c, &t, SSH_ACCEPT_NEW_HOSTKEY);
		if (rc == 0) {
			report(d, OK, 0, "ssh", NULL, "'%s' reachable", ssh_conn_name(c));
			report(d, OK, 0, "host key", NULL, "%s recorded as trusted (--trust-host)",
			       ssh_conn_fingerprint(c));
			report(d, OK, 0, "login", NULL, "logged in");
			goto out;
		}
	}
	if (rc == SSH_R_UNREACHABLE || (rc < 0 && rc != SSH_R_HOSTKEY_UNKNOWN &&
					rc != SSH_R_HOSTKEY_CHANGED && rc != SSH_R_AUTH)) {
		report(d, FAIL, error_kind() ? (int)error_kind() : PS_EXIT_REMOTE, "ssh",
		       error_hint_text(), "%s", error_message());
		report(d, SKIP, 0, "host key", NULL, "not checked: no connection");
		report(d, SKIP, 0, "login", NULL, "not checked: no connection");
		goto out;
	}
	char *name = xstrfmt("%s%s%s:%d", t.user ? t.user : "", t.user ? "@" : "", t.host,
			     t.port ? t.port : 22);
	report(d, OK, 0, "ssh", NULL, "'%s' reachable", c ? ssh_conn_name(c) : name);
	free(name);
	if (rc == SSH_R_HOSTKEY_UNKNOWN || rc == SSH_R_HOSTKEY_CHANGED) {
		report(d, FAIL, PS_EXIT_REMOTE, "host key", error_hint_text(), "%s", error_message());
		report(d, SKIP, 0, "login", NULL, "not checked: the host key is not trusted");
		goto out;
	}
	if (rc == 0)
		report(d, OK, 0, "host key", NULL, "%s is known", ssh_conn_fingerprint(c));
	else
		report(d, OK, 0, "host key", NULL, "known");
	if (rc == SSH_R_AUTH)
		report(d, FAIL, PS_EXIT_REMOTE, "login", error_hint_text(), "%s", error_message());
	else
		report(d, OK, 0, "login", NULL, "logged in");
out:
	error_clear();
	ssh_target_release(&t);
	return c;
}

/* Runs argv on the remote (after `setup` lines when given); first line of stdout. */
static int remote_line(struct ssh_conn *c, const char *setup, const char *const *argv,
		       const char *program, char **line)
{
	struct buf cmd = BUF_INIT, out;
	int ret;

	buf_init(&out, 1 << 20);
	if (setup)
		buf_addf(&cmd, "%s\n", setup);
	shquote_argv(&cmd, argv);
	ret = ssh_conn_run(c, cmd.ptr, program, &out);
	if (ret == 0) {
		out.ptr[strcspn(out.ptr, "\n")] = '\0';
		*line = xstrdup(out.ptr);
	}
	buf_release(&cmd);
	buf_release(&out);
	return ret;
}

static void check_runtime(struct doctor *d, struct ssh_conn *c, const struct remote_config *r)
{
	static const char *const docker[] = { "docker", "version", "--format",
		"{{.Client.Version}} (server {{.Server.Version}})", NULL };
	static const char *const podman[] = { "podman", "version", "--format",
		"{{.Client.Version}}", NULL };
	const char *python[] = { r->python ? r->python : "python3", "--version", NULL };
	static const char *const mpirun[] = { "mpirun", "--version", NULL };
	char *line = NULL;

	if (r->runtime == RUNTIME_NONE) {
		if (remote_line(c, r->setup, python, python[0], &line) == 0)
			report(d, OK, 0, "python", NULL, "%s", line);
		else
			report(d, FAIL, PS_EXIT_REMOTE, "python", error_hint_text(), "%s",
			       error_message());
		free(line);
		line = NULL;
		if (remote_line(c, r->setup, mpirun, "mpirun", &line) == 0)
			report(d, OK, 0, "mpirun", NULL, "%s", line);
		else
			report(d, FAIL, PS_EXIT_REMOTE, "mpirun", error_hint_text(), "%s",
			       error_message());
	} else {
		const char *const *argv = r->runtime == RUNTIME_DOCKER ? docker : podman;
		if (remote_line(c, NULL, argv, argv[0], &line) == 0)
			report(d, OK, 0, "runtime", NULL, "%s %s", argv[0], line);
		else
			report(d, FAIL, PS_EXIT_REMOTE, "runtime", error_hint_text() ?
			       error_hint_text() : "start the engine on the host and let the SSH "
			       "user use it, or set [remote] runtime", "%s", error_message());
		report(d, INFO, 0, "mpirun", NULL, "runs inside the image (checked when a job starts)");
		/* Optional: only a head start for `run` (engine.h), so never a failure. */
		const char *sock = engine_socket(r);
		if (sock) {
			if (engine_ping(c, sock, now_monotonic() + 15) == 0)
				report(d, OK, 0, "socket", NULL, "the engine answers at '%s' (run pulls "
				       "through it while the job's shell starts)", sock);
			else
				report(d, INFO, 0, "socket", NULL, "%s; jobs pull the image themselves "
				       "(set [remote] docker_socket to the engine's socket, or leave "
				       "it empty)", error_message());
			error_clear();
		}
	}
	free(line);
	error_clear();
}

static void check_workdir(struct doctor *d, struct ssh_conn *c, const struct remote_config *r)
{
	struct buf cmd = BUF_INIT, out;
	const char *workdir = r->workdir ? r->workdir : "~/.pystrib";

	buf_init(&out, 1 << 16);
	buf_addstr(&cmd, "mkdir -p ");
	shquote_path(&cmd, workdir);
	buf_addstr(&cmd, " && test -w ");
	shquote_path(&cmd, workdir);
	buf_addstr(&cmd, " && df -Pk ");
	shquote_path(&cmd, workdir);
	buf_addstr(&cmd, " | awk 'NR==2 {print $4}'");
	if (ssh_conn_run(c, cmd.ptr, "mkdir", &out) < 0) {
		report(d, FAIL, PS_EXIT_REMOTE, "workdir", "set [remote] workdir to a directory "
		       "the SSH user may write", "%s", error_message());
	} else {
		long kb = atol(out.ptr);
		if (kb > 0 && kb < 1024 * 1024)
			report(d, FAIL, PS_EXIT_REMOTE, "workdir", "free space on the host or point "
			       "[remote] workdir elsewhere", "'%s' has only %ld MiB free",
			       workdir, kb / 1024);
		else
			report(d, OK, 0, "workdir", NULL, "'%s' writable, %.1f GiB free", workdir,
			       (double)kb / (1024 * 1024));
	}
	error_clear();
	buf_release(&cmd);
	buf_release(&out);
}

static void check_gpus(struct doctor *d, struct ssh_conn *c, const struct config *cfg)
{
	int n;

	if (!cfg->remote.gpus) {
		report(d, SKIP, 0, "gpus", NULL, "none requested ([remote] gpus is not set)");
		return;
	}
	if (host_gpu_check(c, cfg, &n) < 0)
		report(d, FAIL, PS_EXIT_REMOTE, "gpus", error_hint_text(), "%s", error_message());
	else
		report(d, OK, 0, "gpus", NULL, "%d GPU%s (%s requested), and %s can use them", n,
		       n == 1 ? "" : "s", cfg->remote.gpus, runtime_name(cfg->remote.runtime));
	error_clear();
}

/* "./pystrib.ini, then /home/me/.config/pystrib/config.ini" into b. */
static void searched(struct buf *b)
{
	struct strvec paths = STRVEC_INIT;

	config_search_paths(&paths, NULL);
	for (size_t i = 0; i < paths.nr; i++)
		buf_addf(b, "%s%s%s", i ? ", then " : "", paths.v[i][0] == '/' ? "" : "./",
			 paths.v[i]);
	strvec_release(&paths);
}

/* The config line when no file was found: settings from the environment at most. */
static void report_no_file(struct doctor *d, const struct config *cfg)
{
	struct buf where = BUF_INIT, fix = BUF_INIT;
	char *target = config_init_path(NULL);

	searched(&where);
	buf_addf(&fix, "run 'pystrib config init' to write a starter '%s', or copy "
		 "config.ini.example (every key, documented) to one of them", target);
	if (cfg->remote.host)
		report(d, INFO, 0, "config", NULL, "no config file (looked for %s); remote host "
		       "'%s' from %s", where.ptr, cfg->remote.host, config_origin(cfg, "remote.host"));
	else
		report(d, FAIL, PS_EXIT_USAGE, "config", fix.ptr, "no config file; looked for %s",
		       where.ptr);
	free(target);
	buf_release(&where);
	buf_release(&fix);
}

/*
 * Loads the config and says how that went: a failure, no file, warnings
 * (printed above the line), or ok. 0, or -1 when there is no config to go on.
 */
static int check_config(struct doctor *d, struct config *cfg, const char *remote)
{
	unsigned long warnings = log_warnings;
	struct buf what = BUF_INIT;

	if (config_load(cfg, cli.config_file, remote) < 0) {
		report(d, FAIL, PS_EXIT_USAGE, "config", error_hint_text() ? error_hint_text()
		       : "'pystrib config show' explains each setting", "%s", error_message());
		error_clear();
		return -1;
	}
	warnings = log_warnings - warnings;
	if (!cfg->file) {
		report_no_file(d, cfg);
		return 0;
	}
	buf_addf(&what, "'%s' loaded", cfg->file);
	if (remote)
		buf_addf(&what, "; remote '%s'", remote);
	if (cfg->remote.host)
		buf_addf(&what, "%s host '%s' (from %s)", remote ? "," : "; remote", cfg->remote.host,
			 config_origin(cfg, "remote.host"));
	if (warnings)
		report(d, WARN, 0, "config", NULL, "%s, with %lu warning%s (above)", what.ptr,
		       warnings, warnings == 1 ? "" : "s");
	else
		report(d, OK, 0, "config", NULL, "%s", what.ptr);
	buf_release(&what);
	return 0;
}

int cmd_doctor(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "remote", required_argument, 0, 'r' },
		{ "trust-host", no_argument, 0, 'T' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct doctor d = { 0, 0, isatty(1) && !log_json };
	const char *remote = NULL;
	struct ssh_conn *c = NULL;
	struct registry *reg = NULL;
	struct config cfg;
	int ch, trust = 0;

	while ((ch = cli_getopt(argc, argv, "r:", opts, cmd_doctor_help)) != -1) {
		switch (ch) {
		case CLI_HELP: return 0;
		case CLI_ERROR: return PS_EXIT_USAGE;
		case 'r': remote = optarg; break;
		case 'T': trust = 1; break;
		}
	}
	if (optind < argc)
		return cli_usage_error(cmd_doctor_help, "doctor takes no arguments");

	if (check_config(&d, &cfg, remote) < 0)
		goto out;
	reg = check_registry(&d, &cfg);
	check_base(&d, &cfg, reg);
	registry_free(reg);
	c = check_ssh(&d, &cfg, trust);
	if (c) {
		check_runtime(&d, c, &cfg.remote);
		check_workdir(&d, c, &cfg.remote);
		check_gpus(&d, c, &cfg);
	} else {
		report(&d, SKIP, 0, "runtime", NULL, "not checked: no SSH login");
	}
	ssh_conn_free(c);
out:
	config_release(&cfg);
	if (!log_json && d.code)
		printf("some checks failed\n");
	else if (!log_json)
		printf("all checks passed%s\n", d.warned ? ", with warnings" : "");
	return d.code;
}
