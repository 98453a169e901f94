/* vision — decoding uploads into bare RGB rasters.
 *
 * Every decoder is asked for the image's dimensions first, and the size
 * limits are enforced before a single pixel is allocated, so a 100,000 ×
 * 100,000 "decompression bomb" costs a header parse, not gigabytes.
 * Warnings count as errors: a truncated JPEG that libjpeg would pad with
 * grey is refused, not half-analysed. Orientation comes from EXIF (read with
 * libexif) for JPEG, PNG and WebP; libheif applies HEIC's own transforms. */
#include "vision/vision.h"

#include <libexif/exif-data.h>
#include <libheif/heif.h>
#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <webp/decode.h>
#include <webp/demux.h>

void vision_limits_defaults(vision_limits *lim) {
    lim->max_bytes = 20u << 20;
    lim->max_pixels = 50000000;
    lim->min_side = 128;
    lim->target_short_side = 0;
}

const char *vision_refusal_code(vision_refusal r) {
    switch (r) {
    case VISION_OK: return "ok";
    case VISION_NOT_IMAGE: return "not_an_image";
    case VISION_CORRUPT: return "corrupt_image";
    case VISION_TOO_LARGE: return "file_too_large";
    case VISION_TOO_MANY_PIXELS: return "too_many_pixels";
    case VISION_TOO_SMALL: return "image_too_small";
    }
    return "unknown";
}

const char *vision_format_name(vision_format f) {
    switch (f) {
    case VISION_JPEG: return "jpeg";
    case VISION_PNG: return "png";
    case VISION_WEBP: return "webp";
    case VISION_HEIC: return "heic";
    }
    return "unknown";
}

vision_format vision_sniff(const uint8_t *b, size_t n) {
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) return VISION_JPEG;
    if (n >= 8 && memcmp(b, png_sig, 8) == 0) return VISION_PNG;
    if (n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0) return VISION_WEBP;
    /* ISO-BMFF: size(4) "ftyp" major-brand(4). HEIF brands as iPhones write them. */
    if (n >= 12 && memcmp(b + 4, "ftyp", 4) == 0) {
        static const char *const brands[] = {"heic", "heix", "hevc", "hevx", "heim", "heis", "mif1", "msf1"};
        for (size_t i = 0; i < sizeof brands / sizeof brands[0]; i++)
            if (memcmp(b + 8, brands[i], 4) == 0) return VISION_HEIC;
    }
    return 0;
}

void vision_image_free(vision_image *img) {
    if (!img) return;
    free(img->rgb);
    img->rgb = NULL;
    img->width = img->height = 0;
}

static core_status refuse(vision_refusal *why, vision_refusal r, core_error *err, const char *msg) {
    if (why) *why = r;
    return core_fail(err, CORE_ERR_INVALID, "photo", "%s", msg);
}

static core_status check_dims(uint64_t w, uint64_t h, const vision_limits *lim, vision_refusal *why, core_error *err) {
    if (w == 0 || h == 0)
        return refuse(why, VISION_CORRUPT, err, "This photo seems to be damaged. Please take or choose another one.");
    if (w * h > lim->max_pixels)
        return refuse(why, VISION_TOO_MANY_PIXELS, err,
                      "This image has too many pixels. Please send a normal photo (under 50 megapixels).");
    if ((w < h ? w : h) < (uint64_t)lim->min_side)
        return refuse(
            why, VISION_TOO_SMALL, err,
            "This image is too small to look at. Please send a photo at least 128 pixels on its shorter side.");
    return CORE_OK;
}

static core_status alloc_rgb(vision_image *out, int w, int h, core_error *err) {
    out->width = w;
    out->height = h;
    out->rgb = malloc((size_t)w * (size_t)h * 3);
    return out->rgb ? CORE_OK : core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory decoding the photo");
}

/* ---- EXIF orientation ---- */

