#include "common/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum log_level log_min_level = LOG_INFO;
static const char *log_component = "dbxhook";
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void log_init(const char *component, enum log_level min)
{
    const char *env = getenv("DBXHOOK_LOG");

    log_component = component;
    log_min_level = min;
    if (env == NULL)
        return;
    for (int i = LOG_DEBUG; i <= LOG_ERROR; i++) {
        if (strcasecmp(env, level_names[i]) == 0)
            log_min_level = (enum log_level)i;
    }
}

void log_write(enum log_level level, const char *fmt, ...)
{
    struct timespec ts;
    struct tm tm;
    char stamp[32];
    va_list ap;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);

    /* One lock so that lines from several threads never interleave. */
    pthread_mutex_lock(&log_lock);
    fprintf(stderr, "%s.%03ldZ %s %s ", stamp, ts.tv_nsec / 1000000,
            level_names[level], log_component);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    pthread_mutex_unlock(&log_lock);
}
