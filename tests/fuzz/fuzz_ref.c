/*
 * libFuzzer harness for ref.c: any byte string as an image reference.
 * What parses must be valid by the grammar's own checks and survive a
 * round trip through image_ref_string; what fails must leave the output
 * untouched and say why as a usage error.
 *
 *   scripts/fuzz.sh 60      (or build-fuzz/fuzz_ref -max_total_time=60)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "error.h"
#include "ref.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = xstrndup((const char *)data, size);
	struct image_ref r = { 0 }, again = { 0 };

	if (image_ref_parse(&r, s) < 0) {
		if (r.registry || r.repository || r.tag || r.digest || error_kind() != PS_EXIT_USAGE ||
		    !*error_message())
			abort();
		error_clear();
		free(s);
		return 0;
	}
	if (!ref_registry_valid(r.registry) || !ref_repository_valid(r.repository) ||
	    (r.tag && !ref_tag_valid(r.tag)) || (r.digest && !digest_valid(r.digest)) ||
	    (!r.tag && !r.digest))
		abort();
	char *canon = image_ref_string(&r);
	if (image_ref_parse(&again, canon) < 0)
		abort();
	char *canon2 = image_ref_string(&again);
	if (strcmp(canon, canon2) || strcmp(r.registry, again.registry) ||
	    strcmp(r.repository, again.repository))
		abort();
	free(canon);
	free(canon2);
	image_ref_release(&again);
	image_ref_release(&r);
	free(s);
	return 0;
}