static int orientation_from_exif(const uint8_t *data, size_t len) {
    if (len < 8 || len > 0xffff + 6) return 1; /* an EXIF block fits one APP1 segment */
    ExifData *ed = exif_data_new_from_data(data, (unsigned)len);
    if (!ed) return 1;
    int o = 1;
    ExifEntry *e = exif_content_get_entry(ed->ifd[EXIF_IFD_0], EXIF_TAG_ORIENTATION);
    if (e && e->format == EXIF_FORMAT_SHORT && e->components == 1 && e->size >= 2)
        o = exif_get_short(e->data, exif_data_get_byte_order(ed));
    exif_data_unref(ed);
    return o >= 1 && o <= 8 ? o : 1;
}

/* JPEG: walk the marker segments up to the image data and hand libexif only
 * the APP1 "Exif" segment, never the whole (possibly huge) file. */
static int jpeg_orientation(const uint8_t *b, size_t n) {
    size_t at = 2;
    while (at + 4 <= n) {
        if (b[at] != 0xff) return 1;
        uint8_t m = b[at + 1];
        if (m == 0xff) {
            at++;
            continue;
        }                                     /* fill byte */
        if (m == 0xd9 || m == 0xda) return 1; /* end / start of scan: no EXIF before pixels */
        if (m == 0x01 || (m >= 0xd0 && m <= 0xd7)) {
            at += 2;
            continue;
        }
        size_t seg = (size_t)b[at + 2] << 8 | b[at + 3];
        if (seg < 2 || seg > n - at - 2) return 1;
        if (m == 0xe1 && seg >= 8 && memcmp(b + at + 4, "Exif\0\0", 6) == 0)
            return orientation_from_exif(b + at + 4, seg - 2);
        at += 2 + seg;
    }
    return 1;
}

/* PNG keeps EXIF in an eXIf chunk; walk the chunks (bounded) to find it. */
static int png_orientation(const uint8_t *b, size_t n) {
    size_t at = 8;
    while (at + 12 <= n) {
        uint32_t len = (uint32_t)b[at] << 24 | (uint32_t)b[at + 1] << 16 | (uint32_t)b[at + 2] << 8 | b[at + 3];
        if (len > n - at - 12) return 1;
        if (memcmp(b + at + 4, "eXIf", 4) == 0 && len >= 8 && len <= 0xffff) {
            /* Raw TIFF data: libexif wants the "Exif\0\0" header in front. */
            uint8_t *tmp = malloc(len + 6);
            if (!tmp) return 1;
            memcpy(tmp, "Exif\0\0", 6);
            memcpy(tmp + 6, b + at + 8, len);
            int o = orientation_from_exif(tmp, len + 6);
            free(tmp);
            return o;
        }
        if (memcmp(b + at + 4, "IDAT", 4) == 0 || memcmp(b + at + 4, "IEND", 4) == 0) return 1;
        at += 12 + (size_t)len;
    }
    return 1;
}

static int webp_orientation(const uint8_t *b, size_t n) {
    WebPData data = {b, n};
    WebPDemuxer *dmx = WebPDemux(&data);
    if (!dmx) return 1;
    int o = 1;
    WebPChunkIterator it;
    if (WebPDemuxGetChunk(dmx, "EXIF", 1, &it)) {
        const uint8_t *p = it.chunk.bytes;
        size_t len = it.chunk.size;
        if (len >= 6 && memcmp(p, "Exif\0\0", 6) == 0) {
            o = orientation_from_exif(p, len);
        } else if (len <= 0xffff) {
            uint8_t *tmp = malloc(len + 6);
            if (tmp) {
                memcpy(tmp, "Exif\0\0", 6);
                memcpy(tmp + 6, p, len);
                o = orientation_from_exif(tmp, len + 6);
                free(tmp);
            }
        }
        WebPDemuxReleaseChunkIterator(&it);
    }
    WebPDemuxDelete(dmx);
    return o;
}

