/* vision — photo intake: decode an uploaded photo (JPEG, PNG, WebP, HEIC)
 * with Debian's libraries, refuse what is not a usable photo, apply the EXIF
 * orientation, and keep nothing but pixels.
 *
 * Privacy: the decoded image is a bare RGB raster. EXIF, XMP, ICC, GPS and
 * every other piece of metadata are read only to learn the orientation and
 * are never copied anywhere; vision_encode_jpeg writes pixels only. So a
 * photo that passed through here cannot carry its location onward.
 *
 * Ownership: vision_image pixels are malloc'd and freed by vision_image_free.
 * Input buffers are borrowed. No function prints. Thread-safe. */
#ifndef CARESYNC_VISION_H
#define CARESYNC_VISION_H

#include "core/core.h"

typedef enum { VISION_JPEG = 1, VISION_PNG, VISION_WEBP, VISION_HEIC } vision_format;

typedef struct {
    int width, height;
    uint8_t *rgb; /* width × height × 3, row-major, sRGB as decoded */
} vision_image;

typedef struct {
    size_t max_bytes;    /* default 20 MB */
    uint64_t max_pixels; /* default 50 megapixels (decompression bombs) */
    int min_side;        /* default 128 px on the short side */
    /* Decode no larger than needed: when > 0, JPEG and WebP are decoded at
     * the smallest built-in scale whose short side is still ≥ this (the
     * limits above are checked on the full size first). 0 = full size. */
    int target_short_side;
} vision_limits;

void vision_limits_defaults(vision_limits *lim);

/* Stable reasons for a refused photo (CORE_ERR_INVALID; err->field is
 * "photo" and err->message a sentence for the person). */
typedef enum {
    VISION_OK = 0,
    VISION_NOT_IMAGE, /* not a JPEG, PNG, WebP or HEIC */
    VISION_CORRUPT,   /* damaged or truncated */
    VISION_TOO_LARGE, /* over max_bytes */
    VISION_TOO_MANY_PIXELS,
    VISION_TOO_SMALL,
} vision_refusal;
const char *vision_refusal_code(vision_refusal r); /* "not_an_image", "corrupt_image", … */

/* Sniff the format from the first bytes; 0 when none of ours. */
vision_format vision_sniff(const uint8_t *buf, size_t len);
const char *vision_format_name(vision_format f);

/* Decode, check limits, apply the orientation. On refusal returns
 * CORE_ERR_INVALID with *why set (why may be NULL). */
core_status vision_decode(const uint8_t *buf, size_t len, const vision_limits *lim, vision_image *out,
                          vision_format *format, vision_refusal *why, core_error *err);
void vision_image_free(vision_image *img);

/* EXIF orientation (1–8, 1 = upright) found in a JPEG/WebP/PNG file's
 * metadata, or 1 when there is none or it cannot be read. */
int vision_exif_orientation(const uint8_t *buf, size_t len, vision_format format);
/* Rotate/flip in place per an EXIF orientation value. */
core_status vision_orient(vision_image *img, int orientation, core_error *err);

/* Area-averaging resize to exactly w × h (any ratio), and a centre square
 * crop resized to side × side — what the model sees. */
core_status vision_resize(const vision_image *in, int w, int h, vision_image *out, core_error *err);
core_status vision_center_square(const vision_image *in, int side, vision_image *out, core_error *err);

/* Quality before any model runs. Each problem has a plain sentence saying
 * what to do. Measures are on a ≤256 px grey/colour copy. */
typedef enum {
    VISION_Q_BLURRY = 1 << 0,
    VISION_Q_DARK = 1 << 1,
    VISION_Q_BRIGHT = 1 << 2,
    VISION_Q_NO_SKIN = 1 << 3,
} vision_issue;
typedef struct {
    double sharpness;      /* variance of the Laplacian of luma (higher = sharper) */
    double brightness;     /* mean luma, 0–255 */
    double clipped_dark;   /* fraction of pixels with luma < 16 */
    double clipped_bright; /* fraction with luma > 240 */
    double skin_fraction;  /* fraction of pixels in a skin colour range (YCbCr) */
    unsigned issues;       /* vision_issue bits */
} vision_quality;
core_status vision_assess(const vision_image *img, vision_quality *q, core_error *err);
const char *vision_issue_code(vision_issue i);   /* "too_blurry", "too_dark", … */
const char *vision_issue_advice(vision_issue i); /* a sentence for the person */

/* Skin tone as the Individual Typology Angle in degrees (tone.c), from the
 * skin-coloured pixels around the centre of the photo; NAN when too little
 * of the photo is skin. For reporting accuracy by skin tone. */
core_status vision_skin_ita(const vision_image *img, double *ita, core_error *err);
/* The usual six ITA groups ("very light (ITA > 55)", ..., "dark (< -30)"; "unknown" for NAN). */
const char *vision_ita_group(double ita);
/* A 64-bit DCT perceptual hash of the image (phash.c): the same photo
 * re-encoded, resized, slightly cropped or brightened hashes within a few
 * bits of itself; different photos differ in about half of the 64. */
core_status vision_phash(const vision_image *img, uint64_t *out, core_error *err);
/* Bits in which two hashes differ (0–64). */
int vision_phash_distance(uint64_t a, uint64_t b);
/* Encode pixels (only) as a baseline JPEG; *out is malloc'd, caller frees. */
core_status vision_encode_jpeg(const vision_image *img, int quality, uint8_t **out, size_t *len, core_error *err);

#endif
