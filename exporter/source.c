/* exporter/source.c - releasing what a source reader opened and allocated
 * (each reader fills struct source; source_free is the one way to let it
 * go), and the per-layer tensor-name parsing the GGUF and Hugging Face
 * readers share. */
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

/* Parses "<prefix>N.<suffix>": N decimal without leading zeros and at most
 * UINT32_MAX (a layer index must fit the header's 32-bit n_layers). Returns
 * the suffix with *layer set, or NULL (then *layer is untouched). */
const char *layer_suffix(const char *name, const char *prefix, uint64_t *layer)
{
    size_t n_prefix = strlen(prefix);
    if (strncmp(name, prefix, n_prefix))
        return NULL;
    const char *p = name + n_prefix;
    if (*p < '0' || *p > '9' || (*p == '0' && p[1] >= '0' && p[1] <= '9'))
        return NULL;
    uint64_t n = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        n = n * 10 + (uint64_t)(*p - '0');
        if (n > UINT32_MAX)
            return NULL;
    }
    if (*p != '.')
        return NULL;
    *layer = n;
    return p + 1;
}

uint64_t dim_value(const struct hearth_header *c, uint8_t ref)
{
    switch (ref) {
    case D_DIM:
        return c->dim;
    case D_HIDDEN:
        return c->hidden_dim;
    case D_Q:
        return (uint64_t)c->n_heads * c->head_dim;
    case D_KV:
        return (uint64_t)c->n_kv_heads * c->head_dim;
    case D_VOCAB:
        return c->vocab_size;
    case D_HALF_HEAD:
        return c->head_dim / 2;
    default:
        return 1;
    }
}
