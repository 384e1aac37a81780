/* SIGINT / SIGTERM for `mvmoe train`, taken by sigwait in a thread of their own.
 *
 * Why not a signal handler: Linux runs a handler on the interrupted thread's stack, writing
 * its signal frame (registers and the AVX-512 state, about 3 KB) below that thread's rsp. oneDNN
 * 2.6's JIT sgemm kernels (jit_avx512_common_gemm_f32 and jit_avx_gemm_f32, the no-copy path
 * our linear layers take for larger K) point rsp at a heap workspace while they run; a handler
 * that interrupts one writes its frame over the malloc chunk header and the data below that
 * workspace. Interrupted `mvmoe train` runs aborted in malloc ("corrupted size vs. prev_size")
 * in ~5 % of SIGTERMs, or could have gone on with corrupted numbers. oneDNN fixed its kernels
 * in 3.11 (uxlfoundation/oneDNN issue 4845, pull request 4855); Debian's 2.6 has the bug.
 * With the signals blocked in every computing thread, no frame is ever pushed on their stacks:
 * the waiting thread computes nothing and only sets the stop flag the training loop polls. */
#include "stopsig.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "mvmoe.h"

static sigset_t stop_set;
static int started, armed, stopping; /* armed: set by the main thread, read by the waiter */
static int ignored[2];                /* SIGINT, SIGTERM were ignored when mvmoe started (nohup, `&`) */

/* Installed only so that the blocked signals stay pending for sigwait (an ignored signal is
 * discarded when sent); it never runs, as no thread has them unblocked. */
static void keep_pending(int sig) { (void)sig; }

/* The default action of sig (termination), with the exit status a shell reports for it. */
static void die_by(int sig) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    raise(sig); /* to this thread, which now takes it: the process ends here */
    _exit(128 + sig);
}

static void *wait_for_signals(void *unused) {
    (void)unused;
    for (;;) {
        int sig;
        if (sigwait(&stop_set, &sig) != 0) continue;
        if (__atomic_load_n(&armed, __ATOMIC_ACQUIRE)) {
            if (stopping) die_by(sig); /* the second: the save may hang */
            stopping = 1;
            mvmoe_request_stop();
        } else if (!ignored[sig == SIGTERM]) {
            die_by(sig);
        }
    }
    return NULL;
}

int mvmoe_cli_stopsig_start(void) {
    const int sigs[2] = {SIGINT, SIGTERM};
    struct sigaction was[2], sa;
    sigemptyset(&stop_set);
    for (int i = 0; i < 2; i++) {
        if (sigaction(sigs[i], NULL, &was[i]) != 0) return -1;
        sigaddset(&stop_set, sigs[i]);
    }
    sigset_t old;
    int e = pthread_sigmask(SIG_BLOCK, &stop_set, &old);
    if (e) {
        errno = e;
        return -1;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = keep_pending;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 2 && !e; i++)
        if (sigaction(sigs[i], &sa, NULL) != 0) e = errno;
    for (int i = 0; i < 2; i++) ignored[i] = was[i].sa_handler == SIG_IGN; /* before the waiter reads it */
    pthread_attr_t attr;
    pthread_t t;
    if (!e) e = pthread_attr_init(&attr);
    if (!e) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        e = pthread_create(&t, &attr, wait_for_signals, NULL);
        pthread_attr_destroy(&attr);
    }
    if (e) {
        for (int i = 0; i < 2; i++) sigaction(sigs[i], &was[i], NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        errno = e;
        return -1;
    }
    started = 1;
    return 0;
}

void mvmoe_cli_stopsig_arm(int on) {
    if (started) __atomic_store_n(&armed, on, __ATOMIC_RELEASE);
}
