/*
 * §5.3 masking: octet i of the payload is XORed with octet i % 4 of the key.
 * Shared by the core's accelerator (_speedups.c) and the asyncio layer's
 * (../_hotpath.c); src and dst may be the same buffer.
 *
 * With GCC or Clang the bulk goes 64 bytes per step in two 32-byte vectors
 * of the compilers' generic vector extension, which they lower to what the
 * target has (two SSE2 registers each on plain x86-64, NEON on ARM64).  On
 * x86-64 Linux, GCC also builds an AVX2 copy and the loader picks it on a CPU
 * that has AVX2 (target_clones): one register per vector.  The rest, and
 * every other compiler, goes 8 bytes at a time with the key repeated into a
 * 64-bit word, then one byte at a time.  The key word and vector are built
 * from the key bytes in memory order (not by shifting), so the same code is
 * right on big- and little-endian machines; memcpy keeps the loads and stores
 * free of alignment and aliasing assumptions, and compilers turn each into
 * single moves.  Every block starts at a multiple of 4 from the start, so the
 * key's phase never shifts.
 */

#ifndef TETHER_MASK_H
#define TETHER_MASK_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
#define TETHER_MASK_VECTORS 1
typedef unsigned char tether_mask_v32 __attribute__((vector_size(32)));
#endif

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define TETHER_MASK_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define TETHER_MASK_CLONES
#endif

TETHER_MASK_CLONES static void
xor_mask(const unsigned char *src, unsigned char *dst, size_t n, const unsigned char *key)
{
    size_t i = 0;
#ifdef TETHER_MASK_VECTORS
    if (n >= 64) {
        tether_mask_v32 k, a, b;
        for (int j = 0; j < 32; j++) {
            k[j] = key[j & 3];
        }
        for (; n - i >= 64; i += 64) {
            memcpy(&a, src + i, 32);
            memcpy(&b, src + i + 32, 32);
            a ^= k;
            b ^= k;
            memcpy(dst + i, &a, 32);
            memcpy(dst + i + 32, &b, 32);
        }
    }
#endif
    if (n - i >= 8) {
        unsigned char repeated[8];
        uint64_t k, w;
        for (int j = 0; j < 8; j++) {
            repeated[j] = key[j & 3];
        }
        memcpy(&k, repeated, 8);
        for (; n - i >= 8; i += 8) {
            memcpy(&w, src + i, 8);
            w ^= k;
            memcpy(dst + i, &w, 8);
        }
    }
    for (; i < n; i++) {
        dst[i] = src[i] ^ key[i & 3];
    }
}

#endif
