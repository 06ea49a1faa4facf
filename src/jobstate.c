#include <string.h>

#include "jobstate.h"

#define NAME(s) #s,
const char *const job_outcomes[] = { JOB_OUTCOMES(NAME) NULL };
#undef NAME

int job_state_outcome(const char *state)
{
	for (size_t i = 0; state && job_outcomes[i]; i++)
		if (!strcmp(state, job_outcomes[i]))
			return 1;
	return 0;
}

int job_state_final(const char *state)
{
	return job_state_outcome(state) || (state && !strcmp(state, JOB_STATE_LOST));
}
