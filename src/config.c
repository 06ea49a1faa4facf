#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "error.h"
#include "hosts.h"
#include "log.h"
#include "strvec.h"

enum cfg_type { T_STR, T_INT, T_PORT, T_BOOL, T_RUNTIME, T_GPUS, T_URL, T_PLATFORM, T_SCHEDULER, T_HOSTS };
enum { F_SECRET = 1 };

struct cfg_key {
	const char *section;
	const char *key;
	enum cfg_type type;
	const char *def;
	unsigned flags;
	long min, max;		/* for T_INT */
};

/* The one list of settings; config.ini.example documents each of them. */
static const struct cfg_key keys[] = {
	{ "registry", "url", T_URL, NULL, 0, 0, 0 },
	{ "registry", "repository", T_STR, "pystrib/cells", 0, 0, 0 },
	{ "registry", "username", T_STR, NULL, 0, 0, 0 },
	{ "registry", "password_env", T_STR, NULL, 0, 0, 0 },
	{ "registry", "password_file", T_STR, NULL, 0, 0, 0 },
	{ "registry", "password", T_STR, NULL, F_SECRET, 0, 0 },
	{ "registry", "ca_file", T_STR, NULL, 0, 0, 0 },
	{ "registry", "insecure", T_BOOL, "false", 0, 0, 0 },
	{ "image", "base", T_STR, NULL, 0, 0, 0 },
	{ "image", "platform", T_PLATFORM, "linux/amd64", 0, 0, 0 },
	{ "remote", "host", T_STR, NULL, 0, 0, 0 },
	{ "remote", "port", T_PORT, "22", 0, 1, 65535 },
	{ "remote", "user", T_STR, NULL, 0, 0, 0 },
	{ "remote", "identity", T_STR, NULL, 0, 0, 0 },
	{ "remote", "known_hosts", T_STR, NULL, 0, 0, 0 },
	{ "remote", "workdir", T_STR, "~/.pystrib", 0, 0, 0 },
	{ "remote", "runtime", T_RUNTIME, "docker", 0, 0, 0 },
	{ "remote", "gpus", T_GPUS, NULL, 0, 0, 0 },
	{ "remote", "mpirun_args", T_STR, NULL, 0, 0, 0 },
	{ "remote", "pull_registry", T_STR, NULL, 0, 0, 0 },
	{ "remote", "python", T_STR, "python3", 0, 0, 0 },
	{ "remote", "setup", T_STR, NULL, 0, 0, 0 },
	{ "remote", "reconnect_timeout", T_INT, "600", 0, 0, 86400 * 7 },
	{ "remote", "docker_socket", T_STR, "/var/run/docker.sock", 0, 0, 0 },
	{ "remote", "scheduler", T_SCHEDULER, "none", 0, 0, 0 },
	{ "remote", "hosts", T_HOSTS, NULL, 0, 0, 0 },
	{ "slurm", "partition", T_STR, NULL, 0, 0, 0 },
	{ "slurm", "account", T_STR, NULL, 0, 0, 0 },
	{ "slurm", "time", T_STR, NULL, 0, 0, 0 },
	{ "slurm", "nodes", T_INT, "0", 0, 0, 65536 },
	{ "slurm", "ntasks_per_node", T_INT, "0", 0, 0, 65536 },
	{ "slurm", "gpus_per_node", T_INT, "0", 0, 0, 1024 },
	{ "slurm", "extra", T_STR, NULL, 0, 0, 0 },
	{ "slurm", "shared_dir", T_STR, NULL, 0, 0, 0 },
	{ "job", "np", T_INT, "1", 0, 1, 65536 },
	{ "job", "timeout", T_INT, "0", 0, 0, 86400 * 365 },
	{ "job", "results", T_STR, "./pystrib-results", 0, 0, 0 },
	{ "session", "idle_timeout", T_INT, "7200", 0, 0, 86400 * 30 },
	/* Read by the notebook extension (magic/): a kernel's end stops its sessions. */
	{ "session", "stop_on_exit", T_BOOL, "false", 0, 0, 0 },
	/* Read by the notebook extension (magic/), not by pystrib itself. */
	{ "notebook", "binary", T_STR, NULL, 0, 0, 0 },
};
#define NKEYS ARRAY_SIZE(keys)

