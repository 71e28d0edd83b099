/* threads.c - the persistent thread pool, per-thread scratch, and the library's only global
 * state (thread count, SIMD tier override).
 *
 * Each worker waits for a post to its own mailbox: it spins briefly (low wake-up latency
 * between back-to-back kernels), then sleeps on a condition variable. Tasks are claimed from
 * a shared counter by the caller and the workers alike, so a worker that the OS has not
 * scheduled yet (a loaded machine) delays nothing: the caller runs its task. What a task
 * computes depends only on its index and the task count (set by the kernel), never on the
 * thread that runs it, so results are reproducible for a given thread count.
 * Global state: the pool, the configured thread count and the SIMD override, all here.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qorus.h"

#define QR_MAX_THREADS 64
#define QR_SPIN_NS 200000     /* a worker polls this long after its last task, then sleeps */
#define QR_WAIT_SPIN_NS 50000 /* the caller polls this long for running tasks, then yields */

#if defined(__x86_64__) || defined(__i386__)
#define QR_PAUSE() __builtin_ia32_pause()
#else
#define QR_PAUSE() ((void)0)
#endif

static struct {
    pthread_mutex_t owner;     /* held by the thread running a parallel region */
    pthread_mutex_t mu;        /* guards sleeping workers */
    pthread_cond_t cv;
    pthread_t tid[QR_MAX_THREADS];
    int nworkers;              /* workers started (threads - 1) */
    int nthreads;              /* configured thread count; 0 = not yet read */
    uint32_t region;           /* id of the current parallel region */
    _Atomic uint64_t word;     /* region << 32 | next unclaimed task */
    atomic_int done;           /* tasks of the current region finished */
    _Atomic(qr_task_fn) fn;    /* the current region (valid while it has unfinished tasks) */
    _Atomic(void *) ctx;
    atomic_int ntasks;
    atomic_int sleepers;
    atomic_int quit;
} pool = {.owner = PTHREAD_MUTEX_INITIALIZER, .mu = PTHREAD_MUTEX_INITIALIZER,
            .cv = PTHREAD_COND_INITIALIZER};

/* One mailbox per worker, on its own cache line: a new value means "come and claim tasks". */
static struct { _Alignas(64) atomic_uint go; } mailbox[QR_MAX_THREADS];

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static _Thread_local int tl_in_region;   /* nested calls run serially */

/* ------------------------------------------------------------------ configuration */
static int default_threads(void) {
    const char *env = getenv("QORUS_NUM_THREADS");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end == '\0' && v > 0) return v > QR_MAX_THREADS ? QR_MAX_THREADS : (int)v;
    }
    int n = 0;
#ifdef CPU_COUNT
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) n = CPU_COUNT(&set);
#endif
    if (n <= 0) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0) n = 1;
    return n > QR_MAX_THREADS ? QR_MAX_THREADS : n;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ------------------------------------------------------------------ workers */
/* Claim and run tasks of the current region until none is left. A claim (CAS on `word`)
 * succeeds only while its region is current, and a region ends only when all its tasks are
 * done, so fn/ctx read before a successful claim belong to that region. */
static void claim_tasks(void) {
    for (;;) {
        uint64_t w = atomic_load_explicit(&pool.word, memory_order_acquire);
        int nt = atomic_load_explicit(&pool.ntasks, memory_order_relaxed);
        qr_task_fn fn = atomic_load_explicit(&pool.fn, memory_order_relaxed);
        void *ctx = atomic_load_explicit(&pool.ctx, memory_order_relaxed);
        int i = (int)(uint32_t)w;
        if (i >= nt) return;
        if (!atomic_compare_exchange_weak_explicit(&pool.word, &w, w + 1, memory_order_acq_rel,
                                                   memory_order_relaxed))
            continue;
        fn(ctx, i, nt);
        atomic_fetch_add_explicit(&pool.done, 1, memory_order_release);
    }
}

