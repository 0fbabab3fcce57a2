// cache status|ls|verify|prune|clear|export|import
#include <iostream>

#include "cli.h"
#include "kernel_builder.h"

namespace sparsejit::cli {

void add_cache(CLI::App& app, Globals& g) {
  auto* cmd = app.add_subcommand("cache", "Inspect and administer the kernel cache");
  cmd->require_subcommand(1);

  cmd->add_subcommand("status", "Effective path, mode, entries, bytes")->callback([&g] {
    auto s = default_cache()->status();
    if (g.json) print_json(to_json(s));
    else {
      std::cout << "cache dir:   " << (s.user_dir.empty() ? "(none: memory only)" : s.user_dir) << "\nmode:        " << s.mode
                << "\nentries:     " << s.entries << "\nbytes:       " << s.bytes << " (cap " << s.max_bytes << ")\n";
      if (s.older_schema_bytes)
        std::cout << "older schemas: " << s.older_schema_bytes
                  << " bytes (left by earlier versions; counted by the cap and evicted first as they age; `cache clear` removes them)\n";
      for (const auto& d : s.system_dirs) std::cout << "system dir:  " << d << " (read-only)\n";
    }
  });

  cmd->add_subcommand("ls", "List entries (key, bytes, kernel, arch, last use)")->callback([&g] {
    auto list = default_cache()->list();
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& e : list) {
      nlohmann::json row = {{"key", e.key}, {"bytes", e.bytes}, {"path", e.path}, {"last_used_unix", e.last_used_unix}, {"read_only", e.read_only}};
      if (e.sidecar.is_object()) {
        row["kernel_name"] = e.sidecar.value("kernel_name", "");
        if (e.sidecar.contains("config")) row["config"] = e.sidecar["config"];
        row["backend"] = e.sidecar.value("backend", "");
      }
      arr.push_back(row);
    }
    if (g.json) {
      print_json(arr);
      return;
    }
    for (const auto& r : arr) {
      std::cout << r["key"].get<std::string>().substr(0, 16) << "  " << r["bytes"] << "  " << r.value("kernel_name", std::string("?"));
      if (r.contains("config")) std::cout << "  " << r["config"].value("arch", "") << "  " << r["config"].dump();
      std::cout << (r["read_only"].get<bool>() ? "  (system)" : "") << "\n";
    }
  });

  auto fix = std::make_shared<bool>(false);
  auto* verify = cmd->add_subcommand("verify", "Check every entry (header, checksum, key, sidecar); exits 1 naming bad entries");
  verify->add_flag("--fix", *fix, "Move bad entries aside and remove leftovers");
  verify->callback([&g, fix] {
    auto r = default_cache()->verify(*fix);
    if (g.json) print_json({{"checked", r.checked}, {"bad", r.bad}, {"cleaned", r.cleaned}});
    else {
      std::cout << "checked " << r.checked << " entries, " << r.bad.size() << " bad\n";
      for (const auto& b : r.bad) std::cout << "BAD " << b << "\n";
      for (const auto& c : r.cleaned) std::cout << "cleaned " << c << "\n";
    }
    if (!r.bad.empty()) throw CLI::RuntimeError(1);
  });

  auto max_bytes = std::make_shared<std::uint64_t>(0);
  auto* prune = cmd->add_subcommand("prune", "Evict least recently used entries down to --max-bytes (default: the configured cap)");
  prune->add_option("--max-bytes", *max_bytes, "Target size in bytes");
  prune->callback([&g, max_bytes] {
    auto cache = default_cache();
    const std::uint64_t cap = *max_bytes ? *max_bytes : cache->status().max_bytes;
    const auto freed = cache->prune(cap);
    if (g.json) print_json({{"freed_bytes", freed}, {"max_bytes", cap}});
    else std::cout << "freed " << freed << " bytes (cap " << cap << ")\n";
  });

  cmd->add_subcommand("clear", "Remove every entry of the user cache dir")->callback([&g] {
    auto st = default_cache()->clear();
    if (!st) throw CLI::RuntimeError(fail(g, st.error()));
    if (g.json) print_json({{"cleared", true}});
    else std::cout << "cleared\n";
  });

  auto file = std::make_shared<std::string>();
  auto* exp = cmd->add_subcommand("export", "Write every valid entry into one archive file");
  exp->add_option("file", *file, "Archive path")->required();
  exp->callback([&g, file] {
    auto st = default_cache()->export_to(*file);
    if (!st) throw CLI::RuntimeError(fail(g, st.error()));
    if (g.json) print_json({{"exported", *file}});
    else std::cout << "exported to " << *file << "\n";
  });
  auto ifile = std::make_shared<std::string>();
  auto* imp = cmd->add_subcommand("import", "Validate and add the entries of an archive to the user cache dir");
  imp->add_option("file", *ifile, "Archive path")->required();
  imp->callback([&g, ifile] {
    auto n = default_cache()->import_from(*ifile);
    if (!n) throw CLI::RuntimeError(fail(g, n.error()));
    if (g.json) print_json({{"imported", *n}});
    else std::cout << "imported " << *n << " entries\n";
  });
}

}  // namespace sparsejit::cli
