/*
 * tlsgen: the cloud's own certificate authority.
 *
 * On first start the cloud creates, in its data directory, a CA
 * (ca.pem, ca.key) and a server certificate signed by it (server.pem,
 * server.key) valid for localhost, 127.0.0.1 and ::1.  Clients trust
 * ca.pem (the official SDK takes it as ca_certs).  Later starts reuse the
 * files.
 */
#ifndef DBX_TLSGEN_H
#define DBX_TLSGEN_H

/* Makes sure the four files exist in dir; on success sets *cert_pem and
 * *key_pem to the server certificate and key (caller frees) and
 * *ca_path to the CA file's path (caller frees).  Returns 0 or -1. */
int tlsgen_ensure(const char *dir, char **cert_pem, char **key_pem,
                  char **ca_path);

#endif
