// archs, emit, compile.
#include <fstream>
#include <iostream>

#include "arch_table.h"
#include "cli.h"
#include "compiler/helper_main.h"
#include "compiler/registry.h"
#include "device/device.h"
#include "kernel_builder.h"
#include "render.h"

namespace sparsejit::cli {

void add_archs(CLI::App& app, Globals& g) {
  auto* cmd = app.add_subcommand("archs", "Every known target, which backend here can build it, and which devices can load it");
  cmd->callback([&g] {
    nlohmann::json out = nlohmann::json::array();
    auto& reg = CompilerRegistry::instance();
    std::vector<DeviceInfo> devices;
    for (const Driver* d : {&cuda_driver(), &hip_driver()})
      if (d->available())
        for (int i = 0; i < d->device_count(); ++i)
          if (auto info = d->device_info(i)) devices.push_back(*info);
    for (const auto& target : known_targets()) {
      auto table = load_arch_table(target);
      nlohmann::json row = {{"target", target}};
      if (!table) {
        row["error"] = table.error().describe(false);
        out.push_back(row);
        continue;
      }
      row["vendor"] = table->vendor;
      row["description"] = table->description;
      nlohmann::json backends = nlohmann::json::array();
      for (const auto& name : table->backends) {
        nlohmann::json b = {{"backend", name}};
        auto c = reg.by_name(name);
        if (!c || !c->available()) {
          b["can_build"] = false;
          b["reason"] = c ? c->unavailable_reason() : "backend not built";
        } else {
          auto s = c->supports(target);
          b["can_build"] = s.ok;
          b["version"] = c->version();
          if (!s.reason.empty()) b["reason"] = s.reason;
        }
        backends.push_back(b);
      }
      row["backends"] = backends;
      auto chosen = reg.choose(target, table->backends);
      row["buildable"] = bool(chosen);
      if (chosen) row["builder"] = (*chosen)->name();
      nlohmann::json loadable = nlohmann::json::array();
      for (const auto& d : devices)
        if (d.target.substr(0, d.target.find(':')) == table->processor) loadable.push_back(std::to_string(d.ordinal) + ": " + d.name);
      row["devices"] = loadable;
      out.push_back(row);
    }
    if (g.json) {
      print_json(out);
      return;
    }
    for (const auto& row : out) {
      std::cout << row["target"].get<std::string>() << "  (" << row.value("vendor", "?") << ")  "
                << (row.value("buildable", false) ? "buildable with " + row.value("builder", std::string()) : std::string("NOT buildable here"))
                << "\n";
      if (row.contains("backends"))
        for (const auto& b : row["backends"])
          std::cout << "    " << b["backend"].get<std::string>() << ": " << (b["can_build"].get<bool>() ? "yes" : "no")
                    << (b.contains("version") ? "  [" + b["version"].get<std::string>() + "]" : "")
                    << (b.contains("reason") ? "  (" + b["reason"].get<std::string>() + ")" : "") << "\n";
      for (const auto& d : row.value("devices", nlohmann::json::array())) std::cout << "    device " << d.get<std::string>() << "\n";
    }
  });
}

void add_emit(CLI::App& app, Globals& g) {
  auto* cmd = app.add_subcommand("emit", "Print the generated kernel source (self-contained; compiles standalone)");
  auto flags = std::make_shared<ShapeFlags>();
  flags->add_to(*cmd);
  cmd->callback([&g, flags] {
    auto config = flags->resolve();
    if (!config) throw CLI::RuntimeError(fail(g, config.error()));
    auto table = load_arch_table(config->arch);
    if (!table) throw CLI::RuntimeError(fail(g, table.error()));
    auto r = render_kernel(*config, *table);
    if (!r) throw CLI::RuntimeError(fail(g, r.error()));
    if (g.json) print_json({{"config", config->to_json()}, {"kernel_name", r->kernel_name}, {"source", r->source}});
    else std::cout << r->source;
  });
}

void add_compile(CLI::App& app, Globals& g) {
  auto* cmd = app.add_subcommand("compile", "Compile one kernel (through the cache) and write its code object; `--helper` is the out-of-process compiler");
  auto flags = std::make_shared<ShapeFlags>();
  auto out = std::make_shared<std::string>();
  flags->add_to(*cmd);
  cmd->add_option("-o,--output", *out, "Write the code object here");
  cmd->callback([&g, flags, out] {
    auto config = flags->resolve();
    if (!config) throw CLI::RuntimeError(fail(g, config.error()));
    KernelBuilder builder(default_cache());
    auto built = builder.build(*config);
    if (!built) throw CLI::RuntimeError(fail(g, built.error()));
    if (!out->empty()) {
      std::ofstream f(*out, std::ios::binary);
      f.write(reinterpret_cast<const char*>(built->object->binary.data()), std::streamsize(built->object->binary.size()));
      if (!f) throw CLI::RuntimeError(fail(g, make_error("io", "cannot write " + *out)));
    }
    nlohmann::json j = {{"key", built->key},       {"backend", built->backend}, {"origin", to_string(built->origin)},
                        {"bytes", built->object->binary.size()}, {"seconds", built->seconds}, {"kernel_name", built->kernel_name},
                        {"output", *out}};
    if (g.json) print_json(j);
    else
      std::cout << built->kernel_name << " for " << config->arch << ": " << built->object->binary.size() << " bytes, "
                << to_string(built->origin) << " via " << built->backend << ", key " << built->key
                << (out->empty() ? "" : ", written to " + *out) << "\n";
  });
}

}  // namespace sparsejit::cli
