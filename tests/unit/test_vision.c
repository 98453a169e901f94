/* Photo intake: every format decodes, EXIF orientation is applied, GPS and
 * other metadata never survive, bad files are refused with the right reason
 * (without allocating a bomb's pixels), quality checks fire on the obvious
 * cases, and real photographs from ../shared/data pass. */
#include "testutil.h"

#include <dirent.h>
#include <libheif/heif.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <webp/encode.h>

#include "vision/vision.h"

#define GPS_MARKER "CARESYNC-GPS-MARKER-41.4033N"

/* A 300 × 200 test card: skin-toned noise with a pure red 40 × 30 block in
 * the top-left corner, so any rotation or flip is visible. */
static vision_image card(void) {
    vision_image img = {300, 200, malloc(300 * 200 * 3)};
    uint32_t s = 1;
    for (int y = 0; y < 200; y++)
        for (int x = 0; x < 300; x++) {
            uint8_t *p = img.rgb + (y * 300 + x) * 3;
            s = s * 1664525u + 1013904223u;
            int n = (int)(s >> 27) - 16; /* texture, so it is not "blurry" */
            p[0] = (uint8_t)(200 + n);
            p[1] = (uint8_t)(150 + n);
            p[2] = (uint8_t)(120 + n);
            if (x < 40 && y < 30) {
                p[0] = 255;
                p[1] = 0;
                p[2] = 0;
            }
        }
    return img;
}

static bool is_red(const vision_image *img, int x, int y) {
    const uint8_t *p = img->rgb + ((size_t)y * img->width + x) * 3;
    return p[0] > 200 && p[1] < 60 && p[2] < 60;
}

static uint8_t *encode_jpeg(const vision_image *img, size_t *len) {
    uint8_t *out;
    assert_int_equal(vision_encode_jpeg(img, 90, &out, len, NULL), CORE_OK);
    return out;
}

static bool contains(const uint8_t *hay, size_t n, const void *needle, size_t m) {
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(hay + i, needle, m) == 0) return true;
    return false;
}

/* ---- building EXIF by hand (little-endian TIFF) ---- */

typedef struct {
    uint8_t b[1024];
    size_t n;
} buf;
static void put16(buf *t, size_t at, uint16_t v) {
    t->b[at] = (uint8_t)v;
    t->b[at + 1] = (uint8_t)(v >> 8);
}
static void put32(buf *t, size_t at, uint32_t v) {
    for (int i = 0; i < 4; i++) t->b[at + i] = (uint8_t)(v >> (8 * i));
}
static void entry(buf *t, size_t at, uint16_t tag, uint16_t type, uint32_t count, uint32_t value) {
    put16(t, at, tag);
    put16(t, at + 2, type);
    put32(t, at + 4, count);
    put32(t, at + 8, value);
}

/* TIFF with IFD0 {Orientation, GPSInfo → GPS IFD {version, lat ref, lat,
 * processing method = GPS_MARKER}}. */
static buf exif_tiff(int orientation) {
    buf t = {{0}, 0};
    memcpy(t.b, "II*\0", 4);
    put32(&t, 4, 8);
    size_t ifd0 = 8; /* 2 entries: 2 + 2*12 + 4 = 30 bytes → ends at 38 */
    size_t gps = 38; /* 4 entries: 2 + 48 + 4 = 54 → ends at 92 */
    size_t lat = 92; /* 3 rationals = 24 bytes → ends at 116 */
    size_t method = 116;
    size_t mlen = 8 + strlen(GPS_MARKER);
    put16(&t, ifd0, 2);
    entry(&t, ifd0 + 2, 0x0112, 3, 1, (uint32_t)orientation); /* SHORT in the low half */
    entry(&t, ifd0 + 14, 0x8825, 4, 1, (uint32_t)gps);
    put32(&t, ifd0 + 26, 0);
    put16(&t, gps, 4);
    entry(&t, gps + 2, 0x0000, 1, 4, 0x00000202);     /* GPSVersionID 2.2.0.0 */
    entry(&t, gps + 14, 0x0001, 2, 2, 'N');           /* GPSLatitudeRef "N" */
    entry(&t, gps + 26, 0x0002, 5, 3, (uint32_t)lat); /* GPSLatitude */
    entry(&t, gps + 38, 0x001b, 7, (uint32_t)mlen, (uint32_t)method);
    put32(&t, gps + 50, 0);
    uint32_t r[6] = {41, 1, 24, 1, 12345, 1000};
    for (int i = 0; i < 6; i++) put32(&t, lat + 4 * (size_t)i, r[i]);
    memcpy(t.b + method, "ASCII\0\0\0", 8);
    memcpy(t.b + method + 8, GPS_MARKER, strlen(GPS_MARKER));
    t.n = method + mlen;
    return t;
}

