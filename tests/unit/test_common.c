/*
 * Unit tests for util (hex, base64url, buf, time) and sig (webhook
 * signatures, content_hash).  The expected hashes were computed
 * independently with Python's hmac and hashlib.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/db.h"
#include "common/log.h"
#include "common/sig.h"
#include "common/util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- hex ------------------------------------------------------------ */

static void test_hex_round_trip(void **state)
{
    const unsigned char in[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    unsigned char back[sizeof in];
    char hex[2 * sizeof in + 1];

    (void)state;
    hex_encode(in, sizeof in, hex);
    assert_string_equal(hex, "00017f80abff");
    assert_int_equal(hex_decode(hex, back, sizeof back), (int)sizeof in);
    assert_memory_equal(in, back, sizeof in);
    assert_int_equal(hex_decode("ABFF", back, sizeof back), 2);
    assert_int_equal(back[0], 0xab);
    assert_int_equal(hex_decode("", back, sizeof back), 0);
}

static void test_hex_malformed(void **state)
{
    unsigned char out[4];

    (void)state;
    assert_int_equal(hex_decode("abc", out, sizeof out), -1);
    assert_int_equal(hex_decode("zz", out, sizeof out), -1);
    assert_int_equal(hex_decode("0g", out, sizeof out), -1);
    assert_int_equal(hex_decode("0011223344", out, sizeof out), -1);
}

/* ---- base64url ------------------------------------------------------ */

static void test_b64url_round_trip(void **state)
{
    static const struct {
        const char *plain;
        const char *encoded;
    } cases[] = {
        {"", ""},
        {"f", "Zg"},
        {"fo", "Zm8"},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg"},
        {"fooba", "Zm9vYmE"},
        {"foobar", "Zm9vYmFy"},
        {"\xfb\xff\xbf", "-_-_"}, /* the two url-safe digits */
    };
    unsigned char out[16];

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        size_t n = strlen(cases[i].plain);
        char *enc = b64url_encode((const unsigned char *)cases[i].plain, n);

        assert_string_equal(enc, cases[i].encoded);
        assert_int_equal(b64url_decode(enc, out, sizeof out), (int)n);
        assert_memory_equal(out, cases[i].plain, n);
        free(enc);
    }
}

static void test_b64url_binary(void **state)
{
    unsigned char in[256], out[256];
    char *enc;

    (void)state;
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (unsigned char)(255 - i);
    enc = b64url_encode(in, sizeof in);
    assert_null(strpbrk(enc, "+/="));
    assert_int_equal(b64url_decode(enc, out, sizeof out), 256);
    assert_memory_equal(in, out, sizeof in);
    free(enc);
}

static void test_b64url_malformed(void **state)
{
    unsigned char out[16];

    (void)state;
    assert_int_equal(b64url_decode("Zm9v=", out, sizeof out), -1);
    assert_int_equal(b64url_decode("Zm+v", out, sizeof out), -1);
    assert_int_equal(b64url_decode("Zm/v", out, sizeof out), -1);
    assert_int_equal(b64url_decode("Z", out, sizeof out), -1);
    assert_int_equal(b64url_decode("Zm9v YQ", out, sizeof out), -1);
    /* Decodes to 6 bytes: too many for a 3-byte buffer. */
    assert_int_equal(b64url_decode("Zm9vYmFy", out, 3), -1);
}

/* ---- buf ------------------------------------------------------------ */

static void test_buf_limit(void **state)
{
    struct buf b;
    char *s;

    (void)state;
    buf_init(&b, 10);
    assert_int_equal(buf_append(&b, "hello", 5), 0);
    assert_int_equal(buf_appendf(&b, "%d", 1234), 0);
    assert_int_equal(buf_append(&b, "xy", 2), -1);
    assert_int_equal(b.len, 9);
    assert_string_equal(b.data, "hello1234");
    assert_int_equal(buf_append(&b, "z", 1), 0);
    assert_int_equal(buf_append(&b, "", 0), 0);
    assert_int_equal(buf_append(&b, "!", 1), -1);
    assert_string_equal(b.data, "hello1234z");
    s = buf_steal(&b);
    assert_string_equal(s, "hello1234z");
    assert_int_equal(b.len, 0);
    assert_null(b.data); /* a stolen buffer holds no memory */
    assert_int_equal(buf_append(&b, "again", 5), 0);
    assert_string_equal(b.data, "again");
    free(s);
    buf_free(&b);
}

