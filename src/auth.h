#ifndef PYSTRIB_AUTH_H
#define PYSTRIB_AUTH_H

#include <stddef.h>

#include "config.h"

/*
 * Registry authentication, without the HTTP: parsing what the registry
 * says (WWW-Authenticate challenges, token responses) and finding the
 * user's credentials. registry.c does the requests.
 *
 * Secrets (passwords, identity tokens, bearer tokens) are wiped when
 * released and never put into an error message or a log line.
 */

/* One challenge of a WWW-Authenticate header. */
struct auth_challenge {
	char *scheme;		/* "bearer" or "basic" (lowercased) */
	char *realm;		/* may be NULL */
	char *service;		/* may be NULL */
	char *scope;		/* may be NULL */
	char *error;		/* error="insufficient_scope", or NULL */
};

/*
 * Parses the first challenge of a WWW-Authenticate value
 * (`Bearer realm="https://auth",service="reg",scope="repository:a:pull"`).
 * Parameters are case-insensitive names with quoted or token values;
 * unknown ones are skipped. 0, or -1 (no error set) when it is not a
 * challenge. Release with auth_challenge_release.
 */
int auth_challenge_parse(struct auth_challenge *c, const char *header);
void auth_challenge_release(struct auth_challenge *c);

struct credentials {
	char *username;
	char *password;
	char *identity_token;	/* an OAuth2 refresh token from `docker login` (username "<token>") */
	const char *origin;	/* "the config", "~/.docker/config.json", "docker-credential-NAME" */
};

/*
 * The credentials for `registry` (a host[:port], as in the image reference):
 *   - when rc is given (the configured registry): [registry] username with
 *     the password from password_env, else password_file, else password;
 *   - else (or when the config sets no username) the docker config
 *     ($DOCKER_CONFIG/config.json, else ~/.docker/config.json): credHelpers
 *     for that host, else credsStore, else auths (an "auth" base64 of
 *     user:password, or username/password, or identitytoken), through the
 *     docker-credential-* helper protocol for the first two.
 * Returns 0 with *out filled, 1 when there are none (anonymous), -1 with
 * the error set (PS_EXIT_USAGE: a named password source is unreadable, a
 * docker config that is not JSON; PS_EXIT_REGISTRY: a helper that fails).
 */
int auth_find_credentials(const struct registry_config *rc, const char *registry,
			  struct credentials *out);

/*
 * The same lookup in a docker config.json held in memory (for tests and
 * fuzzing): 0 with *out filled, 1 when nothing is there for registry, or
 * 2 with *helper set (caller frees) when a credential helper must be asked;
 * -1 with the error set for malformed JSON or a bad "auth" value.
 */
int auth_docker_config_lookup(const char *json, size_t len, const char *registry,
			      struct credentials *out, char **helper);

/*
 * Runs `docker-credential-HELPER get` with the server on stdin and parses
 * its {"Username","Secret"} answer. 0, 1 when it has none for the server,
 * -1 with the error set.
 */
int auth_credential_helper(const char *helper, const char *server, struct credentials *out);

/* Wipes and frees the contents. */
void credentials_release(struct credentials *c);

/*
 * The token in a token service's JSON answer ("token", else
 * "access_token"). 0 with *token set (caller wipes and frees), -1 if none.
 * *expires_in gets its lifetime in seconds: "expires_in" when it is a
 * positive number, else the 60 the token specification gives as default.
 */
int auth_token_parse(const char *body, size_t len, char **token, long *expires_in);

/* Overwrites a secret string with zeroes and frees it (NULL is fine). */
void secret_free(char *s);
/* Overwrites n bytes of a secret with zeroes, in a way the compiler keeps. */
void secret_wipe(void *p, size_t n);

#endif
