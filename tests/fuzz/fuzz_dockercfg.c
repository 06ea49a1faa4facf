/*
 * libFuzzer harness for auth_docker_config_lookup: any bytes as a docker
 * config.json, looked up for a host the first byte picks. Whatever is
 * found is complete (a password or an identity token; a helper name), and
 * the outputs stay untouched when nothing is.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const hosts[] = { "docker.io", "127.0.0.1:5000", "ghcr.io", "a" };
	struct credentials c = { 0 };
	char *helper = NULL;

	if (!size)
		return 0;
	int rc = auth_docker_config_lookup((const char *)data + 1, size - 1, hosts[data[0] & 3],
					   &c, &helper);
	switch (rc) {
	case 0:
		if ((!c.password && !c.identity_token) || helper)
			abort();
		break;
	case 2:
		if (!helper || !*helper || c.username || c.password)
			abort();
		break;
	case 1:
		if (helper || c.username || c.password || c.identity_token)
			abort();
		break;
	case -1:
		if (helper || c.username || c.password || !*error_message())
			abort();
		error_clear();
		break;
	default:
		abort();
	}
	credentials_release(&c);
	free(helper);
	return 0;
}
