#include "render.h"

#include <algorithm>
#include <set>
#include <vector>

#include "resources.h"

namespace sparsejit {
namespace {

bool is_name(const std::string& s) {
  if (s.empty() || !(std::isupper(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  for (char c : s)
    if (!(std::isupper(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '_')) return false;
  return true;
}

int line_of(const std::string& text, size_t pos) { return 1 + static_cast<int>(std::count(text.begin(), text.begin() + pos, '\n')); }

Status expand(const std::string& name, const TemplateValues& values, std::set<std::string>& used, std::vector<std::string>& stack,
              std::string& out) {
  if (stack.size() > 8) return make_error("render", "templates nest deeper than 8 levels at " + name);
  for (const auto& s : stack)
    if (s == name) return make_error("render", "template include cycle through " + name);
  auto text = read_resource("templates/" + name);
  if (!text) return text.error();
  stack.push_back(name);
  const std::string& t = *text;
  size_t pos = 0;
  while (true) {
    const size_t open = t.find("{{", pos);
    if (open == std::string::npos) {
      out.append(t, pos, std::string::npos);
      break;
    }
    out.append(t, pos, open - pos);
    const size_t close = t.find("}}", open + 2);
    if (close == std::string::npos)
      return make_error("render", name + ":" + std::to_string(line_of(t, open)) + ": unterminated '{{'");
    std::string inner = t.substr(open + 2, close - open - 2);
    const std::string where = name + ":" + std::to_string(line_of(t, open));
    if (!inner.empty() && inner[0] == '>') {
      std::string file = inner.substr(1);
      file.erase(0, file.find_first_not_of(' '));
      file.erase(file.find_last_not_of(' ') + 1);
      if (file.empty() || file.find("..") != std::string::npos || file[0] == '/')
        return make_error("render", where + ": bad include '{{" + inner + "}}'");
      if (auto st = expand(file, values, used, stack, out); !st) return st;
    } else {
      if (!is_name(inner)) return make_error("render", where + ": malformed placeholder '{{" + inner + "}}' (expected {{UPPER_CASE}} or {{> file}})");
      auto it = values.find(inner);
      if (it == values.end()) return make_error("render", where + ": unknown placeholder {{" + inner + "}} (no value given)");
      used.insert(inner);
      out += it->second;
    }
    pos = close + 2;
  }
  stack.pop_back();
  return ok_status();
}

}  // namespace

Result<std::string> render_template(const std::string& name, const TemplateValues& values) {
  std::string out;
  std::set<std::string> used;
  std::vector<std::string> stack;
  if (auto st = expand(name, values, used, stack, out); !st) return st.error();
  for (const auto& [k, v] : values)
    if (!used.count(k)) return make_error("render", "value for {{" + k + "}} is not used by template " + name);
  return out;
}

Result<RenderedKernel> render_kernel(const KernelConfig& c, const ArchTable& arch) {
  if (auto st = c.validate(); !st) return st.error();
  if (c.shared_bytes() > arch.max_shared_bytes)
    return make_error("config", "the kernel needs " + std::to_string(c.shared_bytes()) + " bytes of static shared memory/LDS but " +
                                    arch.processor + " allows " + std::to_string(arch.max_shared_bytes) +
                                    " (reduce sub_k or head_dim x gqa_group)");
  RenderedKernel r;
  r.kernel_name = c.kernel_name();
  TemplateValues v{
      {"HEAD_DIM", std::to_string(c.head_dim)},
      {"NUM_TOPK_CHUNKS", std::to_string(c.num_topk_chunks)},
      {"THREADS", std::to_string(c.launch.threads)},
      {"WAVES_PER_EU", std::to_string(c.launch.waves_per_eu)},
      {"Q_DTYPE", std::to_string(static_cast<int>(c.q_dtype))},
      {"KERNEL_NAME", r.kernel_name},
  };
  r.template_name = c.templ;
  if (c.op != Op::merge) {
    v["GQA_GROUP"] = std::to_string(c.gqa_group);
    v["TOPK"] = std::to_string(c.topk);
    v["SUB_K"] = std::to_string(c.sub_k);
    v["KV_DTYPE"] = std::to_string(static_cast<int>(c.kv_dtype));
    v["SCALE_MODE"] = std::to_string(static_cast<int>(c.scale_mode));
    v["IS_DECODE"] = c.op == Op::decode ? "1" : "0";
  }
  if (c.templ == kTemplateAttentionNv) {
    if (arch.vendor != "nvidia")
      return make_error("config", std::string("template ") + kTemplateAttentionNv + " needs an NVIDIA target (sm_80+), not " + c.arch);
    v["STAGES"] = std::to_string(c.launch.stages);
    v["Q_TILE"] = std::to_string(c.q_tile);
    v["CLUSTER"] = std::to_string(c.launch.cluster);
    v["KV_HEAD_SPLIT"] = std::to_string(c.kv_head_split);
    v["MIN_BLOCKS"] = std::to_string(c.launch.min_blocks);
    v["WGMMA"] = c.launch.wgmma ? "true" : "false";
    v["TMA"] = c.launch.tma ? "true" : "false";
    v.erase("WAVES_PER_EU");
  }
  if (c.dynamic_shared_bytes() > arch.max_dynamic_shared_bytes)
    return make_error("config", "the kernel needs " + std::to_string(c.dynamic_shared_bytes()) + " bytes of dynamic shared memory but " +
                                    arch.processor + " allows " + std::to_string(arch.max_dynamic_shared_bytes) +
                                    " (reduce launch.stages, q_tile or sub_k)");
  auto prelude = read_resource("templates/" + arch.prelude);
  if (!prelude) return prelude.error();
  auto body = render_template(r.template_name, v);
  if (!body) return body.error();
  r.source = "// sparsejit generated kernel: " + r.kernel_name + " for " + c.arch + " (do not edit; `sparsejit emit` reproduces it)\n" +
             "// config: " + c.canonical() + "\n" + "// config-key: " + c.config_key() + "\n" + "// template: " + r.template_name +
             " + " + arch.prelude + " (" + arch.source + ")\n" + *prelude + "\n" + *body;
  return r;
}

}  // namespace sparsejit
