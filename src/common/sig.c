#include "common/sig.h"

#include "common/util.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void sig_sign(const char *secret, const void *body, size_t len,
              char out[SIG_HEX_LEN + 1])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;

    HMAC(EVP_sha256(), secret, (int)strlen(secret), body, len, mac,
         &mac_len);
    hex_encode(mac, mac_len, out);
}


/* HMAC-SHA256 (RFC 2104): SHA-256's block is 64 bytes; a longer key
 * is hashed first. */
#define SIG_BLOCK 64

struct sig_key {
    EVP_MD_CTX *inner; /* after absorbing key ^ 0x36.. */
    EVP_MD_CTX *outer; /* after absorbing key ^ 0x5c.. */
};

static EVP_MD_CTX *sig_pad_ctx(const unsigned char *key, unsigned char pad)
{
    unsigned char block[SIG_BLOCK];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    if (ctx == NULL)
        xmalloc(SIZE_MAX); /* aborts through the out-of-memory policy */
    for (size_t i = 0; i < SIG_BLOCK; i++)
        block[i] = key[i] ^ pad;
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, block, sizeof block);
    OPENSSL_cleanse(block, sizeof block);
    return ctx;
}

struct sig_key *sig_key_new(const char *secret)
{
    struct sig_key *k = xcalloc(1, sizeof *k);
    unsigned char key[SIG_BLOCK] = {0};
    size_t n = strlen(secret);

    if (n > SIG_BLOCK)
        EVP_Digest(secret, n, key, NULL, EVP_sha256(), NULL);
    else
        memcpy(key, secret, n);
    k->inner = sig_pad_ctx(key, 0x36);
    k->outer = sig_pad_ctx(key, 0x5c);
    OPENSSL_cleanse(key, sizeof key);
    return k;
}

void sig_key_free(struct sig_key *k)
{
    if (k == NULL)
        return;
    EVP_MD_CTX_free(k->inner); /* wipes its state */
    EVP_MD_CTX_free(k->outer);
    free(k);
}

void sig_key_sign(const struct sig_key *k, const void *body, size_t len,
                  char out[SIG_HEX_LEN + 1])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    /* These fail only when memory or the crypto provider does: abort
     * through the out-of-memory policy rather than sign wrongly. */
    if (ctx == NULL || !EVP_MD_CTX_copy_ex(ctx, k->inner) ||
        !EVP_DigestUpdate(ctx, body, len) ||
        !EVP_DigestFinal_ex(ctx, d, &n) ||
        !EVP_MD_CTX_copy_ex(ctx, k->outer) || !EVP_DigestUpdate(ctx, d, n) ||
        !EVP_DigestFinal_ex(ctx, d, &n))
        xmalloc(SIZE_MAX);
    EVP_MD_CTX_free(ctx);
    hex_encode(d, n, out);
}

bool sig_key_verify(const struct sig_key *k, const void *body, size_t len,
                    const char *header)
{
    char expected[SIG_HEX_LEN + 1];

    if (header == NULL || strlen(header) != SIG_HEX_LEN)
        return false;
    sig_key_sign(k, body, len, expected);
    return CRYPTO_memcmp(expected, header, SIG_HEX_LEN) == 0;
}

bool sig_verify(const char *secret, const void *body, size_t len,
                const char *header)
{
    struct sig_key *k = sig_key_new(secret);
    bool ok = sig_key_verify(k, body, len, header);

    sig_key_free(k);
    return ok;
}

static void digest_into(EVP_MD_CTX *ctx, unsigned char *out)
{
    unsigned int n = 0;

    EVP_DigestFinal_ex(ctx, out, &n);
}

void content_hash_init(struct content_hash *ch)
{
    ch->outer = EVP_MD_CTX_new();
    ch->block = EVP_MD_CTX_new();
    if (ch->outer == NULL || ch->block == NULL)
        xmalloc(SIZE_MAX); /* aborts through the out-of-memory policy */
    EVP_DigestInit_ex(ch->outer, EVP_sha256(), NULL);
    EVP_DigestInit_ex(ch->block, EVP_sha256(), NULL);
    ch->block_used = 0;
    ch->total = 0;
}

static void content_hash_close_block(struct content_hash *ch)
{
    unsigned char d[32];

    digest_into(ch->block, d);
    EVP_DigestUpdate(ch->outer, d, sizeof d);
    EVP_DigestInit_ex(ch->block, EVP_sha256(), NULL);
    ch->block_used = 0;
}

void content_hash_update(struct content_hash *ch, const void *data, size_t n)
{
    const unsigned char *p = data;

    while (n > 0) {
        size_t room = CONTENT_HASH_BLOCK - ch->block_used;
        size_t take = n < room ? n : room;

        EVP_DigestUpdate(ch->block, p, take);
        ch->block_used += take;
        ch->total += take;
        p += take;
        n -= take;
        if (ch->block_used == CONTENT_HASH_BLOCK)
            content_hash_close_block(ch);
    }
}

void content_hash_final(struct content_hash *ch, char out[SIG_HEX_LEN + 1])
{
    unsigned char d[32];

    /* A trailing partial block counts; an empty file has no blocks. */
    if (ch->block_used > 0)
        content_hash_close_block(ch);
    digest_into(ch->outer, d);
    hex_encode(d, sizeof d, out);
    EVP_MD_CTX_free(ch->outer);
    EVP_MD_CTX_free(ch->block);
    ch->outer = ch->block = NULL;
}

void content_hash_buf(const void *data, size_t n, char out[SIG_HEX_LEN + 1])
{
    struct content_hash ch;

    content_hash_init(&ch);
    content_hash_update(&ch, data, n);
    content_hash_final(&ch, out);
}

void sha256_hex(const void *data, size_t n, char out[SIG_HEX_LEN + 1])
{
    unsigned char d[32];

    EVP_Digest(data, n, d, NULL, EVP_sha256(), NULL);
    hex_encode(d, sizeof d, out);
}