/* Splice an APP1 Exif segment right after SOI. */
static uint8_t *with_exif(const uint8_t *jpeg, size_t len, int orientation, size_t *out_len) {
    buf t = exif_tiff(orientation);
    size_t seg = 2 + 6 + t.n;
    uint8_t *o = malloc(len + 2 + seg);
    o[0] = 0xff;
    o[1] = 0xd8;
    o[2] = 0xff;
    o[3] = 0xe1;
    o[4] = (uint8_t)(seg >> 8);
    o[5] = (uint8_t)seg;
    memcpy(o + 6, "Exif\0\0", 6);
    memcpy(o + 12, t.b, t.n);
    memcpy(o + 12 + t.n, jpeg + 2, len - 2);
    *out_len = len + 2 + seg;
    return o;
}

/* ---- tests ---- */

static void test_sniff(void **state) {
    (void)state;
    assert_int_equal(vision_sniff((const uint8_t *)"\xff\xd8\xff\xe0", 4), VISION_JPEG);
    assert_int_equal(vision_sniff((const uint8_t *)"\x89PNG\r\n\x1a\n", 8), VISION_PNG);
    assert_int_equal(vision_sniff((const uint8_t *)"RIFF\0\0\0\0WEBPVP8 ", 16), VISION_WEBP);
    assert_int_equal(vision_sniff((const uint8_t *)"\0\0\0\x18"
                                                   "ftypheic",
                                  12),
                     VISION_HEIC);
    assert_int_equal(vision_sniff((const uint8_t *)"GIF89a", 6), 0);
    assert_int_equal(vision_sniff((const uint8_t *)"BM", 2), 0);
}

static void test_jpeg_roundtrip_and_scaled_decode(void **state) {
    (void)state;
    vision_image c = card(), out;
    size_t n;
    uint8_t *jpg = encode_jpeg(&c, &n);
    vision_format f;
    assert_int_equal(vision_decode(jpg, n, NULL, &out, &f, NULL, NULL), CORE_OK);
    assert_int_equal(f, VISION_JPEG);
    assert_int_equal(out.width, 300);
    assert_int_equal(out.height, 200);
    assert_true(is_red(&out, 5, 5));
    assert_false(is_red(&out, 295, 5));
    vision_image_free(&out);
    /* Scaled decode: the short side stays ≥ the target. */
    vision_limits lim;
    vision_limits_defaults(&lim);
    lim.target_short_side = 128;
    assert_int_equal(vision_decode(jpg, n, &lim, &out, NULL, NULL, NULL), CORE_OK);
    assert_true(out.height >= 128 && out.height < 200);
    assert_int_equal(out.width * 200, out.height * 300);
    vision_image_free(&out);
    free(jpg);
    vision_image_free(&c);
}

static void test_exif_orientation_applied_and_gps_dropped(void **state) {
    (void)state;
    vision_image c = card();
    size_t n, m;
    uint8_t *jpg = encode_jpeg(&c, &n);
    /* Every orientation lands the red corner where it should. Expected red
     * corner after applying orientation o (0 TL, 1 TR, 2 BR, 3 BL). */
    static const int corner[9] = {0, 0, 1, 2, 3, 0, 1, 2, 3};
    for (int o = 1; o <= 8; o++) {
        uint8_t *tagged = with_exif(jpg, n, o, &m);
        assert_true(contains(tagged, m, GPS_MARKER, strlen(GPS_MARKER)));
        assert_int_equal(vision_exif_orientation(tagged, m, VISION_JPEG), o);
        vision_image out;
        assert_int_equal(vision_decode(tagged, m, NULL, &out, NULL, NULL, NULL), CORE_OK);
        bool swapped = o >= 5;
        assert_int_equal(out.width, swapped ? 200 : 300);
        assert_int_equal(out.height, swapped ? 300 : 200);
        int W = out.width - 1, H = out.height - 1;
        int cx[4] = {3, W - 3, W - 3, 3}, cy[4] = {3, 3, H - 3, H - 3};
        for (int k = 0; k < 4; k++) assert_int_equal(is_red(&out, cx[k], cy[k]), k == corner[o]);
        /* What leaves intake (the saved photo) has no metadata at all. */
        uint8_t *again;
        size_t alen;
        assert_int_equal(vision_encode_jpeg(&out, 85, &again, &alen, NULL), CORE_OK);
        assert_false(contains(again, alen, GPS_MARKER, strlen(GPS_MARKER)));
        assert_false(contains(again, alen, "Exif", 4));
        assert_false(contains(again, alen, "\x25\x88", 2) && contains(again, alen, "II*", 3));
        /* And re-decoding it needs no rotation: it is upright as stored. */
        assert_int_equal(vision_exif_orientation(again, alen, VISION_JPEG), 1);
        free(again);
        vision_image_free(&out);
        free(tagged);
    }
    free(jpg);
    vision_image_free(&c);
}

