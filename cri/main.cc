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
#include "cri/daemon.h"

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
    "  --version          print the version and exit\n"
    "  --help             print this help and exit\n"
    "\n"
    "Flags override the configuration file. See docs/configuration.md for every key.\n";

struct Flags {
  std::string config_path = kDefaultConfigPath;
  bool config_named = false;
  std::map<std::string, std::string> overrides;
};

// Returns false (after printing why) on a bad command line.
bool ParseFlags(int argc, char** argv, Flags& flags, bool& exit_now) {
  static const char* kValued[] = {"--config", "--listen", "--root-dir", "--state-dir",
                                  "--log-level"};
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      exit_now = true;
      return true;
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
    std::string key = flag.substr(2);
    for (char& c : key) c = c == '-' ? '_' : c;
    absl::StrAppend(&yaml, key, ": \"", value, "\"\n");
  }
  if (yaml.empty()) return config;
  absl::StatusOr<podvisor::Config> from_flags = podvisor::ParseConfig(yaml);
  if (!from_flags.ok()) return from_flags.status();
  for (const auto& [flag, value] : flags.overrides) {
    if (flag == "--listen") config->listen = from_flags->listen;
    if (flag == "--root-dir") config->root_dir = from_flags->root_dir;
    if (flag == "--state-dir") config->state_dir = from_flags->state_dir;
    if (flag == "--log-level") config->log_level = from_flags->log_level;
  }
  return config;
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
  podvisor::SetLogLevel(podvisor::ParseLogLevel(config->log_level));

  // Block the shutdown signals in every thread (gRPC's threads inherit this mask) and take them
  // synchronously below. A closed client connection must not kill the daemon.
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::unique_ptr<podvisor::Daemon>> daemon = podvisor::Daemon::Start(*config);
  if (!daemon.ok()) {
    PV_LOG(kError) << "podvisord cannot start: " << daemon.status().message();
    return 1;
  }
  int sig = 0;
  sigwait(&signals, &sig);
  PV_LOG(kInfo) << "received " << strsignal(sig);
  (*daemon)->Shutdown();
  return 0;
}
