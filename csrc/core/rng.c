/*
 * rng.c: Philox4x32-10, the counter-based generator of Salmon, Moraes, Dror and Shaw, "Parallel
 * random numbers: as easy as 1, 2, 3" (SC 2011), with the Random123 constants.
 *
 * Why a counter-based generator: a draw is a pure function of (key, counter), so the token picked
 * for a row depends only on that row's (seed, position, draw index) -- never on its batch
 * neighbours, the row order, the thread count or any hidden state (the batch-dependence bugs of
 * a shared stateful RNG; SPEC section 4). There is no state to seed, store or share between
 * threads. Philox4x32-10 passes BigCrush, needs only 32x32->64 multiplies, and is what cuRAND,
 * JAX, torch's CUDA generator and NumPy's Philox use, so its outputs can be cross-checked against
 * the published known-answer vectors (tests/test_rng.c).
 *
 * Round function (one of 10): with the 32x32->64 products M0 * c0 = (hi0, lo0) and
 * M1 * c2 = (hi1, lo1), the new counter is {hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0}; between rounds
 * the key is bumped by the Weyl constants (W0, W1).
 *
 * fd_uniform: counter = {position lo, position hi, draw lo, draw hi}, key = {seed lo, seed hi};
 * the top 53 bits of out[0]:out[1] scaled by 2^-53 give a double in [0, 1) on the full 53-bit
 * grid (every value a multiple of 2^-53, never 1.0).
 */
#include "internal.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u
#define PHILOX_ROUNDS 10

void fd_philox4x32(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < PHILOX_ROUNDS; r++) {
        if (r > 0) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

double fd_uniform(uint64_t seed, uint64_t position, uint64_t draw)
{
    const uint32_t counter[4] = {(uint32_t)position, (uint32_t)(position >> 32), (uint32_t)draw,
                                 (uint32_t)(draw >> 32)};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t out[4];
    fd_philox4x32(counter, key, out);
    uint64_t bits = (((uint64_t)out[0] << 32) | out[1]) >> 11;
    return (double)bits * 0x1.0p-53;
}