static void test_png_webp_heic(void **state) {
    (void)state;
    vision_image c = card(), out;
    /* PNG with an alpha channel: transparent pixels become white. */
    uint8_t *rgba = malloc(300 * 200 * 4);
    for (int i = 0; i < 300 * 200; i++) {
        memcpy(rgba + i * 4, c.rgb + i * 3, 3);
        rgba[i * 4 + 3] = i % 300 >= 290 ? 0 : 255;
    }
    png_image pi;
    memset(&pi, 0, sizeof pi);
    pi.version = PNG_IMAGE_VERSION;
    pi.width = 300;
    pi.height = 200;
    pi.format = PNG_FORMAT_RGBA;
    png_alloc_size_t plen = 0;
    assert_true(png_image_write_to_memory(&pi, NULL, &plen, 0, rgba, 0, NULL));
    uint8_t *png = malloc(plen);
    assert_true(png_image_write_to_memory(&pi, png, &plen, 0, rgba, 0, NULL));
    vision_format f;
    assert_int_equal(vision_decode(png, plen, NULL, &out, &f, NULL, NULL), CORE_OK);
    assert_int_equal(f, VISION_PNG);
    assert_true(is_red(&out, 5, 5));
    const uint8_t *px = out.rgb + (10 * 300 + 295) * 3;
    assert_true(px[0] == 255 && px[1] == 255 && px[2] == 255);
    vision_image_free(&out);
    /* Truncated PNG. */
    vision_refusal why;
    assert_int_equal(vision_decode(png, plen * 2 / 3, NULL, &out, NULL, &why, NULL), CORE_ERR_INVALID);
    assert_int_equal(why, VISION_CORRUPT);
    free(png);
    free(rgba);

    uint8_t *webp = NULL;
    size_t wlen = WebPEncodeRGB(c.rgb, 300, 200, 900, 90, &webp);
    assert_true(wlen > 0);
    assert_int_equal(vision_decode(webp, wlen, NULL, &out, &f, NULL, NULL), CORE_OK);
    assert_int_equal(f, VISION_WEBP);
    assert_int_equal(out.width, 300);
    assert_true(is_red(&out, 5, 5));
    vision_image_free(&out);
    assert_int_equal(vision_decode(webp, wlen / 2, NULL, &out, NULL, &why, NULL), CORE_ERR_INVALID);
    assert_int_equal(why, VISION_CORRUPT);
    WebPFree(webp);

    /* HEIC, encoded with libheif's HEVC encoder (x265), as an iPhone would. */
    struct heif_context *ctx = heif_context_alloc();
    struct heif_encoder *enc = NULL;
    struct heif_error e = heif_context_get_encoder_for_format(ctx, heif_compression_HEVC, &enc);
    if (e.code != heif_error_Ok) {
        fprintf(stderr, "SKIP: no HEVC encoder in this libheif: %s\n", e.message);
    } else {
        struct heif_image *hi = NULL;
        assert_int_equal(heif_image_create(300, 200, heif_colorspace_RGB, heif_chroma_interleaved_RGB, &hi).code,
                         heif_error_Ok);
        assert_int_equal(heif_image_add_plane(hi, heif_channel_interleaved, 300, 200, 8).code, heif_error_Ok);
        int stride;
        uint8_t *plane = heif_image_get_plane(hi, heif_channel_interleaved, &stride);
        for (int y = 0; y < 200; y++) memcpy(plane + y * stride, c.rgb + y * 900, 900);
        heif_encoder_set_lossy_quality(enc, 90);
        assert_int_equal(heif_context_encode_image(ctx, hi, enc, NULL, NULL).code, heif_error_Ok);
        struct {
            uint8_t *p;
            size_t n;
        } mem = {NULL, 0};
        heif_encoder_release(enc);
        /* Serialise through a temporary file (libheif's file writer). */
        char dir[256], path[300];
        testutil_tmpdir(dir);
        snprintf(path, sizeof path, "%s/photo.heic", dir);
        assert_int_equal(heif_context_write_to_file(ctx, path).code, heif_error_Ok);
        FILE *fp = fopen(path, "rb");
        fseek(fp, 0, SEEK_END);
        mem.n = (size_t)ftell(fp);
        rewind(fp);
        mem.p = malloc(mem.n);
        assert_int_equal(fread(mem.p, 1, mem.n, fp), mem.n);
        fclose(fp);
        testutil_rmdir(dir);
        heif_image_release(hi);
        assert_int_equal(vision_decode(mem.p, mem.n, NULL, &out, &f, NULL, NULL), CORE_OK);
        assert_int_equal(f, VISION_HEIC);
        assert_int_equal(out.width, 300);
        assert_int_equal(out.height, 200);
        assert_true(is_red(&out, 5, 5));
        vision_image_free(&out);
        assert_int_equal(vision_decode(mem.p, mem.n * 2 / 3, NULL, &out, NULL, &why, NULL), CORE_ERR_INVALID);
        assert_int_equal(why, VISION_CORRUPT);
        free(mem.p);
    }
    heif_context_free(ctx);
    vision_image_free(&c);
}

