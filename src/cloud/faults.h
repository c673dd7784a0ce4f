/*
 * faults: errors on demand, so that apps can be tested against the
 * failures the real service produces now and then.
 *
 * The console arms a fault for an account (admin faults/set): the next
 * `count` API calls of that account (optionally only those of one route)
 * are answered with the fault instead of running.  The table lives in
 * memory only: a restart of the cloud clears every fault.  It is one
 * table for the whole process, guarded by its own mutex.
 */
#ifndef DBX_CLOUD_FAULTS_H
#define DBX_CLOUD_FAULTS_H

#include "cloud/store.h"
#include "common/http_server.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* Armed faults at once, over all accounts. */
#define FAULTS_MAX 1024
/* Longest route name a fault can name ("files/list_folder/continue"). */
#define FAULTS_ROUTE_MAX 96
/* Largest count one faults/set may arm. */
#define FAULTS_COUNT_MAX 1000000

enum fault_kind {
    FAULT_NONE,
    FAULT_429,           /* 429 too_many_requests with Retry-After */
    FAULT_500,           /* 500 Internal Server Error */
    FAULT_EXPIRED,       /* 401 expired_access_token */
    FAULT_INVALID,       /* 401 invalid_access_token */
    FAULT_RESET,         /* 409 reset (continue and longpoll only) */
};

/* The kind named by text ("429", "500", "expired_access_token",
 * "invalid_access_token", "reset"); FAULT_NONE when unknown. */
enum fault_kind faults_kind_parse(const char *text);
const char *faults_kind_name(enum fault_kind k);

/* True for the routes where a reset can happen. */
bool faults_route_can_reset(const char *route);

/* Arms count faults of kind k for account on route (NULL or "": every
 * route), replacing what was armed for the same account and route.
 * Returns 0, or -1 when the table is full. */
int faults_set(int64_t account, const char *route, enum fault_kind k,
               unsigned count);

/* Disarms every fault of account; returns how many were armed. */
unsigned faults_clear(int64_t account);

/* The fault this call of account on route must answer with, or
 * FAULT_NONE; a returned fault is used up (its count goes down). */
enum fault_kind faults_take(int64_t account, const char *route);

/* Admin handlers for faults/set and faults/clear (docs/CLI.md). */
void faults_admin_set(struct store *s, json_t *body,
                      struct hsrv_response *resp);
void faults_admin_clear(struct store *s, json_t *body,
                        struct hsrv_response *resp);

#endif