int vision_exif_orientation(const uint8_t *buf, size_t len, vision_format format) {
    switch (format) {
    case VISION_JPEG: return jpeg_orientation(buf, len);
    case VISION_PNG: return png_orientation(buf, len);
    case VISION_WEBP: return webp_orientation(buf, len);
    case VISION_HEIC: return 1; /* libheif applies irot/imir itself */
    }
    return 1;
}

core_status vision_orient(vision_image *img, int o, core_error *err) {
    if (o <= 1 || o > 8) return CORE_OK;
    int W = img->width, H = img->height;
    bool swap = o >= 5;
    int w = swap ? H : W, h = swap ? W : H;
    uint8_t *dst = malloc((size_t)w * (size_t)h * 3);
    if (!dst) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory rotating the photo");
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            int sx, sy;
            switch (o) {
            case 2:
                sx = W - 1 - x;
                sy = y;
                break;
            case 3:
                sx = W - 1 - x;
                sy = H - 1 - y;
                break;
            case 4:
                sx = x;
                sy = H - 1 - y;
                break;
            case 5:
                sx = y;
                sy = x;
                break;
            case 6:
                sx = y;
                sy = H - 1 - x;
                break;
            case 7:
                sx = W - 1 - y;
                sy = H - 1 - x;
                break;
            default:
                sx = W - 1 - y;
                sy = x;
                break; /* 8 */
            }
            memcpy(dst + ((size_t)y * w + x) * 3, img->rgb + ((size_t)sy * W + sx) * 3, 3);
        }
    }
    free(img->rgb);
    img->rgb = dst;
    img->width = w;
    img->height = h;
    return CORE_OK;
}

/* ---- decoders ---- */

static core_status decode_jpeg(const uint8_t *b, size_t n, const vision_limits *lim, vision_image *out,
                               vision_refusal *why, core_error *err) {
    tjhandle tj = tjInitDecompress();
    if (!tj) return core_fail(err, CORE_ERR_NOMEM, NULL, "cannot start the JPEG decoder");
    /* Zeroed first: on a cut-short header turbojpeg can report success
     * without writing them. */
    int w = 0, h = 0, subsamp = 0, cs = 0;
    core_status rc = CORE_OK;
    if (tjDecompressHeader3(tj, b, (unsigned long)n, &w, &h, &subsamp, &cs) != 0 || w <= 0 || h <= 0)
        rc = refuse(why, VISION_CORRUPT, err, "This photo seems to be damaged. Please take or choose another one.");
    if (!rc) rc = check_dims((uint64_t)w, (uint64_t)h, lim, why, err);
    if (!rc) {
        /* The smallest DCT scale that keeps the short side ≥ the target:
         * decoding a 12 MP photo at 1/4 is several times faster. */
        int nsf = 0, sw = w, sh = h;
        tjscalingfactor *sf = tjGetScalingFactors(&nsf);
        int short_side = w < h ? w : h;
        for (int i = 0; lim->target_short_side > 0 && sf && i < nsf; i++) {
            if (sf[i].num > sf[i].denom) continue; /* never upscale */
            int s = TJSCALED(short_side, sf[i]);
            if (s >= lim->target_short_side && TJSCALED(w, sf[i]) * TJSCALED(h, sf[i]) < sw * sh) {
                sw = TJSCALED(w, sf[i]);
                sh = TJSCALED(h, sf[i]);
            }
        }
        rc = alloc_rgb(out, sw, sh, err);
        if (!rc && tjDecompress2(tj, b, (unsigned long)n, out->rgb, sw, 0, sh, TJPF_RGB, 0) != 0) {
            /* Warnings (e.g. premature end of data) are refusals too. */
            vision_image_free(out);
            rc = refuse(why, VISION_CORRUPT, err,
                        "This photo is incomplete or damaged (it may not have finished uploading). Please try again.");
        }
    }
    tjDestroy(tj);
    return rc;
}

