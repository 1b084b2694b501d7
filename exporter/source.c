/* exporter/source.c - releasing what a source reader opened and allocated.
 * Each reader fills struct source; this is the one way to let it go. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "source.h"

void source_free(struct source *src)
{
    for (int i = 0; i < src->n_fds; i++)
        close(src->fds[i]);
    free(src->tensors);
    vocab_free(&src->vocab);
    memset(src, 0, sizeof *src);
}
