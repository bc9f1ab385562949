#ifndef LATCHKEY_COPENSSL_SHIM_H
#define LATCHKEY_COPENSSL_SHIM_H
/* Only what Swift cannot express over the EVP calls: a function-like macro
   (OPENSSL_free), the OSSL_PARAM_BLD builders whose ownership rules read
   better in C, ECDSA_SIG's r/s conversion, and the ES256 presigner (its
   BIGNUM arithmetic, at the end: LATCHKEY_ES256_PRESIGN=on). Key generation, AES-GCM and
   the DER encodings are Swift (the Cryptography target).
   Every helper returns NULL / 0 on failure and leaves the error queue for
   the Swift wrapper to read and clear. */
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <time.h>
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
#include <openssl/provider.h>

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

/* ES256 signatures with their nonces prepared ahead (PreparedKey; off
   unless LATCHKEY_ES256_PRESIGN=on).
   An ECDSA signature's costly part does not depend on the message: a
   nonce k, the point kG, its x coordinate r (which needs one inversion mod
   p to leave Jacobian coordinates) and k^-1 mod n (another inversion).
   While a thread signs at least LK_PRESIGN_BATCH tokens in half of
   LK_PRESIGN_WINDOW_NS, each signature prepares one future (k, kG) on the
   side; every LK_PRESIGN_BATCH of them are finished together, their
   2 x LK_PRESIGN_BATCH inversions done as two (Montgomery's trick: invert
   the product, then multiply back), and OpenSSL's own ECDSA_do_sign_ex
   finishes each signature from a prepared (k^-1, r): s = k^-1 (z + r d),
   computed as in any OpenSSL signature. Otherwise OpenSSL signs as usual.

   The nonces come from OpenSSL's BN_generate_dsa_nonce (SHA-512 over the
   private key, OpenSSL's random bytes and, as the "message", a counter and
   16 bytes from the kernel's getrandom(2)), kG from EC_POINT_mul (OpenSSL's
   constant-time fixed-base multiplication), the inversions from
   BN_mod_exp_mont_consttime (Fermat) and Montgomery multiplications.
   Each prepared pair is wiped (BN_clear) when it is taken, so a nonce is
   never used twice; a process that finds itself forked (another pid)
   wipes every prepared pair before signing, and a batch more than
   LK_PRESIGN_WINDOW_NS old by the wall clock is wiped, not used.
   What precomputation gives up is OpenSSL's hedge of mixing the message
   into its nonce: two copies of one running process (a VM rolled back to a
   snapshot of its memory after it ran on, or cloned) hold the same
   prepared pairs, and one pair under two messages gives the private key
   away. The window does not protect against that (a restored guest's clock
   goes on from the snapshot until something sets it): hence off by
   default (README "Security"). Under OpenSSL's FIPS mode, or with the FIPS
   provider loaded at all, no presigner is made (the EC_KEY functions would
   go around it).
   A presigner belongs to one thread (its BN_CTX and pool are not shared). */
#define LK_PRESIGN_BATCH 64
#define LK_PRESIGN_WINDOW_NS 2000000000LL

static inline long long lk_wall_clock_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

/* Whether a batch begun at `since` may still be used or added to at `now` (either way round: a clock set back too). */
static inline int lk_presign_fresh(long long since, long long now) {
    long long age = now - since;
    return age <= LK_PRESIGN_WINDOW_NS && age >= -LK_PRESIGN_WINDOW_NS;
}