/* Every chunk's declared length fits in the bytes that follow it. libpng
 * 1.6.39 (Debian 12) allocates an eXIf chunk's declared length before
 * reading it, so a 300-byte upload claiming a 1.7 GB chunk made it ask for
 * 1.7 GB (found by fuzz_vision; the input is in tests/fuzz/corpus_vision).
 * The whole file is in memory, so a chunk longer than what is left is
 * damage, refused before libpng sees it. */
static bool png_chunks_fit(const uint8_t *b, size_t n) {
    size_t at = 8; /* the signature (checked by the sniffer) */
    while (at + 12 <= n) {
        uint32_t len = (uint32_t)b[at] << 24 | (uint32_t)b[at + 1] << 16 | (uint32_t)b[at + 2] << 8 | b[at + 3];
        if (len > 0x7fffffffu || len > n - at - 12) return false; /* PNG caps lengths at 2^31 - 1 */
        if (memcmp(b + at + 4, "IEND", 4) == 0) return true;
        at += 12 + (size_t)len;
    }
    return false; /* no IEND: truncated */
}

static core_status decode_png(const uint8_t *b, size_t n, const vision_limits *lim, vision_image *out,
                              vision_refusal *why, core_error *err) {
    if (n < 8 || !png_chunks_fit(b, n))
        return refuse(why, VISION_CORRUPT, err,
                      "This photo is incomplete or damaged (it may not have finished uploading). Please try again.");
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&im, b, n))
        return refuse(why, VISION_CORRUPT, err, "This photo seems to be damaged. Please take or choose another one.");
    core_status rc = check_dims(im.width, im.height, lim, why, err);
    if (rc) {
        png_image_free(&im);
        return rc;
    }
    im.format = PNG_FORMAT_RGB;
    png_color white = {255, 255, 255}; /* transparent areas become white */
    if ((rc = alloc_rgb(out, (int)im.width, (int)im.height, err))) {
        png_image_free(&im);
        return rc;
    }
    if (!png_image_finish_read(&im, &white, out->rgb, 0, NULL) || (im.warning_or_error & PNG_IMAGE_ERROR)) {
        vision_image_free(out);
        png_image_free(&im);
        return refuse(why, VISION_CORRUPT, err,
                      "This photo is incomplete or damaged (it may not have finished uploading). Please try again.");
    }
    png_image_free(&im);
    return CORE_OK;
}

static core_status decode_webp(const uint8_t *b, size_t n, const vision_limits *lim, vision_image *out,
                               vision_refusal *why, core_error *err) {
    WebPDecoderConfig cfg;
    if (!WebPInitDecoderConfig(&cfg)) return core_fail(err, CORE_ERR_NOMEM, NULL, "cannot start the WebP decoder");
    if (WebPGetFeatures(b, n, &cfg.input) != VP8_STATUS_OK)
        return refuse(why, VISION_CORRUPT, err, "This photo seems to be damaged. Please take or choose another one.");
    if (cfg.input.has_animation)
        return refuse(why, VISION_NOT_IMAGE, err, "Animated images cannot be checked. Please send a photo.");
    int w = cfg.input.width, h = cfg.input.height;
    core_status rc = check_dims((uint64_t)w, (uint64_t)h, lim, why, err);
    if (rc) return rc;
    int ow = w, oh = h;
    int short_side = w < h ? w : h;
    if (lim->target_short_side > 0 && short_side > 2 * lim->target_short_side) {
        /* libwebp scales while decoding; keep the aspect ratio. */
        ow = (int)((int64_t)w * lim->target_short_side / short_side);
        oh = (int)((int64_t)h * lim->target_short_side / short_side);
        cfg.options.use_scaling = 1;
        cfg.options.scaled_width = ow;
        cfg.options.scaled_height = oh;
    }
    if ((rc = alloc_rgb(out, ow, oh, err))) return rc;
    cfg.output.colorspace = MODE_RGB;
    cfg.output.is_external_memory = 1;
    cfg.output.u.RGBA.rgba = out->rgb;
    cfg.output.u.RGBA.stride = ow * 3;
    cfg.output.u.RGBA.size = (size_t)ow * (size_t)oh * 3;
    if (WebPDecode(b, n, &cfg) != VP8_STATUS_OK) {
        WebPFreeDecBuffer(&cfg.output);
        vision_image_free(out);
        return refuse(why, VISION_CORRUPT, err,
                      "This photo is incomplete or damaged (it may not have finished uploading). Please try again.");
    }
    WebPFreeDecBuffer(&cfg.output);
    return CORE_OK;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint32_t be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }

