#ifndef CCRC32C_H
#define CCRC32C_H

#include <stddef.h>
#include <stdint.h>

/// Extends a CRC32C (Castagnoli) over `length` bytes. Start with crc = 0.
/// Uses the SSE4.2 `crc32` instruction when the CPU has it, a slicing table otherwise.
uint32_t eventflow_crc32c_update(uint32_t crc, const void *bytes, size_t length);

/// The portable table implementation, exposed so tests can check both paths agree.
uint32_t eventflow_crc32c_update_portable(uint32_t crc, const void *bytes, size_t length);

/// 1 when the hardware instruction is used.
int eventflow_crc32c_hardware_available(void);

#endif
