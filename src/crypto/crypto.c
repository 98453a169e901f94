/* crypto — libsodium wrappers. Every secret-bearing stack buffer is wiped. */
#include "crypto/crypto.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

core_status cs_crypto_init(core_error *err) {
    if (sodium_init() < 0) return core_fail(err, CORE_ERR_CRYPTO, NULL, "libsodium failed to initialise");
    return CORE_OK;
}

void cs_crypto_random(void *buf, size_t n) { randombytes_buf(buf, n); }
uint32_t cs_crypto_uniform(uint32_t upper) { return upper < 2 ? 0 : randombytes_uniform(upper); }
void cs_crypto_wipe(void *buf, size_t n) { sodium_memzero(buf, n); }
bool cs_crypto_equal(const void *a, const void *b, size_t n) { return sodium_memcmp(a, b, n) == 0; }

void cs_crypto_hex(const uint8_t *in, size_t n, char *out) { sodium_bin2hex(out, 2 * n + 1, in, n); }

bool cs_crypto_unhex(const char *text, uint8_t *out, size_t n) {
    size_t got = 0;
    const char *end = NULL;
    if (strlen(text) != 2 * n) return false;
    if (sodium_hex2bin(out, n, text, 2 * n, NULL, &got, &end) != 0) return false;
    return got == n && end && *end == '\0';
}

size_t cs_crypto_b64_len(size_t n) { return sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING); }