typedef struct {
    EC_KEY *key;
    const EC_GROUP *group;
    const BIGNUM *order;
    BN_CTX *ctx;
    BN_MONT_CTX *mont_p, *mont_n;
    BIGNUM *p, *p_minus_2, *n_minus_2, *t, *inv_p, *inv_n;
    EC_POINT *point;
    unsigned long long counter;
    pid_t pid;
    /* Wall-clock time of the first nonce of the batch being filled, and of the ready batch's. */
    long long pending_since, ready_since;
    /* Signatures OpenSSL made afresh although a prepared pair was taken (s = 0, or a pair that did not work). */
    unsigned long fallbacks;
    /* The signing rate: signatures since `mark`, and whether the last LK_PRESIGN_BATCH took at most half the window. */
    long long mark;
    int since_mark, busy;
    int pending, ready;
    BIGNUM *k[LK_PRESIGN_BATCH], *x[LK_PRESIGN_BATCH], *z[LK_PRESIGN_BATCH];
    BIGNUM *prefix_n[LK_PRESIGN_BATCH], *prefix_p[LK_PRESIGN_BATCH];
    BIGNUM *kinv[LK_PRESIGN_BATCH], *r[LK_PRESIGN_BATCH];
} lk_presigner;

#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wdeprecated-declarations"

static inline void lk_presigner_free(lk_presigner *ps) {
    if (!ps) return;
    BIGNUM **all[] = {ps->k, ps->x, ps->z, ps->prefix_n, ps->prefix_p, ps->kinv, ps->r};
    for (size_t a = 0; a < sizeof all / sizeof all[0]; a++)
        for (int i = 0; i < LK_PRESIGN_BATCH; i++) BN_clear_free(all[a][i]);
    BN_clear_free(ps->t); BN_clear_free(ps->inv_p); BN_clear_free(ps->inv_n);
    BN_free(ps->p); BN_free(ps->p_minus_2); BN_free(ps->n_minus_2);
    BN_MONT_CTX_free(ps->mont_p); BN_MONT_CTX_free(ps->mont_n);
    EC_POINT_clear_free(ps->point);
    BN_CTX_free(ps->ctx);
    EC_KEY_free(ps->key);
    OPENSSL_clear_free(ps, sizeof *ps);
}

/* Whether OpenSSL's FIPS mode is on or its FIPS provider loaded: the EC_KEY functions would then go around it. */
static inline int lk_fips_in_use(void) {
    return EVP_default_properties_is_fips_enabled(NULL) || OSSL_PROVIDER_available(NULL, "fips");
}

/* A P-256 private key's EC_KEY for lk_es256_sign (freed with EC_KEY_free), or NULL: under FIPS, or not such a key. */
static inline EC_KEY *lk_es256_signing_key(EVP_PKEY *pkey) {
    if (lk_fips_in_use()) return NULL;
    EC_KEY *key = EVP_PKEY_get1_EC_KEY(pkey);
    if (key && EC_KEY_get0_private_key(key) && EC_KEY_get0_group(key) &&
        EC_GROUP_get_curve_name(EC_KEY_get0_group(key)) == NID_X9_62_prime256v1) return key;
    EC_KEY_free(key);
    return NULL;
}

/* Signs a SHA-256 digest with ECDSA_do_sign_ex, as EVP_PKEY_sign does inside the default provider (the same
   function, the same nonce hedged with the digest) but without the provider's dispatch and the DER encoding
   that JWS would decode again: raw r || s (32 bytes each) into out. kinv and r: a prepared pair, or NULL for
   OpenSSL's own nonce. 1, or 0 on failure. */
static inline int lk_es256_sign(EC_KEY *key, const unsigned char digest[32], const BIGNUM *kinv, const BIGNUM *rp,
                                unsigned char out[64]) {
    ECDSA_SIG *sig = ECDSA_do_sign_ex(digest, 32, kinv, rp, key);
    if (!sig) return 0;
    const BIGNUM *r = NULL, *s = NULL;
    ECDSA_SIG_get0(sig, &r, &s);
    int ok = BN_bn2binpad(r, out, 32) == 32 && BN_bn2binpad(s, out + 32, 32) == 32;
    ECDSA_SIG_free(sig);
    return ok;
}