/* The derived-image references ('dimg' in meta/iref) form no cycle and no
 * nesting: a grid's tiles are coded images, never grids. libheif 1.15
 * follows a grid that lists itself as its own tile until memory runs out (a
 * 799-byte file took over 4 GB; found by fuzz_vision in CI, kept in
 * tests/fuzz/corpus_vision). Inside meta the check is strict: a child box or
 * a reference whose size does not fit, or a dimg whose item list runs past
 * its box, makes the file damaged — libheif reads such a reference anyway
 * (a 10-byte dimg naming item 2 as its own tile, the second fuzz find), so
 * "cannot parse it here" must not mean "let libheif follow it". Damage
 * before meta is left to libheif, which then finds no image. */
static bool heic_refs_acyclic(const uint8_t *b, size_t n) {
    size_t at = 0;
    while (at + 8 <= n) { /* top-level boxes, to meta */
        size_t size = be32(b + at);
        if (size < 8 || size > n - at) return true;
        if (memcmp(b + at + 4, "meta", 4) != 0) {
            at += size;
            continue;
        }
        size_t end = at + size, c = at + 12; /* meta is a full box */
        while (c + 8 <= end) {               /* meta's children, to iref */
            size_t cs = be32(b + c);
            if (cs < 8 || cs > end - c) return false;
            if (memcmp(b + c + 4, "iref", 4) == 0) {
                if (cs < 12) return false;
                int wide = b[c + 8] != 0; /* version 1: 32-bit item ids */
                size_t w = wide ? 4 : 2, r = c + 12, rend = c + cs;
                uint32_t from[64], to[1024]; /* 48 MP photos have 192 tiles */
                size_t nf = 0, nt = 0;
                while (r < rend) {
                    if (rend - r < 8 + w + 2) return false;
                    size_t rs = be32(b + r);
                    if (rs < 8 + w + 2 || rs > rend - r) return false;
                    size_t count = be16(b + r + 8 + w), q = r + 8 + w + 2;
                    if (count > (rs - (8 + w + 2)) / w) return false;
                    if (memcmp(b + r + 4, "dimg", 4) == 0) {
                        if (nf == 64) return false; /* more grids than any photo has */
                        from[nf++] = wide ? be32(b + r + 8) : be16(b + r + 8);
                        for (size_t k = 0; k < count; k++, q += w) {
                            if (nt == 1024) return false;
                            to[nt++] = wide ? be32(b + q) : be16(b + q);
                        }
                    }
                    r += rs;
                }
                for (size_t k = 0; k < nt; k++)
                    for (size_t f = 0; f < nf; f++)
                        if (to[k] == from[f]) return false;
                return true;
            }
            c += cs;
        }
        return true;
    }
    return true;
}