static void test_buf_growth(void **state)
{
    struct buf b;

    (void)state;
    buf_init(&b, 0);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(buf_append(&b, "abcdefgh", 8), 0);
    assert_int_equal(b.len, 80000);
    assert_int_equal(b.data[b.len], '\0');
    assert_memory_equal(b.data + 79992, "abcdefgh", 8);
    buf_free(&b);
}

/* ---- webhook signatures --------------------------------------------- */

static const char sig_body[] =
    "{\"list_folder\": {\"accounts\": [\"dbid:AAB_acct_alice_0001\"]}, "
    "\"delta\": {\"users\": [1001]}}";
static const char sig_secret[] = "test-app-secret-42";
static const char sig_expected[] =
    "ad44cb5c1bd0364b49e137daf99d3e9d42fa4086f422d5e9af966797e8a69807";

static void test_sig_sign_vector(void **state)
{
    char out[SIG_HEX_LEN + 1];

    (void)state;
    assert_int_equal(sizeof sig_body - 1, 87);
    sig_sign(sig_secret, sig_body, sizeof sig_body - 1, out);
    assert_string_equal(out, sig_expected);
    assert_true(
        sig_verify(sig_secret, sig_body, sizeof sig_body - 1, sig_expected));
}

static void test_sig_verify_rejects(void **state)
{
    static const char compact[] =
        "{\"list_folder\":{\"accounts\":[\"dbid:AAB_acct_alice_0001\"]},"
        "\"delta\":{\"users\":[1001]}}";
    size_t n = sizeof sig_body - 1;
    char upper[SIG_HEX_LEN + 1], wrong[SIG_HEX_LEN + 1];

    (void)state;
    for (size_t i = 0; i <= SIG_HEX_LEN; i++)
        upper[i] = (char)(sig_expected[i] >= 'a' ? sig_expected[i] - 32
                                                 : sig_expected[i]);
    memcpy(wrong, sig_expected, sizeof wrong);
    wrong[SIG_HEX_LEN - 1] = wrong[SIG_HEX_LEN - 1] == '7' ? '8' : '7';

    assert_false(sig_verify(sig_secret, sig_body, n, NULL));
    assert_false(sig_verify(sig_secret, sig_body, n, "dummy"));
    assert_false(sig_verify(sig_secret, sig_body, n, ""));
    assert_false(sig_verify(sig_secret, sig_body, n, upper));
    assert_false(sig_verify(sig_secret, sig_body, n, wrong));
    assert_false(sig_verify("other-secret", sig_body, n, sig_expected));
    assert_false(
        sig_verify(sig_secret, compact, sizeof compact - 1, sig_expected));
}

/* A prepared secret signs exactly like sig_sign, for secrets shorter
 * than, equal to and longer than SHA-256's 64-byte block (RFC 4231
 * case 6 for the long one), and rejects what sig_verify rejects. */
static void test_sig_key(void **state)
{
    static const char rfc_data[] =
        "Test Using Larger Than Block-Size Key - Hash Key First";
    static const char rfc_mac[] =
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54";
    static const size_t lens[] = {0, 1, 18, 63, 64, 65, 131, 200};
    char secret[201], a[SIG_HEX_LEN + 1], b[SIG_HEX_LEN + 1];
    size_t n = sizeof sig_body - 1;
    struct sig_key *k;

    (void)state;
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        memset(secret, 0xaa, lens[i]);
        secret[lens[i]] = '\0';
        k = sig_key_new(secret);
        sig_key_sign(k, sig_body, n, a);
        sig_sign(secret, sig_body, n, b);
        assert_string_equal(a, b);
        assert_true(sig_key_verify(k, sig_body, n, b));
        if (lens[i] == 131) {
            sig_key_sign(k, rfc_data, sizeof rfc_data - 1, a);
            assert_string_equal(a, rfc_mac);
        }
        sig_key_free(k);
    }

    k = sig_key_new(sig_secret);
    assert_true(sig_key_verify(k, sig_body, n, sig_expected));
    assert_false(sig_key_verify(k, sig_body, n, NULL));
    assert_false(sig_key_verify(k, sig_body, n, ""));
    assert_false(sig_key_verify(k, sig_body, n - 1, sig_expected));
    memcpy(a, sig_expected, sizeof a);
    a[0] = a[0] == '0' ? '1' : '0';
    assert_false(sig_key_verify(k, sig_body, n, a));
    sig_key_free(k);
    sig_key_free(NULL);
}

