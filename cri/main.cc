// podvisord: a Kubernetes CRI runtime that runs every pod in its own virtual machine.

#include <signal.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/config.h"
#include "common/log.h"
#include "common/systemd_notify.h"
#include "cri/daemon.h"
#include "nlohmann/json.hpp"

namespace {

constexpr char kDefaultConfigPath[] = "/etc/podvisor/config.yaml";

constexpr char kUsage[] =
    "Usage: podvisord [flags]\n"
    "\n"
    "Serves the Kubernetes CRI (runtime.v1) on a unix socket; every pod sandbox is a VM.\n"
    "\n"
    "Flags:\n"
    "  --config PATH      YAML configuration (default /etc/podvisor/config.yaml; a missing\n"
    "                     default file means built-in defaults; a named file must exist)\n"
    "  --listen ADDR      CRI endpoint (default unix:///run/podvisor/podvisor.sock)\n"
    "  --root-dir DIR     durable state: store, images (default /var/lib/podvisor)\n"
    "  --state-dir DIR    runtime state: sockets, VM files (default /run/podvisor)\n"
    "  --log-level LEVEL  debug | info | warning | error (default info)\n"
    "  --metrics-address HOST:PORT\n"
    "                     Prometheus endpoint (default 127.0.0.1:10251; empty disables)\n"
    "  --print-config     print the effective configuration (file, drop-ins, flags,\n"
    "                     defaults) and exit\n"
    "  --version          print the version and exit\n"
    "  --help             print this help and exit\n"
    "\n"
    "Drop-in files <config dir>/config.d/*.yaml are merged over the file in lexical order;\n"
    "flags override both. SIGHUP reloads them (log level, registry hosts, metrics address\n"
    "change live; other keys are reported as needing a restart). See docs/configuration.md.\n";

struct Flags {
  std::string config_path = kDefaultConfigPath;
  bool config_named = false;
  bool print_config = false;
  std::map<std::string, std::string> overrides;
};

// Returns false (after printing why) on a bad command line.
bool ParseFlags(int argc, char** argv, Flags& flags, bool& exit_now) {
  static const char* kValued[] = {"--config", "--listen", "--root-dir", "--state-dir",
                                  "--log-level", "--metrics-address"};
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      exit_now = true;
      return true;
    }
    if (arg == "--print-config") {
      flags.print_config = true;
      continue;
    }
    if (arg == "--version") {
      std::printf("podvisord %s (CRI runtime.v1)\n", PODVISOR_VERSION_STRING);
      exit_now = true;
      return true;
    }
    std::string name = arg, value;
    bool has_value = false;
    if (size_t eq = arg.find('='); eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_value = true;
    }
    bool known = false;
    for (const char* k : kValued) known = known || name == k;
    if (!known) {
      std::fprintf(stderr, "podvisord: unknown flag %s (see --help)\n", arg.c_str());
      return false;
    }
    if (!has_value) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "podvisord: flag %s needs a value\n", name.c_str());
        return false;
      }
      value = argv[++i];
    }
    if (name == "--config") {
      flags.config_path = value;
      flags.config_named = true;
    } else {
      flags.overrides[name] = value;
    }
  }
  return true;
}

absl::StatusOr<podvisor::Config> BuildConfig(const Flags& flags) {
  absl::StatusOr<podvisor::Config> config =
      podvisor::LoadConfig(flags.config_path, flags.config_named);
  if (!config.ok()) return config;
  // Re-validate overrides through the same parser, so a bad flag is reported like a bad key.
  std::string yaml;
  for (const auto& [flag, value] : flags.overrides) {
    if (flag == "--metrics-address") {
      absl::StrAppend(&yaml, "metrics: {address: ", nlohmann::json(value).dump(), "}\n");
      continue;
    }
    std::string key = flag.substr(2);
    for (char& c : key) c = c == '-' ? '_' : c;
    absl::StrAppend(&yaml, key, ": ", nlohmann::json(value).dump(), "\n");
  }
  if (yaml.empty()) return config;
  absl::StatusOr<podvisor::Config> from_flags = podvisor::ParseConfig(yaml);
  if (!from_flags.ok()) return from_flags.status();
  for (const auto& [flag, value] : flags.overrides) {
    if (flag == "--listen") config->listen = from_flags->listen;
    if (flag == "--root-dir") config->root_dir = from_flags->root_dir;
    if (flag == "--state-dir") config->state_dir = from_flags->state_dir;
    if (flag == "--log-level") config->log_level = from_flags->log_level;
    if (flag == "--metrics-address") config->metrics = from_flags->metrics;
  }
  return config;
}

void Notify(const char* state) {
  if (absl::Status s = podvisor::NotifySystemd(state); !s.ok()) {
    PV_LOG(kWarning) << "systemd notification " << state << ": " << s.message();
  }
}

// SIGHUP: the file, its drop-ins and the flags again; a broken file changes nothing.
void ReloadConfig(const Flags& flags, podvisor::Daemon& daemon) {
  absl::StatusOr<podvisor::Config> config = BuildConfig(flags);
  if (!config.ok()) {
    PV_LOG(kError) << "config reload failed, nothing changed: " << config.status().message();
    return;
  }
  daemon.Reload(*config);
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  bool exit_now = false;
  if (!ParseFlags(argc, argv, flags, exit_now)) return 2;
  if (exit_now) return 0;

  absl::StatusOr<podvisor::Config> config = BuildConfig(flags);
  if (!config.ok()) {
    std::fprintf(stderr, "podvisord: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  if (flags.print_config) {
    std::printf("%s\n", podvisor::ConfigToJson(*config).dump(2).c_str());
    return 0;
  }
  podvisor::SetLogLevel(podvisor::ParseLogLevel(config->log_level));

  // Block the shutdown signals in every thread (gRPC's threads inherit this mask) and take them
  // synchronously below. A closed client connection must not kill the daemon.
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::unique_ptr<podvisor::Daemon>> daemon = podvisor::Daemon::Start(*config);
  if (!daemon.ok()) {
    PV_LOG(kError) << "podvisord cannot start: " << daemon.status().message();
    return 1;
  }
  Notify("READY=1");
  for (;;) {
    int sig = 0;
    sigwait(&signals, &sig);
    PV_LOG(kInfo) << "received " << strsignal(sig);
    if (sig != SIGHUP) break;
    Notify("RELOADING=1");
    ReloadConfig(flags, **daemon);
    Notify("READY=1");
  }
  Notify("STOPPING=1");
  (*daemon)->Shutdown();
  return 0;
}
