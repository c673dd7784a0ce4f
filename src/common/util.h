/*
 * util: memory, strings, growable buffers, random identifiers, time.
 *
 * Out-of-memory policy, decided once for the whole program: the x*
 * allocators abort with a message.  No other code checks for NULL from
 * an allocation.
 *
 * Error idiom used across dbxhook: functions return 0 on success and -1
 * on failure, results go through out-parameters, and cleanup happens at
 * one "out:" label.
 */
#ifndef DBX_UTIL_H
#define DBX_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a freshly allocated string. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A growable byte buffer with a hard maximum chosen by its owner.
 * data is NUL-terminated (the NUL is not counted in len) except after
 * buf_steal, when it is NULL until the next append. */
struct buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max; /* buf_append fails beyond this many bytes; 0 = no limit */
};

void buf_init(struct buf *b, size_t max);
/* Returns 0, or -1 (buffer unchanged) when max would be exceeded. */
int buf_append(struct buf *b, const void *data, size_t n);
int buf_appendf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Hands the data to the caller (who frees it) and empties the buffer,
 * which then holds no memory: buf_free is not needed after a steal. */
char *buf_steal(struct buf *b);
void buf_free(struct buf *b);

/* Lowercase hex; out must hold 2*n+1 bytes. */
void hex_encode(const unsigned char *in, size_t n, char *out);
/* Accepts upper or lower case; returns bytes written or -1. */
int hex_decode(const char *in, unsigned char *out, size_t out_max);
/* The value of one hex digit (either case), or -1. */
int hex_digit_value(char c);

/* Cryptographically random bytes (OpenSSL); aborts if the source fails. */
void rand_bytes(void *out, size_t n);
/* n random characters from [A-Za-z0-9_-], NUL-terminated; out has n+1. */
void rand_urlsafe(char *out, size_t n);

/* base64url without padding; returns a new string. */
char *b64url_encode(const unsigned char *in, size_t n);
/* Returns the number of bytes decoded into out, or -1 if malformed. */
int b64url_decode(const char *in, unsigned char *out, size_t out_max);

/* Wall clock seconds and monotonic milliseconds. */
int64_t time_now_s(void);
int64_t time_mono_ms(void);
/* "YYYY-MM-DDTHH:MM:SSZ" in UTC; out has at least 21 bytes. */
void time_iso8601(int64_t unix_s, char out[21]);

/* Reads a whole file (at most max bytes); NULL if missing or too large. */
char *file_read_all(const char *path, size_t max, size_t *len_out);
/* Writes atomically (temp file, fsync, rename); 0 or -1. */
int file_write_atomic(const char *path, const void *data, size_t len,
                      unsigned mode);
/* mkdir -p; 0 or -1. */
int mkdir_p(const char *path, unsigned mode);

bool str_ends_with_ci(const char *s, const char *suffix);
/* Strips trailing whitespace (newline from a secret file) in place. */
void str_rstrip(char *s);

#endif