static void *worker_main(void *arg) {
    int id = (int)(intptr_t)arg;   /* 1 .. nworkers */
    atomic_uint *go = &mailbox[id].go;
    unsigned seen = 0;             /* start_workers zeroes the mailbox before the thread */
    tl_in_region = 1;              /* kernels called from a task never re-enter the pool */
    for (;;) {
        unsigned g;
        unsigned spins = 0;
        int64_t t0 = 0;
        while ((g = atomic_load_explicit(go, memory_order_acquire)) == seen) {
            QR_PAUSE();
            if (++spins % 64) continue;
            int64_t t = now_ns();
            if (t0 == 0) t0 = t;
            if (t - t0 < QR_SPIN_NS) continue;
            pthread_mutex_lock(&pool.mu);
            atomic_fetch_add(&pool.sleepers, 1);
            while (atomic_load(go) == seen) pthread_cond_wait(&pool.cv, &pool.mu);
            atomic_fetch_sub(&pool.sleepers, 1);
            pthread_mutex_unlock(&pool.mu);
        }
        seen = g;
        if (atomic_load(&pool.quit)) return NULL;
        claim_tasks();
    }
}

/* Post to workers 1..nw (seq_cst stores pair with the sleepers check in worker_main). */
static void post(int nw) {
    for (int i = 1; i <= nw; i++) atomic_fetch_add(&mailbox[i].go, 1);
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.mu);
        pthread_cond_broadcast(&pool.cv);
        pthread_mutex_unlock(&pool.mu);
    }
}

static void stop_workers(void) {   /* caller holds pool.owner */
    if (pool.nworkers == 0) return;
    atomic_store(&pool.quit, 1);
    post(pool.nworkers);
    for (int i = 0; i < pool.nworkers; i++) pthread_join(pool.tid[i], NULL);
    pool.nworkers = 0;
    atomic_store(&pool.quit, 0);
}

static void start_workers(int want) {   /* caller holds pool.owner */
    while (pool.nworkers < want) {
        pthread_attr_t attr;
        atomic_store(&mailbox[pool.nworkers + 1].go, 0);
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 1u << 20);
        int rc = pthread_create(&pool.tid[pool.nworkers], &attr, worker_main,
                                (void *)(intptr_t)(pool.nworkers + 1));
        pthread_attr_destroy(&attr);
        if (rc != 0) break;   /* fewer workers: tasks beyond them run on the caller */
        pool.nworkers++;
    }
}

/* After fork() only the forking thread exists in the child: forget the workers. */
static void atfork_child(void) {
    pthread_mutex_init(&pool.owner, NULL);
    pthread_mutex_init(&pool.mu, NULL);
    pthread_cond_init(&pool.cv, NULL);
    pool.nworkers = 0;
    atomic_store(&pool.sleepers, 0);
    atomic_store(&pool.quit, 0);
}
static void register_atfork(void) { pthread_atfork(NULL, NULL, atfork_child); }

/* ------------------------------------------------------------------ public API */
int qr_get_threads(void) {
    if (pool.nthreads == 0) {
        pthread_mutex_lock(&pool.owner);
        if (pool.nthreads == 0) pool.nthreads = default_threads();
        pthread_mutex_unlock(&pool.owner);
    }
    return pool.nthreads;
}

int qr_set_threads(int n) {
    if (n <= 0) n = default_threads();
    if (n > QR_MAX_THREADS) n = QR_MAX_THREADS;
    pthread_mutex_lock(&pool.owner);
    if (pool.nworkers > n - 1) stop_workers();   /* restarted lazily at the new size */
    pool.nthreads = n;
    pthread_mutex_unlock(&pool.owner);
    return n;
}

int qr_tasks_for(size_t work, size_t grain) {
    int nt = qr_get_threads();
    if (grain == 0) grain = 1;
    size_t by_work = work / grain;
    if (by_work < 1) by_work = 1;
    return by_work < (size_t)nt ? (int)by_work : nt;
}

static void run_serial(qr_task_fn fn, void *ctx, int ntasks) {
    for (int i = 0; i < ntasks; i++) fn(ctx, i, ntasks);
}

