// podvisorctl: looks into podvisord's pod VMs when something is wrong. Talks to the daemon's admin
// socket (<state dir>/admin.sock, root only).

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "tools/podvisorctl/admin_client.h"

namespace {

constexpr char kUsage[] =
    "Usage: podvisorctl [--state-dir DIR] [--json] COMMAND\n"
    "\n"
    "Commands:\n"
    "  vms                      pod VMs: id, name, state, QEMU pid, accelerator, vCPUs,\n"
    "                           memory, PSS, boot time, agent state\n"
    "  console POD [--follow]   the guest's serial console log (--follow: keep printing)\n"
    "  agent POD ping|stats|ps|containers\n"
    "                           ask the pod's guest agent\n"
    "  agent POD containers     the guest's containers and whether podvisord records each\n"
    "  config                   podvisord's effective configuration\n"
    "  templates                template VMs: shape, state, RAM held, pods cloned, last error\n"
    "\n"
    "POD is a pod sandbox id or a unique prefix of one.\n"
    "  --state-dir DIR  podvisord's state directory (default /run/podvisor)\n"
    "  --json           print the daemon's answer as JSON\n";

struct Args {
  std::string state_dir = "/run/podvisor";
  bool json = false;
  bool follow = false;
  std::vector<std::string> words;
};

volatile sig_atomic_t g_stop = 0;

std::string Mib(uint64_t bytes) {
  return bytes == 0 ? "-" : absl::StrFormat("%.0fMi", static_cast<double>(bytes) / (1 << 20));
}

void PrintVms(const nlohmann::json& vms) {
  std::printf("%-13s %-30s %-8s %-8s %-5s %5s %7s %7s %7s %s\n", "POD ID", "NAME", "STATE", "PID",
              "ACCEL", "VCPUS", "MEMORY", "PSS", "BOOT", "AGENT");
  for (const nlohmann::json& vm : vms) {
    const std::string pid =
        vm["qemu_pid"].get<int>() > 0 ? absl::StrCat(vm["qemu_pid"].get<int>()) : "-";
    std::printf("%-13s %-30s %-8s %-8s %-5s %5d %7s %7s %6.2fs %s\n",
                vm["id"].get<std::string>().substr(0, 13).c_str(),
                vm["name"].get<std::string>().c_str(), vm["state"].get<std::string>().c_str(),
                pid.c_str(), vm["accelerator"].get<std::string>().c_str(), vm["vcpus"].get<int>(),
                absl::StrCat(vm["memory_mib"].get<uint64_t>(), "Mi").c_str(),
                Mib(vm["pss_bytes"].get<uint64_t>()).c_str(), vm["boot_ms"].get<double>() / 1000,
                vm["agent"].get<std::string>().c_str());
  }
}

// `agent POD ps`: the containers as podvisord records them, then the guest's own view.
void PrintPs(const nlohmann::json& ps) {
  std::printf("CONTAINERS\n%-13s %-24s %-8s %7s %5s %8s %s\n", "ID", "NAME", "STATE", "PID", "PIDS",
              "WSS", "IMAGE");
  for (const nlohmann::json& c : ps["containers"]) {
    std::printf("%-13s %-24s %-8s %7d %5d %8s %s\n",
                c["id"].get<std::string>().substr(0, 13).c_str(),
                c["name"].get<std::string>().c_str(), c["state"].get<std::string>().c_str(),
                c["pid"].get<int>(), c["pids"].get<int>(),
                Mib(c["memory_working_set_bytes"].get<uint64_t>()).c_str(),
                c["image"].get<std::string>().c_str());
  }
  std::printf("\nPROCESSES\n%7s %7s %6s %-5s %8s %-13s %s\n", "PID", "PPID", "UID", "STATE", "RSS",
              "CONTAINER", "COMMAND");
  for (const nlohmann::json& p : ps["processes"]) {
    const std::string ctr = p["container_id"].get<std::string>();
    std::printf("%7d %7d %6u %-5s %8s %-13s %s\n", p["pid"].get<int>(), p["ppid"].get<int>(),
                p["uid"].get<unsigned>(), p["state"].get<std::string>().c_str(),
                Mib(p["rss_bytes"].get<uint64_t>()).c_str(),
                ctr.empty() ? "-" : ctr.substr(0, 13).c_str(),
                p["command"].get<std::string>().c_str());
  }
  std::printf("\nMOUNTS\n%-28s %-40s %-10s %s\n", "SOURCE", "TARGET", "TYPE", "OPTIONS");
  for (const nlohmann::json& m : ps["mounts"]) {
    std::printf("%-28s %-40s %-10s %s\n", m["source"].get<std::string>().c_str(),
                m["target"].get<std::string>().c_str(), m["fs_type"].get<std::string>().c_str(),
                m["options"].get<std::string>().c_str());
  }
  std::printf("\nDISKS\n%-8s %-24s %8s %-3s %s\n", "NAME", "SERIAL", "SIZE", "RO", "MOUNTED ON");
  for (const nlohmann::json& d : ps["disks"]) {
    const std::string serial = d["serial"].get<std::string>();
    const std::string mount_point = d["mount_point"].get<std::string>();
    std::printf("%-8s %-24s %8s %-3s %s\n", d["name"].get<std::string>().c_str(),
                serial.empty() ? "-" : serial.c_str(), Mib(d["size_bytes"].get<uint64_t>()).c_str(),
                d["read_only"].get<bool>() ? "yes" : "no",
                mount_point.empty() ? "-" : mount_point.c_str());
  }
  if (ps.value("truncated", false)) std::printf("\n(the guest cut a list at its bound)\n");
}

void PrintTemplates(const nlohmann::json& templates) {
  if (templates.empty()) {
    std::printf("no templates (hypervisor.templates is off, or needs the shared filesystem)\n");
    return;
  }
  std::printf("%-5s %-7s %-9s %-17s %7s %7s %7s %-20s %s\n", "VCPUS", "MEMORY", "STATE", "KEY",
              "RAM", "BUILD", "CLONES", "BUILT", "ERROR");
  for (const nlohmann::json& t : templates) {
    const double build = t["build_seconds"].get<double>();
    std::printf(
        "%-5d %-7s %-9s %-17s %7s %7s %7llu %-20s %s\n", t["vcpus"].get<int>(),
        absl::StrCat(t["memory_mib"].get<uint64_t>(), "Mi").c_str(),
        t["state"].get<std::string>().c_str(),
        t["key"].get<std::string>().empty() ? "-" : t["key"].get<std::string>().c_str(),
        Mib(t["memory_file_bytes"].get<uint64_t>()).c_str(),
        build > 0 ? absl::StrFormat("%.1fs", build).c_str() : "-",
        static_cast<unsigned long long>(t["clones"].get<uint64_t>()),
        t["built_at"].get<std::string>().empty() ? "-" : t["built_at"].get<std::string>().c_str(),
        t["error"].get<std::string>().c_str());
  }
}

// Prints the console log from the start; with `follow`, then what the guest writes until
// interrupted (a log that shrinks, as when the VM restarts, is read again from its start).
int Console(const std::string& path, bool follow) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "podvisorctl: cannot read the console log %s\n", path.c_str());
    return 1;
  }
  std::vector<char> buf(64 * 1024);
  std::streamoff offset = 0;
  for (;;) {
    while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0) {
      std::fwrite(buf.data(), 1, static_cast<size_t>(in.gcount()), stdout);
      offset += in.gcount();
    }
    std::fflush(stdout);
    if (!follow || g_stop) return 0;
    absl::SleepFor(absl::Milliseconds(200));
    in.clear();
    std::ifstream probe(path, std::ios::binary | std::ios::ate);
    if (probe && probe.tellg() < offset) {
      in.seekg(0);
      offset = 0;
    }
  }
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "podvisorctl: %s\n", std::string(s.message()).c_str());
  return s.code() == absl::StatusCode::kNotFound ? 3 : 1;
}