/* A presigner for a P-256 private key, or NULL. */
static inline lk_presigner *lk_presigner_new(EVP_PKEY *pkey) {
    if (lk_fips_in_use()) return NULL;
    lk_presigner *ps = OPENSSL_zalloc(sizeof *ps);
    if (!ps || !(ps->p = BN_new())) goto fail;
    ps->key = EVP_PKEY_get1_EC_KEY(pkey);
    if (!ps->key || !EC_KEY_get0_private_key(ps->key)) goto fail;
    ps->group = EC_KEY_get0_group(ps->key);
    if (!ps->group || EC_GROUP_get_curve_name(ps->group) != NID_X9_62_prime256v1) goto fail;
    ps->order = EC_GROUP_get0_order(ps->group);
    ps->ctx = BN_CTX_secure_new();
    ps->pid = getpid();
    ps->mark = lk_wall_clock_ns();
    ps->mont_p = BN_MONT_CTX_new();
    ps->mont_n = BN_MONT_CTX_new();
    ps->p_minus_2 = BN_new(); ps->n_minus_2 = BN_new();
    ps->t = BN_new(); ps->inv_p = BN_new(); ps->inv_n = BN_new();
    ps->point = EC_POINT_new(ps->group);
    if (!ps->ctx || !ps->mont_p || !ps->mont_n || !ps->p_minus_2 || !ps->n_minus_2 || !ps->t || !ps->inv_p || !ps->inv_n ||
        !ps->point || !EC_GROUP_get_curve(ps->group, ps->p, NULL, NULL, ps->ctx) ||
        !BN_MONT_CTX_set(ps->mont_p, ps->p, ps->ctx) || !BN_MONT_CTX_set(ps->mont_n, ps->order, ps->ctx) ||
        !BN_sub(ps->p_minus_2, ps->p, BN_value_one()) || !BN_sub_word(ps->p_minus_2, 1) ||
        !BN_sub(ps->n_minus_2, ps->order, BN_value_one()) || !BN_sub_word(ps->n_minus_2, 1)) goto fail;
    BN_set_flags(ps->t, BN_FLG_CONSTTIME);
    BN_set_flags(ps->inv_p, BN_FLG_CONSTTIME);
    BN_set_flags(ps->inv_n, BN_FLG_CONSTTIME);
    BIGNUM **all[] = {ps->k, ps->x, ps->z, ps->prefix_n, ps->prefix_p, ps->kinv, ps->r};
    for (size_t a = 0; a < sizeof all / sizeof all[0]; a++)
        for (int i = 0; i < LK_PRESIGN_BATCH; i++) {
            if (!(all[a][i] = BN_new())) goto fail;
            BN_set_flags(all[a][i], BN_FLG_CONSTTIME);
        }
    return ps;
fail:
    lk_presigner_free(ps);
    return NULL;
}

/* Forgets every nonce, pending or ready (after a failure: OpenSSL then signs as usual until a new batch is ready). */
static inline void lk_presigner_wipe(lk_presigner *ps) {
    BIGNUM **all[] = {ps->k, ps->x, ps->z, ps->prefix_n, ps->prefix_p, ps->kinv, ps->r};
    for (size_t a = 0; a < sizeof all / sizeof all[0]; a++)
        for (int i = 0; i < LK_PRESIGN_BATCH; i++) BN_clear(all[a][i]);
    BN_clear(ps->t); BN_clear(ps->inv_p); BN_clear(ps->inv_n);
    ps->pending = 0;
    ps->ready = 0;
}

