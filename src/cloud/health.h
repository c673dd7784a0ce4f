/*
 * health: the rule that disables a failing webhook.
 *
 * The guide: a webhook with more than 35 failed attempts in the last
 * 10 minutes *and* a failure rate above 4.5% in that window is disabled.
 * Both conditions are strict: exactly 35 failures, or exactly 4.5%, keeps
 * it enabled.  Pure functions; the notifier counts the window.
 */
#ifndef DBX_HEALTH_H
#define DBX_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Failed attempts a window may hold without disabling the webhook. */
#define HEALTH_MAX_FAILURES 35
/* The failure rate a window may reach, in parts per thousand (4.5%). */
#define HEALTH_MAX_RATE_PERMILLE 45
/* The guide's window. */
#define HEALTH_WINDOW_MS_DEFAULT 600000

/* True when failures out of attempts (both counted over the window)
 * must disable the webhook.  Exact integer arithmetic: no rounding at
 * the 4.5% boundary. */
bool health_should_disable(int64_t failures, int64_t attempts);

/* A reason for the console and the alert, e.g. "36 failed of 40
 * attempts (90.0%) in the last 600 s"; written into out (always
 * terminated). */
void health_describe(int64_t failures, int64_t attempts, int64_t window_ms,
                     char *out, size_t size);

#endif
