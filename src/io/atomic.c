/* Atomic file replacement (see atomic.h). */
#include "io/atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/status.h"

/* Creates tmp, writes and syncs it. On failure removes tmp (if we created it). */
static mvmoe_status write_tmp(const char *path, const char *tmp, mvmoe_atomic_body body, void *ctx) {
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        MVMOE_FAIL(MVMOE_ERR_IO,
                   "%s: cannot create the temporary file '%s': %s; check that the directory "
                   "exists and is writable",
                   path, tmp, strerror(errno));
    }
    FILE *fp = fdopen(fd, "wb");
    if (!fp) {
        int e = errno;
        close(fd);
        unlink(tmp);
        MVMOE_FAIL(MVMOE_ERR_IO, "%s: cannot open a stream on '%s': %s", path, tmp, strerror(e));
    }
    const char *step = "writing";
    errno = 0;
    int e = body(fp, ctx);
    errno = 0;
    if (!e && fflush(fp) != 0) {
        e = errno ? errno : EIO;
        step = "flushing";
    }
    if (!e && fsync(fileno(fp)) != 0) {
        e = errno;
        step = "syncing";
    }
    errno = 0;
    if (fclose(fp) != 0 && !e) { /* a delayed write error (e.g. disk full) shows up here */
        e = errno ? errno : EIO;
        step = "closing";
    }
    if (e) {
        unlink(tmp);
        MVMOE_FAIL(MVMOE_ERR_IO,
                   "%s: %s the temporary file '%s' failed: %s; the previous file (if any) is "
                   "unchanged; %s",
                   path, step, tmp, strerror(e),
                   e == EFBIG ? "raise the file-size limit (ulimit -f) or write a smaller model"
                              : "check free disk space");
    }
    return MVMOE_OK;
}

/* After rename: sync the directory so the new entry survives a crash. */
static mvmoe_status sync_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    size_t len = slash ? (slash == path ? 1 : (size_t)(slash - path)) : 1;
    char *dir;
    MVMOE_ALLOC(dir, len + 1, "folder name");
    memcpy(dir, slash ? path : ".", len);
    int e = 0, fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        e = errno;
    } else {
        /* Some file systems cannot sync directories (EINVAL): nothing more can be done. */
        if (fsync(fd) != 0 && errno != EINVAL) e = errno;
        close(fd);
    }
    mvmoe_status s = MVMOE_OK;
    if (e) {
        s = mvmoe_error_set(MVMOE_ERR_IO, __FILE__, __LINE__,
                            "%s: written, but syncing its directory '%s' failed: %s; the new file "
                            "may not survive a crash",
                            path, dir, strerror(e));
    }
    free(dir);
    return s;
}

mvmoe_status mvmoe_output_check(const char *path, const char *flag) {
    const char *by = flag ? flag : "output", *sep = flag ? " " : " file ";
    if (!path || !*path) MVMOE_FAIL(MVMOE_ERR_INVALID, "%s: the file name is empty", by);
    struct stat st;
    if (stat(path, &st) == 0) {
        /* the rename would replace a device node or FIFO by a regular file, and a folder
         * cannot be replaced at all: refuse both before any work is done */
        if (S_ISDIR(st.st_mode))
            MVMOE_FAIL(MVMOE_ERR_INVALID, "%s%s'%s' is a folder; give a file name (e.g. '%s/out')",
                       by, sep, path, path);
        if (!S_ISREG(st.st_mode))
            MVMOE_FAIL(MVMOE_ERR_INVALID,
                       "%s%s'%s' is not a regular file (a device, FIFO or socket); mvmoe writes "
                       "a file beside it and renames it over, which would replace that node: give "
                       "a regular file's path", by, sep, path);
    } else if (errno != ENOENT) {
        MVMOE_FAIL(MVMOE_ERR_IO, "%s%s'%s': %s", by, sep, path, strerror(errno));
    }
    const char *slash = strrchr(path, '/');
    size_t len = slash ? (slash == path ? 1 : (size_t)(slash - path)) : 1;
    char *dir;
    MVMOE_ALLOC(dir, len + 1, "folder name");
    memcpy(dir, slash ? path : ".", len);
    mvmoe_status s = MVMOE_OK;
    int e = stat(dir, &st) != 0 ? errno : S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
    if (e)
        s = mvmoe_error_set(MVMOE_ERR_IO, __FILE__, __LINE__,
                            "%s%s'%s': the folder '%s' does not exist (%s); create it or choose "
                            "another path", by, sep, path, dir, strerror(e));
    else if (access(dir, W_OK | X_OK) != 0)
        s = mvmoe_error_set(MVMOE_ERR_IO, __FILE__, __LINE__,
                            "%s%s'%s': cannot write in the folder '%s': %s; choose another path",
                            by, sep, path, dir, strerror(errno));
    free(dir);
    return s;
}

mvmoe_status mvmoe_atomic_write(const char *path, mvmoe_atomic_body body, void *ctx) {
    MVMOE_TRY(mvmoe_output_check(path, NULL));
    size_t tmp_len = strlen(path) + 32;
    char *tmp = malloc(tmp_len);
    if (!tmp) MVMOE_FAIL(MVMOE_ERR_NOMEM, "%s: out of memory for the temporary file name", path);
    snprintf(tmp, tmp_len, "%s.tmp.%ld", path, (long)getpid());
    mvmoe_status s = write_tmp(path, tmp, body, ctx);
    if (s == MVMOE_OK && rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        s = mvmoe_error_set(MVMOE_ERR_IO, __FILE__, __LINE__,
                            "%s: cannot rename the temporary file '%s' over it: %s; the "
                            "previous file (if any) is unchanged",
                            path, tmp, strerror(e));
    }
    if (s == MVMOE_OK) s = sync_dir(path);
    free(tmp);
    return s;
}
