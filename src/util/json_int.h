// One reading of a JSON integer for every parser of tables and configs: the type,
// then the range. nlohmann::json keeps non-negative integers unsigned; a value above
// LLONG_MAX read as long long would wrap (2^64 - 1 -> -1), so unsigned values are
// compared as unsigned.
#pragma once

#include <nlohmann/json.hpp>

namespace sparsejit {

enum class JsonInt { ok, not_integer, out_of_range };

// `out` is written only when the result is ok.
inline JsonInt read_json_int(const nlohmann::json& v, long long lo, long long hi, long long& out) {
  if (!v.is_number_integer()) return JsonInt::not_integer;
  long long x;
  if (v.is_number_unsigned()) {
    const unsigned long long u = v.get<unsigned long long>();
    if (hi < 0 || u > static_cast<unsigned long long>(hi)) return JsonInt::out_of_range;
    x = static_cast<long long>(u);
  } else {
    x = v.get<long long>();
  }
  if (x < lo || x > hi) return JsonInt::out_of_range;
  out = x;
  return JsonInt::ok;
}

}  // namespace sparsejit
