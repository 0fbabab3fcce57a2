// Host-side argument checks for the attention ops: every failure names the
// argument and says what was expected.
#pragma once

#include "sparsejit/sparsejit.hpp"
#include "util/result.h"

namespace sparsejit {

Status validate_prefill(const PrefillArgs& a);
// `workspace_needed` is decode_workspace_bytes() for the call's shapes.
Status validate_decode(const DecodeArgs& a, std::size_t workspace_needed);

}  // namespace sparsejit
