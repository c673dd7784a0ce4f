/*
 * The cloud's shared tables: accounts, apps, links and tokens.  The file
 * API, the console and the notifier all read them; cloud/store.c creates
 * them.  Entries and the journal belong to the file API; the notifier's
 * own tables are in notifier.h.
 */
#ifndef DBX_CLOUD_SCHEMA_H
#define DBX_CLOUD_SCHEMA_H

#define CLOUD_SCHEMA_SHARED                                                 \
    "CREATE TABLE IF NOT EXISTS accounts ("                                 \
    " id INTEGER PRIMARY KEY,"                                              \
    " account_id TEXT NOT NULL UNIQUE," /* dbid:AA + 33, 40 in all */       \
    " uid INTEGER NOT NULL UNIQUE,"     /* API v1 id for delta.users */     \
    " email TEXT NOT NULL UNIQUE,"                                          \
    " display_name TEXT NOT NULL,"                                          \
    " created_at INTEGER NOT NULL);"                                        \
    "CREATE TABLE IF NOT EXISTS apps ("                                     \
    " id INTEGER PRIMARY KEY,"                                              \
    " app_key TEXT NOT NULL UNIQUE,"                                        \
    " app_secret TEXT NOT NULL,"                                            \
    " name TEXT NOT NULL,"                                                  \
    " webhook_uri TEXT,"                                                    \
    /* none | verified | failed | disabled */                               \
    " webhook_state TEXT NOT NULL DEFAULT 'none',"                          \
    " webhook_error TEXT,"                                                  \
    " created_at INTEGER NOT NULL);"                                        \
    "CREATE TABLE IF NOT EXISTS links ("                                    \
    " id INTEGER PRIMARY KEY,"                                              \
    " app_id INTEGER NOT NULL REFERENCES apps(id),"                         \
    " account_id INTEGER NOT NULL REFERENCES accounts(id),"                 \
    " scopes TEXT NOT NULL," /* space-separated */                          \
    " created_at INTEGER NOT NULL,"                                         \
    " UNIQUE(app_id, account_id));"                                         \
    "CREATE TABLE IF NOT EXISTS tokens ("                                   \
    " token_hash TEXT PRIMARY KEY," /* SHA-256 hex; never the token */      \
    " link_id INTEGER NOT NULL REFERENCES links(id),"                       \
    " kind TEXT NOT NULL," /* access | refresh */                           \
    " expires_at INTEGER," /* NULL: does not expire */                      \
    " revoked INTEGER NOT NULL DEFAULT 0);"

#endif
