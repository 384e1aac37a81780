/* mvmoe_file_read: the whole file, NUL-terminated; refusals with the path and the cap named:
 * a missing file, a folder, a file over the cap, and a FIFO -- refused before any blocking
 * open or read (an alarm fails the test instead of letting it hang). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "test_util.h"

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "FAIL test_file: mvmoe_file_read blocked on a FIFO\n";
    if (write(2, msg, sizeof msg - 1) < 0) _exit(2);
    _exit(1);
}

int main(void) {
    char dir[] = "/tmp/mvmoe_test_file_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char path[256], fifo[256], missing[256];
    snprintf(path, sizeof path, "%s/a.txt", dir);
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    snprintf(missing, sizeof missing, "%s/missing.json", dir);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite("hello\0world", 1, 11, f) == 11 && fclose(f) == 0, "writing %s", path);

    char *buf = NULL;
    size_t len = 0;
    mvmoe_status s = mvmoe_file_read(path, "test file", 11, &buf, &len);
    CHECK(s == MVMOE_OK && len == 11 && buf && memcmp(buf, "hello\0world", 11) == 0 && buf[11] == '\0',
          "read: %d %s", (int)s, mvmoe_last_error());
    free(buf);

    s = mvmoe_file_read(path, "test file", 10, &buf, &len);
    CHECK(s == MVMOE_ERR_FORMAT && buf == NULL && strstr(mvmoe_last_error(), path) &&
              strstr(mvmoe_last_error(), "10") && strstr(mvmoe_last_error(), "test file"),
          "over the cap: %d %s", (int)s, mvmoe_last_error());

    s = mvmoe_file_read(missing, "eval JSON", 100, &buf, &len);
    CHECK(s == MVMOE_ERR_IO && buf == NULL && strstr(mvmoe_last_error(), missing), "missing: %d %s", (int)s,
          mvmoe_last_error());

    s = mvmoe_file_read(dir, "eval JSON", 100, &buf, &len);
    CHECK(s == MVMOE_ERR_IO && buf == NULL && strstr(mvmoe_last_error(), "not a regular file"),
          "folder: %d %s", (int)s, mvmoe_last_error());

    CHECK(mkfifo(fifo, 0600) == 0, "mkfifo %s", fifo);
    signal(SIGALRM, on_alarm);
    alarm(10);
    s = mvmoe_file_read(fifo, "eval JSON", 100, &buf, &len);
    alarm(0);
    CHECK(s == MVMOE_ERR_IO && buf == NULL && strstr(mvmoe_last_error(), fifo) &&
              strstr(mvmoe_last_error(), "not a regular file"),
          "FIFO: %d %s", (int)s, mvmoe_last_error());

    unlink(fifo);
    unlink(path);
    rmdir(dir);
    TEST_MAIN_END("test_file");
}
