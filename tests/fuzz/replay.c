/* Replays every file of a corpus directory through a fuzz target, so past crashes stay tests. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"

/* The fuzz target under test; 0 is its only accepted result. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Corpus files are seeds and past crashes: small by construction. */
#define REPLAY_MAX_FILE_BYTES ((size_t)16 * 1024 * 1024)

static int replay_file(const char *path)
{
    FILE *f = NULL;
    uint8_t *data = NULL;
    struct stat st;
    size_t n;
    int rc = -1;

    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = 1; /* not a regular file: skipped */
        goto out;
    }
    if ((size_t)st.st_size > REPLAY_MAX_FILE_BYTES) {
        fprintf(stderr, "%s: larger than %zu bytes\n", path, REPLAY_MAX_FILE_BYTES);
        goto out;
    }
    f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        goto out;
    }
    /* One spare byte so an empty file still has a valid pointer. */
    data = xmalloc((size_t)st.st_size + 1);
    n = fread(data, 1, (size_t)st.st_size, f);
    if (n != (size_t)st.st_size) {
        fprintf(stderr, "%s: short read\n", path);
        goto out;
    }
    if (LLVMFuzzerTestOneInput(data, n) != 0) {
        fprintf(stderr, "%s: target returned non-zero\n", path);
        goto out;
    }
    rc = 0;
out:
    if (f)
        fclose(f);
    free(data);
    return rc;
}

int main(int argc, char **argv)
{
    DIR *dir;
    struct dirent *de;
    unsigned passed = 0, failed = 0;

    vr_init();
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    dir = opendir(argv[1]);
    if (dir == NULL) {
        perror(argv[1]);
        return 2;
    }
    while ((de = readdir(dir)) != NULL) {
        char path[4096];
        int rc;

        if (de->d_name[0] == '.')
            continue;
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", argv[1], de->d_name) >= sizeof(path)) {
            fprintf(stderr, "%s/%s: path too long\n", argv[1], de->d_name);
            failed++;
            continue;
        }
        rc = replay_file(path);
        if (rc == 0)
            passed++;
        else if (rc < 0)
            failed++;
    }
    closedir(dir);
    printf("%u passed, %u failed\n", passed, failed);
    if (passed == 0 && failed == 0) {
        fprintf(stderr, "%s: empty corpus\n", argv[1]);
        return 1;
    }
    return failed == 0 ? 0 : 1;
}
