/* Clocks and RFC 3339 times. */
#ifndef FS_TIMEUTIL_H
#define FS_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Wall clock, milliseconds since the Unix epoch (for logs and display only: holds use Redis's clock). */
int64_t fs_wall_ms(void);
/* Monotonic clock in nanoseconds (for latency and deadlines). */
uint64_t fs_mono_ns(void);

/* Formats ms since the epoch as "2026-11-27T01:02:03.456Z" (24 chars). Returns the length written,
 * or 0 if cap < 25. */
size_t fs_time_format_ms(int64_t ms, char *out, size_t cap);

/* Parses an RFC 3339 date-time ("2026-11-27T10:00:00Z", fractional seconds and "+08:00" offsets
 * accepted) into ms since the epoch. Returns 0 or FS_EINVAL. */
int fs_time_parse_rfc3339(const char *s, size_t len, int64_t *out_ms);

#endif