/* Finishes a full batch of pending (k, X, Z): r = x(kG) mod n and k^-1 for each. */
static inline int lk_presigner_finish_batch(lk_presigner *ps) {
    const int count = ps->pending;
    BN_CTX *ctx = ps->ctx;
    ps->pending = 0;
    /* Prefix products, kept in the Montgomery domain (k and Z converted first). */
    for (int i = 0; i < count; i++) {
        if (!BN_to_montgomery(ps->k[i], ps->k[i], ps->mont_n, ctx) || !BN_to_montgomery(ps->z[i], ps->z[i], ps->mont_p, ctx)) return 0;
        if (i == 0) {
            if (!BN_copy(ps->prefix_n[0], ps->k[0]) || !BN_copy(ps->prefix_p[0], ps->z[0])) return 0;
        } else if (!BN_mod_mul_montgomery(ps->prefix_n[i], ps->prefix_n[i - 1], ps->k[i], ps->mont_n, ctx) ||
                   !BN_mod_mul_montgomery(ps->prefix_p[i], ps->prefix_p[i - 1], ps->z[i], ps->mont_p, ctx)) return 0;
    }
    /* The products' inverses (Fermat, constant time), back in the Montgomery domain. */
    if (!BN_from_montgomery(ps->t, ps->prefix_n[count - 1], ps->mont_n, ctx) || BN_is_zero(ps->t) ||
        !BN_mod_exp_mont_consttime(ps->inv_n, ps->t, ps->n_minus_2, ps->order, ctx, ps->mont_n) ||
        !BN_to_montgomery(ps->inv_n, ps->inv_n, ps->mont_n, ctx)) return 0;
    if (!BN_from_montgomery(ps->t, ps->prefix_p[count - 1], ps->mont_p, ctx) || BN_is_zero(ps->t) ||
        !BN_mod_exp_mont_consttime(ps->inv_p, ps->t, ps->p_minus_2, ps->p, ctx, ps->mont_p) ||
        !BN_to_montgomery(ps->inv_p, ps->inv_p, ps->mont_p, ctx)) return 0;
    /* Back from the last: with inv = 1/(a_0...a_i), a_i^-1 = inv * (a_0...a_{i-1}) and the next inv = inv * a_i. */
    int made = 0;
    for (int i = count - 1; i >= 0; i--) {
        BIGNUM *kinv = ps->kinv[made], *zinv = ps->t, *r = ps->r[made];
        if (i > 0) {
            if (!BN_mod_mul_montgomery(kinv, ps->inv_n, ps->prefix_n[i - 1], ps->mont_n, ctx) ||
                !BN_mod_mul_montgomery(zinv, ps->inv_p, ps->prefix_p[i - 1], ps->mont_p, ctx) ||
                !BN_mod_mul_montgomery(ps->inv_n, ps->inv_n, ps->k[i], ps->mont_n, ctx) ||
                !BN_mod_mul_montgomery(ps->inv_p, ps->inv_p, ps->z[i], ps->mont_p, ctx)) return 0;
        } else if (!BN_copy(kinv, ps->inv_n) || !BN_copy(zinv, ps->inv_p)) return 0;
        /* kinv and zinv are in the Montgomery domain: k^-1 leaves it; x = X * zinv^2 comes out of it
           (X is plain, zinv^2 Montgomery). r = x mod n, and x < p < 2n. */
        if (!BN_from_montgomery(kinv, kinv, ps->mont_n, ctx) ||
            !BN_mod_mul_montgomery(zinv, zinv, zinv, ps->mont_p, ctx) ||
            !BN_mod_mul_montgomery(r, ps->x[i], zinv, ps->mont_p, ctx)) return 0;
        if (BN_cmp(r, ps->order) >= 0 && !BN_sub(r, r, ps->order)) return 0;
        BN_clear(ps->k[i]); BN_clear(ps->x[i]); BN_clear(ps->z[i]);
        if (BN_is_zero(r)) { BN_clear(kinv); continue; }   /* r = 0: no signature can use it */
        made++;
    }
    BN_clear(ps->t); BN_clear(ps->inv_n); BN_clear(ps->inv_p);
    for (int i = 0; i < count; i++) { BN_clear(ps->prefix_n[i]); BN_clear(ps->prefix_p[i]); }
    ps->ready = made;
    ps->ready_since = ps->pending_since;
    return 1;
}

