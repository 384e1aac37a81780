/* The capped whole-file reader (file.h). The file is opened without blocking and checked to
 * be a regular file before anything is read: opening a FIFO for reading otherwise waits for a
 * writer, and a program given one by mistake would hang instead of failing. */
#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/status.h"

/* Reads up to n bytes, retrying interrupted and short reads; returns the count (< n at end of
 * file), or -1 with errno set. */
static ssize_t read_full(int fd, char *p, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

mvmoe_status mvmoe_file_read(const char *path, const char *what, size_t max_bytes, char **buf,
                             size_t *len) {
    *buf = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        MVMOE_FAIL(MVMOE_ERR_IO, "cannot open the %s '%s': %s; check the path", what, path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        MVMOE_FAIL(MVMOE_ERR_IO, "cannot stat the %s '%s': %s", what, path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        MVMOE_FAIL(MVMOE_ERR_IO, "the %s '%s' is not a regular file%s", what, path,
                   S_ISDIR(st.st_mode) ? " but a folder" : "");
    }
    if (st.st_size < 0 || (unsigned long long)st.st_size > max_bytes) {
        close(fd);
        MVMOE_FAIL(MVMOE_ERR_FORMAT, "the %s '%s' has %lld bytes, more than the %zu accepted; is it the right file?",
                   what, path, (long long)st.st_size, max_bytes);
    }
    /* a regular file: reads may block as usual from here on */
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        int e = errno;
        close(fd);
        MVMOE_FAIL(MVMOE_ERR_IO, "cannot read the %s '%s': %s", what, path, strerror(e));
    }
    size_t n = (size_t)st.st_size;
    char *b = malloc(n + 1);
    if (!b) {
        close(fd);
        MVMOE_FAIL(MVMOE_ERR_NOMEM, "cannot allocate %zu bytes to read the %s '%s'", n + 1, what, path);
    }
    ssize_t got = read_full(fd, b, n);
    char extra;
    ssize_t more = got == (ssize_t)n ? read_full(fd, &extra, 1) : 0; /* grew while we read it */
    int e = errno;
    close(fd);
    if (got < 0 || more < 0) {
        free(b);
        MVMOE_FAIL(MVMOE_ERR_IO, "cannot read the %s '%s': %s", what, path, strerror(e));
    }
    if ((size_t)got != n || more > 0) {
        free(b);
        MVMOE_FAIL(MVMOE_ERR_IO, "the %s '%s' changed while it was read (%zd of %zu bytes%s); is it being written?",
                   what, path, got, n, more > 0 ? ", and more followed" : "");
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return MVMOE_OK;
}
