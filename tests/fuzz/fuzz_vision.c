/* libFuzzer target: photo intake — format sniffing, the four decoders
 * (libjpeg-turbo, libpng, libwebp, libheif), the EXIF orientation readers
 * and the orientation/quality code on whatever decodes. Limits are lowered
 * so the fuzzer spends its time in parsers, not in allocating pixels. */
#include <stdint.h>
#include <stdlib.h>

#include "vision/vision.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vision_limits lim;
    vision_limits_defaults(&lim);
    lim.max_pixels = 4u << 20;
    lim.min_side = 16;
    vision_image img;
    vision_format f;
    vision_refusal why;
    if (vision_decode(data, size, &lim, &img, &f, &why, NULL) == CORE_OK) {
        if (img.width < 1 || img.height < 1 || !img.rgb) abort();
        vision_quality q;
        (void)vision_assess(&img, &q, NULL);
        vision_image_free(&img);
    } else if (why == VISION_OK) {
        abort(); /* a refusal must say why */
    }
    for (vision_format g = VISION_JPEG; g <= VISION_HEIC; g++) (void)vision_exif_orientation(data, size, g);
    return 0;
}