static const char *const sections[] = { "registry", "image", "remote", "slurm", "job", "session",
					"notebook" };

struct cfg_entry {
	char *section;		/* as written: "remote.gpu1" */
	char *key;
	char *value;
	int line;
	int section_line;	/* the line of its [section] header */
};

const char *runtime_name(enum runtime rt)
{
	switch (rt) {
	case RUNTIME_PODMAN: return "podman";
	case RUNTIME_NONE: return "none";
	default: return "docker";
	}
}

static int key_index(const char *section, const char *key)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (!strcmp(keys[i].section, section) && !strcmp(keys[i].key, key))
			return (int)i;
	return -1;
}

static int name_index(const char *name)
{
	const char *dot = strchr(name, '.');
	if (!dot)
		return -1;
	char *section = xstrndup(name, (size_t)(dot - name));
	int i = key_index(section, dot + 1);
	free(section);
	return i;
}

/* "remote.gpu1" -> the base section "remote"; other names as they are. */
static int split_section(const char *section, char **base, const char **sub)
{
	const char *dot = strchr(section, '.');
	*base = dot ? xstrndup(section, (size_t)(dot - section)) : xstrdup(section);
	*sub = dot ? dot + 1 : NULL;
	return 0;
}

static const char *closest_key(const char *section, const char *key)
{
	const char *cands[NKEYS];
	for (size_t i = 0; i < NKEYS; i++)
		cands[i] = !strcmp(keys[i].section, section) ? keys[i].key : NULL;
	return closest_word(key, cands, NKEYS);
}

static int is_bool_word(const char *v, int *out)
{
	static const char *const yes[] = { "1", "true", "yes", "on" };
	static const char *const no[] = { "0", "false", "no", "off" };
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (!strcasecmp(v, yes[i])) {
			*out = 1;
			return 1;
		}
		if (!strcasecmp(v, no[i])) {
			*out = 0;
			return 1;
		}
	}
	return 0;
}

static int valid_gpus(const char *v)
{
	if (!strcmp(v, "all") || !strcmp(v, "none"))
		return 1;
	/* a count, or a comma-separated list of device indexes */
	const char *p = v;
	int digits = 0;
	for (; *p; p++) {
		if (isdigit((unsigned char)*p)) {
			digits++;
		} else if (*p == ',' && digits) {
			digits = 0;
		} else {
			return 0;
		}
	}
	return digits > 0;
}

/*
 * Checks a value of key k. Returns NULL if valid, else a static phrase
 * saying what was expected.
 */
static const char *check_value(const struct cfg_key *k, const char *v)
{
	long n;
	int b;
	switch (k->type) {
	case T_STR:
		return NULL;
	case T_INT:
		if (parse_long(v, k->min, k->max, &n) < 0)
			return k->min == 0 ? "expected a whole number, 0 or more"
					   : "expected a whole number, 1 or more";
		return NULL;
	case T_PORT:
		return parse_long(v, 1, 65535, &n) < 0 ? "expected a port number from 1 to 65535" : NULL;
	case T_BOOL:
		return is_bool_word(v, &b) ? NULL : "expected true or false";
	case T_RUNTIME:
		return strcmp(v, "docker") && strcmp(v, "podman") && strcmp(v, "none")
			       ? "expected docker, podman or none" : NULL;
	case T_GPUS:
		return valid_gpus(v) ? NULL : "expected 'all', a count, or a list like '0,1'";
	case T_URL:
		return strncmp(v, "http://", 7) && strncmp(v, "https://", 8)
			       ? "expected a URL starting with http:// or https://" : NULL;
	case T_SCHEDULER:
		return strcmp(v, "none") && strcmp(v, "slurm") ? "expected none or slurm" : NULL;
	case T_HOSTS: {
		struct host_list l = HOST_LIST_INIT;
		int bad = hosts_parse(&l, v) < 0;
		hosts_release(&l);
		error_clear();
		return bad ? "expected [USER@]HOST[:PORT][*SLOTS], separated by commas, each host once"
			   : NULL;
	}
	case T_PLATFORM: {
		const char *slash = strchr(v, '/');
		return !slash || slash == v || !slash[1] ? "expected OS/ARCH[/VARIANT], like linux/amd64" : NULL;
	}
	}
	return NULL;
}

