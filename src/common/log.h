/*
 * log: one line per event on stderr.
 *
 * A line reads
 *   2026-12-04T15:40:00.123Z INFO cloud upload account=dbid:.. path=/a.md
 * that is: UTC time, level, component, then the event and key=value fields
 * exactly as the caller formats them.  The LOG macro tests the level before
 * anything is formatted, so a disabled debug line costs one comparison.
 *
 * Never pass a secret, a token or a full signature to these functions.
 */
#ifndef DBX_LOG_H
#define DBX_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

extern enum log_level log_min_level;

/* Sets the component name printed on every line (not copied: pass a
 * literal) and the lowest level printed.  DBXHOOK_LOG=debug|info|warn|error
 * in the environment overrides min. */
void log_init(const char *component, enum log_level min);

void log_write(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define LOG(level, ...)                                                     \
    do {                                                                    \
        if ((level) >= log_min_level)                                       \
            log_write((level), __VA_ARGS__);                                \
    } while (0)

#define LOG_D(...) LOG(LOG_DEBUG, __VA_ARGS__)
#define LOG_I(...) LOG(LOG_INFO, __VA_ARGS__)
#define LOG_W(...) LOG(LOG_WARN, __VA_ARGS__)
#define LOG_E(...) LOG(LOG_ERROR, __VA_ARGS__)

#endif
