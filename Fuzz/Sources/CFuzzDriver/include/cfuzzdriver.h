#ifndef CFUZZDRIVER_H
#define CFUZZDRIVER_H

#include <stddef.h>
#include <stdint.h>

typedef int (*eventflow_fuzz_callback)(const uint8_t *data, size_t size);

/// Runs libFuzzer's driver (LLVMFuzzerRunDriver) with the process arguments. SwiftPM links an
/// executable target's entry point as `<Target>_main`, so each target calls this from there
/// instead of relying on libFuzzer's own `main`.
int eventflow_fuzz_run(int argc, char **argv, eventflow_fuzz_callback callback);

#endif
