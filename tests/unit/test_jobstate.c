/*
 * Unit tests for jobstate.h: the final states in C, and that the remote
 * scripts list the same ones. The scripts are read from the source tree
 * ($PYSTRIB_SOURCE_DIR, set by CTest; else found from this file's path):
 *
 * - src/remote/jobctl.sh's final() lists exactly the outcomes (succeeded
 *   failed timeout cancelled): the states a job script writes. Not lost,
 *   which no job script writes.
 * - every case pattern of src/remote/follow.sh that names a final state
 *   lists exactly the outcomes, and follow.sh says `E lost` itself for a
 *   job directory that is gone.
 * - in C, job_state_final is the outcomes and lost; job_state_outcome the
 *   outcomes alone.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "jobstate.h"
#include "util.h"

#define MAX_PATTERNS 32

/* The script's text: $PYSTRIB_SOURCE_DIR/src/remote/NAME, else beside this file's tree. */
static void read_script(struct buf *b, const char *name)
{
	const char *src = getenv("PYSTRIB_SOURCE_DIR");
	char *path;

	if (src && *src) {
		path = xstrfmt("%s/src/remote/%s", src, name);
	} else {
		const char *here = __FILE__;
		const char *tests = strstr(here, "tests/unit/");
		assert_non_null(tests);
		path = xstrfmt("%.*ssrc/remote/%s", (int)(tests - here), here, name);
	}
	buf_reset(b);
	if (buf_read_file(b, path) < 0)
		fail_msg("cannot read '%s'", path);
	free(path);
}

static int is_final_word(const char *w, size_t n)
{
	char word[64];
	if (n >= sizeof(word))
		return 0;
	memcpy(word, w, n);
	word[n] = 0;
	return job_state_final(word);
}

/*
 * The case patterns ("a|b|c" before a ')') of the non-comment lines of
 * text from..to that name at least one final state, as strings (free
 * each). Returns how many.
 */
static size_t final_patterns(const char *from, const char *to, char **out)
{
	size_t n = 0;

	for (const char *line = from; line < to; ) {
		const char *end = memchr(line, '\n', (size_t)(to - line));
		const char *p = line;
		if (!end)
			end = to;
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if (*p == '#')
			p = end;
		for (const char *q = p; q < end; q++) {
			const char *s = q;
			int named = 0;
			if (*q != ')')
				continue;
			while (s > p && ((s[-1] >= 'a' && s[-1] <= 'z') || s[-1] == '|'))
				s--;
			for (const char *w = s; w < q; ) {
				size_t len = strcspn(w, "|)");
				named |= is_final_word(w, len);
				w += len + (w[len] == '|');
			}
			if (named) {
				assert_true(n < MAX_PATTERNS);
				out[n++] = xstrndup(s, (size_t)(q - s));
			}
		}
		line = end + 1;
	}
	return n;
}

/* Fails unless pattern ("a|b|c") holds each outcome once and nothing else. */
static void assert_outcomes(const char *script, const char *pattern)
{
	size_t n = 0, count = 0;
	for (const char *w = pattern; *w; ) {
		size_t len = strcspn(w, "|");
		char *word = xstrndup(w, len);
		if (!job_state_outcome(word))
			fail_msg("%s: '%s' lists '%s', which is not an outcome (jobstate.h)", script,
				 pattern, word);
		free(word);
		count++;
		w += len + (w[len] == '|');
	}
	while (job_outcomes[n])
		n++;
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(job_outcomes[i]);
		int found = 0;
		for (const char *w = pattern; *w; ) {
			size_t l = strcspn(w, "|");
			found += l == len && !strncmp(w, job_outcomes[i], len);
			w += l + (w[l] == '|');
		}
		if (found != 1)
			fail_msg("%s: '%s' lists '%s' %d times, not once", script, pattern,
				 job_outcomes[i], found);
	}
	assert_int_equal(count, n);
}

static void test_c_states(void **state)
{
	(void)state;
	static const char *const not_final[] = { "submitted", "pulling", "running", "", "Lost",
						 "succeeded ", "cancel" };
	size_t n = 0;

	for (; job_outcomes[n]; n++) {
		assert_true(job_state_outcome(job_outcomes[n]));
		assert_true(job_state_final(job_outcomes[n]));
	}
	assert_int_equal(n, 4);
	assert_true(job_state_final(JOB_STATE_LOST));
	assert_false(job_state_outcome(JOB_STATE_LOST));
	assert_false(job_state_final(NULL));
	assert_false(job_state_outcome(NULL));
	for (size_t i = 0; i < ARRAY_SIZE(not_final); i++)
		assert_false(job_state_final(not_final[i]));
}

static void test_jobctl_final(void **state)
{
	(void)state;
	struct buf b = BUF_INIT;
	char *pats[MAX_PATTERNS];
	const char *def, *end;
	size_t n;

	read_script(&b, "jobctl.sh");
	def = strstr(b.ptr, "\nfinal()");
	if (!def)
		fail_msg("jobctl.sh defines no final()");
	def++;
	/* The function is one line, or ends at the first line that is "}". */
	end = def + strcspn(def, "\n");
	if (!memchr(def, '}', (size_t)(end - def)))
		end = strstr(def, "\n}");
	assert_non_null(end);
	n = final_patterns(def, end, pats);
	if (n != 1)
		fail_msg("jobctl.sh's final() has %zu case patterns naming final states, not 1", n);
	assert_outcomes("jobctl.sh final()", pats[0]);
	free(pats[0]);
	buf_release(&b);
}

static void test_follow_patterns(void **state)
{
	(void)state;
	struct buf b = BUF_INIT;
	char *pats[MAX_PATTERNS];
	size_t n;

	read_script(&b, "follow.sh");
	n = final_patterns(b.ptr, b.ptr + b.len, pats);
	if (!n)
		fail_msg("follow.sh has no case pattern naming the final states");
	for (size_t i = 0; i < n; i++) {
		assert_outcomes("follow.sh", pats[i]);
		free(pats[i]);
	}
	/* lost is said by follow.sh itself, for a directory that is gone. */
	if (!strstr(b.ptr, "echo \"E " JOB_STATE_LOST " "))
		fail_msg("follow.sh writes no 'E %s' line", JOB_STATE_LOST);
	buf_release(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_c_states),
		cmocka_unit_test(test_jobctl_final),
		cmocka_unit_test(test_follow_patterns),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