static uint32_t crc32_of(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    }
    return ~c;
}

static void test_refusals(void **state) {
    (void)state;
    vision_image out, c = card();
    vision_refusal why;
    core_error err = {0};
    assert_int_equal(vision_decode((const uint8_t *)"hello world", 11, NULL, &out, NULL, &why, &err), CORE_ERR_INVALID);
    assert_int_equal(why, VISION_NOT_IMAGE);
    assert_string_equal(err.field, "photo");
    assert_string_equal(vision_refusal_code(why), "not_an_image");
    assert_int_equal(vision_decode((const uint8_t *)"", 0, NULL, &out, NULL, &why, NULL), CORE_ERR_INVALID);
    assert_int_equal(why, VISION_NOT_IMAGE);

    size_t n;
    uint8_t *jpg = encode_jpeg(&c, &n);
    /* Truncated at many points: always refused, never a half image. */
    for (size_t cut = 4; cut < n; cut += n / 23 + 1) {
        core_status rc = vision_decode(jpg, cut, NULL, &out, NULL, &why, NULL);
        assert_int_equal(rc, CORE_ERR_INVALID);
        if (why != VISION_CORRUPT) fail_msg("cut at %zu of %zu: %s", cut, n, vision_refusal_code(why));
    }
    /* Over the byte limit. */
    vision_limits lim;
    vision_limits_defaults(&lim);
    lim.max_bytes = n - 1;
    assert_int_equal(vision_decode(jpg, n, &lim, &out, NULL, &why, NULL), CORE_ERR_INVALID);
    assert_int_equal(why, VISION_TOO_LARGE);
    /* A bomb: the frame header claims 60000 × 60000; refused from the header. */
    uint8_t *bomb = malloc(n);
    memcpy(bomb, jpg, n);
    for (size_t i = 2; i + 9 < n; i++)
        if (bomb[i] == 0xff && (bomb[i + 1] == 0xc0 || bomb[i + 1] == 0xc2)) {
            bomb[i + 5] = 0xea;
            bomb[i + 6] = 0x60; /* height 60000 */
            bomb[i + 7] = 0xea;
            bomb[i + 8] = 0x60; /* width 60000 */
            break;
        }
    assert_int_equal(vision_decode(bomb, n, NULL, &out, NULL, &why, NULL), CORE_ERR_INVALID);
    assert_int_equal(why, VISION_TOO_MANY_PIXELS);
    free(bomb);
    free(jpg);
    /* A PNG bomb: IHDR says 20000 × 20000 (CRC fixed so only the size is wrong). */
    vision_image tiny = {200, 200, calloc(200 * 200, 3)};
    png_image pi;
    memset(&pi, 0, sizeof pi);
    pi.version = PNG_IMAGE_VERSION;
    pi.width = 200;
    pi.height = 200;
    pi.format = PNG_FORMAT_RGB;
    png_alloc_size_t plen = 1 << 20;
    uint8_t *png = malloc(plen);
    assert_true(png_image_write_to_memory(&pi, png, &plen, 0, tiny.rgb, 0, NULL));
    uint8_t *ihdr = png + 8; /* length(4) "IHDR" data(13) crc(4) */
    uint32_t big = 20000;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 4; i++) ihdr[8 + 4 * k + i] = (uint8_t)(big >> (24 - 8 * i));
    uint32_t crc = crc32_of(ihdr + 4, 17);
    for (int i = 0; i < 4; i++) ihdr[21 + i] = (uint8_t)(crc >> (24 - 8 * i));
    assert_int_equal(vision_decode(png, plen, NULL, &out, NULL, &why, NULL), CORE_ERR_INVALID);
    assert_int_equal(why, VISION_TOO_MANY_PIXELS);
    free(png);
    vision_image_free(&tiny);
    /* Too small: 100 × 100. */
    vision_image small = {100, 100, calloc(100 * 100, 3)};
    uint8_t *sj;
    assert_int_equal(vision_encode_jpeg(&small, 80, &sj, &n, NULL), CORE_OK);
    assert_int_equal(vision_decode(sj, n, NULL, &out, NULL, &why, &err), CORE_ERR_INVALID);
    assert_int_equal(why, VISION_TOO_SMALL);
    assert_non_null(strstr(err.message, "128"));
    free(sj);
    vision_image_free(&small);
    vision_image_free(&c);
}

