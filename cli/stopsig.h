/* SIGINT / SIGTERM for `mvmoe train`: received by a thread of their own, never by a handler
 * that interrupts a computing thread (why: stopsig.c). */
#ifndef MVMOE_CLI_STOPSIG_H
#define MVMOE_CLI_STOPSIG_H

/* Blocks SIGINT and SIGTERM in the calling thread, so in every thread created after it (the
 * OpenMP team included), and starts the thread that waits for them. Call it before anything
 * starts a thread. Until armed, the signals kill the process as by default. Returns 0, or -1
 * with errno set (then nothing was changed). */
int mvmoe_cli_stopsig_start(void);

/* Armed (on = 1): the first SIGINT or SIGTERM asks the training to stop (mvmoe_request_stop:
 * checkpoint, exit 130); a second one kills the process at once, for when the save hangs.
 * Disarmed (on = 0): each kills the process, as by default. */
void mvmoe_cli_stopsig_arm(int on);

/* One rank of several under mpirun: SIGPIPE ignored (stdout and stderr are pipes to mpirun,
 * which may be gone before the stop-step save), SIGTERM sent to this process when its launcher
 * (mpirun, or orted on another host) dies (Linux), and a repeated SIGINT/SIGTERM while stopping
 * is taken as the same request rather than a kill (mpirun SIGKILLs a rank that does not end).
 * Why: stopsig.c. Call after mvmoe_cli_stopsig_start. Returns 0, or -1 with errno set. */
int mvmoe_cli_stopsig_launched(void);

#endif