/* -------------------------------------------------------------- reading */

static void add_entry(struct config *cfg, const char *section, const char *key,
		      const char *value, int line, int section_line)
{
	if (cfg->nentries == cfg->alloc_entries) {
		cfg->alloc_entries = cfg->alloc_entries ? 2 * cfg->alloc_entries : 32;
		cfg->entries = xrealloc(cfg->entries, cfg->alloc_entries * sizeof(*cfg->entries));
	}
	struct cfg_entry *e = &cfg->entries[cfg->nentries++];
	e->section = xstrdup(section);
	e->key = xstrdup(key);
	e->value = xstrdup(value);
	e->line = line;
	e->section_line = section_line;
}

/*
 * Debian's inih is built without line numbers in its handler, so the
 * reader counts them: inih asks for one line at a time (a long line may
 * come in pieces; a new line starts after a piece that ended with '\n').
 */
struct ini_reading {
	FILE *f;
	struct config *cfg;
	int line;
	int at_line_start;
	int section_line;
};

static char *read_ini_line(char *str, int num, void *stream)
{
	struct ini_reading *r = stream;
	char *got = fgets(str, num, r->f);
	if (!got)
		return NULL;
	if (r->at_line_start) {
		r->line++;
		if (got[strspn(got, " \t")] == '[')
			r->section_line = r->line;
	}
	size_t n = strlen(got);
	r->at_line_start = n > 0 && got[n - 1] == '\n';
	return got;
}

static int on_ini_entry(void *user, const char *section, const char *name, const char *value)
{
	struct ini_reading *r = user;
	if (!name)	/* a section header alone, when inih reports those */
		return 1;
	add_entry(r->cfg, section, name, value ? value : "", r->line, r->section_line);
	return 1;
}

int config_search_paths(struct strvec *out, const char *file)
{
	const char *env = getenv("PYSTRIB_CONFIG");
	const char *xdg = getenv("XDG_CONFIG_HOME");

	if (file) {
		strvec_push(out, file);
		return 1;
	}
	if (env && *env) {
		strvec_push(out, env);
		return 1;
	}
	strvec_push(out, "pystrib.ini");
	/* A relative XDG_CONFIG_HOME is to be ignored (the XDG spec). */
	if (xdg && *xdg == '/')
		strvec_pushf(out, "%s/pystrib/config.ini", xdg);
	else
		strvec_push_nodup(out, expand_home("~/.config/pystrib/config.ini"));
	return 0;
}

/* The file to read (owned by the caller), and whether it must exist. */
static char *find_config_file(const char *explicit, int *must_exist)
{
	struct strvec paths = STRVEC_INIT;
	char *path;
	size_t i = 0;

	*must_exist = config_search_paths(&paths, explicit);
	while (!*must_exist && i + 1 < paths.nr && access(paths.v[i], F_OK) != 0)
		i++;
	path = xstrdup(paths.v[i]);
	strvec_release(&paths);
	return path;
}

