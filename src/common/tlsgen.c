/*
 * tlsgen: a private CA and one server certificate, with OpenSSL 3.
 *
 * The certificates carry the extensions strict verifiers insist on
 * (OpenSSL 3 with X509_V_FLAG_X509_STRICT, as Python's ssl module uses):
 * the CA has a critical basicConstraints CA:TRUE, keyUsage and a subject
 * key identifier; the server certificate names its issuer's key, lists
 * its names in subjectAltName and is limited to serverAuth.  Keys are EC
 * P-256.
 *
 * Files are written atomically, keys with mode 0600, the CA before the
 * server certificate: an interrupted first start leaves either no CA
 * (everything is made again) or a CA without a server certificate (only
 * that is made again).
 */
#include "common/tlsgen.h"

#include "common/log.h"
#include "common/util.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* 825 days is the longest validity Apple's TLS policy accepts for a
 * server certificate; the CA lives ten years. */
#define TLSGEN_SERVER_DAYS 825L
#define TLSGEN_CA_DAYS     3650L
/* Backdating covers small clock differences between processes/hosts. */
#define TLSGEN_BACKDATE_S 3600L
/* A server certificate this close to its end is replaced at start. */
#define TLSGEN_RENEW_DAYS   30L
#define TLSGEN_SERIAL_BYTES 16
/* A PEM key or certificate is a few kilobytes at most. */
#define TLSGEN_PEM_MAX (64u * 1024)

#define TLSGEN_SAN "DNS:localhost,IP:127.0.0.1,IP:::1"

static void tlsgen_log_error(const char *what)
{
    char msg[256];

    ERR_error_string_n(ERR_get_error(), msg, sizeof msg);
    LOG_E("tlsgen %s failed error=\"%s\"", what, msg);
    ERR_clear_error();
}

/* ---- building certificates ------------------------------------------ */

static int tlsgen_serial(X509 *x)
{
    unsigned char raw[TLSGEN_SERIAL_BYTES];
    BIGNUM *bn;
    int rc;

    rand_bytes(raw, sizeof raw);
    raw[0] &= 0x7f; /* positive */
    raw[0] |= 0x40; /* and never shorter than the others */
    bn = BN_bin2bn(raw, sizeof raw, NULL);
    rc = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) ? 0 : -1;
    BN_free(bn);
    return rc;
}

/* A certificate with version, serial, validity, subject and key set. */
static X509 *tlsgen_cert_base(EVP_PKEY *key, const char *cn, long days)
{
    X509 *x = X509_new();
    X509_NAME *name;

    if (x == NULL || !X509_set_version(x, X509_VERSION_3) ||
        tlsgen_serial(x) < 0)
        goto fail;
    if (!X509_gmtime_adj(X509_getm_notBefore(x), -TLSGEN_BACKDATE_S) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), days * 24 * 3600))
        goto fail;
    name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                    (const unsigned char *)"dbxhook", -1, -1,
                                    0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                    (const unsigned char *)cn, -1, -1, 0))
        goto fail;
    if (!X509_set_pubkey(x, key))
        goto fail;
    return x;

fail:
    X509_free(x);
    return NULL;
}

static int tlsgen_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL)
        return -1;
    ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