static vision_image solid(int w, int h, uint8_t r, uint8_t g, uint8_t b) {
    vision_image img = {w, h, malloc((size_t)w * h * 3)};
    for (int i = 0; i < w * h; i++) {
        img.rgb[i * 3] = r;
        img.rgb[i * 3 + 1] = g;
        img.rgb[i * 3 + 2] = b;
    }
    return img;
}

static void test_quality(void **state) {
    (void)state;
    vision_quality q;
    vision_image c = card();
    assert_int_equal(vision_assess(&c, &q, NULL), CORE_OK);
    assert_int_equal(q.issues, 0);
    assert_true(q.skin_fraction > 0.5);
    vision_image_free(&c);

    vision_image dark = solid(400, 300, 8, 6, 5);
    assert_int_equal(vision_assess(&dark, &q, NULL), CORE_OK);
    assert_true(q.issues & VISION_Q_DARK);
    vision_image_free(&dark);

    vision_image bright = solid(400, 300, 252, 252, 250);
    assert_int_equal(vision_assess(&bright, &q, NULL), CORE_OK);
    assert_true(q.issues & VISION_Q_BRIGHT);
    assert_true(q.issues & VISION_Q_BLURRY); /* flat: no detail either */
    vision_image_free(&bright);

    /* A sharp blue-green pattern: fine detail, no skin. */
    vision_image sea = solid(400, 300, 20, 110, 160);
    for (int i = 0; i < 400 * 300; i += 2) sea.rgb[i * 3 + 1] = 150;
    assert_int_equal(vision_assess(&sea, &q, NULL), CORE_OK);
    assert_true(q.issues & VISION_Q_NO_SKIN);
    assert_false(q.issues & VISION_Q_BLURRY);
    vision_image_free(&sea);

    /* The card, heavily blurred (a 9 × 9 box, three passes), is blurry. */
    vision_image b = card();
    for (int pass = 0; pass < 3; pass++) {
        vision_image tmp;
        assert_int_equal(vision_resize(&b, 30, 20, &tmp, NULL), CORE_OK);
        vision_image_free(&b);
        assert_int_equal(vision_resize(&tmp, 300, 200, &b, NULL), CORE_OK);
        vision_image_free(&tmp);
    }
    assert_int_equal(vision_assess(&b, &q, NULL), CORE_OK);
    assert_true(q.issues & VISION_Q_BLURRY);
    assert_false(q.issues & VISION_Q_NO_SKIN);
    vision_image_free(&b);
    for (int i = 1; i <= VISION_Q_NO_SKIN; i <<= 1) {
        assert_true(strlen(vision_issue_advice((vision_issue)i)) > 30);
        assert_true(strlen(vision_issue_code((vision_issue)i)) > 3);
    }
}

static void test_resize_and_crop(void **state) {
    (void)state;
    vision_image c = card(), r;
    assert_int_equal(vision_center_square(&c, 224, &r, NULL), CORE_OK);
    assert_int_equal(r.width, 224);
    assert_int_equal(r.height, 224);
    vision_image_free(&r);
    /* Averaging a constant image keeps it constant, up or down. */
    vision_image s = solid(333, 177, 10, 100, 200);
    for (int w = 7; w < 700; w += 97) {
        assert_int_equal(vision_resize(&s, w, w / 2 + 1, &r, NULL), CORE_OK);
        for (int i = 0; i < r.width * r.height; i++)
            assert_true(r.rgb[i * 3] == 10 && r.rgb[i * 3 + 1] == 100 && r.rgb[i * 3 + 2] == 200);
        vision_image_free(&r);
    }
    vision_image_free(&s);
    vision_image_free(&c);
}

/* Real photographs: decode a sample from every data set; report how many
 * pass the quality gate (they are all usable clinical/dermoscopic photos,
 * so nearly all must). */