/* Warns about sections and keys pystrib does not know (typos, mostly). */
static void warn_unknown(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->nentries; i++) {
		const struct cfg_entry *e = &cfg->entries[i];
		char *base;
		const char *sub;
		split_section(e->section, &base, &sub);
		int known_section = 0;
		for (size_t s = 0; s < ARRAY_SIZE(sections); s++)
			if (!strcmp(base, sections[s]) && (!sub || (!strcmp(base, "remote") && *sub)))
				known_section = 1;
		if (!known_section) {
			/* once per section, at its header */
			int first = 1;
			for (size_t j = 0; j < i; j++)
				if (cfg->entries[j].section_line == e->section_line)
					first = 0;
			const char *near = closest_word(base, sections, ARRAY_SIZE(sections));
			if (first)
				log_warn("%s:%d: unknown section '[%s]'%s%s%s", cfg->file, e->section_line,
					 e->section, near ? "; did you mean '[" : "", near ? near : "",
					 near ? "]'?" : "");
		} else if (key_index(base, e->key) < 0) {
			const char *near = closest_key(base, e->key);
			log_warn("%s:%d: unknown key '%s' in [%s]%s%s%s", cfg->file, e->line, e->key,
				 e->section, near ? "; did you mean '" : "", near ? near : "",
				 near ? "'?" : "");
		}
		free(base);
	}
}

static int file_has_password(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->nentries; i++)
		if (!strcmp(cfg->entries[i].section, "registry") &&
		    !strcmp(cfg->entries[i].key, "password") && *cfg->entries[i].value)
			return 1;
	return 0;
}

static int read_file(struct config *cfg, const char *explicit)
{
	int must_exist;
	char *path = find_config_file(explicit, &must_exist);
	int ret = -1;

	FILE *f = fopen(path, "r");
	if (!f) {
		if (!must_exist && errno == ENOENT) {
			ret = 0;
			goto out;
		}
		error_set(PS_EXIT_USAGE, "cannot read config file '%s': %s", path, strerror(errno));
		if (errno == ENOENT)
			error_hint("copy config.ini.example to it, or point -c / PYSTRIB_CONFIG at an existing file");
		goto out;
	}
	cfg->file = xstrdup(path);
	struct ini_reading reading = { f, cfg, 0, 1, 0 };
	int r = ini_parse_stream(read_ini_line, &reading, on_ini_entry, &reading);
	if (r > 0) {
		error_set(PS_EXIT_USAGE, "%s:%d: cannot parse this line", path, r);
		error_hint("lines are '[section]', 'key = value' or comments starting with ';' or '#'");
	} else if (r < 0) {
		error_set(PS_EXIT_USAGE, "cannot read config file '%s'", path);
	} else {
		ret = 0;
	}
	if (ret == 0) {
		struct stat st;
		if (file_has_password(cfg) && fstat(fileno(f), &st) == 0 && (st.st_mode & 077))
			log_warn("%s holds a password and is readable by other users; run 'chmod 600 %s'"
				 " or use password_env / password_file", path, path);
		warn_unknown(cfg);
	}
	fclose(f);
out:
	free(path);
	return ret;
}

/* ------------------------------------------------------------ resolving */

static void set_val(struct cfg_val *v, const char *value, char *origin)
{
	free(v->value);
	free(v->origin);
	v->value = value ? xstrdup(value) : NULL;
	v->origin = origin;
}

static int validate_val(size_t i, const struct cfg_val *v)
{
	if (!v->value)
		return 0;
	const char *why = check_value(&keys[i], v->value);
	if (!why)
		return 0;
	return error_set(PS_EXIT_USAGE, "invalid %s.%s '%s' (%s): %s", keys[i].section,
			 keys[i].key, v->value, v->origin, why);
}

static const struct cfg_entry *file_entry(const struct config *cfg, const char *section,
					  const char *key)
{
	const struct cfg_entry *found = NULL;
	for (size_t i = 0; i < cfg->nentries; i++)
		if (!strcmp(cfg->entries[i].section, section) && !strcmp(cfg->entries[i].key, key))
			found = &cfg->entries[i];	/* the last one wins, as in git config */
	return found;
}

static int section_exists(const struct config *cfg, const char *section)
{
	for (size_t i = 0; i < cfg->nentries; i++)
		if (!strcmp(cfg->entries[i].section, section))
			return 1;
	return 0;
}

