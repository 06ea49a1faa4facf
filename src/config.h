#ifndef PYSTRIB_CONFIG_H
#define PYSTRIB_CONFIG_H

#include <stdio.h>

/*
 * Settings, resolved in this order, each later one winning:
 *   built-in default < config file (inih) < environment < command-line flag.
 *
 * The file is the first of: -c FILE, $PYSTRIB_CONFIG, ./pystrib.ini,
 * $XDG_CONFIG_HOME/pystrib/config.ini (~/.config/pystrib/config.ini).
 * The environment variable of a key is PYSTRIB_<SECTION>_<KEY>, upper case
 * (PYSTRIB_REMOTE_HOST). A named remote [remote.NAME] takes its keys from its
 * own section, then from [remote], then the defaults.
 *
 * Every value remembers where it came from (config_origin), so errors can
 * name FILE:LINE and `pystrib config show` can explain itself.
 */

enum runtime { RUNTIME_DOCKER, RUNTIME_PODMAN, RUNTIME_NONE };

/* [remote] scheduler: the job started by pystrib itself, or by Slurm (slurm.h). */
enum scheduler { SCHEDULER_NONE, SCHEDULER_SLURM };

struct registry_config {
	const char *url;		/* "http://127.0.0.1:5000"; NULL if unset */
	const char *repository;		/* "pystrib/cells" */
	const char *username;
	const char *password_env;	/* name of the variable holding the secret */
	const char *password_file;
	const char *password;		/* discouraged: a secret in the file */
	const char *ca_file;
	int insecure;
};

struct image_config {
	const char *base;		/* full reference of the base image */
	const char *platform;		/* "linux/amd64" */
};

struct remote_config {
	const char *name;		/* NULL for the default [remote] */
	const char *host;
	int port;
	const char *user;
	const char *identity;
	const char *known_hosts;
	const char *workdir;		/* "~/.pystrib" */
	enum runtime runtime;
	const char *gpus;		/* NULL, "all", "2" or "0,1" */
	const char *mpirun_args;
	const char *pull_registry;
	const char *python;		/* for runtime none: "python3" */
	const char *setup;		/* shell lines before the job (runtime none) */
	int reconnect_timeout;		/* seconds */
	const char *docker_socket;	/* the engine's API socket; "" or NULL: not used */
	enum scheduler scheduler;
	const char *hosts;		/* one job over several hosts (hosts.h); NULL: host */
};

/* [slurm]: how a job of scheduler slurm is submitted (slurm.h); 0 / NULL: unset. */
struct slurm_config {
	const char *partition;
	const char *account;
	const char *time;		/* sbatch --time; NULL: from --timeout, else Slurm's */
	int nodes;
	int ntasks_per_node;
	int gpus_per_node;
	const char *extra;		/* more sbatch options, shell-quoted words */
	const char *shared_dir;		/* what every node sees; NULL: [remote] workdir */
};

struct job_config {
	int np;
	int timeout;			/* seconds, 0 = none */
	const char *results;		/* "./pystrib-results" */
};

struct session_config {
	int idle_timeout;		/* seconds without a cell before a session stops; 0: never */
};

struct cfg_entry;
struct cfg_val {
	char *value;			/* NULL = unset */
	char *origin;			/* "default", "FILE:LINE", "environment X", "flag --x" */
};

struct config {
	struct registry_config registry;
	struct image_config image;
	struct remote_config remote;
	struct slurm_config slurm;
	struct job_config job;
	struct session_config session;

	/* private to config.c */
	char *file;			/* the file that was read, or NULL */
	char *remote_name;
	struct cfg_entry *entries;	/* every key=value of the file */
	size_t nentries, alloc_entries;
	struct cfg_val *vals;		/* resolved, one per known key */
};

/*
 * Reads defaults, the config file and the environment, for the remote
 * `remote_name` (NULL: the default [remote]). `file` is -c FILE or NULL.
 * Unknown sections and keys are warnings naming FILE:LINE and the closest
 * valid name; invalid values are errors (PS_EXIT_USAGE). 0 or -1; the
 * caller calls config_release() either way.
 */
int config_load(struct config *cfg, const char *file, const char *remote_name);
void config_release(struct config *cfg);

/*
 * Applies a command-line flag: `name` is "section.key" ("job.np"), `origin`
 * names the flag ("--np"). Validated like every other source. 0 or -1.
 */
int config_set(struct config *cfg, const char *name, const char *value,
	       const char *origin);

/* The resolved value and origin of "section.key", or NULL if no such key. */
const char *config_get(const struct config *cfg, const char *name);
const char *config_origin(const struct config *cfg, const char *name);

/*
 * Appends to out the config files config_load(file) looks for, in order:
 * file (-c FILE) alone when given, else $PYSTRIB_CONFIG alone when set,
 * else "pystrib.ini" (in the working directory) and
 * $XDG_CONFIG_HOME/pystrib/config.ini (~/.config/pystrib/config.ini).
 * Returns 1 when the one path must exist (-c or $PYSTRIB_CONFIG), else 0:
 * then the first that exists is read, and none is fine.
 */
struct strvec;
int config_search_paths(struct strvec *out, const char *file);

/*
 * Prints, one per line with the prefix, where config_load(file) looked and
 * what to do: for `config show` and `doctor` when no file was found.
 */
void config_print_searched(FILE *out, const char *prefix, const char *file);

/* ---- config_init.c: `pystrib config init` */

/*
 * Appends the plain host names of ~/.ssh/config's Host lines (no
 * patterns), in order, at most 16. A missing file adds none.
 */
void config_ssh_hosts(struct strvec *hosts);

/*
 * Appends to out a commented starter config that sets what can be found
 * out here: the user ($USER), an identity in ~/.ssh (id_ed25519, id_ecdsa,
 * id_rsa...), and ~/.ssh/config's hosts offered as commented
 * [remote.NAME] sections. remote: write [remote.NAME] rather than
 * [remote] (with host = NAME when ~/.ssh/config knows it). It is valid
 * for config_load as it stands.
 */
struct buf;
void config_starter(struct buf *out, const char *remote);

/* Where `config init` writes: file (-c FILE), else the XDG config file. Caller frees. */
char *config_init_path(const char *file);

/*
 * Writes config_starter's text to path (0600, its directory made 0700).
 * An existing file is PS_EXIT_USAGE unless force. 0 or -1.
 */
int config_init(const char *path, const char *remote, int force);

/* Names of the [remote.NAME] sections in the file, NULL-terminated; free with free(). */
const char **config_remote_names(const struct config *cfg);

/* Prints every effective setting and its origin; secrets as "***". */
void config_show(const struct config *cfg, FILE *out, int json);

/* "docker", "podman", "none". */
const char *runtime_name(enum runtime rt);

/* 1 if the host of a URL or "host:port" is a loopback address or localhost. */
int host_is_loopback(const char *url_or_host);

#endif
