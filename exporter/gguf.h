/* exporter/gguf.h - the GGUF reader's entry points beyond gguf_read (which
 * source.h declares with the other model readers). */
#ifndef HEARTH_EXPORT_GGUF_H
#define HEARTH_EXPORT_GGUF_H

#include "source.h"

/* Reads only the vocabulary (tokenizer.ggml.*) of a GGUF file, which may
 * hold no tensors at all (llama.cpp's models/ggml-vocab-*.gguf). bos_id and
 * eos_id are set as gguf_read sets them. Returns 0, or -1 with err set. */
int gguf_read_vocab(const char *path, struct vocab *v, char *err);

#endif