/* ---- content_hash --------------------------------------------------- */

static void test_content_hash_small(void **state)
{
    char out[SIG_HEX_LEN + 1];

    (void)state;
    content_hash_buf("", 0, out);
    assert_string_equal(out, "e3b0c44298fc1c149afbf4c8996fb924"
                             "27ae41e4649b934ca495991b7852b855");
    content_hash_buf("# Hello\n\nSome *text*.\n", 22, out);
    assert_string_equal(out, "eb181af190ea577d7a7953ae0d9ba69d"
                             "16ea7c7cb74ec0cd055712d36317531d");
}

/* byte i = i mod 251, so that no two 4 MiB blocks are equal. */
static unsigned char *pattern(size_t n)
{
    unsigned char *p = xmalloc(n);

    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i % 251);
    return p;
}

static void test_content_hash_blocks(void **state)
{
    static const struct {
        size_t len;
        const char *hash;
    } cases[] = {
        {8u * 1024 * 1024, /* exactly two blocks */
         "b76a633d9733b991a976dba723df6940bfaf789390a929fe8f68fd1b4705c8c1"},
        {9u * 1024 * 1024, /* two blocks and a partial one */
         "a9aa14f788a027eba2f37a2a5344ce86e1371071f6959953374165125d07b19a"},
    };
    unsigned char *data = pattern(9u * 1024 * 1024);
    char out[SIG_HEX_LEN + 1];

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        content_hash_buf(data, cases[i].len, out);
        assert_string_equal(out, cases[i].hash);
    }
    free(data);
}

static void test_content_hash_incremental(void **state)
{
    const size_t len = 9u * 1024 * 1024;
    static const size_t chunks[] = {1, 7, 4093, 65537, 1048573, 4194304};
    unsigned char *data = pattern(len);
    char once[SIG_HEX_LEN + 1], inc[SIG_HEX_LEN + 1];

    (void)state;
    content_hash_buf(data, len, once);
    for (size_t c = 0; c < ARRAY_LEN(chunks); c++) {
        struct content_hash ch;
        size_t off = 0;

        content_hash_init(&ch);
        /* Vary the piece size too, so pieces straddle block edges. */
        for (size_t k = 0; off < len; k++) {
            size_t n = chunks[c] + (k % 3);

            if (n > len - off)
                n = len - off;
            content_hash_update(&ch, data + off, n);
            off += n;
        }
        content_hash_final(&ch, inc);
        assert_string_equal(inc, once);
    }
    free(data);
}

static void test_sha256_hex(void **state)
{
    char out[SIG_HEX_LEN + 1];

    (void)state;
    sha256_hex("abc", 3, out);
    assert_string_equal(out, "ba7816bf8f01cfea414140de5dae2223"
                             "b00361a396177a9cb410ff61f20015ad");
}

/* ---- time ----------------------------------------------------------- */

static void test_time_iso8601(void **state)
{
    char out[21];

    (void)state;
    time_iso8601(0, out);
    assert_string_equal(out, "1970-01-01T00:00:00Z");
    time_iso8601(1796399999, out);
    assert_string_equal(out, "2026-12-04T15:59:59Z");
    time_iso8601(951782400, out); /* a leap day */
    assert_string_equal(out, "2000-02-29T00:00:00Z");
    assert_true(time_now_s() > 1700000000);
    assert_true(time_mono_ms() >= 0);
}

