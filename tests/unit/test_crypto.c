#define _GNU_SOURCE /* memmem */
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "testutil.h"

static int setup(void **state) {
    (void)state;
    return cs_crypto_init(NULL) == CORE_OK ? 0 : -1;
}

static void seal_open_roundtrip_and_tamper(void **state) {
    (void)state;
    uint8_t key[32], other[32];
    cs_crypto_random(key, sizeof key);
    cs_crypto_random(other, sizeof other);
    const char *msg = "rash on left forearm";
    uint8_t *sealed = NULL, *plain = NULL;
    size_t slen = 0, plen = 0;
    core_error err = {0};
    assert_int_equal(cs_crypto_seal(key, "ad", 2, msg, strlen(msg), &sealed, &slen, &err), CORE_OK);
    assert_int_equal(slen, strlen(msg) + CS_CRYPTO_SEAL_OVERHEAD);
    assert_null(memmem(sealed, slen, "rash", 4)); /* ciphertext does not carry the text */
    assert_int_equal(cs_crypto_open(key, "ad", 2, sealed, slen, &plain, &plen, &err), CORE_OK);
    assert_int_equal(plen, strlen(msg));
    assert_string_equal((char *)plain, msg);
    free(plain);
    /* wrong key, wrong associated data, flipped bit, truncation: all refused */
    assert_int_equal(cs_crypto_open(other, "ad", 2, sealed, slen, &plain, &plen, &err), CORE_ERR_CRYPTO);
    assert_int_equal(cs_crypto_open(key, "AD", 2, sealed, slen, &plain, &plen, &err), CORE_ERR_CRYPTO);
    sealed[slen / 2] ^= 1;
    assert_int_equal(cs_crypto_open(key, "ad", 2, sealed, slen, &plain, &plen, &err), CORE_ERR_CRYPTO);
    assert_int_equal(cs_crypto_open(key, "ad", 2, sealed, 10, &plain, &plen, &err), CORE_ERR_CRYPTO);
    assert_null(plain);
    free(sealed);
}

static void same_plaintext_seals_differently(void **state) {
    (void)state;
    uint8_t key[32] = {1};
    uint8_t *a = NULL, *b = NULL;
    size_t la, lb;
    assert_int_equal(cs_crypto_seal(key, "", 0, "x", 1, &a, &la, NULL), CORE_OK);
    assert_int_equal(cs_crypto_seal(key, "", 0, "x", 1, &b, &lb, NULL), CORE_OK);
    assert_int_equal(la, lb);
    assert_memory_not_equal(a, b, la); /* random nonces */
    free(a);
    free(b);
}

static void password_derive_is_deterministic_and_salted(void **state) {
    (void)state;
    uint8_t salt[16] = {0}, salt2[16] = {1};
    uint8_t k1[32], v1[32], k2[32], v2[32], k3[32], v3[32];
    cs_crypto_kdf_cost cost = cs_crypto_kdf_default();
    assert_int_equal(cs_crypto_password_derive("hunter2hunter2", 14, salt, cost, k1, v1, NULL), CORE_OK);
    assert_int_equal(cs_crypto_password_derive("hunter2hunter2", 14, salt, cost, k2, v2, NULL), CORE_OK);
    assert_memory_equal(k1, k2, 32);
    assert_memory_equal(v1, v2, 32);
    assert_memory_not_equal(k1, v1, 32); /* the two halves are independent */
    assert_int_equal(cs_crypto_password_derive("hunter2hunter2", 14, salt2, cost, k3, v3, NULL), CORE_OK);
    assert_memory_not_equal(k1, k3, 32);
    assert_int_equal(cs_crypto_password_derive("hunter2hunter3", 14, salt, cost, k3, v3, NULL), CORE_OK);
    assert_memory_not_equal(v1, v3, 32);
}

static void hex_and_base64(void **state) {
    (void)state;
    uint8_t in[5] = {0x00, 0xff, 0x10, 0xab, 0x7f}, out[5];
    char hex[11], b64[16];
    cs_crypto_hex(in, 5, hex);
    assert_string_equal(hex, "00ff10ab7f");
    assert_true(cs_crypto_unhex(hex, out, 5));
    assert_memory_equal(in, out, 5);
    assert_false(cs_crypto_unhex("00ff10ab7", out, 5));    /* odd length */
    assert_false(cs_crypto_unhex("00ff10ab7g", out, 5));   /* not hex */
    assert_false(cs_crypto_unhex("00ff10ab7f00", out, 5)); /* too long */
    assert_true(cs_crypto_b64_len(5) <= sizeof b64);
    cs_crypto_b64(in, 5, b64);
    assert_null(strpbrk(b64, "+/="));
    assert_true(cs_crypto_unb64(b64, out, 5));
    assert_memory_equal(in, out, 5);
    assert_false(cs_crypto_unb64("AAAA", out, 5));
    assert_false(cs_crypto_unb64("A*_-AAA", out, 5));
}

