/* Clinician-labelled examples (issue 13): a review case's photo and the
 * clinician's condition, kept for training when the person gave a separate
 * "help train the model" consent.
 *
 * What is kept is exactly three things: the photo as a fresh 224 px JPEG
 * (decoded and encoded again from pixels, so no metadata of the original
 * survives), the condition code and the ISO week of the answer. They live as
 * files under the data directory,
 *
 *     examples/<handle>/<id>.<condition>.<week>.jpg      (0700 dirs, 0600 files)
 *
 * where id is random and handle is a pseudonym of the person that only their
 * data key derives (screening_example_handle): the server cannot tell whose
 * examples a directory holds, yet when the person revokes the consent their
 * session derives the handle again and the directory goes. File and
 * directory times are set to the epoch, so the disk does not say when an
 * example arrived either. A file is written under a temporary name and
 * renamed, so a reader never sees half a photo. */
#include "screening/screening.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/crypto.h"
#include "vision/vision.h"

void screening_example_handle(const uint8_t data_key[32], uint8_t out[32]) {
    cs_crypto_hash(out, "caresync training example handle v1", data_key, 32);
}

static bool week_ok(const char *w) {
    /* "2026-W48" */
    if (!w || strlen(w) != 8 || w[4] != '-' || w[5] != 'W') return false;
    for (int i = 0; i < 8; i++)
        if (i != 4 && i != 5 && (w[i] < '0' || w[i] > '9')) return false;
    return true;
}

static core_status mkdir_private(const char *path, core_error *err) {
    if (mkdir(path, 0700) == 0 || errno == EEXIST) return CORE_OK;
    return core_fail(err, CORE_ERR_IO, NULL, "cannot create %s: %s", path, strerror(errno));
}

static void epoch_times(const char *path) {
    struct timespec t[2] = {{0, 0}, {0, 0}};
    utimensat(AT_FDCWD, path, t, 0); /* best effort: the content is what matters */
}

core_status screening_example_put(const char *dir, const uint8_t handle[32], const char *condition, const char *week,
                                  const uint8_t *photo, size_t len, core_error *err) {
    if (!condition || screening_condition_index(condition) < 0 || !strcmp(condition, "other"))
        return core_fail(err, CORE_ERR_INVALID, "condition", "not a condition of the table");
    if (!week_ok(week)) return core_fail(err, CORE_ERR_INVALID, "week", "a week is written 2026-W48");
    vision_limits lim;
    vision_limits_defaults(&lim);
    lim.min_side = 32;
    vision_image img = {0}, sq = {0};
    uint8_t *jpeg = NULL;
    size_t jlen = 0;
    core_status rc = vision_decode(photo, len, &lim, &img, NULL, NULL, err);
    if (!rc) rc = vision_center_square(&img, 224, &sq, err);
    if (!rc) rc = vision_encode_jpeg(&sq, 90, &jpeg, &jlen, err);
    vision_image_free(&img);
    vision_image_free(&sq);
    if (rc) return rc;
    char hex[65], idhex[33], sub[4200], tmp[4300], path[4400];
    uint8_t id[16];
    cs_crypto_hex(handle, 32, hex);
    cs_crypto_random(id, sizeof id);
    cs_crypto_hex(id, sizeof id, idhex);
    snprintf(sub, sizeof sub, "%s/%s", dir, hex);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", sub, idhex);
    snprintf(path, sizeof path, "%s/%s.%s.%s.jpg", sub, idhex, condition, week);
    rc = mkdir_private(dir, err);
    if (!rc) rc = mkdir_private(sub, err);
    int fd = rc ? -1 : open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (!rc && fd < 0) rc = core_fail(err, CORE_ERR_IO, NULL, "cannot write an example: %s", strerror(errno));
    for (size_t off = 0; !rc && off < jlen;) {
        ssize_t w = write(fd, jpeg + off, jlen - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            rc = core_fail(err, CORE_ERR_IO, NULL, "cannot write an example: %s", strerror(errno));
        else
            off += (size_t)w;
    }
    if (!rc && fsync(fd) != 0) rc = core_fail(err, CORE_ERR_IO, NULL, "cannot write an example: %s", strerror(errno));
    if (fd >= 0) close(fd);
    if (!rc) epoch_times(tmp);
    if (!rc && rename(tmp, path) != 0)
        rc = core_fail(err, CORE_ERR_IO, NULL, "cannot write an example: %s", strerror(errno));
    if (rc && fd >= 0) unlink(tmp);
    if (!rc) epoch_times(sub);
    free(jpeg);
    return rc;
}

core_status screening_examples_forget(const char *dir, const uint8_t handle[32], size_t *deleted, core_error *err) {
    char hex[65], sub[4200];
    cs_crypto_hex(handle, 32, hex);
    snprintf(sub, sizeof sub, "%s/%s", dir, hex);
    if (deleted) *deleted = 0;
    DIR *d = opendir(sub);
    if (!d) {
        if (errno == ENOENT) return CORE_OK; /* nothing kept */
        return core_fail(err, CORE_ERR_IO, NULL, "cannot read %s: %s", sub, strerror(errno));
    }
    core_status rc = CORE_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char path[4500];
        snprintf(path, sizeof path, "%s/%s", sub, e->d_name);
        if (unlink(path) != 0 && errno != ENOENT) {
            rc = core_fail(err, CORE_ERR_IO, NULL, "cannot delete an example: %s", strerror(errno));
            break;
        }
        if (deleted && e->d_name[0] != '.') (*deleted)++;
    }
    closedir(d);
    if (!rc && rmdir(sub) != 0 && errno != ENOENT)
        rc = core_fail(err, CORE_ERR_IO, NULL, "cannot delete %s: %s", sub, strerror(errno));
    return rc;
}
