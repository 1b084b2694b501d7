/* exporter/safetensors.h - reads the header of a .safetensors file and
 * validates every tensor entry against the file size.
 *
 * Format (FACTS.md; huggingface/safetensors safetensors/src/tensor.rs):
 * u64 little-endian N, then N bytes of JSON
 * {name: {"dtype", "shape", "data_offsets": [begin, end)}, "__metadata__": {...}},
 * then the data buffer; offsets are relative to the buffer's first byte,
 * arrays are C order, little-endian.
 *
 * What it does not do: read tensor data (callers pread from fd at
 * tensor.offset) or convert types. */
#ifndef HEARTH_SAFETENSORS_H
#define HEARTH_SAFETENSORS_H

#include <stdint.h>

/* The dtypes of safetensors' Dtype enum. Only F32, F16 and BF16 can be
 * exported; the others are known so that messages can name them. */
enum st_dtype {
    ST_BOOL, ST_U8, ST_I8, ST_F8_E5M2, ST_F8_E4M3, ST_I16, ST_U16, ST_F16, ST_BF16,
    ST_I32, ST_U32, ST_F32, ST_F64, ST_I64, ST_U64,
    ST_N_DTYPES
};

#define ST_MAX_DIMS 8u
#define ST_MAX_HEADER_BYTES 100000000ull /* safetensors' own MAX_HEADER_SIZE */

struct st_tensor {
    const char *name;   /* NUL-terminated; valid until st_close */
    uint32_t dtype;     /* enum st_dtype */
    uint32_t n_dims;    /* 0 for a scalar */
    uint64_t shape[ST_MAX_DIMS];
    uint64_t n_elems;   /* product of shape (1 for a scalar) */
    uint64_t offset;    /* absolute byte offset of the data in the file */
    uint64_t n_bytes;   /* == n_elems x element size */
};

struct st_file {
    int fd;                  /* -1 once taken by st_take_fd or closed */
    uint64_t file_bytes;
    uint64_t data_offset;    /* 8 + N */
    struct st_tensor *tensors;
    uint32_t n_tensors;
    struct json_doc *header; /* owns the tensor names */
    const struct st_tensor **by_name; /* tensors sorted by name, for st_find */
};

/* Opens path and validates its header: N <= 100 MB and 8 + N <= file size,
 * the JSON an object of tensor entries (plus "__metadata__", an object of
 * strings), each with a known dtype, at most ST_MAX_DIMS non-negative dims
 * whose product does not overflow, data_offsets [begin, end) with
 * begin <= end <= data size and end - begin == elements x element size, and
 * no two tensors overlapping. Returns 0, or -1 with err naming path, the
 * tensor and the field. */
int st_open(struct st_file *f, const char *path, char *err);
void st_close(struct st_file *f);

/* The tensor called name, or NULL. */
const struct st_tensor *st_find(const struct st_file *f, const char *name);

/* Hands the open descriptor to the caller, who closes it; st_close will not. */
int st_take_fd(struct st_file *f);

const char *st_dtype_name(uint32_t dtype);
uint32_t st_dtype_bytes(uint32_t dtype);
/* HEARTH_F32/F16/BF16 for an exportable dtype, UINT32_MAX otherwise. */
uint32_t st_dtype_to_hearth(uint32_t dtype);

#endif
