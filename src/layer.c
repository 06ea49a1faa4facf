#include "layer.h"

#include <stdlib.h>
#include <string.h>

void layer_release(struct layer *l)
{
	free(l->path);
	free(l->created_by);
	memset(l, 0, sizeof(*l));
}
