/* fp_cache_fill.c - fill claims, the cross-worker half of request
 * coalescing (fp_cache.h, "Request coalescing"): a small table in the
 * region of key hashes whose response some process is fetching, each with
 * its owner's pid and a deadline, so that a miss in any worker waits for
 * that fetch instead of sending its own.  A claim whose owner died or whose
 * deadline passed is taken over. */
#include "fp_cache_int.h"

int fp_cache_fill_claim(fp_cache *c, uint64_t key_hash, int32_t pid, int64_t now_ms,
                        int64_t ttl_ms, int64_t *deadline_ms)
{
    if (fp_lock(c)) return FP_FILL_NOSLOT;
    fp_fill *f = fp_fills(c);
    int free_i = -1, r = FP_FILL_NOSLOT;
    for (int i = 0; i < FP_NFILL; i++) {
        if (f[i].hash == key_hash) {
            if (f[i].pid != pid && f[i].deadline_ms > now_ms && fp_pid_alive(f[i].pid)) {
                *deadline_ms = f[i].deadline_ms;
                fp_unlock(c);
                return FP_FILL_WAIT;
            }
            free_i = i;  /* ours already, expired, or its owner died: take it over */
            break;
        }
        if (free_i < 0 && (f[i].hash == 0 || f[i].deadline_ms <= now_ms)) free_i = i;
    }
    if (free_i >= 0) {
        fp_mut_begin(c);
        f[free_i].pid = pid;
        f[free_i].deadline_ms = now_ms + ttl_ms;
        f[free_i].hash = key_hash;
        fp_mut_end(c);
        *deadline_ms = now_ms + ttl_ms;
        r = FP_FILL_OWNER;
    }
    fp_unlock(c);
    return r;
}

int fp_cache_fill_pending(fp_cache *c, uint64_t key_hash, int64_t now_ms)
{
    if (fp_lock(c)) return 0;
    fp_fill *f = fp_fills(c);
    int r = 0;
    for (int i = 0; i < FP_NFILL; i++)
        if (f[i].hash == key_hash) {
            r = f[i].deadline_ms > now_ms && fp_pid_alive(f[i].pid);
            break;
        }
    fp_unlock(c);
    return r;
}

void fp_cache_fill_done(fp_cache *c, uint64_t key_hash, int32_t pid)
{
    if (fp_lock(c)) return;
    fp_fill *f = fp_fills(c);
    fp_mut_begin(c);
    for (int i = 0; i < FP_NFILL; i++)
        if (f[i].hash == key_hash && f[i].pid == pid) f[i].hash = 0;
    fp_mut_end(c);
    fp_unlock(c);
}
