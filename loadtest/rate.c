/* Rate profiles and the open-loop arrival schedule (see rate.h). */
#include "rate.h"
#include "flashsale/error.h"
#include "common/log.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fs_rate_profile_init(fs_rate_profile_t *p)
{
    memset(p, 0, sizeof *p);
}

void fs_rate_profile_free(fs_rate_profile_t *p)
{
    free(p->phases);
    free(p->start_s);
    free(p->start_n);
    fs_rate_profile_init(p);
}

/* Arrivals within a phase during its first tau seconds. */
static double fs__phase_count(const fs_rate_phase_t *ph, double tau)
{
    if (tau <= 0) return 0;
    if (tau > ph->dur_s) tau = ph->dur_s;
    return ph->from * tau + (ph->to - ph->from) / (2.0 * ph->dur_s) * tau * tau;
}

int fs_rate_profile_add(fs_rate_profile_t *p, fs_phase_kind_t kind, double from, double to,
                        double dur_s)
{
    if (!(dur_s > 0) || !(from >= 0) || !(to >= 0) || !isfinite(from) || !isfinite(to) ||
        !isfinite(dur_s))
        return FS_EINVAL;
    size_t n = p->n + 1;
    p->phases = fs_xrealloc(p->phases, n * sizeof *p->phases);
    p->start_s = fs_xrealloc(p->start_s, n * sizeof *p->start_s);
    p->start_n = fs_xrealloc(p->start_n, n * sizeof *p->start_n);
    fs_rate_phase_t *ph = &p->phases[p->n];
    *ph = (fs_rate_phase_t){.kind = kind, .from = from, .to = to, .dur_s = dur_s};
    p->start_s[p->n] = p->total_s;
    p->start_n[p->n] = p->total_n;
    p->total_s += dur_s;
    p->total_n += fs__phase_count(ph, dur_s);
    p->n = n;
    return FS_OK;
}

int fs_rate_profile_constant(fs_rate_profile_t *p, double rate, double dur_s)
{
    return fs_rate_profile_add(p, FS_PHASE_PLATEAU, rate, rate, dur_s);
}

void fs_rate_profile_scale(fs_rate_profile_t *p, double f)
{
    double s = 0, n = 0;
    for (size_t i = 0; i < p->n; i++) {
        p->phases[i].from *= f;
        p->phases[i].to *= f;
        p->start_s[i] = s;
        p->start_n[i] = n;
        s += p->phases[i].dur_s;
        n += fs__phase_count(&p->phases[i], p->phases[i].dur_s);
    }
    p->total_n = n;
}

/* The phase containing t (the last one for t at or beyond the end). */
static size_t fs__phase_at(const fs_rate_profile_t *p, double t)
{
    size_t lo = 0, hi = p->n;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (p->start_s[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

double fs_rate_at(const fs_rate_profile_t *p, double t)
{
    if (!p->n || t < 0 || t >= p->total_s) return 0;
    size_t i = fs__phase_at(p, t);
    const fs_rate_phase_t *ph = &p->phases[i];
    double tau = t - p->start_s[i];
    return ph->from + (ph->to - ph->from) * tau / ph->dur_s;
}

double fs_rate_count(const fs_rate_profile_t *p, double t)
{
    if (!p->n || t <= 0) return 0;
    if (t >= p->total_s) return p->total_n;
    size_t i = fs__phase_at(p, t);
    return p->start_n[i] + fs__phase_count(&p->phases[i], t - p->start_s[i]);
}

double fs_rate_time_of(const fs_rate_profile_t *p, double n)
{
    if (n <= 0) return 0;
    if (!p->n || n > p->total_n) return -1;
    /* the first phase whose end count reaches n */
    size_t lo = 0, hi = p->n - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        double end_n = mid + 1 < p->n ? p->start_n[mid + 1] : p->total_n;
        if (end_n >= n)
            hi = mid;
        else
            lo = mid + 1;
    }
    const fs_rate_phase_t *ph = &p->phases[lo];
    double c = n - p->start_n[lo];
    /* Solve a*tau^2 + b*tau = c with the form that stays stable when a is 0 or negative. */
    double a = (ph->to - ph->from) / (2.0 * ph->dur_s), b = ph->from;
    double disc = b * b + 4.0 * a * c;
    if (disc < 0) disc = 0;
    double den = b + sqrt(disc);
    double tau = den > 0 ? 2.0 * c / den : ph->dur_s;
    if (tau > ph->dur_s) tau = ph->dur_s;
    if (tau < 0) tau = 0;
    return p->start_s[lo] + tau;
}

double fs_rate_arrival(const fs_rate_profile_t *p, uint64_t k)
{
    return fs_rate_time_of(p, (double)k + 0.5);
}

uint64_t fs_rate_arrivals(const fs_rate_profile_t *p)
{
    /* k + 1/2 <= total_n */
    if (p->total_n < 0.5) return 0;
    return (uint64_t)floor(p->total_n - 0.5 + 1e-9) + 1;
}

/* ---- parsing ---- */

int fs_parse_duration(const char *s, double *out_s)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || !isfinite(v) || v < 0) return FS_EINVAL;
    while (*end == ' ') end++;
    double mul = 1;
    if (*end == 0 || strcmp(end, "s") == 0)
        mul = 1;
    else if (strcmp(end, "ms") == 0)
        mul = 0.001;
    else if (strcmp(end, "us") == 0)
        mul = 0.000001;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
        mul = 60;
    else if (strcmp(end, "h") == 0)
        mul = 3600;
    else
        return FS_EINVAL;
    *out_s = v * mul;
    return FS_OK;
}