/* A new directory /tmp/<prefix>-<random>; caller frees the name. */
static char *temp_dir(const char *prefix)
{
    char *t = xasprintf("/tmp/%s-......", prefix);

    memset(t + strlen(t) - 6, 'X', 6); /* the pattern mkdtemp fills in */
    if (mkdtemp(t) == NULL) {
        free(t);
        return NULL;
    }
    return t;
}

/* ---- db ------------------------------------------------------------- */

static const char db_schema[] =
    "CREATE TABLE IF NOT EXISTS parent(id INTEGER PRIMARY KEY);"
    "CREATE TABLE IF NOT EXISTS child(id INTEGER PRIMARY KEY,"
    " parent INTEGER REFERENCES parent(id), note TEXT);";

static char *db_query_text(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = db_prepare(db, sql);
    char *v = NULL;

    if (sqlite3_step(st) == SQLITE_ROW)
        v = db_column_dup(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void db_check_text(sqlite3 *db, const char *sql, const char *want)
{
    char *v = db_query_text(db, sql);

    assert_non_null(v);
    assert_string_equal(v, want);
    free(v);
}

static void test_db(void **state)
{
    char *dir = temp_dir("dbxhook-test-db");
    char *path, *side;
    sqlite3 *db;
    sqlite3_stmt *st;

    (void)state;
    log_init("test_common", LOG_ERROR);
    assert_non_null(dir);
    path = xasprintf("%s/t.db", dir);
    db = db_open(path, db_schema);
    assert_non_null(db);

    db_check_text(db, "PRAGMA journal_mode", "wal");
    db_check_text(db, "PRAGMA synchronous", "2"); /* FULL */
    db_check_text(db, "PRAGMA foreign_keys", "1");

    assert_int_equal(db_begin(db), 0);
    assert_int_equal(db_exec(db, "INSERT INTO parent VALUES (1)"), 0);
    st = db_prepare(db, "INSERT INTO child(parent, note) VALUES (1, ?)");
    db_bind_text(st, 1, NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_reset(st);
    db_bind_text(st, 1, "caf\xc3\xa9");
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    assert_int_equal(db_commit(db), 0);

    assert_null(db_query_text(db, "SELECT note FROM child WHERE id = 1"));
    db_check_text(db, "SELECT note FROM child WHERE id = 2", "caf\xc3\xa9");

    /* A foreign key violation is an error, a rollback undoes the rest. */
    assert_int_equal(db_exec(db, "INSERT INTO child(parent) VALUES (9)"), -1);
    assert_int_equal(db_begin(db), 0);
    assert_int_equal(db_exec(db, "DELETE FROM child"), 0);
    db_rollback(db);
    db_rollback(db); /* harmless without a transaction */
    db_check_text(db, "SELECT count(*) FROM child", "2");
    assert_int_equal(db_exec(db, "SELEC nonsense"), -1);
    db_close(db);

    /* Reopening applies the schema again without complaint. */
    db = db_open(path, db_schema);
    assert_non_null(db);
    db_check_text(db, "SELECT count(*) FROM child", "2");
    db_close(db);
    db_close(NULL);

    assert_null(db_open("/nonexistent-dir/x/t.db", db_schema));

    unlink(path);
    side = xasprintf("%s-wal", path);
    unlink(side);
    free(side);
    side = xasprintf("%s-shm", path);
    unlink(side);
    free(side);
    free(path);
    rmdir(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex_round_trip),
        cmocka_unit_test(test_hex_malformed),
        cmocka_unit_test(test_b64url_round_trip),
        cmocka_unit_test(test_b64url_binary),
        cmocka_unit_test(test_b64url_malformed),
        cmocka_unit_test(test_buf_limit),
        cmocka_unit_test(test_buf_growth),
        cmocka_unit_test(test_sig_sign_vector),
        cmocka_unit_test(test_sig_verify_rejects),
        cmocka_unit_test(test_sig_key),
        cmocka_unit_test(test_content_hash_small),
        cmocka_unit_test(test_content_hash_blocks),
        cmocka_unit_test(test_content_hash_incremental),
        cmocka_unit_test(test_sha256_hex),
        cmocka_unit_test(test_time_iso8601),
        cmocka_unit_test(test_db),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