static void env_name(struct buf *b, const struct cfg_key *k)
{
	buf_addf(b, "PYSTRIB_%s_%s", k->section, k->key);
	for (size_t i = 0; i < b->len; i++)
		b->ptr[i] = (char)toupper((unsigned char)b->ptr[i]);
}

static void take_from_file(struct config *cfg, size_t i)
{
	const struct cfg_key *k = &keys[i];
	const struct cfg_entry *e = file_entry(cfg, k->section, k->key);
	if (cfg->remote_name && !strcmp(k->section, "remote")) {
		char *named = xstrfmt("remote.%s", cfg->remote_name);
		const struct cfg_entry *ne = file_entry(cfg, named, k->key);
		if (ne)
			e = ne;
		free(named);
	}
	if (e)
		set_val(&cfg->vals[i], e->value, xstrfmt("%s:%d", cfg->file, e->line));
}

static void take_from_env(struct config *cfg, size_t i)
{
	struct buf name = BUF_INIT;
	env_name(&name, &keys[i]);
	const char *v = getenv(name.ptr);
	if (v)
		set_val(&cfg->vals[i], v, xstrfmt("environment %s", name.ptr));
	buf_release(&name);
}

static const char *str_or_null(const struct cfg_val *v)
{
	return v->value && *v->value ? v->value : NULL;
}

static long int_of(const struct cfg_val *v)
{
	long n = 0;
	if (v->value)
		parse_long(v->value, -(1L << 40), 1L << 40, &n);
	return n;
}

/* Fills the typed fields from the resolved values (already validated). */
static void derive(struct config *cfg)
{
	const struct cfg_val *v = cfg->vals;
	int b = 0;
#define S(sec, key) str_or_null(&v[key_index(sec, key)])
#define I(sec, key) int_of(&v[key_index(sec, key)])
	cfg->registry.url = S("registry", "url");
	cfg->registry.repository = S("registry", "repository");
	cfg->registry.username = S("registry", "username");
	cfg->registry.password_env = S("registry", "password_env");
	cfg->registry.password_file = S("registry", "password_file");
	cfg->registry.password = S("registry", "password");
	cfg->registry.ca_file = S("registry", "ca_file");
	const char *ins = S("registry", "insecure");
	cfg->registry.insecure = ins && is_bool_word(ins, &b) ? b : 0;
	cfg->image.base = S("image", "base");
	cfg->image.platform = S("image", "platform");
	cfg->remote.name = cfg->remote_name;
	cfg->remote.host = S("remote", "host");
	cfg->remote.port = (int)I("remote", "port");
	cfg->remote.user = S("remote", "user");
	cfg->remote.identity = S("remote", "identity");
	cfg->remote.known_hosts = S("remote", "known_hosts");
	cfg->remote.workdir = S("remote", "workdir");
	const char *rt = S("remote", "runtime");
	cfg->remote.runtime = !rt || !strcmp(rt, "docker") ? RUNTIME_DOCKER
			    : !strcmp(rt, "podman") ? RUNTIME_PODMAN : RUNTIME_NONE;
	cfg->remote.gpus = S("remote", "gpus");
	if (cfg->remote.gpus && !strcmp(cfg->remote.gpus, "none"))
		cfg->remote.gpus = NULL;
	cfg->remote.mpirun_args = S("remote", "mpirun_args");
	cfg->remote.pull_registry = S("remote", "pull_registry");
	cfg->remote.python = S("remote", "python");
	cfg->remote.setup = S("remote", "setup");
	cfg->remote.reconnect_timeout = (int)I("remote", "reconnect_timeout");
	cfg->remote.docker_socket = S("remote", "docker_socket");
	const char *sched = S("remote", "scheduler");
	cfg->remote.scheduler = sched && !strcmp(sched, "slurm") ? SCHEDULER_SLURM : SCHEDULER_NONE;
	cfg->remote.hosts = S("remote", "hosts");
	cfg->slurm.partition = S("slurm", "partition");
	cfg->slurm.account = S("slurm", "account");
	cfg->slurm.time = S("slurm", "time");
	cfg->slurm.nodes = (int)I("slurm", "nodes");
	cfg->slurm.ntasks_per_node = (int)I("slurm", "ntasks_per_node");
	cfg->slurm.gpus_per_node = (int)I("slurm", "gpus_per_node");
	cfg->slurm.extra = S("slurm", "extra");
	cfg->slurm.shared_dir = S("slurm", "shared_dir");
	cfg->job.np = (int)I("job", "np");
	cfg->job.timeout = (int)I("job", "timeout");
	cfg->job.results = S("job", "results");
	cfg->session.idle_timeout = (int)I("session", "idle_timeout");
#undef S
#undef I
}

