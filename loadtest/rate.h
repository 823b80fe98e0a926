/* Arrival-rate profiles and the open-loop schedule derived from them.
 *
 * A profile is a list of phases played one after the other; within a phase the rate (arrivals per
 * second) goes linearly from `from` to `to`. The schedule is deterministic: with N(t) the expected
 * number of arrivals in [0, t] (the integral of the rate), arrival k (k = 0, 1, 2, ...) is intended
 * at the time t_k where N(t_k) = k + 1/2. So a constant rate r gives evenly spaced arrivals at
 * (k + 1/2) / r, a ramp spaces them ever closer, and a pause sends nothing. Latency in open-loop
 * mode is measured from t_k, never from the moment a request could actually be sent.
 *
 * Ownership: the caller owns fs_rate_profile_t and frees it with fs_rate_profile_free. */
#ifndef FS_LOAD_RATE_H
#define FS_LOAD_RATE_H

#include <stddef.h>
#include <stdint.h>

typedef enum { FS_PHASE_RAMP, FS_PHASE_PLATEAU, FS_PHASE_SPIKE, FS_PHASE_PAUSE } fs_phase_kind_t;

typedef struct {
    fs_phase_kind_t kind;
    double from, to;   /* arrivals per second at the phase's start and end */
    double dur_s;
} fs_rate_phase_t;

typedef struct {
    fs_rate_phase_t *phases;
    double *start_s;   /* start time of each phase */
    double *start_n;   /* N(start) of each phase */
    size_t n;
    double total_s;
    double total_n;
} fs_rate_profile_t;

void fs_rate_profile_init(fs_rate_profile_t *p);
void fs_rate_profile_free(fs_rate_profile_t *p);
/* Appends a phase (dur_s > 0, rates >= 0). Returns 0 or FS_EINVAL. */
int fs_rate_profile_add(fs_rate_profile_t *p, fs_phase_kind_t kind, double from, double to,
                        double dur_s);
/* A profile holding one constant rate for dur_s. */
int fs_rate_profile_constant(fs_rate_profile_t *p, double rate, double dur_s);
/* Multiplies every rate by f (used to split a profile among threads). */
void fs_rate_profile_scale(fs_rate_profile_t *p, double f);

/* Instantaneous rate at t (0 outside the profile). */
double fs_rate_at(const fs_rate_profile_t *p, double t);
/* N(t): expected arrivals in [0, t]; N(total) for t beyond the end. */
double fs_rate_count(const fs_rate_profile_t *p, double t);
/* The smallest t with N(t) >= n, or a negative value when the profile never gets there. */
double fs_rate_time_of(const fs_rate_profile_t *p, double n);
/* Intended time of arrival k (seconds from the start), or negative after the last arrival. */
double fs_rate_arrival(const fs_rate_profile_t *p, uint64_t k);
/* Arrivals in the whole profile: the k with t_k defined. */
uint64_t fs_rate_arrivals(const fs_rate_profile_t *p);

/* Parses one phase as written in campaign files:
 *   "ramp FROM TO DURATION"   "plateau RATE DURATION"   "spike RATE DURATION"   "pause DURATION"
 * Rates: a number with an optional k (thousands) or m (millions) suffix and an optional "/s"
 * ("50k", "2500/s"). Durations: a number with s, ms, us or m ("5s", "500ms", "2m"; bare = seconds).
 * Returns 0, or FS_EINVAL with a message in err. */
int fs_rate_parse_phase(const char *text, fs_rate_phase_t *out, char *err, size_t errcap);
/* "5s", "250ms", "100us", "2m", "1.5" (seconds) -> seconds. Returns 0 or FS_EINVAL. */
int fs_parse_duration(const char *s, double *out_s);
/* "50k", "2500/s", "1.5m" -> per second. Returns 0 or FS_EINVAL. */
int fs_parse_rate(const char *s, double *out);
const char *fs_phase_kind_name(fs_phase_kind_t k);

#endif