void cs_crypto_b64(const uint8_t *in, size_t n, char *out) {
    sodium_bin2base64(out, cs_crypto_b64_len(n), in, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

bool cs_crypto_unb64(const char *text, uint8_t *out, size_t n) {
    size_t got = 0;
    const char *end = NULL;
    size_t len = strlen(text);
    if (len != cs_crypto_b64_len(n) - 1) return false;
    if (sodium_base642bin(out, n, text, len, NULL, &got, &end, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        return false;
    return got == n && end && *end == '\0';
}

void cs_crypto_sha256(uint8_t out[32], const void *in, size_t len) { crypto_hash_sha256(out, in, len); }

void cs_crypto_sha256_2(uint8_t out[32], const void *a, size_t alen, const void *b, size_t blen) {
    crypto_hash_sha256_state h;
    crypto_hash_sha256_init(&h);
    crypto_hash_sha256_update(&h, a, alen);
    crypto_hash_sha256_update(&h, b, blen);
    crypto_hash_sha256_final(&h, out);
}

void cs_crypto_sign_keypair(uint8_t pk[32], uint8_t sk[64]) { crypto_sign_keypair(pk, sk); }

void cs_crypto_sign_seed_keypair(const uint8_t seed[32], uint8_t pk[32], uint8_t sk[64]) {
    crypto_sign_seed_keypair(pk, sk, seed);
}

void cs_crypto_sign(uint8_t sig[64], const void *msg, size_t len, const uint8_t sk[64]) {
    crypto_sign_detached(sig, NULL, msg, len, sk);
}

bool cs_crypto_sign_verify(const uint8_t sig[64], const void *msg, size_t len, const uint8_t pk[32]) {
    return crypto_sign_verify_detached(sig, msg, len, pk) == 0;
}

void cs_crypto_hash(uint8_t out[32], const char *context, const void *in, size_t len) {
    size_t klen = strlen(context);
    if (klen > crypto_generichash_KEYBYTES_MAX) klen = crypto_generichash_KEYBYTES_MAX;
    crypto_generichash(out, 32, in, len, (const unsigned char *)context, klen);
}

cs_crypto_kdf_cost cs_crypto_kdf_default(void) {
    return (cs_crypto_kdf_cost){crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE};
}

core_status cs_crypto_password_derive(const char *password, size_t len, const uint8_t salt[16], cs_crypto_kdf_cost cost,
                                      uint8_t wrap_key[32], uint8_t verifier[32], core_error *err) {
    uint8_t out[64];
    /* crypto_pwhash can fail when memory is short: never use its output unchecked. */
    if (crypto_pwhash(out, sizeof out, password, len, salt, cost.ops, (size_t)cost.mem, crypto_pwhash_ALG_ARGON2ID13) !=
        0) {
        sodium_memzero(out, sizeof out);
        return core_fail(err, CORE_ERR_CRYPTO, NULL, "password hashing failed (out of memory?)");
    }
    memcpy(wrap_key, out, 32);
    /* The stored verifier is a hash of the second half, so even a leaked
     * verifier is not itself an input the login path accepts. */
    cs_crypto_hash(verifier, "caresync-password-verifier-v1", out + 32, 32);
    sodium_memzero(out, sizeof out);
    return CORE_OK;
}

core_status cs_crypto_seal(const uint8_t key[32], const void *ad, size_t adlen, const void *pt, size_t ptlen,
                           uint8_t **out, size_t *outlen, core_error *err) {
    size_t n = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
    size_t total = n + ptlen + crypto_aead_xchacha20poly1305_ietf_ABYTES;
    uint8_t *buf = malloc(total);
    if (!buf) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    randombytes_buf(buf, n);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(buf + n, &clen, pt, ptlen, ad, adlen, NULL, buf, key);
    *out = buf;
    *outlen = n + (size_t)clen;
    return CORE_OK;
}

core_status cs_crypto_open(const uint8_t key[32], const void *ad, size_t adlen, const uint8_t *sealed, size_t sealedlen,
                           uint8_t **out, size_t *outlen, core_error *err) {
    size_t n = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
    size_t a = crypto_aead_xchacha20poly1305_ietf_ABYTES;
    *out = NULL;
    if (sealedlen < n + a) return core_fail(err, CORE_ERR_CRYPTO, NULL, "sealed data is truncated");
    uint8_t *buf = malloc(sealedlen - n - a + 1);
    if (!buf) return core_fail(err, CORE_ERR_NOMEM, NULL, "out of memory");
    unsigned long long plen = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(buf, &plen, NULL, sealed + n, sealedlen - n, ad, adlen, sealed,
                                                   key) != 0) {
        free(buf);
        return core_fail(err, CORE_ERR_CRYPTO, NULL, "sealed data failed authentication");
    }
    buf[plen] = '\0';
    *out = buf;
    *outlen = (size_t)plen;
    return CORE_OK;
}

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

void cs_crypto_recovery_new(uint8_t raw[20], char text[CS_CRYPTO_RECOVERY_TEXT]) {
    randombytes_buf(raw, 20);
    /* 160 bits = 32 base32 digits, in groups of 4. */
    size_t o = 0;
    for (int i = 0; i < 32; i++) {
        int bit = i * 5, byte = bit / 8, shift = bit % 8;
        unsigned v = (unsigned)raw[byte] << 8 | (byte + 1 < 20 ? raw[byte + 1] : 0);
        unsigned digit = (v >> (11 - shift)) & 31;
        if (i > 0 && i % 4 == 0) text[o++] = '-';
        text[o++] = crockford[digit];
    }
    text[o] = '\0';
}

static int crockford_value(char c) {
    if (c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
    if (c == 'O') c = '0';
    if (c == 'I' || c == 'L') c = '1';
    const char *p = c ? strchr(crockford, c) : NULL;
    return p ? (int)(p - crockford) : -1;
}

bool cs_crypto_recovery_parse(const char *text, uint8_t raw[20]) {
    uint8_t out[20] = {0};
    int digits = 0;
    for (const char *p = text; *p; p++) {
        if (*p == '-' || *p == ' ') continue;
        int v = crockford_value(*p);
        if (v < 0 || digits >= 32) return false;
        int bit = digits * 5;
        for (int b = 4; b >= 0; b--, bit++)
            if (v >> b & 1) out[bit / 8] |= (uint8_t)(0x80 >> (bit % 8));
        digits++;
    }
    if (digits != 32) return false;
    memcpy(raw, out, 20);
    sodium_memzero(out, sizeof out);
    return true;
}

_Static_assert(CS_CRYPTO_BOX_SEAL_OVERHEAD == crypto_box_SEALBYTES, "sealed box overhead");

void cs_crypto_box_seed_keypair(const uint8_t seed[32], uint8_t pk[32], uint8_t sk[32]) {
    crypto_box_seed_keypair(pk, sk, seed);
}

core_status cs_crypto_box_seal(const uint8_t pk[32], const void *pt, size_t ptlen, uint8_t *out, core_error *err) {
    /* Fails only for a public key of small order (not one we made). */
    if (crypto_box_seal(out, pt, ptlen, pk) != 0) return core_fail(err, CORE_ERR_CRYPTO, NULL, "not a usable key");
    return CORE_OK;
}

core_status cs_crypto_box_open(const uint8_t pk[32], const uint8_t sk[32], const uint8_t *in, size_t inlen,
                               uint8_t *out, core_error *err) {
    if (inlen < crypto_box_SEALBYTES || crypto_box_seal_open(out, in, inlen, pk, sk) != 0)
        return core_fail(err, CORE_ERR_CRYPTO, NULL, "a sealed box could not be opened");
    return CORE_OK;
}
