// warm: compile every kernel variant a deployment needs, for every target, in parallel.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

#include "arch_table.h"
#include "cli.h"
#include "compiler/registry.h"
#include "kernel_builder.h"
#include "manifest.h"
#include "preset.h"

namespace sparsejit::cli {
namespace {

struct Job {
  KernelConfig config;
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

class Progress {
 public:
  Progress(std::size_t total, bool enabled) : total_(total), enabled_(enabled) {}
  void update(int compiled, int hits, int failed) {
    if (!enabled_) return;
    std::lock_guard<std::mutex> lock(mu_);
    const std::size_t done = std::size_t(compiled + hits + failed);
    const int width = 30;
    const int filled = total_ ? int(width * done / total_) : width;
    std::cerr << "\r[" << std::string(filled, '#') << std::string(width - filled, '.') << "] " << done << "/" << total_
              << "  compiled " << compiled << "  hits " << hits << "  failed " << failed << std::flush;
    if (done == total_) std::cerr << "\n";
  }

 private:
  std::size_t total_;
  bool enabled_;
  std::mutex mu_;
};

}  // namespace

void add_warm(CLI::App& app, Globals& g) {
  auto* cmd = app.add_subcommand("warm", "Compile a preset's kernels for every target into the cache (idempotent: a second run is all hits)");
  struct Opts {
    std::string preset = "minimax-m3";
    std::string archs;
    int jobs = 0;
    std::string manifest;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--preset", o->preset, "Model preset (configs/models/<name>.json)");
  cmd->add_option("--arch", o->archs, "Comma-separated targets (default: every known target this machine can build)");
  cmd->add_option("-j,--jobs", o->jobs, "Parallel compiles (default: number of CPUs)");
  cmd->add_option("--manifest", o->manifest,
                  "Warm exactly the configs of a manifest recorded with SPARSEJIT_RECORD (JSON lines; --preset and --arch are ignored)");
  cmd->callback([&g, o] {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::string> archs = split_list(o->archs);
    nlohmann::json skipped = nlohmann::json::array();
    std::vector<Job> jobs;
    if (!o->manifest.empty()) {
      // Exactly what production recorded: each config carries its own arch.
      auto configs = read_manifest(o->manifest);
      if (!configs) throw CLI::RuntimeError(fail(g, configs.error()));
      archs.clear();
      for (auto& c : *configs) {
        if (std::find(archs.begin(), archs.end(), c.arch) == archs.end()) archs.push_back(c.arch);
        jobs.push_back({c});
      }
    }
    auto preset = o->manifest.empty() ? load_preset(o->preset) : Result<Preset>(Preset{});
    if (!preset) throw CLI::RuntimeError(fail(g, preset.error()));
    if (archs.empty() && o->manifest.empty()) {
      for (const auto& t : known_targets()) {
        auto table = load_arch_table(t);
        if (!table) continue;
        auto c = CompilerRegistry::instance().choose(t, table->backends);
        if (c) archs.push_back(t);
        else skipped.push_back({{"target", t}, {"reason", c.error().message}});
      }
    }
    for (const auto& a : o->manifest.empty() ? archs : std::vector<std::string>{}) {
      auto configs = expand_preset(*preset, a);
      if (!configs) throw CLI::RuntimeError(fail(g, configs.error()));
      for (auto& c : *configs) jobs.push_back({c});
    }
    const int n = o->jobs > 0 ? o->jobs : std::max(1u, std::thread::hardware_concurrency());
    auto cache = default_cache();
    KernelBuilder builder(cache);
    std::atomic<std::size_t> next{0};
    std::atomic<int> compiled{0}, hits{0}, failed{0};
    std::mutex fail_mu;
    nlohmann::json failures = nlohmann::json::array();
    Progress progress(jobs.size(), !g.json && isatty(2));
    auto worker = [&] {
      for (std::size_t i; (i = next++) < jobs.size();) {
        auto r = builder.build(jobs[i].config);
        if (!r) {
          ++failed;
          std::lock_guard<std::mutex> lock(fail_mu);
          failures.push_back({{"config", jobs[i].config.to_json()}, {"error", r.error().describe(true)}});
        } else if (r->origin == CacheOrigin::compiled) {
          ++compiled;
        } else {
          ++hits;
        }
        progress.update(compiled, hits, failed);
      }
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < std::min<int>(n, int(jobs.size())); ++t) threads.emplace_back(worker);
    for (auto& t : threads) t.join();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto st = cache->status();
    const std::string source = o->manifest.empty() ? o->preset : o->manifest;
    nlohmann::json summary = {{"preset", o->manifest.empty() ? nlohmann::json(o->preset) : nlohmann::json(nullptr)}, {"archs", archs},       {"kernels", jobs.size()}, {"compiled", compiled.load()},
                              {"hits", hits.load()}, {"failed", failed.load()}, {"seconds", secs},    {"jobs", n},
                              {"cache_dir", st.user_dir}, {"cache_mode", st.mode}, {"failures", failures}, {"skipped_archs", skipped}};
    if (!o->manifest.empty()) summary["manifest"] = o->manifest;
    if (g.json) {
      print_json(summary);
    } else {
      std::cout << "warm " << source << ": " << jobs.size() << " kernels for";
      for (const auto& a : archs) std::cout << " " << a;
      std::cout << "\n  compiled " << compiled << ", hits " << hits << ", failed " << failed << " in " << std::fixed
                << std::setprecision(1) << secs << " s (-j " << n << ")\n"
                << "  cache: " << (st.user_dir.empty() ? "(memory only)" : st.user_dir) << " (" << st.mode << ")\n";
      for (const auto& s : skipped) std::cout << "  skipped " << s["target"].get<std::string>() << ": " << s["reason"].get<std::string>() << "\n";
      for (const auto& f : failures) std::cout << "  FAILED " << f["config"].dump() << "\n" << f["error"].get<std::string>() << "\n";
    }
    if (failed > 0) throw CLI::RuntimeError(1);
  });
}

}  // namespace sparsejit::cli