static void test_real_photos(void **state) {
    (void)state;
    static const char *const sets[] = {"skin-infections-8", "isic-melanoma-10k", "dermnetnz"};
    char root[512];
    snprintf(root, sizeof root, "%s/data", TEST_SHARED_DIR);
    DIR *probe = opendir(root);
    if (!probe) {
        fprintf(stderr, "SKIP: %s not found (../shared is absent)\n", root);
        skip();
    }
    closedir(probe);
    for (size_t s = 0; s < sizeof sets / sizeof sets[0]; s++) {
        char csv[600];
        snprintf(csv, sizeof csv, "%s/%s/index.csv", root, sets[s]);
        FILE *f = fopen(csv, "r");
        assert_non_null(f);
        char line[1024];
        int decoded = 0, flagged = 0, seen = 0;
        assert_non_null(fgets(line, sizeof line, f)); /* header */
        while (fgets(line, sizeof line, f) && decoded < 60) {
            if (seen++ % 37) continue; /* a spread-out sample */
            char *comma = strchr(line, ',');
            if (!comma) continue;
            *comma = '\0';
            char path[1200];
            int pl = snprintf(path, sizeof path, "%s/%s/%s", root, sets[s], line);
            assert_true(pl > 0 && (size_t)pl < sizeof path); /* a cut path would name another file */
            char *data;
            size_t len;
            assert_int_equal(core_read_file(path, &data, &len, NULL), CORE_OK);
            vision_image img;
            core_error err = {0};
            if (vision_decode((uint8_t *)data, len, NULL, &img, NULL, NULL, &err) != CORE_OK)
                fail_msg("%s: %s", path, err.message);
            vision_quality q;
            assert_int_equal(vision_assess(&img, &q, NULL), CORE_OK);
            if (q.issues) flagged++;
            decoded++;
            vision_image_free(&img);
            free(data);
        }
        fclose(f);
        fprintf(stderr, "%s: %d decoded, %d flagged by the quality gate\n", sets[s], decoded, flagged);
        assert_true(decoded >= 20);
        assert_true(flagged * 5 <= decoded); /* ≤ 20 % of real clinical photos flagged */
    }
    /* A non-photo format from the shared models folder is refused cleanly. */
    char cat[600];
    snprintf(cat, sizeof cat, "%s/models/cat.bmp", TEST_SHARED_DIR);
    char *data;
    size_t len;
    if (core_read_file(cat, &data, &len, NULL) == CORE_OK) {
        vision_image img;
        vision_refusal why;
        assert_int_equal(vision_decode((uint8_t *)data, len, NULL, &img, NULL, &why, NULL), CORE_ERR_INVALID);
        assert_int_equal(why, VISION_NOT_IMAGE);
        free(data);
    }
}

/* ---- the contribution photo hash (vision_phash) ---- */

/* The hash a contribution gets: the photo decoded as the desk decodes it,
 * centre-cropped to 224 px, kept as JPEG q85, decoded again and hashed. */
static uint64_t kept_phash(const uint8_t *bytes, size_t len) {
    vision_limits lim;
    vision_limits_defaults(&lim);
    lim.target_short_side = 224;
    vision_image img, sq, back;
    uint8_t *jpeg;
    size_t jl;
    uint64_t h = 0;
    assert_int_equal(vision_decode(bytes, len, &lim, &img, NULL, NULL, NULL), CORE_OK);
    assert_int_equal(vision_center_square(&img, 224, &sq, NULL), CORE_OK);
    assert_int_equal(vision_encode_jpeg(&sq, 85, &jpeg, &jl, NULL), CORE_OK);
    assert_int_equal(vision_decode(jpeg, jl, &lim, &back, NULL, NULL, NULL), CORE_OK);
    assert_int_equal(vision_phash(&back, &h, NULL), CORE_OK);
    vision_image_free(&img);
    vision_image_free(&sq);
    vision_image_free(&back);
    free(jpeg);
    return h;
}

/* An altered copy of img, as a person could make one: 0 re-encoded at q60,
 * 1 resized to 60 % (160 px short side at least), 2 cropped by 3 % on
 * every side, 3 brightened by 25 levels; its kept hash. */
static uint64_t altered_phash(const vision_image *img, int how) {
    vision_image t = {0};
    int q = how == 0 ? 60 : 90;
    if (how == 1) {
        int shortest = img->width < img->height ? img->width : img->height;
        double f = shortest * 0.6 < 160 ? 160.0 / shortest : 0.6;
        assert_int_equal(vision_resize(img, (int)(img->width * f), (int)(img->height * f), &t, NULL), CORE_OK);
    } else if (how == 2) {
        int dx = img->width * 3 / 100, dy = img->height * 3 / 100;
        t.width = img->width - 2 * dx;
        t.height = img->height - 2 * dy;
        t.rgb = malloc((size_t)t.width * (size_t)t.height * 3);
        for (int y = 0; y < t.height; y++)
            memcpy(t.rgb + (size_t)y * (size_t)t.width * 3,
                   img->rgb + ((size_t)(y + dy) * (size_t)img->width + (size_t)dx) * 3, (size_t)t.width * 3);
    } else {
        assert_int_equal(vision_resize(img, img->width, img->height, &t, NULL), CORE_OK);
        for (size_t i = 0; how == 3 && i < (size_t)t.width * (size_t)t.height * 3; i++)
            t.rgb[i] = (uint8_t)(t.rgb[i] > 230 ? 255 : t.rgb[i] + 25);
    }
    uint8_t *jpeg;
    size_t jl;
    assert_int_equal(vision_encode_jpeg(&t, q, &jpeg, &jl, NULL), CORE_OK);
    uint64_t h = kept_phash(jpeg, jl);
    vision_image_free(&t);
    free(jpeg);
    return h;
}