static void warn_insecure(const struct config *cfg)
{
	const char *url = cfg->registry.url;
	if (!url || host_is_loopback(url))
		return;
	if (cfg->registry.insecure)
		log_warn("registry.insecure is set for '%s', which is not a loopback address: "
			 "images and credentials can be read or changed on the way", url);
}

static const char *list_remotes(const struct config *cfg, struct buf *out)
{
	const char **names = config_remote_names(cfg);
	for (size_t i = 0; names[i]; i++)
		buf_addf(out, "%s%s", i ? ", " : "", names[i]);
	free(names);
	return out->len ? out->ptr : "none";
}

void config_print_searched(FILE *out, const char *prefix, const char *file)
{
	struct strvec paths = STRVEC_INIT;
	char *target = config_init_path(file);

	config_search_paths(&paths, file);
	fprintf(out, "%sno config file; looked for, in order:\n", prefix);
	for (size_t i = 0; i < paths.nr; i++)
		fprintf(out, "%s  %s%s\n", prefix, paths.v[i][0] == '/' ? "" : "./", paths.v[i]);
	fprintf(out, "%srun 'pystrib config init' to write a starter '%s', or copy"
		" config.ini.example (every key, documented) to one of them\n", prefix, target);
	free(target);
	strvec_release(&paths);
}

int config_load(struct config *cfg, const char *file, const char *remote_name)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->vals = xcalloc(NKEYS, sizeof(*cfg->vals));
	if (remote_name)
		cfg->remote_name = xstrdup(remote_name);
	for (size_t i = 0; i < NKEYS; i++)
		set_val(&cfg->vals[i], keys[i].def, xstrdup("default"));

	if (read_file(cfg, file) < 0)
		return -1;

	if (remote_name) {
		char *section = xstrfmt("remote.%s", remote_name);
		int exists = section_exists(cfg, section);
		free(section);
		if (!exists) {
			struct buf names = BUF_INIT;
			error_set(PS_EXIT_USAGE, "no remote named '%s' in %s (configured: %s)",
				  remote_name, cfg->file ? cfg->file : "any config file",
				  list_remotes(cfg, &names));
			buf_release(&names);
			return error_hint("add a [remote.%s] section, or pass --host", remote_name);
		}
	}

	for (size_t i = 0; i < NKEYS; i++) {
		take_from_file(cfg, i);
		take_from_env(cfg, i);
		if (validate_val(i, &cfg->vals[i]) < 0)
			return -1;
	}
	derive(cfg);
	warn_insecure(cfg);
	return 0;
}

int config_set(struct config *cfg, const char *name, const char *value, const char *origin)
{
	int i = name_index(name);
	if (i < 0)
		return error_set(PS_EXIT_USAGE, "internal error: unknown setting '%s'", name);
	struct cfg_val v = { (char *)value, (char *)origin };
	if (validate_val((size_t)i, &v) < 0)
		return -1;
	set_val(&cfg->vals[i], value, xstrdup(origin));
	derive(cfg);
	return 0;
}

const char *config_get(const struct config *cfg, const char *name)
{
	int i = name_index(name);
	return i < 0 ? NULL : cfg->vals[i].value;
}