/* Prepares one nonce and its point; finishes the batch once it is full and the last one is used up. */
static inline int lk_presigner_prepare(lk_presigner *ps, long long now) {
    if (ps->pending > 0 && !lk_presign_fresh(ps->pending_since, now)) {   /* too slow a batch: start again */
        for (int i = 0; i < ps->pending; i++) { BN_clear(ps->k[i]); BN_clear(ps->x[i]); BN_clear(ps->z[i]); }
        ps->pending = 0;
    }
    if (ps->pending < LK_PRESIGN_BATCH) {
        int i = ps->pending;
        if (i == 0) ps->pending_since = now;
        unsigned char message[sizeof ps->counter + 16];
        memcpy(message, &ps->counter, sizeof ps->counter);
        ps->counter++;
        if (getrandom(message + sizeof ps->counter, 16, 0) != 16) return 0;
        do {
            if (!BN_generate_dsa_nonce(ps->k[i], ps->order, EC_KEY_get0_private_key(ps->key), message, sizeof message, ps->ctx)) return 0;
        } while (BN_is_zero(ps->k[i]));
        if (!EC_POINT_mul(ps->group, ps->point, ps->k[i], NULL, NULL, ps->ctx) ||
            !EC_POINT_get_Jprojective_coordinates_GFp(ps->group, ps->point, ps->x[i], NULL, ps->z[i], ps->ctx) ||
            BN_is_zero(ps->z[i])) return 0;
        ps->pending++;
    }
    if (ps->pending == LK_PRESIGN_BATCH && ps->ready == 0) return lk_presigner_finish_batch(ps);
    return 1;
}

/* The r of the pair the next signature would take, into out (tests); 0 when none is ready. */
static inline int lk_presigner_next_r(const lk_presigner *ps, unsigned char out[32]) {
    return ps->ready > 0 && BN_bn2binpad(ps->r[ps->ready - 1], out, 32) == 32;
}

/* Signs a SHA-256 digest: raw r || s (32 bytes each) into out. 2 from a prepared pair, 1 from OpenSSL's own nonce, 0 on failure. */
static inline int lk_presigner_sign(lk_presigner *ps, const unsigned char digest[32], unsigned char out[64]) {
    int ok = 0;
    long long now = lk_wall_clock_ns();
    if (ps->pid != getpid()) {   /* a forked child: its parent holds the same pairs */
        lk_presigner_wipe(ps);
        ps->pid = getpid();
    }
    if (ps->ready > 0 && !lk_presign_fresh(ps->ready_since, now)) {   /* stale: wiped, not used */
        for (int i = 0; i < ps->ready; i++) { BN_clear(ps->kinv[i]); BN_clear(ps->r[i]); }
        ps->ready = 0;
    }
    /* Prepare only while the thread signs fast enough to use what it prepares within the window. */
    if (++ps->since_mark >= LK_PRESIGN_BATCH) {
        ps->busy = lk_presign_fresh(ps->mark, now) && now - ps->mark <= LK_PRESIGN_WINDOW_NS / 2;
        ps->mark = now;
        ps->since_mark = 0;
    } else if (!lk_presign_fresh(ps->mark, now) || now - ps->mark > LK_PRESIGN_WINDOW_NS / 2) {
        ps->busy = 0;
    }
    int presigned = 0;
    if (ps->ready > 0) {
        int i = --ps->ready;
        ok = lk_es256_sign(ps->key, digest, ps->kinv[i], ps->r[i], out);
        BN_clear(ps->kinv[i]);
        BN_clear(ps->r[i]);
        if (!ok) {   /* s = 0, never in practice: sign afresh */
            ERR_clear_error();
            ps->fallbacks++;
        } else {
            presigned = 1;
        }
    }
    if (!ok && !lk_es256_sign(ps->key, digest, NULL, NULL, out)) return 0;
    if (ps->busy && !lk_presigner_prepare(ps, now)) {
        ERR_clear_error();
        lk_presigner_wipe(ps);
    }
    return 1 + presigned;
}

#pragma clang diagnostic pop

#endif
