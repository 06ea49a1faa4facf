/*
 * libFuzzer harness for the parsers of what a registry says in auth.c:
 * the first byte picks WWW-Authenticate challenge parsing (the rest as a
 * header value) or token-answer parsing (the rest as JSON). A parsed
 * challenge has a lowercase token scheme; a parsed token holds only what
 * may go into an Authorization header.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!size)
		return 0;
	if (data[0] & 1) {
		char *s = xstrndup((const char *)data + 1, size - 1);
		struct auth_challenge c;
		if (auth_challenge_parse(&c, s) == 0) {
			if (!c.scheme || !*c.scheme)
				abort();
			for (const char *p = c.scheme; *p; p++)
				if ((*p >= 'A' && *p <= 'Z') || *p <= ' ' || *p >= 0x7f)
					abort();
			auth_challenge_release(&c);
		}
		free(s);
	} else {
		char *tok = NULL;
		long life = 0;
		if (auth_token_parse((const char *)data + 1, size - 1, &tok, &life) == 0) {
			if (!tok || !*tok || life < 1)
				abort();
			for (const char *p = tok; *p; p++)
				if (*p <= ' ' || *p >= 0x7f)
					abort();
			secret_free(tok);
		} else if (tok) {
			abort();
		}
	}
	return 0;
}