/* A smooth "lesion" on skin: a dark ellipse at (cx, cy), radii rx, ry. */
static vision_image lesion(int cx, int cy, int rx, int ry) {
    vision_image img = {320, 240, malloc(320 * 240 * 3)};
    for (int y = 0; y < 240; y++)
        for (int x = 0; x < 320; x++) {
            double dx = (double)(x - cx) / rx, dy = (double)(y - cy) / ry, d = dx * dx + dy * dy;
            double k = d < 1 ? 1 - d : 0; /* darkest in the middle */
            uint8_t *p = img.rgb + ((size_t)y * 320 + (size_t)x) * 3;
            p[0] = (uint8_t)(215 - 90 * k + (x * 7 + y * 3) % 9);
            p[1] = (uint8_t)(165 - 100 * k + (x * 5 + y * 11) % 9);
            p[2] = (uint8_t)(140 - 90 * k);
        }
    return img;
}

#define PHASH_MATCH 10 /* the service's default (share_photo_distance) */

/* Fixed images: the hash is a function of the pixels (the same image hashes
 * the same), altered copies stay within the threshold, and a different
 * lesion on the same skin does not. */
static void test_phash_fixed_images(void **state) {
    (void)state;
    vision_image a = lesion(140, 110, 60, 40), b = lesion(220, 150, 30, 70);
    uint64_t ha = 0, ha2 = 1, hb = 0;
    assert_int_equal(vision_phash(&a, &ha, NULL), CORE_OK);
    assert_int_equal(vision_phash(&a, &ha2, NULL), CORE_OK);
    assert_true(ha == ha2);
    size_t la, lb;
    uint8_t *ja = encode_jpeg(&a, &la), *jb = encode_jpeg(&b, &lb);
    ha = kept_phash(ja, la);
    hb = kept_phash(jb, lb);
    for (int how = 0; how < 4; how++) {
        int d = vision_phash_distance(ha, altered_phash(&a, how));
        if (d > PHASH_MATCH) fail_msg("altered copy %d is %d bits away", how, d);
    }
    int far = vision_phash_distance(ha, hb);
    if (far <= PHASH_MATCH) fail_msg("a different lesion is only %d bits away", far);
    assert_int_equal(vision_phash_distance(0, ~(uint64_t)0), 64);
    vision_image empty = {0};
    assert_int_equal(vision_phash(&empty, &ha, NULL), CORE_ERR_INVALID);
    free(ja);
    free(jb);
    vision_image_free(&a);
    vision_image_free(&b);
}

/* Real photos of one condition (DermNet, acne: the hardest case, photos of
 * the same kind): every re-encoded, resized and brightened copy matches its
 * original, nearly every 3 % crop does, and different photos almost never
 * match each other. The full figures are phash_bench's (docs/SURVEILLANCE.md). */
static void test_phash_real_photos(void **state) {
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/data/dermnetnz/Acne_vulgaris", TEST_SHARED_DIR);
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "SKIP: %s not found (../shared is absent)\n", dir);
        skip();
    }
    enum { MAX = 60 };
    uint64_t h[MAX];
    int n = 0, crop_ok = 0;
    struct dirent *e;
    while (n < MAX && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        char *data;
        size_t len;
        assert_int_equal(core_read_file(path, &data, &len, NULL), CORE_OK);
        vision_image img;
        assert_int_equal(vision_decode((uint8_t *)data, len, NULL, &img, NULL, NULL, NULL), CORE_OK);
        h[n] = kept_phash((uint8_t *)data, len);
        for (int how = 0; how < 4; how++) {
            int dist = vision_phash_distance(h[n], altered_phash(&img, how));
            if (how == 2)
                crop_ok += dist <= PHASH_MATCH;
            else if (dist > PHASH_MATCH)
                fail_msg("%s: altered copy %d is %d bits away", e->d_name, how, dist);
        }
        vision_image_free(&img);
        free(data);
        n++;
    }
    closedir(d);
    assert_int_equal(n, MAX);
    int pairs = 0, false_matches = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++, pairs++) false_matches += vision_phash_distance(h[i], h[j]) <= PHASH_MATCH;
    fprintf(stderr, "phash: %d photos, 3 %% crops matched %d, %d false matches in %d pairs\n", n, crop_ok,
            false_matches, pairs);
    assert_true(crop_ok * 10 >= n * 9);        /* ≥ 90 % of 3 % crops (94 % over 297 photos) */
    assert_true(false_matches * 200 <= pairs); /* ≤ 0.5 % (0.014 % over 43,956 pairs) */
}

