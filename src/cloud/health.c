/*
 * health: the disable rule of health.h.
 */
#include "cloud/health.h"

#include <stdio.h>

bool health_should_disable(int64_t failures, int64_t attempts)
{
    if (failures <= HEALTH_MAX_FAILURES || attempts <= 0)
        return false;
    /* failures / attempts > 45 / 1000, without division */
    return failures * 1000 > attempts * HEALTH_MAX_RATE_PERMILLE;
}

void health_describe(int64_t failures, int64_t attempts, int64_t window_ms,
                     char *out, size_t size)
{
    double rate = attempts > 0 ? 100.0 * (double)failures /
                                     (double)attempts : 0.0;

    snprintf(out, size, "%lld failed of %lld attempts (%.1f%%) in the"
             " last %lld s", (long long)failures, (long long)attempts,
             rate, (long long)(window_ms / 1000));
}
