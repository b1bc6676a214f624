#ifndef CLIBFUZZER_H
#define CLIBFUZZER_H

#include <stddef.h>
#include <stdint.h>

/// libFuzzer's driver (compiler-rt `FuzzerDriver.cpp`), linked in by `-sanitize=fuzzer`: runs the fuzzing loop, or
/// the given inputs, with `UserCb` as the target, taking libFuzzer's usual command line.
///
/// SwiftPM links an executable with `--defsym main=<module>_main`, which hides libFuzzer's own `main`; the fuzz
/// targets' `main.swift` calls this instead.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*UserCb)(const uint8_t *Data, size_t Size));

#endif
