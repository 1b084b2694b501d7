/* threads.c - the thread pool (threads.h): persistent pthreads woken by a
 * generation counter. A worker spins on the counter for a short while (a
 * decode step issues hundreds of pool_run calls a second, and waking a
 * sleeping thread costs tens of microseconds), then sleeps on a condition
 * variable. The mutex orders every sleep against every wake-up, so no
 * wake-up is lost. */
#include "threads.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

#define SPIN_ITERATIONS 20000

struct thread_pool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t mutex;
    pthread_cond_t wake, done;
    atomic_uint_fast64_t generation; /* incremented by each pool_run */
    atomic_int remaining;            /* workers still running the current call */
    atomic_int stop;
    pool_fn fn;
    void *ctx;
};

struct worker_arg {
    struct thread_pool *pool;
    int index;
};

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static uint64_t wait_for_generation(struct thread_pool *p, uint64_t seen)
{
    for (int i = 0; i < SPIN_ITERATIONS; i++) {
        uint64_t g = atomic_load_explicit(&p->generation, memory_order_acquire);
        if (g != seen)
            return g;
        cpu_relax();
    }
    pthread_mutex_lock(&p->mutex);
    while (atomic_load(&p->generation) == seen)
        pthread_cond_wait(&p->wake, &p->mutex);
    uint64_t g = atomic_load(&p->generation);
    pthread_mutex_unlock(&p->mutex);
    return g;
}

static void *worker_main(void *arg)
{
    struct worker_arg *w = arg;
    struct thread_pool *p = w->pool;
    int index = w->index;
    free(w);
    uint64_t seen = 0;
    for (;;) {
        seen = wait_for_generation(p, seen);
        if (atomic_load(&p->stop))
            return NULL;
        p->fn(p->ctx, index, p->n_threads);
        if (atomic_fetch_sub_explicit(&p->remaining, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mutex);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mutex);
        }
    }
}

static void wake_all(struct thread_pool *p)
{
    pthread_mutex_lock(&p->mutex);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mutex);
}

struct thread_pool *pool_create(int n_threads, char *err)
{
    if (n_threads < 1 || n_threads > POOL_MAX_THREADS) {
        fail(err, "thread count %d is outside 1..%d", n_threads, POOL_MAX_THREADS);
        return NULL;
    }
    struct thread_pool *p = calloc(1, sizeof *p);
    if (!p || !(p->threads = calloc((size_t)n_threads, sizeof *p->threads))) {
        free(p);
        fail(err, "out of memory for a thread pool");
        return NULL;
    }
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mutex, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    for (int i = 1; i < n_threads; i++) {
        struct worker_arg *w = malloc(sizeof *w);
        if (w)
            *w = (struct worker_arg){p, i};
        if (!w || pthread_create(&p->threads[i], NULL, worker_main, w) != 0) {
            free(w);
            p->n_threads = i; /* the ones started so far */
            pool_destroy(p);
            fail(err, "cannot start thread %d of %d", i, n_threads);
            return NULL;
        }
    }
    return p;
}

void pool_destroy(struct thread_pool *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, 1);
    wake_all(p);
    for (int i = 1; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mutex);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p);
}

int pool_size(const struct thread_pool *p)
{
    return p ? p->n_threads : 1;
}

void pool_run(struct thread_pool *p, pool_fn fn, void *ctx)
{
    if (!p || p->n_threads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->remaining, p->n_threads - 1, memory_order_relaxed);
    wake_all(p);
    fn(ctx, 0, p->n_threads);
    for (int i = 0; i < SPIN_ITERATIONS; i++) {
        if (atomic_load_explicit(&p->remaining, memory_order_acquire) == 0)
            return;
        cpu_relax();
    }
    pthread_mutex_lock(&p->mutex);
    while (atomic_load(&p->remaining) > 0)
        pthread_cond_wait(&p->done, &p->mutex);
    pthread_mutex_unlock(&p->mutex);
}

void pool_split(unsigned long long n, int thread, int n_threads, unsigned long long *begin,
                unsigned long long *end)
{
    *begin = n * (unsigned long long)thread / (unsigned long long)n_threads;
    *end = n * (unsigned long long)(thread + 1) / (unsigned long long)n_threads;
}
