#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "error.h"
#include "strvec.h"
#include "util.h"

/* ~/.ssh/config is the user's own, small file; a bigger one is not read. */
#define SSH_CONFIG_MAX (1u << 20)
#define MAX_OFFERED_HOSTS 16

static const char *const identities[] = {
	"id_ed25519", "id_ecdsa", "id_ed25519_sk", "id_ecdsa_sk", "id_rsa",
};

static char *local_user(void)
{
	const char *u = getenv("USER");
	struct passwd *pw;

	if (u && *u)
		return xstrdup(u);
	pw = getpwuid(getuid());
	return pw && pw->pw_name ? xstrdup(pw->pw_name) : NULL;
}

/* The first of ssh's default private keys in ~/.ssh, as "~/.ssh/NAME", or NULL. */
static char *find_identity(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(identities); i++) {
		char *tilde = xstrfmt("~/.ssh/%s", identities[i]);
		char *path = expand_home(tilde);
		int found = access(path, R_OK) == 0;
		free(path);
		if (found)
			return tilde;
		free(tilde);
	}
	return NULL;
}

/* A name that can be a [remote.NAME] section and a host: no patterns. */
static int plain_host(const char *s)
{
	if (!*s || *s == '-')
		return 0;
	for (; *s; s++)
		if (!(*s == '.' || *s == '-' || *s == '_' || (*s >= '0' && *s <= '9') ||
		      (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
			return 0;
	return 1;
}

/* The names after "Host" (or "Host=") in one line, added to hosts. */
static void host_line(char *line, struct strvec *hosts)
{
	char *p = line + strspn(line, " \t");
	char *word;

	if (strncasecmp(p, "host", 4) || !strchr(" \t=", p[4]) || !p[4])
		return;
	p += 5;
	while (*p && hosts->nr < MAX_OFFERED_HOSTS) {
		p += strspn(p, " \t=");
		word = p;
		p += strcspn(p, " \t");
		if (*p)
			*p++ = '\0';
		if (plain_host(word))
			strvec_push(hosts, word);
	}
}

void config_ssh_hosts(struct strvec *hosts)
{
	struct buf b;
	char *path = expand_home("~/.ssh/config");
	char *line, *next;

	buf_init(&b, SSH_CONFIG_MAX);
	if (buf_read_file(&b, path) == 0) {
		for (line = b.ptr; line && *line; line = next) {
			next = strchr(line, '\n');
			if (next)
				*next++ = '\0';
			line[strcspn(line, "#\r")] = '\0';
			host_line(line, hosts);
		}
	}
	buf_release(&b);
	free(path);
}

/* The [remote] (or [remote.NAME]) section, with what could be found out. */
static void remote_section(struct buf *out, const char *name, const struct strvec *hosts)
{
	char *user = local_user(), *identity = find_identity();
	int known = 0;

	for (size_t i = 0; name && i < hosts->nr; i++)
		known |= !strcmp(hosts->v[i], name);
	buf_addf(out, "[remote%s%s]\n", name ? "." : "", name ? name : "");
	buf_addstr(out, "; The host the jobs run on: a name, an address or a ~/.ssh/config alias.\n");
	if (known)
		buf_addf(out, "host = %s\n", name);
	else
		buf_addstr(out, ";host = gpu1.example.org\n;port = 22\n");
	if (user)
		buf_addf(out, "; The SSH user (from $USER).\nuser = %s\n", user);
	else
		buf_addstr(out, ";user = me\n");
	if (identity)
		buf_addf(out, "; The private key, tried after the agent (found in ~/.ssh).\n"
			 "identity = %s\n", identity);
	else
		buf_addstr(out, "; No key found in ~/.ssh: the agent's keys are used.\n"
			   ";identity = ~/.ssh/id_ed25519\n");
	buf_addstr(out, "; Where jobs live on the host, and how they run (docker, podman or none).\n"
		   ";workdir = ~/.pystrib\n;runtime = docker\n");
	buf_addstr(out, "; GPUs for each job: all, a count, or a list (0,1).\n;gpus = all\n\n");
	free(user);
	free(identity);
}

void config_starter(struct buf *out, const char *remote)
{
	struct strvec hosts = STRVEC_INIT;
	size_t offered = 0;

	config_ssh_hosts(&hosts);
	buf_addstr(out, "; pystrib's configuration, written by 'pystrib config init'.\n"
		   "; config.ini.example documents every key; 'pystrib config show' says what\n"
		   "; is in effect and where each value comes from; 'pystrib doctor' checks it.\n"
		   "; Lines starting with ';' are comments: remove the ';' to set a value.\n\n");
	buf_addstr(out, "[registry]\n"
		   "; The registry the cell's images are pushed to and the host pulls from.\n"
		   ";url = http://127.0.0.1:5000\nrepository = pystrib/cells\n"
		   "; A password never goes here: use password_env or password_file.\n"
		   ";username = me\n;password_env = PYSTRIB_REGISTRY_PASSWORD\n\n");
	buf_addstr(out, "[image]\n"
		   "; The base image: Python 3, Open MPI and mpi4py (REGISTRY/REPO:TAG).\n"
		   ";base = 127.0.0.1:5000/pystrib/base:bookworm\n\n");
	remote_section(out, remote, &hosts);
	for (size_t i = 0; i < hosts.nr; i++) {
		if (remote && !strcmp(hosts.v[i], remote))
			continue;
		if (!offered++)
			buf_addstr(out, "; Hosts of ~/.ssh/config: remove the ';' of one to use it"
				   " with --remote NAME.\n");
		buf_addf(out, ";[remote.%s]\n;host = %s\n", hosts.v[i], hosts.v[i]);
	}
	if (offered)
		buf_addch(out, '\n');
	buf_addstr(out, "[job]\n; Ranks per job, and a time limit in seconds (0: none).\n"
		   ";np = 1\n;timeout = 0\n");
	strvec_release(&hosts);
}

char *config_init_path(const char *file)
{
	/* The file pystrib reads: the one named, else the user's, the last searched. */
	struct strvec paths = STRVEC_INIT;
	config_search_paths(&paths, file);
	char *path = xstrdup(paths.v[paths.nr - 1]);
	strvec_release(&paths);
	return path;
}

int config_init(const char *path, const char *remote, int force)
{
	struct buf text = BUF_INIT;
	char *dir = xstrdup(path), *slash = strrchr(dir, '/');
	int ret = -1;

	if (!force && access(path, F_OK) == 0) {
		error_set(PS_EXIT_USAGE, "config file '%s' exists already", path);
		error_hint("'pystrib config show' shows what it sets; pass --force to replace it");
		goto out;
	}
	if (slash && slash != dir) {
		*slash = '\0';
		if (mkdir_p(dir, 0700) < 0) {
			error_set(PS_EXIT_IO, "cannot create '%s': %s", dir, strerror(errno));
			goto out;
		}
	}
	config_starter(&text, remote);
	ret = write_file_atomic(path, text.ptr, text.len, 0600);
out:
	buf_release(&text);
	free(dir);
	return ret;
}