static void recovery_code_roundtrip_and_lookalikes(void **state) {
    (void)state;
    for (int i = 0; i < 200; i++) {
        uint8_t raw[20], back[20];
        char text[CS_CRYPTO_RECOVERY_TEXT];
        cs_crypto_recovery_new(raw, text);
        assert_int_equal(strlen(text), 39);
        for (int g = 4; g < 39; g += 5) assert_int_equal(text[g], '-');
        assert_true(cs_crypto_recovery_parse(text, back));
        assert_memory_equal(raw, back, 20);
        /* lower case, spaces instead of dashes, O for 0 all accepted */
        char loose[64];
        size_t o = 0;
        for (const char *p = text; *p; p++) {
            char ch = *p == '-' ? ' ' : (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
            if (ch == '0') ch = 'o';
            if (ch == '1') ch = 'l';
            loose[o++] = ch;
        }
        loose[o] = '\0';
        assert_true(cs_crypto_recovery_parse(loose, back));
        assert_memory_equal(raw, back, 20);
    }
    uint8_t raw[20];
    assert_false(cs_crypto_recovery_parse("ABCD", raw));
    assert_false(cs_crypto_recovery_parse("UUUU-UUUU-UUUU-UUUU-UUUU-UUUU-UUUU-UUUU", raw)); /* U not Crockford */
    assert_false(cs_crypto_recovery_parse("0000-0000-0000-0000-0000-0000-0000-0000-0", raw));
}

static void hash_is_domain_separated(void **state) {
    (void)state;
    uint8_t a[32], b[32], c[32];
    cs_crypto_hash(a, "ctx-one", "data", 4);
    cs_crypto_hash(b, "ctx-two", "data", 4);
    cs_crypto_hash(c, "ctx-one", "data", 4);
    assert_memory_not_equal(a, b, 32);
    assert_memory_equal(a, c, 32);
    assert_true(cs_crypto_equal(a, c, 32));
    assert_false(cs_crypto_equal(a, b, 32));
}

/* A sealed box (the vault inbox): the seed makes the same pair again; only
 * the secret key opens; an altered or truncated box is refused. */
static void box_seals_to_a_public_key(void **state) {
    (void)state;
    uint8_t seed[32], pk[32], sk[32], pk2[32], sk2[32];
    memset(seed, 7, sizeof seed);
    cs_crypto_box_seed_keypair(seed, pk, sk);
    cs_crypto_box_seed_keypair(seed, pk2, sk2);
    assert_memory_equal(pk, pk2, 32);
    const char msg[] = "a withdrawal tag and its facts";
    uint8_t box[sizeof msg + CS_CRYPTO_BOX_SEAL_OVERHEAD], out[sizeof msg];
    core_error err = {0};
    assert_int_equal(cs_crypto_box_seal(pk, msg, sizeof msg, box, &err), CORE_OK);
    assert_null(memmem(box, sizeof box, "withdrawal", 10));
    assert_int_equal(cs_crypto_box_open(pk, sk, box, sizeof box, out, &err), CORE_OK);
    assert_memory_equal(out, msg, sizeof msg);
    seed[0] ^= 1;
    cs_crypto_box_seed_keypair(seed, pk2, sk2);
    assert_int_equal(cs_crypto_box_open(pk2, sk2, box, sizeof box, out, &err), CORE_ERR_CRYPTO);
    box[sizeof box - 1] ^= 1;
    assert_int_equal(cs_crypto_box_open(pk, sk, box, sizeof box, out, &err), CORE_ERR_CRYPTO);
    assert_int_equal(cs_crypto_box_open(pk, sk, box, 10, out, &err), CORE_ERR_CRYPTO);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(seal_open_roundtrip_and_tamper),
        cmocka_unit_test(same_plaintext_seals_differently),
        cmocka_unit_test(password_derive_is_deterministic_and_salted),
        cmocka_unit_test(hex_and_base64),
        cmocka_unit_test(recovery_code_roundtrip_and_lookalikes),
        cmocka_unit_test(hash_is_domain_separated),
        cmocka_unit_test(box_seals_to_a_public_key),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