static core_status decode_heic(const uint8_t *b, size_t n, const vision_limits *lim, vision_image *out,
                               vision_refusal *why, core_error *err) {
    if (!heic_refs_acyclic(b, n))
        return refuse(why, VISION_CORRUPT, err, "This photo seems to be damaged. Please take or choose another one.");
    struct heif_context *ctx = heif_context_alloc();
    if (!ctx) return core_fail(err, CORE_ERR_NOMEM, NULL, "cannot start the HEIC decoder");
    struct heif_image_handle *hd = NULL;
    struct heif_image *img = NULL;
    core_status rc = CORE_OK;
    /* A HEIC is often a grid of tiles, and each tile's coded size (from its
     * own parameter sets) can be far larger than the image it says it is: a
     * 793-byte file found by the fuzzer made libde265 allocate ~240 MB for a
     * "40x152" picture. libheif checks every item against this side limit
     * before allocating, so derive it from the pixel budget (~1.17 × the side
     * of a square image at the limit: 8,249 px for 50 MP). */
    uint64_t side = (uint64_t)sqrt((double)lim->max_pixels);
    side += side / 6;
    heif_context_set_maximum_image_size_limit(ctx, side > 32768 ? 32768 : (int)side);
    struct heif_error e = heif_context_read_from_memory_without_copy(ctx, b, n, NULL);
    if (e.code == heif_error_Ok) e = heif_context_get_primary_image_handle(ctx, &hd);
    if (e.code != heif_error_Ok)
        rc = refuse(why, VISION_CORRUPT, err, "This photo seems to be damaged. Please take or choose another one.");
    if (!rc)
        rc = check_dims((uint64_t)heif_image_handle_get_width(hd), (uint64_t)heif_image_handle_get_height(hd), lim, why,
                        err);
    if (!rc) {
        /* Default options apply the file's rotation/mirroring (irot/imir). */
        e = heif_decode_image(hd, &img, heif_colorspace_RGB, heif_chroma_interleaved_RGB, NULL);
        if (e.code == heif_error_Memory_allocation_error && e.subcode == heif_suberror_Security_limit_exceeded) {
            rc = refuse(why, VISION_TOO_MANY_PIXELS, err,
                        "This image has too many pixels. Please send a normal photo (under 50 megapixels).");
            goto done;
        }
        int stride = 0;
        const uint8_t *p =
            e.code == heif_error_Ok ? heif_image_get_plane_readonly(img, heif_channel_interleaved, &stride) : NULL;
        int w = p ? heif_image_get_width(img, heif_channel_interleaved) : 0;
        int h = p ? heif_image_get_height(img, heif_channel_interleaved) : 0;
        if (!p || w <= 0 || h <= 0 || stride < w * 3) {
            rc = refuse(why, VISION_CORRUPT, err,
                        "This photo is incomplete or damaged (it may not have finished uploading). Please try again.");
        } else if (!(rc = check_dims((uint64_t)w, (uint64_t)h, lim, why, err)) && !(rc = alloc_rgb(out, w, h, err))) {
            for (int y = 0; y < h; y++) memcpy(out->rgb + (size_t)y * w * 3, p + (size_t)y * stride, (size_t)w * 3);
        }
    }
done:
    heif_image_release(img);
    heif_image_handle_release(hd);
    heif_context_free(ctx);
    return rc;
}

core_status vision_decode(const uint8_t *buf, size_t len, const vision_limits *lim_in, vision_image *out,
                          vision_format *format, vision_refusal *why, core_error *err) {
    memset(out, 0, sizeof *out);
    if (why) *why = VISION_OK;
    vision_limits lim;
    if (lim_in)
        lim = *lim_in;
    else
        vision_limits_defaults(&lim);
    if (len > lim.max_bytes)
        return refuse(why, VISION_TOO_LARGE, err, "This file is too large. Please send a photo under 20 MB.");
    vision_format f = vision_sniff(buf, len);
    if (format) *format = f;
    core_status rc;
    switch (f) {
    case VISION_JPEG: rc = decode_jpeg(buf, len, &lim, out, why, err); break;
    case VISION_PNG: rc = decode_png(buf, len, &lim, out, why, err); break;
    case VISION_WEBP: rc = decode_webp(buf, len, &lim, out, why, err); break;
    case VISION_HEIC: rc = decode_heic(buf, len, &lim, out, why, err); break;
    default:
        return refuse(why, VISION_NOT_IMAGE, err,
                      "This file is not a photo we can read. Please send a JPEG, PNG, WebP or HEIC picture.");
    }
    if (rc) return rc;
    rc = vision_orient(out, vision_exif_orientation(buf, len, f), err);
    if (rc) vision_image_free(out);
    return rc;
}