void qr_parallel(qr_task_fn fn, void *ctx, int ntasks) {
    if (ntasks <= 1) { if (ntasks == 1) fn(ctx, 0, 1); return; }
    if (tl_in_region || pthread_mutex_trylock(&pool.owner) != 0) {
        run_serial(fn, ctx, ntasks);
        return;
    }
    pthread_once(&atfork_once, register_atfork);
    if (pool.nthreads == 0) pool.nthreads = default_threads();
    int want = (ntasks < pool.nthreads ? ntasks : pool.nthreads) - 1;
    if (pool.nworkers < want) start_workers(want);
    int nw = pool.nworkers < want ? pool.nworkers : want;
    atomic_store_explicit(&pool.fn, fn, memory_order_relaxed);
    atomic_store_explicit(&pool.ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&pool.ntasks, ntasks, memory_order_relaxed);
    atomic_store_explicit(&pool.done, 0, memory_order_relaxed);
    pool.region++;
    atomic_store_explicit(&pool.word, (uint64_t)pool.region << 32, memory_order_release);
    if (nw > 0) post(nw);
    tl_in_region = 1;
    claim_tasks();           /* the caller works too, and takes over tasks of late workers */
    tl_in_region = 0;
    unsigned spins = 0;
    int64_t t0 = 0;
    while (atomic_load_explicit(&pool.done, memory_order_acquire) < ntasks) {
        if (t0 < 0) { sched_yield(); continue; }   /* a task's thread was preempted */
        QR_PAUSE();
        if (++spins % 64) continue;
        int64_t t = now_ns();
        if (t0 == 0) t0 = t;
        else if (t - t0 > QR_WAIT_SPIN_NS) t0 = -1;
    }
    pthread_mutex_unlock(&pool.owner);
}

/* ------------------------------------------------------------------ per-thread scratch */
#define QR_SCRATCH_SLOTS 5
static _Thread_local struct { void *p; size_t n; } tl_scratch[QR_SCRATCH_SLOTS];
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *unused) {
    (void)unused;
    for (int i = 0; i < QR_SCRATCH_SLOTS; i++) {
        free(tl_scratch[i].p);
        tl_scratch[i].p = NULL;
        tl_scratch[i].n = 0;
    }
}
static void scratch_key_init(void) { pthread_key_create(&scratch_key, scratch_free); }

void *qr_scratch(int slot, size_t bytes) {
    if (slot < 0 || slot >= QR_SCRATCH_SLOTS) return NULL;
    if (tl_scratch[slot].n >= bytes && tl_scratch[slot].p) return tl_scratch[slot].p;
    pthread_once(&scratch_once, scratch_key_init);
    pthread_setspecific(scratch_key, (void *)1);   /* so the destructor runs at thread exit */
    free(tl_scratch[slot].p);
    size_t n = (bytes + 4095) & ~(size_t)4095;
    void *p = NULL;
    if (posix_memalign(&p, 64, n) != 0) p = NULL;
    if (p) memset(p, 0, n);   /* a fresh buffer holds no stale header (see slot 4) */
    tl_scratch[slot].p = p;
    tl_scratch[slot].n = p ? n : 0;
    return p;
}

/* ------------------------------------------------------------------ SIMD override */
/* QORUS_SIMD, parsed once: QR_SIMD_AUTO (unset, empty, "auto"), a tier ("portable" or "0",
 * "avx2", "avx512"), or -3 for anything else (cpu.c reports it; the tiers run as auto). */
static atomic_int simd_env = -2;        /* -2: not read yet */
static atomic_int simd_override = -2;   /* -2: not set yet (QORUS_SIMD); else as qr__simd_env */

int qr__simd_env(void) {
    int v = atomic_load(&simd_env);
    if (v == -2) {
        const char *env = getenv("QORUS_SIMD");
        if (!env || !*env || strcmp(env, "auto") == 0) v = QR_SIMD_AUTO;
        else if (strcmp(env, "portable") == 0 || strcmp(env, "0") == 0) v = QR_SIMD_PORTABLE;
        else if (strcmp(env, "avx2") == 0) v = QR_SIMD_AVX2;
        else if (strcmp(env, "avx512") == 0) v = QR_SIMD_AVX512;
        else v = -3;
        atomic_store(&simd_env, v);
    }
    return v;
}

/* The first use takes QORUS_SIMD, unless qr_set_simd_path got there first: the exchange only
 * replaces the "not set yet" value, so a concurrent explicit choice is never overwritten. */
int qr__simd_override(void) {
    int v = atomic_load(&simd_override);
    if (v == -2) {
        int unset = -2;
        v = qr__simd_env();
        if (!atomic_compare_exchange_strong(&simd_override, &unset, v)) v = unset;
    }
    return v;
}
void qr__set_simd_override(int v) { atomic_store(&simd_override, v); }