int fs_parse_rate(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || !isfinite(v) || v < 0) return FS_EINVAL;
    double mul = 1;
    if (*end == 'k' || *end == 'K') {
        mul = 1e3;
        end++;
    } else if (*end == 'm' || *end == 'M') {
        mul = 1e6;
        end++;
    }
    if (strcmp(end, "/s") == 0) end += 2;
    if (*end) return FS_EINVAL;
    *out = v * mul;
    return FS_OK;
}

const char *fs_phase_kind_name(fs_phase_kind_t k)
{
    switch (k) {
    case FS_PHASE_RAMP: return "ramp";
    case FS_PHASE_PLATEAU: return "plateau";
    case FS_PHASE_SPIKE: return "spike";
    case FS_PHASE_PAUSE: return "pause";
    }
    return "?";
}

int fs_rate_parse_phase(const char *text, fs_rate_phase_t *out, char *err, size_t errcap)
{
    char buf[256];
    char *tok[6];
    int nt = 0;
    if (strlen(text) >= sizeof buf) {
        snprintf(err, errcap, "phase too long");
        return FS_EINVAL;
    }
    strcpy(buf, text);
    for (char *save = NULL, *t = strtok_r(buf, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
        if (nt == 6) {
            snprintf(err, errcap, "too many words in phase \"%s\"", text);
            return FS_EINVAL;
        }
        tok[nt++] = t;
    }
    if (nt == 0) {
        snprintf(err, errcap, "empty phase (expected ramp, plateau, spike or pause)");
        return FS_EINVAL;
    }
    static const struct {
        const char *name;
        fs_phase_kind_t kind;
        int rates;
        const char *usage;
    } forms[] = {
        {"ramp", FS_PHASE_RAMP, 2, "ramp FROM TO DURATION, e.g. \"ramp 0 50k 5s\""},
        {"plateau", FS_PHASE_PLATEAU, 1, "plateau RATE DURATION, e.g. \"plateau 2000 30s\""},
        {"spike", FS_PHASE_SPIKE, 1, "spike RATE DURATION, e.g. \"spike 20k 2s\""},
        {"pause", FS_PHASE_PAUSE, 0, "pause DURATION, e.g. \"pause 3s\""},
    };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        if (strcmp(tok[0], forms[i].name) != 0) continue;
        if (nt != forms[i].rates + 2) {
            snprintf(err, errcap, "expected %s", forms[i].usage);
            return FS_EINVAL;
        }
        double r[2] = {0, 0}, d;
        for (int j = 0; j < forms[i].rates; j++) {
            if (fs_parse_rate(tok[1 + j], &r[j])) {
                snprintf(err, errcap, "bad rate \"%s\" (expected a number of arrivals per second such as 2500 or 50k)", tok[1 + j]);
                return FS_EINVAL;
            }
        }
        if (fs_parse_duration(tok[nt - 1], &d) || d <= 0) {
            snprintf(err, errcap, "bad duration \"%s\" (expected e.g. 5s, 500ms or 2m)", tok[nt - 1]);
            return FS_EINVAL;
        }
        out->kind = forms[i].kind;
        out->from = r[0];
        out->to = forms[i].rates == 2 ? r[1] : r[0];
        out->dur_s = d;
        return FS_OK;
    }
    snprintf(err, errcap, "unknown phase \"%s\" (expected ramp, plateau, spike or pause)", tok[0]);
    return FS_EINVAL;
}