const char *config_origin(const struct config *cfg, const char *name)
{
	int i = name_index(name);
	return i < 0 ? NULL : cfg->vals[i].origin;
}

const char **config_remote_names(const struct config *cfg)
{
	const char **names = xcalloc(cfg->nentries + 1, sizeof(*names));
	size_t n = 0;
	for (size_t i = 0; i < cfg->nentries; i++) {
		const char *s = cfg->entries[i].section;
		if (strncmp(s, "remote.", 7) || !s[7])
			continue;
		size_t j;
		for (j = 0; j < n; j++)
			if (!strcmp(names[j], s + 7))
				break;
		if (j == n)
			names[n++] = s + 7;
	}
	return names;
}

void config_release(struct config *cfg)
{
	for (size_t i = 0; i < cfg->nentries; i++) {
		free(cfg->entries[i].section);
		free(cfg->entries[i].key);
		free(cfg->entries[i].value);
	}
	free(cfg->entries);
	if (cfg->vals)
		for (size_t i = 0; i < NKEYS; i++) {
			free(cfg->vals[i].value);
			free(cfg->vals[i].origin);
		}
	free(cfg->vals);
	free(cfg->file);
	free(cfg->remote_name);
	memset(cfg, 0, sizeof(*cfg));
}

void config_show(const struct config *cfg, FILE *out, int json)
{
	json_t *root = json ? json_object() : NULL;
	if (!json) {
		fprintf(out, "# config file: %s\n", cfg->file ? cfg->file : "(none)");
		/* No file: a file given (-c, $PYSTRIB_CONFIG) would have had to exist. */
		if (!cfg->file)
			config_print_searched(out, "# ", NULL);
		fprintf(out, "# remote: %s\n", cfg->remote_name ? cfg->remote_name : "(default)");
	}
	for (size_t i = 0; i < NKEYS; i++) {
		const struct cfg_val *v = &cfg->vals[i];
		const char *shown = !v->value ? NULL : (keys[i].flags & F_SECRET) ? "***" : v->value;
		char *name = xstrfmt("%s.%s", keys[i].section, keys[i].key);
		if (json) {
			json_object_set_new(root, name, json_pack("{s:s?,s:s}", "value", shown,
								  "origin", v->origin));
		} else {
			char *lhs = xstrfmt("%s = %s", name, shown ? shown : "");
			fprintf(out, "%-44s ; %s\n", lhs, shown ? v->origin : "unset");
			free(lhs);
		}
		free(name);
	}
	if (json) {
		json_t *wrap = json_pack("{s:s?,s:s?,s:o}", "file", cfg->file, "remote",
					 cfg->remote_name, "settings", root);
		if (!cfg->file) {
			struct strvec paths = STRVEC_INIT;
			json_t *searched = json_array();
			config_search_paths(&paths, NULL);
			for (size_t i = 0; i < paths.nr; i++)
				json_array_append_new(searched, json_string(paths.v[i]));
			json_object_set_new(wrap, "searched", searched);
			strvec_release(&paths);
		}
		json_dumpf(wrap, out, JSON_INDENT(2));
		fputc('\n', out);
		json_decref(wrap);
	}
}

int host_is_loopback(const char *s)
{
	const char *p = strstr(s, "://");
	p = p ? p + 3 : s;
	const char *at = strchr(p, '@');
	const char *slash = strchr(p, '/');
	if (at && (!slash || at < slash))
		p = at + 1;
	size_t n;
	if (*p == '[') {
		const char *end = strchr(p, ']');
		if (!end)
			return 0;
		p++;
		n = (size_t)(end - p);
	} else {
		n = strcspn(p, ":/");
	}
	if ((n == 9 && !strncasecmp(p, "localhost", 9)) || (n == 3 && !strncmp(p, "::1", 3)))
		return 1;
	if (n >= 4 && !strncmp(p, "127.", 4)) {
		for (size_t i = 4; i < n; i++)
			if (!isdigit((unsigned char)p[i]) && p[i] != '.')
				return 0;
		return 1;
	}
	return 0;
}