bool ParseArgs(int argc, char** argv, Args& a) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--json") {
      a.json = true;
    } else if (arg == "--follow" || arg == "-f") {
      a.follow = true;
    } else if (arg == "--state-dir" && i + 1 < argc) {
      a.state_dir = argv[++i];
    } else if (arg.rfind("--state-dir=", 0) == 0) {
      a.state_dir = arg.substr(12);
    } else if (!arg.empty() && arg[0] == '-') {
      return false;
    } else {
      a.words.push_back(arg);
    }
  }
  return !a.words.empty();
}

int Run(const Args& a) {
  const std::string socket = a.state_dir + "/admin.sock";
  const std::string& cmd = a.words[0];
  nlohmann::json req;
  if (cmd == "vms" && a.words.size() == 1) {
    req = {{"command", "vms"}};
  } else if (cmd == "config" && a.words.size() == 1) {
    req = {{"command", "config"}};
  } else if (cmd == "templates" && a.words.size() == 1) {
    req = {{"command", "templates"}};
  } else if (cmd == "console" && a.words.size() == 2) {
    req = {{"command", "vm"}, {"pod", a.words[1]}};
  } else if (cmd == "agent" && a.words.size() == 3) {
    req = {{"command", "agent"}, {"pod", a.words[1]}, {"action", a.words[2]}};
  } else {
    std::fputs(kUsage, stderr);
    return 2;
  }
  absl::StatusOr<nlohmann::json> result = podvisor::ctl::AdminCall(socket, req);
  if (!result.ok()) return Fail(result.status());
  if (cmd == "console") return Console((*result)["console_log"].get<std::string>(), a.follow);
  if (cmd == "vms" && !a.json) {
    PrintVms(*result);
    return 0;
  }
  if (cmd == "agent" && a.words[2] == "ps" && !a.json) {
    PrintPs(*result);
    return 0;
  }
  if (cmd == "templates" && !a.json) {
    PrintTemplates(*result);
    return 0;
  }
  std::printf("%s\n", result->dump(2).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (argc == 2 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (!ParseArgs(argc, argv, args)) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  ::signal(SIGINT, [](int) { g_stop = 1; });
  ::signal(SIGTERM, [](int) { g_stop = 1; });
  return Run(args);
}
