// podvisor-agent: PID 1 of a Podvisor guest (see docs/agent-protocol.md).
//
//   podvisor-agent                      as /init in the initrd
//   podvisor-agent --no-pid1 --channel unix:/path.sock --root /tmp/x   (tests, on the host)

#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "agent/channel.h"
#include "agent/init.h"
#include "agent/log.h"
#include "agent/options.h"
#include "agent/reaper.h"
#include "agent/sealed_exec.h"
#include "agent/server.h"

#ifndef PODVISOR_VERSION_STRING
#define PODVISOR_VERSION_STRING "unknown"
#endif

namespace podvisor::agent {
namespace {

void Usage() {
  fprintf(stderr,
          "usage: podvisor-agent [--no-pid1] [--channel unix:PATH|listen:PATH|DEVICE]\n"
          "                      [--root DIR] [--crun PATH] [--state-dir DIR] [--allow-network]\n"
          "                      [--modules FILE] [--verbose] [--version]\n");
}

bool ParseArgs(int argc, char** argv, AgentOptions* o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    if (a == "--no-pid1") {
      o->pid1 = false;
    } else if (a == "--allow-network") {
      o->allow_network = true;
    } else if (a == "--verbose") {
      SetAgentLogVerbose(true);
    } else if (a == "--version") {
      printf("podvisor-agent %s\n", PODVISOR_VERSION_STRING);
      exit(0);
    } else if (a == "--channel") {
      if (!value(&o->channel)) return false;
    } else if (a == "--root") {
      if (!value(&o->root)) return false;
    } else if (a == "--crun") {
      if (!value(&o->crun)) return false;
    } else if (a == "--state-dir") {
      if (!value(&o->state_dir)) return false;
    } else if (a == "--modules") {
      if (!value(&o->module_list)) return false;
    } else if (getpid() == 1) {
      continue;  // the kernel passes unknown boot parameters to init; ignore them
    } else {
      return false;
    }
  }
  return true;
}

// Returns an fd of the old initramfs to free later, or -1.
int Pid1Setup(const AgentOptions& o) {
  LoadKernelModules(o.module_list);
  timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int old_root = -1;
  Error moved = MoveRootToTmpfs(&old_root);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  MountEarlyFilesystems();
  setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
  if (!moved.ok()) {
    AgentLog(LogSeverity::kWarning, "staying on the initramfs: " + moved.message());
  } else {
    const long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    AgentLog(LogSeverity::kInfo, "root moved to tmpfs in " + std::to_string(ms) + " ms");
  }
  return old_root;
}

int Main(int argc, char** argv) {
  AgentOptions options;
  options.version = PODVISOR_VERSION_STRING;
  if (!ParseArgs(argc, argv, &options)) {
    Usage();
    return 2;
  }
  if (options.pid1 && getpid() != 1) {
    fprintf(stderr, "podvisor-agent: not PID 1; use --no-pid1 to run as a normal process\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  int old_root = -1;
  if (options.pid1) {
    old_root = Pid1Setup(options);
  } else {
    if (options.state_dir == "/run/podvisor" && !options.root.empty()) {
      options.state_dir = options.root + "/run/podvisor";
    }
    // Orphaned container processes come back to us, as they would to PID 1.
    prctl(PR_SET_CHILD_SUBREAPER, 1);
  }
  if (Error e = SealExecutable(options.crun); !e.ok()) {
    AgentLog(LogSeverity::kWarning, "crun runs from its file (slower): " + e.message());
  }
  ProcessReaper::Get().Start();
  if (old_root >= 0) std::thread([old_root] { FreeOldRoot(old_root); }).detach();
  AgentLog(LogSeverity::kInfo, std::string("starting, version ") + options.version);

  for (;;) {
    std::string spec = options.channel;
    if (spec.empty()) {
      Error err = FindVirtioPort("/sys", kAgentPortName, 30000, &spec);
      if (!err.ok()) {
        AgentLog(LogSeverity::kError, err.message());
        if (!options.pid1) return 1;
        sleep(1);
        continue;
      }
    }
    int fd = -1;
    ChannelKind kind;
    Error err = OpenChannel(spec, &fd, &kind);
    if (!err.ok()) {
      AgentLog(LogSeverity::kError, err.message());
      if (!options.pid1) return 1;
      sleep(1);
      continue;
    }
    AgentLog(LogSeverity::kInfo, "channel " + spec + " open");
    // Never destroyed: detached threads (waits, output pumps) keep using them.
    auto* channel = new FrameChannel(fd, kind);
    auto* server = new AgentServer(options, channel);
    err = server->Serve();  // returns only for a socket channel
    AgentLog(LogSeverity::kInfo, "channel closed: " + err.message());
    if (!options.pid1) _exit(err.code() == Code::kUnavailable ? 0 : 1);
    sleep(1);
  }
}

}  // namespace
}  // namespace podvisor::agent

int main(int argc, char** argv) { return podvisor::agent::Main(argc, argv); }
