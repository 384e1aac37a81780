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
 * the waiting thread computes nothing and only sets the stop flag the training loop polls.
 *
 * Under mpirun (mvmoe_cli_stopsig_launched), the ranks are in process groups of their own, so
 * a signal meant for the job reaches mpirun only, which sends the ranks SIGCONT, SIGTERM one
 * second later and SIGKILL one second after that (odls_base_sigkill_timeout). But mpirun exits
 * at once, often forwarding nothing, when a second SIGINT/SIGTERM reaches it within 5 s of the
 * first: a second Ctrl-C, or GNU `timeout` signalled (it signals its child, then its whole
 * process group, and mpirun may take the two apart). The ranks then trained on until OpenMPI's
 * PMIx client noticed the lost launcher and ended them (_exit(-61), 1 s later), and rank 0,
 * writing to mpirun's closed pipes, died of SIGPIPE: no checkpoint for the stop. So a rank asks
 * Linux for SIGTERM when its launcher (mpirun, or orted on other hosts) dies (sent when the
 * forking thread ends; mpirun 4.1's lives as long as mpirun: test_mpi.sh trains to the end),
 * ignores SIGPIPE, and takes a repeated signal as the same request (a rank signalled with its
 * job gets its own and mpirun's; mpirun's SIGKILL ends a rank whose save hangs). */
#include "stopsig.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "mvmoe.h"

static sigset_t stop_set;
static int started, armed, stopping; /* armed: set by the main thread, read by the waiter */
static int launched;                  /* one rank of several, under mpirun: set before arming */
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
            /* the second kills, for when the save hangs; under mpirun, whose SIGKILL follows
             * its SIGTERM, it is the same request delivered twice (the rank's own and mpirun's) */
            if (stopping && !__atomic_load_n(&launched, __ATOMIC_ACQUIRE)) die_by(sig);
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

int mvmoe_cli_stopsig_launched(void) {
    if (!started) return 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGPIPE, &sa, NULL) != 0) return -1;
    __atomic_store_n(&launched, 1, __ATOMIC_RELEASE);
#ifdef __linux__
    const pid_t parent = getppid();
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) return -1;
    if (getppid() != parent) kill(getpid(), SIGTERM); /* it died before the request */
#endif
    return 0;
}