static X509 *tlsgen_make_ca(EVP_PKEY *key)
{
    X509 *x = tlsgen_cert_base(key, "dbxhook local CA", TLSGEN_CA_DAYS);

    if (x == NULL || !X509_set_issuer_name(x, X509_get_subject_name(x)) ||
        tlsgen_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") < 0 ||
        tlsgen_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
        tlsgen_ext(x, x, NID_subject_key_identifier, "hash") < 0 ||
        tlsgen_ext(x, x, NID_authority_key_identifier, "keyid:always") < 0 ||
        !X509_sign(x, key, EVP_sha256())) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static X509 *tlsgen_make_server(EVP_PKEY *key, X509 *ca, EVP_PKEY *ca_key)
{
    X509 *x = tlsgen_cert_base(key, "localhost", TLSGEN_SERVER_DAYS);

    if (x == NULL || !X509_set_issuer_name(x, X509_get_subject_name(ca)) ||
        tlsgen_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
        tlsgen_ext(x, ca, NID_key_usage, "critical,digitalSignature") < 0 ||
        tlsgen_ext(x, ca, NID_ext_key_usage, "serverAuth") < 0 ||
        tlsgen_ext(x, ca, NID_subject_alt_name, TLSGEN_SAN) < 0 ||
        tlsgen_ext(x, ca, NID_subject_key_identifier, "hash") < 0 ||
        tlsgen_ext(x, ca, NID_authority_key_identifier, "keyid:always") < 0 ||
        !X509_sign(x, ca_key, EVP_sha256())) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* ---- PEM files ------------------------------------------------------ */

static char *tlsgen_bio_text(BIO *bio)
{
    char *data;
    long n = BIO_get_mem_data(bio, &data);

    return n > 0 ? xstrndup(data, (size_t)n) : NULL;
}

static int tlsgen_save(const char *dir, const char *name, EVP_PKEY *key,
                       X509 *cert)
{
    char *path = xasprintf("%s/%s", dir, name);
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem = NULL;
    int ok, rc = -1;

    if (bio == NULL)
        goto out;
    ok = key ? PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)
             : PEM_write_bio_X509(bio, cert);
    pem = ok ? tlsgen_bio_text(bio) : NULL;
    if (pem == NULL)
        goto out;
    rc = file_write_atomic(path, pem, strlen(pem), key ? 0600 : 0644);
    if (rc < 0)
        LOG_E("tlsgen cannot write path=%s", path);
out:
    BIO_free(bio);
    free(pem);
    free(path);
    return rc;
}

/* Reads dir/cert_name and dir/key_name; both must parse and match. */
static int tlsgen_load(const char *dir, const char *cert_name,
                       const char *key_name, X509 **cert, EVP_PKEY **key)
{
    char *cpath = xasprintf("%s/%s", dir, cert_name);
    char *kpath = xasprintf("%s/%s", dir, key_name);
    char *cpem = file_read_all(cpath, TLSGEN_PEM_MAX, NULL);
    char *kpem = file_read_all(kpath, TLSGEN_PEM_MAX, NULL);
    BIO *bio;
    int rc = -1;

    *cert = NULL;
    *key = NULL;
    if (cpem == NULL || kpem == NULL)
        goto out;
    bio = BIO_new_mem_buf(cpem, -1);
    *cert = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    bio = BIO_new_mem_buf(kpem, -1);
    *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (*cert != NULL && *key != NULL && X509_check_private_key(*cert, *key))
        rc = 0;
    else
        LOG_W("tlsgen unusable files cert=%s key=%s", cpath, kpath);
out:
    if (rc < 0) {
        X509_free(*cert);
        EVP_PKEY_free(*key);
        *cert = NULL;
        *key = NULL;
    }
    ERR_clear_error();
    free(cpem);
    free(kpem);
    free(cpath);
    free(kpath);
    return rc;
}

/* A kept server certificate must come from this CA and not be about to
 * expire; otherwise a new one is made. */
static bool tlsgen_server_usable(X509 *srv, X509 *ca)
{
    time_t soon = time(NULL) + TLSGEN_RENEW_DAYS * 24 * 3600;
    EVP_PKEY *ca_pub = X509_get0_pubkey(ca);
    bool ok;

    ok = ca_pub != NULL && X509_verify(srv, ca_pub) == 1 &&
         X509_check_issued(ca, srv) == X509_V_OK &&
         X509_cmp_time(X509_get0_notAfter(srv), &soon) > 0;
    ERR_clear_error();
    if (!ok)
        LOG_W("tlsgen server certificate outdated or foreign, renewing");
    return ok;
}

/* ---- making what is missing ----------------------------------------- */

static int tlsgen_new_pair(const char *dir, const char *what, X509 *ca,
                           EVP_PKEY *ca_key, X509 **cert, EVP_PKEY **key)
{
    char *cert_name = xasprintf("%s.pem", what);
    char *key_name = xasprintf("%s.key", what);
    int rc = -1;

    *key = EVP_EC_gen("P-256");
    if (*key == NULL) {
        tlsgen_log_error("key generation");
        goto out;
    }
    *cert = ca ? tlsgen_make_server(*key, ca, ca_key) : tlsgen_make_ca(*key);
    if (*cert == NULL) {
        tlsgen_log_error("certificate");
        goto out;
    }
    if (tlsgen_save(dir, key_name, *key, NULL) < 0 ||
        tlsgen_save(dir, cert_name, NULL, *cert) < 0)
        goto out;
    LOG_I("tlsgen created cert=%s/%s", dir, cert_name);
    rc = 0;
out:
    if (rc < 0) {
        X509_free(*cert);
        EVP_PKEY_free(*key);
        *cert = NULL;
        *key = NULL;
    }
    free(cert_name);
    free(key_name);
    return rc;
}

static char *tlsgen_read_pem(const char *dir, const char *name)
{
    char *path = xasprintf("%s/%s", dir, name);
    char *pem = file_read_all(path, TLSGEN_PEM_MAX, NULL);

    free(path);
    return pem;
}

int tlsgen_ensure(const char *dir, char **cert_pem, char **key_pem,
                  char **ca_path)
{
    X509 *ca = NULL, *srv = NULL;
    EVP_PKEY *ca_key = NULL, *srv_key = NULL;
    bool fresh_ca = false;
    int rc = -1;

    *cert_pem = *key_pem = *ca_path = NULL;
    if (mkdir_p(dir, 0700) < 0) {
        LOG_E("tlsgen cannot create dir=%s", dir);
        return -1;
    }
    if (tlsgen_load(dir, "ca.pem", "ca.key", &ca, &ca_key) < 0) {
        if (tlsgen_new_pair(dir, "ca", NULL, NULL, &ca, &ca_key) < 0)
            goto out;
        fresh_ca = true;
    }
    /* A new CA invalidates whatever server certificate was there. */
    if (!fresh_ca &&
        tlsgen_load(dir, "server.pem", "server.key", &srv, &srv_key) == 0 &&
        !tlsgen_server_usable(srv, ca)) {
        X509_free(srv);
        EVP_PKEY_free(srv_key);
        srv = NULL;
        srv_key = NULL;
    }
    if (srv == NULL &&
        tlsgen_new_pair(dir, "server", ca, ca_key, &srv, &srv_key) < 0)
        goto out;

    *cert_pem = tlsgen_read_pem(dir, "server.pem");
    *key_pem = tlsgen_read_pem(dir, "server.key");
    if (*cert_pem == NULL || *key_pem == NULL)
        goto out;
    *ca_path = xasprintf("%s/ca.pem", dir);
    rc = 0;
out:
    if (rc < 0) {
        free(*cert_pem);
        free(*key_pem);
        *cert_pem = *key_pem = NULL;
    }
    X509_free(ca);
    X509_free(srv);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(srv_key);
    return rc;
}
