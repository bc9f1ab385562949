#ifndef LATCHKEY_COPENSSL_SHIM_H
#define LATCHKEY_COPENSSL_SHIM_H
/* Only what Swift cannot express over the EVP calls: a function-like macro
   (OPENSSL_free), the OSSL_PARAM_BLD builders whose ownership rules read
   better in C, and ECDSA_SIG's r/s conversion. Key generation, AES-GCM and
   the DER encodings are Swift (the Cryptography target).
   Every helper returns NULL / 0 on failure and leaves the error queue for
   the Swift wrapper to read and clear. */
#include <string.h>
#include <sys/random.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/err.h>
#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <openssl/ec.h>
#include <openssl/bn.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>

static inline void lk_openssl_free(void *p) { OPENSSL_free(p); }

/* The kernel CSPRNG (getrandom(2)); the Cryptography wrapper falls back to RAND_bytes. */
static inline long lk_getrandom(void *buf, size_t len) { return (long)getrandom(buf, len, 0); }

/* 1 = EC P-256, 2 = RSA, 3 = Ed25519, 0 = anything else. */
static inline int lk_pkey_kind(const EVP_PKEY *pkey) {
    int id = EVP_PKEY_get_base_id(pkey);
    if (id == EVP_PKEY_EC) {
        char name[64] = {0};
        size_t len = 0;
        if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof name, &len) != 1) return 0;
        return strcmp(name, "prime256v1") == 0 || strcmp(name, "P-256") == 0 ? 1 : 0;
    }
    if (id == EVP_PKEY_RSA) return 2;
    if (id == EVP_PKEY_ED25519) return 3;
    return 0;
}

/* Big-endian bytes of an RSA parameter ("n" or "e"); returns the length, 0 on failure. */
static inline int lk_rsa_param(const EVP_PKEY *pkey, const char *name, unsigned char *out, int cap) {
    BIGNUM *bn = NULL;
    if (EVP_PKEY_get_bn_param(pkey, name, &bn) != 1) return 0;
    int n = BN_num_bytes(bn);
    int written = (n <= cap) ? BN_bn2bin(bn, out) : 0;
    BN_free(bn);
    return written;
}

/* EC P-256 public key from an uncompressed point. */
static inline EVP_PKEY *lk_ec_public_from_point(const unsigned char *point, size_t len) {
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    if (!bld) return NULL;
    if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, len)) goto done;
    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0) pkey = NULL;
done:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    return pkey;
}

/* RSA key from big-endian parameters. With d == NULL a public key; otherwise
   a private key (p, q, dp, dq, qi may be NULL: OpenSSL derives what it needs). */
typedef struct { const unsigned char *ptr; size_t len; } lk_bytes;
static inline EVP_PKEY *lk_rsa_from_params(lk_bytes n, lk_bytes e, lk_bytes d,
                                           lk_bytes p, lk_bytes q, lk_bytes dp, lk_bytes dq, lk_bytes qi) {
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    BIGNUM *bns[8] = {0};
    lk_bytes parts[8] = {n, e, d, p, q, dp, dq, qi};
    const char *names[8] = {OSSL_PKEY_PARAM_RSA_N, OSSL_PKEY_PARAM_RSA_E, OSSL_PKEY_PARAM_RSA_D,
        OSSL_PKEY_PARAM_RSA_FACTOR1, OSSL_PKEY_PARAM_RSA_FACTOR2, OSSL_PKEY_PARAM_RSA_EXPONENT1,
        OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1};
    int selection = d.ptr ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY;
    if (!bld) return NULL;
    for (int i = 0; i < 8; i++) {
        if (!parts[i].ptr) continue;
        bns[i] = BN_bin2bn(parts[i].ptr, (int)parts[i].len, NULL);
        if (!bns[i] || !OSSL_PARAM_BLD_push_BN(bld, names[i], bns[i])) goto done;
    }
    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, selection, params) <= 0) pkey = NULL;
done:
    for (int i = 0; i < 8; i++) BN_clear_free(bns[i]);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    return pkey;
}

/* ECDSA: DER signature -> raw r || s (each `half` bytes). */
static inline int lk_ecdsa_der_to_raw(const unsigned char *der, long derlen, unsigned char *out, int half) {
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, derlen);
    if (!sig) return 0;
    const BIGNUM *r = NULL, *s = NULL;
    ECDSA_SIG_get0(sig, &r, &s);
    int ok = BN_bn2binpad(r, out, half) == half && BN_bn2binpad(s, out + half, half) == half;
    ECDSA_SIG_free(sig);
    return ok;
}

/* ECDSA: raw r || s -> DER; *out is allocated with OPENSSL_malloc. Returns the length or 0. */
static inline int lk_ecdsa_raw_to_der(const unsigned char *raw, int half, unsigned char **out) {
    ECDSA_SIG *sig = ECDSA_SIG_new();
    if (!sig) return 0;
    BIGNUM *r = BN_bin2bn(raw, half, NULL);
    BIGNUM *s = BN_bin2bn(raw + half, half, NULL);
    if (!r || !s || ECDSA_SIG_set0(sig, r, s) != 1) {
        BN_free(r); BN_free(s); ECDSA_SIG_free(sig);
        return 0;
    }
    *out = NULL;
    int len = i2d_ECDSA_SIG(sig, out);
    ECDSA_SIG_free(sig);
    return len > 0 ? len : 0;
}

#endif
