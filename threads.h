/* threads.h - a pool of persistent worker threads, created once.
 *
 * pool_run(p, fn, ctx) calls fn(ctx, i, n) on every thread i in 0..n-1 (the
 * caller is thread 0) and returns when all have finished: one barrier per
 * call. How fn splits its work is up to fn; hearth always uses a fixed
 * partition so results do not depend on timing. Workers spin briefly for
 * the next call, then sleep. A pool of 1 thread runs fn inline. */
#ifndef HEARTH_THREADS_H
#define HEARTH_THREADS_H

#define POOL_MAX_THREADS 256

struct thread_pool;

typedef void (*pool_fn)(void *ctx, int thread, int n_threads);

/* Returns NULL with err set if threads cannot be created. */
struct thread_pool *pool_create(int n_threads, char *err);
void pool_destroy(struct thread_pool *p);
int pool_size(const struct thread_pool *p);
void pool_run(struct thread_pool *p, pool_fn fn, void *ctx);

/* The share [begin, end) of n items that thread i of n_threads gets in a
 * fixed, contiguous partition. */
void pool_split(unsigned long long n, int thread, int n_threads, unsigned long long *begin,
                unsigned long long *end);

#endif
