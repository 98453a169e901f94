/* crypto — the only module that calls libsodium directly.
 *
 * Functions are prefixed cs_crypto_ (not crypto_) to stay out of libsodium's
 * own namespace. All keys are 32 bytes. Buffers returned through uint8_t **
 * are malloc'd and owned by the caller (free with free()). */
#ifndef CARESYNC_CRYPTO_H
#define CARESYNC_CRYPTO_H

#include "core/core.h"

#define CS_CRYPTO_KEY_BYTES 32
#define CS_CRYPTO_SALT_BYTES 16
#define CS_CRYPTO_SEAL_OVERHEAD (24 + 16) /* nonce + Poly1305 tag */
#define CS_CRYPTO_RECOVERY_RAW 20         /* 160-bit recovery secret */
#define CS_CRYPTO_RECOVERY_TEXT 48        /* "XXXX-XXXX-…" (39 chars) + NUL, rounded up */

/* Must be called once before any other function (thread-safe, idempotent). */
core_status cs_crypto_init(core_error *err);

void cs_crypto_random(void *buf, size_t n);
/* A uniform random number in [0, upper) (no modulo bias); 0 when upper < 2. */
uint32_t cs_crypto_uniform(uint32_t upper);
void cs_crypto_wipe(void *buf, size_t n);
/* Constant-time equality of two n-byte buffers. */
bool cs_crypto_equal(const void *a, const void *b, size_t n);

/* Hex: out needs 2n+1 bytes. unhex returns false unless text is exactly 2n hex digits. */
void cs_crypto_hex(const uint8_t *in, size_t n, char *out);
bool cs_crypto_unhex(const char *text, uint8_t *out, size_t n);
/* URL-safe base64 without padding: out needs cs_crypto_b64_len(n) bytes. */
size_t cs_crypto_b64_len(size_t n);
void cs_crypto_b64(const uint8_t *in, size_t n, char *out);
/* Decodes exactly n bytes; false on any malformed or wrong-length input. */
bool cs_crypto_unb64(const char *text, uint8_t *out, size_t n);

/* Domain-separated BLAKE2b-256: out = BLAKE2b(key=context, in). context ≤ 64 bytes. */
void cs_crypto_hash(uint8_t out[32], const char *context, const void *in, size_t len);

/* SHA-256 (the ledger's Merkle tree follows RFC 6962, which fixes SHA-256).
 * The _2 variant hashes a ‖ b without copying. */
#define CS_CRYPTO_SHA256_BYTES 32
void cs_crypto_sha256(uint8_t out[32], const void *in, size_t len);
void cs_crypto_sha256_2(uint8_t out[32], const void *a, size_t alen, const void *b, size_t blen);

/* Ed25519 signatures (ledger transactions, blocks, tree heads). The secret
 * key is 64 bytes (seed ‖ public key), as libsodium lays it out. */
#define CS_CRYPTO_SIGN_PUBLIC 32
#define CS_CRYPTO_SIGN_SECRET 64
#define CS_CRYPTO_SIGNATURE 64
void cs_crypto_sign_keypair(uint8_t pk[32], uint8_t sk[64]);
/* Rebuild a keypair from its 32-byte seed (the first half of sk). */
void cs_crypto_sign_seed_keypair(const uint8_t seed[32], uint8_t pk[32], uint8_t sk[64]);
void cs_crypto_sign(uint8_t sig[64], const void *msg, size_t len, const uint8_t sk[64]);
/* True only for a valid signature by pk (libsodium rejects non-canonical
 * encodings and small-order keys, so signatures are not malleable). */
bool cs_crypto_sign_verify(const uint8_t sig[64], const void *msg, size_t len, const uint8_t pk[32]);

/* Argon2id cost parameters, stored with each hash so they can be raised later. */
typedef struct {
    uint64_t ops;
    uint64_t mem;
} cs_crypto_kdf_cost;
cs_crypto_kdf_cost cs_crypto_kdf_default(void);

/* One Argon2id run over the password yields two independent 32-byte halves:
 * wrap_key (encrypts the account's data key) and verifier (stored, compared at
 * login). Neither half reveals the other. */
core_status cs_crypto_password_derive(const char *password, size_t len, const uint8_t salt[CS_CRYPTO_SALT_BYTES],
                                      cs_crypto_kdf_cost cost, uint8_t wrap_key[32], uint8_t verifier[32],
                                      core_error *err);

/* XChaCha20-Poly1305: out = nonce ‖ ciphertext ‖ tag, bound to ad. */
core_status cs_crypto_seal(const uint8_t key[32], const void *ad, size_t adlen, const void *pt, size_t ptlen,
                           uint8_t **out, size_t *outlen, core_error *err);
/* Inverse of seal. *out is NUL-terminated for convenience (not counted in outlen). */
core_status cs_crypto_open(const uint8_t key[32], const void *ad, size_t adlen, const uint8_t *sealed, size_t sealedlen,
                           uint8_t **out, size_t *outlen, core_error *err);

/* X25519 sealed boxes (libsodium crypto_box_seal): anyone holding pk seals,
 * only the holder of sk opens; the sender stays anonymous and cannot open
 * what it sealed. Used where the server must leave something for a person
 * while only the person's session holds their key (share's vault inbox).
 * There is no associated data: bind context inside the plaintext. out has
 * room for ptlen + CS_CRYPTO_BOX_SEAL_OVERHEAD bytes; open's out for
 * inlen - CS_CRYPTO_BOX_SEAL_OVERHEAD. A box that does not open (wrong key,
 * altered, truncated) is CORE_ERR_CRYPTO. */
#define CS_CRYPTO_BOX_SEAL_OVERHEAD 48
void cs_crypto_box_seed_keypair(const uint8_t seed[32], uint8_t pk[32], uint8_t sk[32]);
core_status cs_crypto_box_seal(const uint8_t pk[32], const void *pt, size_t ptlen, uint8_t *out, core_error *err);
core_status cs_crypto_box_open(const uint8_t pk[32], const uint8_t sk[32], const uint8_t *in, size_t inlen,
                               uint8_t *out, core_error *err);

/* Recovery codes: 160 random bits shown as 8 groups of 4 Crockford base32
 * characters. parse accepts any case, spaces/dashes, and O/I/L look-alikes. */
void cs_crypto_recovery_new(uint8_t raw[CS_CRYPTO_RECOVERY_RAW], char text[CS_CRYPTO_RECOVERY_TEXT]);
bool cs_crypto_recovery_parse(const char *text, uint8_t raw[CS_CRYPTO_RECOVERY_RAW]);

#endif
