/*
 * cursor: the binary record behind a list_folder cursor.
 *
 * Layout (big-endian integers), then MAC_LEN bytes of HMAC-SHA256:
 *   u8 version | u8 flags | u16 limit | i64 account | i64 seq |
 *   u16 prefix length | prefix | u16 position length | position
 * The MAC covers everything before it, so a client cannot move its cursor
 * to another account, folder or position without the server key.
 */
#include "cloud/cursor.h"

#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#define CURSOR_VERSION 1
#define MAC_LEN 16
#define FLAG_RECURSIVE 1u
#define FLAG_DELETED 2u
#define FLAG_LISTING 4u
#define HEAD_LEN 20
/* Binary record limit implied by the text limit. */
#define RECORD_MAX (CURSOR_TEXT_MAX / 4 * 3)

static void put_u16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static void put_i64(unsigned char *p, int64_t v)
{
    uint64_t u = (uint64_t)v;

    for (int i = 7; i >= 0; i--) {
        p[i] = (unsigned char)u;
        u >>= 8;
    }
}

static uint16_t get_u16(const unsigned char *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static int64_t get_i64(const unsigned char *p)
{
    uint64_t u = 0;

    for (int i = 0; i < 8; i++)
        u = (u << 8) | p[i];
    return (int64_t)u;
}

static void cursor_mac(const unsigned char *key, const unsigned char *rec,
                       size_t n, unsigned char out[MAC_LEN])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;

    HMAC(EVP_sha256(), key, CURSOR_KEY_LEN, rec, n, mac, &mac_len);
    memcpy(out, mac, MAC_LEN);
}

char *cursor_encode(const struct cursor *c,
                    const unsigned char key[CURSOR_KEY_LEN])
{
    const char *prefix = c->prefix ? c->prefix : "";
    const char *pos = c->listing && c->position ? c->position : "";
    size_t plen = strlen(prefix), qlen = strlen(pos);
    size_t n = HEAD_LEN + 2 + plen + 2 + qlen;
    unsigned char *rec = xmalloc(n + MAC_LEN);
    unsigned flags = (c->recursive ? FLAG_RECURSIVE : 0) |
                     (c->include_deleted ? FLAG_DELETED : 0) |
                     (c->listing ? FLAG_LISTING : 0);
    char *text;

    rec[0] = CURSOR_VERSION;
    rec[1] = (unsigned char)flags;
    put_u16(rec + 2, (uint16_t)c->limit);
    put_i64(rec + 4, c->account);
    put_i64(rec + 12, c->seq);
    put_u16(rec + HEAD_LEN, (uint16_t)plen);
    memcpy(rec + HEAD_LEN + 2, prefix, plen);
    put_u16(rec + HEAD_LEN + 2 + plen, (uint16_t)qlen);
    memcpy(rec + HEAD_LEN + 4 + plen, pos, qlen);
    cursor_mac(key, rec, n, rec + n);

    text = b64url_encode(rec, n + MAC_LEN);
    free(rec);
    return text;
}

/* Splits the authenticated record into *out; returns 0 or -1. */
static int cursor_parse(const unsigned char *rec, size_t n,
                        struct cursor *out, const char **why)
{
    size_t plen, qlen;

    if (n < HEAD_LEN + 4 || rec[0] != CURSOR_VERSION) {
        *why = "unsupported version";
        return -1;
    }
    plen = get_u16(rec + HEAD_LEN);
    if (HEAD_LEN + 4 + plen > n) {
        *why = "malformed";
        return -1;
    }
    qlen = get_u16(rec + HEAD_LEN + 2 + plen);
    if (HEAD_LEN + 4 + plen + qlen != n) {
        *why = "malformed";
        return -1;
    }
    out->recursive = (rec[1] & FLAG_RECURSIVE) != 0;
    out->include_deleted = (rec[1] & FLAG_DELETED) != 0;
    out->listing = (rec[1] & FLAG_LISTING) != 0;
    out->limit = get_u16(rec + 2);
    out->account = get_i64(rec + 4);
    out->seq = get_i64(rec + 12);
    out->prefix = xstrndup((const char *)rec + HEAD_LEN + 2, plen);
    out->position =
        out->listing
            ? xstrndup((const char *)rec + HEAD_LEN + 4 + plen, qlen)
            : NULL;
    return 0;
}

int cursor_decode(const char *text, const unsigned char key[CURSOR_KEY_LEN],
                  struct cursor *out, const char **why)
{
    unsigned char *rec = NULL;
    unsigned char mac[MAC_LEN];
    int n, rc = -1;

    memset(out, 0, sizeof *out);
    *why = "malformed";
    if (text == NULL || strlen(text) > CURSOR_TEXT_MAX)
        goto out;
    rec = xmalloc(RECORD_MAX);
    n = b64url_decode(text, rec, RECORD_MAX);
    if (n < HEAD_LEN + 4 + MAC_LEN)
        goto out;

    n -= MAC_LEN;
    cursor_mac(key, rec, (size_t)n, mac);
    if (CRYPTO_memcmp(mac, rec + n, MAC_LEN) != 0) {
        *why = "bad signature";
        goto out;
    }
    rc = cursor_parse(rec, (size_t)n, out, why);
out:
    free(rec);
    return rc;
}

void cursor_clear(struct cursor *c)
{
    free(c->prefix);
    free(c->position);
    memset(c, 0, sizeof *c);
}

int cursor_key_load(const char *path, unsigned char key[CURSOR_KEY_LEN])
{
    size_t len = 0;
    char *data = file_read_all(path, CURSOR_KEY_LEN * 2 + 2, &len);
    char hex[CURSOR_KEY_LEN * 2 + 1];
    int rc = -1;

    if (data != NULL) {
        str_rstrip(data);
        if (hex_decode(data, key, CURSOR_KEY_LEN) == CURSOR_KEY_LEN)
            rc = 0;
        else
            LOG_E("cursor key unreadable path=%s", path);
        free(data);
        return rc;
    }

    rand_bytes(key, CURSOR_KEY_LEN);
    hex_encode(key, CURSOR_KEY_LEN, hex);
    if (file_write_atomic(path, hex, strlen(hex), 0600) < 0) {
        LOG_E("cursor key not written path=%s errno=%d", path, errno);
        return -1;
    }
    return 0;
}
