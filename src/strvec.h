#ifndef PYSTRIB_STRVEC_H
#define PYSTRIB_STRVEC_H

#include <stddef.h>

#include "util.h"

/*
 * A growable array of owned strings, after git's strvec: v[0..nr) are the
 * strings and v[nr] is NULL, so v can go where an argv or an environment
 * goes. v is never NULL (an empty vector points at a static { NULL }), so
 * code may walk it without checking. Every string in it is the vector's.
 */
struct strvec {
	char **v;
	size_t nr, alloc;
};

extern char *strvec_empty[];
#define STRVEC_INIT { strvec_empty, 0, 0 }

void strvec_init(struct strvec *s);
/* Appends a copy of str; returns the copy (owned by s). */
const char *strvec_push(struct strvec *s, const char *str);
/* Appends str itself, which s now owns (and frees). */
const char *strvec_push_nodup(struct strvec *s, char *str);
/* Appends a formatted string. */
const char *strvec_pushf(struct strvec *s, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* Sorts by strcmp and drops duplicates, freeing them. */
void strvec_sort_uniq(struct strvec *s);
/*
 * Hands the array over: returns v (NULL-terminated, caller frees each
 * string and the array; never the static empty one) and leaves s empty.
 */
char **strvec_detach(struct strvec *s, size_t *nr);
/* Frees the strings and the array; s is empty and usable again. */
void strvec_release(struct strvec *s);

#endif
