// The recorded manifest (SPARSEJIT_RECORD): one canonical KernelConfig JSON per
// line, every distinct config a process needed. Several processes may append to
// one file: each append holds an flock on the manifest while it checks the file
// for the line and writes it with one O_APPEND write(), so the file stays
// deduplicated and no line is ever interleaved. `sparsejit warm --manifest`
// reads it back to pre-build exactly what production used.
#pragma once

#include <string>
#include <vector>

#include "config.h"
#include "util/result.h"

namespace sparsejit {

// Appends `config` to the manifest at `path` unless this process already
// recorded it there or the file already holds it. Misses only: never on the hot path.
Status record_config(const std::string& path, const KernelConfig& config);

// The distinct configs of a manifest, in file order (duplicates dropped, so a
// manifest concatenated from several hosts is fine). A malformed line is an
// Error naming path:line; blank lines are skipped.
Result<std::vector<KernelConfig>> read_manifest(const std::string& path);

}  // namespace sparsejit
