#include "ccrc32c.h"
#include <string.h>

// Castagnoli polynomial, reflected.
#define CRC32C_POLY 0x82F63B78u

static uint32_t crc32c_table[8][256];
static int crc32c_table_ready = 0;

static void crc32c_init_table(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t crc = n;
        for (int k = 0; k < 8; k++) {
            crc = (crc & 1) ? (crc >> 1) ^ CRC32C_POLY : crc >> 1;
        }
        crc32c_table[0][n] = crc;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t crc = crc32c_table[0][n];
        for (int k = 1; k < 8; k++) {
            crc = crc32c_table[0][crc & 0xff] ^ (crc >> 8);
            crc32c_table[k][n] = crc;
        }
    }
    __atomic_store_n(&crc32c_table_ready, 1, __ATOMIC_RELEASE);
}

uint32_t eventflow_crc32c_update_portable(uint32_t crc, const void *bytes, size_t length) {
    if (!__atomic_load_n(&crc32c_table_ready, __ATOMIC_ACQUIRE)) {
        crc32c_init_table();  // idempotent: racing initialisers write identical values
    }
    const uint8_t *p = (const uint8_t *)bytes;
    crc = ~crc;
    // Slicing-by-8: eight table lookups per 8 input bytes.
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        word ^= crc;
        crc = crc32c_table[7][word & 0xff] ^
              crc32c_table[6][(word >> 8) & 0xff] ^
              crc32c_table[5][(word >> 16) & 0xff] ^
              crc32c_table[4][(word >> 24) & 0xff] ^
              crc32c_table[3][(word >> 32) & 0xff] ^
              crc32c_table[2][(word >> 40) & 0xff] ^
              crc32c_table[1][(word >> 48) & 0xff] ^
              crc32c_table[0][(word >> 56) & 0xff];
        p += 8;
        length -= 8;
    }
    while (length--) {
        crc = crc32c_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    }
    return ~crc;
}

#if defined(__x86_64__)
#include <nmmintrin.h>

__attribute__((target("sse4.2")))
static uint32_t crc32c_update_sse42(uint32_t crc, const void *bytes, size_t length) {
    const uint8_t *p = (const uint8_t *)bytes;
    uint64_t c = ~crc;
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = _mm_crc32_u64(c, word);
        p += 8;
        length -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (length--) {
        c32 = _mm_crc32_u8(c32, *p++);
    }
    return ~c32;
}

int eventflow_crc32c_hardware_available(void) {
    return __builtin_cpu_supports("sse4.2") ? 1 : 0;
}

uint32_t eventflow_crc32c_update(uint32_t crc, const void *bytes, size_t length) {
    static int hardware = -1;
    int h = __atomic_load_n(&hardware, __ATOMIC_RELAXED);
    if (h < 0) {
        h = eventflow_crc32c_hardware_available();
        __atomic_store_n(&hardware, h, __ATOMIC_RELAXED);
    }
    return h ? crc32c_update_sse42(crc, bytes, length) : eventflow_crc32c_update_portable(crc, bytes, length);
}
#else
int eventflow_crc32c_hardware_available(void) { return 0; }

uint32_t eventflow_crc32c_update(uint32_t crc, const void *bytes, size_t length) {
    return eventflow_crc32c_update_portable(crc, bytes, length);
}
#endif