/* Regression (found by fuzz_vision): a 793-byte HEIC whose one grid tile
 * declares 9768x8216 in its coded parameters although the image says
 * 40x152. Before the side limit libde265 allocated ~240 MB for it. */
static void test_heic_tile_bomb(void **state) {
    (void)state;
    char *data;
    size_t len;
    assert_int_equal(core_read_file(TEST_CORPUS_DIR "/heic-tile-bomb.heic", &data, &len, NULL), CORE_OK);
    assert_true(len < 1000);
    vision_image img;
    vision_refusal why = VISION_OK;
    vision_limits lim;
    vision_limits_defaults(&lim);
    lim.min_side = 16;
    assert_int_equal(vision_decode((uint8_t *)data, len, &lim, &img, NULL, &why, NULL), CORE_ERR_INVALID);
    assert_int_equal(why, VISION_TOO_MANY_PIXELS);
    free(data);
}

/* Regression (found by fuzz_vision in CI): a 300-byte PNG whose eXIf chunk
 * declares 1.7 GB. libpng allocated the declared length before reading it;
 * the chunk walk refuses it as damaged before libpng sees it (and the fuzz
 * target replays this file with a 1 GiB allocation limit on every run). */
static void test_png_chunk_length_bomb(void **state) {
    (void)state;
    char *data;
    size_t len;
    assert_int_equal(core_read_file(TEST_CORPUS_DIR "/png-exif-length-bomb.png", &data, &len, NULL), CORE_OK);
    assert_true(len < 400);
    vision_image img;
    vision_refusal why = VISION_OK;
    assert_int_equal(vision_decode((uint8_t *)data, len, NULL, &img, NULL, &why, NULL), CORE_ERR_INVALID);
    assert_int_equal(why, VISION_CORRUPT);
    free(data);
}

/* Regression (found by fuzz_vision in CI): a 799-byte HEIC whose grid names
 * itself as its own tile. libheif 1.15 followed it until memory ran out
 * (over 4 GB); the reference check refuses it as damaged first. */
static void test_heic_self_grid(void **state) {
    (void)state;
    char *data;
    size_t len;
    assert_int_equal(core_read_file(TEST_CORPUS_DIR "/heic-self-grid.heic", &data, &len, NULL), CORE_OK);
    assert_true(len < 1000);
    vision_image img;
    vision_refusal why = VISION_OK;
    assert_int_equal(vision_decode((uint8_t *)data, len, NULL, &img, NULL, &why, NULL), CORE_ERR_INVALID);
    assert_int_equal(why, VISION_CORRUPT);
    free(data);
}

/* Regression (the second fuzz_vision find in CI): a 799-byte HEIC whose
 * dimg reference box is shorter than its item list (10 bytes for a grid
 * naming item 2, itself, as a tile). The reference check had skipped what it
 * could not parse, and libheif read it anyway and ran out of memory (a
 * 15 TB allocation under ASan); a reference that does not fit its box now
 * makes the file damaged. */
static void test_heic_short_reference(void **state) {
    (void)state;
    char *data;
    size_t len;
    assert_int_equal(core_read_file(TEST_CORPUS_DIR "/heic-short-dimg.heic", &data, &len, NULL), CORE_OK);
    assert_true(len < 1000);
    vision_image img;
    vision_refusal why = VISION_OK;
    assert_int_equal(vision_decode((uint8_t *)data, len, NULL, &img, NULL, &why, NULL), CORE_ERR_INVALID);
    assert_int_equal(why, VISION_CORRUPT);
    free(data);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sniff),
        cmocka_unit_test(test_phash_fixed_images),
        cmocka_unit_test(test_phash_real_photos),
        cmocka_unit_test(test_jpeg_roundtrip_and_scaled_decode),
        cmocka_unit_test(test_exif_orientation_applied_and_gps_dropped),
        cmocka_unit_test(test_png_webp_heic),
        cmocka_unit_test(test_heic_tile_bomb),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_quality),
        cmocka_unit_test(test_resize_and_crop),
        cmocka_unit_test(test_real_photos),
        cmocka_unit_test(test_png_chunk_length_bomb),
        cmocka_unit_test(test_heic_self_grid),
        cmocka_unit_test(test_heic_short_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
