// A crash inside CreateContainer, after the guest created the container and before podvisord
// wrote its record (crash point create_container.guest_created), then a restart: the real
// daemon's recovery removes the guest container, detaches its layer disks and unmounts its
// shared-directory binds; the recorded container lives on untouched.

#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "common/crash_point.h"
#include "nlohmann/json.hpp"
#include "test/integration/pod-sandbox/container_vm_fixture.h"

namespace podvisor::testing {
namespace {

int RunCommand(const std::string& cmd, std::string* out) {
  out->clear();
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
  int status = ::pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool IsObjectId(const std::string& s) {
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

class CrashRecoveryVmTest : public ContainerVmTest {
 protected:
  DaemonProcess::Options DaemonOptions() {
    DaemonProcess::Options o;
    o.root_dir = dir_.Join("root");
    o.state_dir = dir_.Join("st");
    o.socket_path = dir_.Join("pv.sock");
    o.config_path = dir_.Join("config.yaml");
    o.log_path = dir_.Join("podvisord.log");
    return o;
  }

  // A new daemon over the same root (the pod VM lives on), with crash point `crash_at` armed
  // (empty: none).
  void StartDaemon(const std::string& crash_at) {
    cri_.reset();
    daemon_.reset();
    if (!crash_at.empty()) ::setenv(kCrashPointEnv, crash_at.c_str(), 1);
    daemon_ = std::make_unique<DaemonProcess>(DaemonOptions());
    std::string error;
    const bool started = daemon_->Start(&error);
    ::unsetenv(kCrashPointEnv);
    ASSERT_TRUE(started) << error;
    cri_ = std::make_unique<CriClient>(daemon_->endpoint());
  }

  std::string SharedDir() { return dir_.Join("st/vm/" + pod_.substr(0, 16) + "/shared"); }

  // Container directories under the pod's shared directory.
  std::set<std::string> SharedEntries() {
    std::set<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(SharedDir(), ec)) {
      const std::string name = e.path().filename().string();
      if (IsObjectId(name)) out.insert(name);
    }
    return out;
  }

  // Mounts at or below `dir` in this (the daemon's) mount namespace.
  int MountsUnder(const std::string& dir) {
    std::string mountinfo = ReadAll("/proc/self/mountinfo");
    int n = 0;
    for (absl::string_view line : absl::StrSplit(mountinfo, '\n')) {
      std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
      if (f.size() > 4 && absl::StartsWith(f[4], dir)) ++n;
    }
    return n;
  }

  // Disks with a serial (ours) in the pod VM's live domain XML, as libvirt keeps it on disk.
  int VmDisks() {
    const std::string name = "podvisor-" + pod_ + ".xml";
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(dir_.path(), ec);
         it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (ec) break;
      if (it->path().filename() != name) continue;
      const std::string xml = ReadAll(it->path().string());
      if (!absl::StrContains(xml, "<domstatus")) continue;
      int n = 0;
      for (size_t p = xml.find("<serial>"); p != std::string::npos;
           p = xml.find("<serial>", p + 1)) {
        ++n;
      }
      return n;
    }
    return -1;
  }

  // A restarted daemon re-attaches to the pod's agent in the background: waits until it answers.
  void WaitForAgent() {
    std::string out;
    for (int i = 0; i < 240; ++i) {
      int rc = RunCommand(absl::StrCat(PODVISOR_BIN_DIR, "/podvisorctl --state-dir ",
                                       dir_.Join("st"), " agent ", pod_, " ping"),
                          &out);
      if (rc == 0) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    ADD_FAILURE() << "the restarted daemon did not reach the agent: " << out << "\n"
                  << daemon_->ReadLog();
  }

  // `podvisorctl agent POD containers`, retried while the restarted daemon reconnects.
  nlohmann::json GuestContainers() {
    std::string out;
    for (int i = 0; i < 240; ++i) {
      int rc = RunCommand(absl::StrCat(PODVISOR_BIN_DIR, "/podvisorctl --state-dir ",
                                       dir_.Join("st"), " agent ", pod_, " containers"),
                          &out);
      if (rc == 0) return nlohmann::json::parse(out, nullptr, false);
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    ADD_FAILURE() << "podvisorctl agent containers: " << out;
    return nlohmann::json::array();
  }
};

TEST_F(CrashRecoveryVmTest, ACrashInsideCreateContainerLeavesNothingAfterTheRestart) {
  const std::string kept = Run(Config("kept", {"sleep", "3600"}));
  ASSERT_FALSE(kept.empty());
  const int disks_before = VmDisks();
  ASSERT_GT(disks_before, 0) << "the pod VM's live domain XML was not found";

  fs::create_directories(dir_.Join("vol"));
  std::ofstream(dir_.Join("vol/data")) << "host data\n";
  v1::ContainerConfig lost = Config("lost", {"sleep", "3600"});
  lost.mutable_image()->set_image(kLayered);  // layers of its own: new disks
  v1::Mount* m = lost.add_mounts();
  m->set_host_path(dir_.Join("vol"));
  m->set_container_path("/data");

  StartDaemon("create_container.guest_created");
  WaitForAgent();
  grpc::Status s = TryCreate(lost);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(daemon_->WaitExit(60000), kCrashPointExitCode) << daemon_->ReadLog();
  // What the crash left: a guest container (seen below), disks and a bind under the share.
  std::set<std::string> leaked = SharedEntries();
  leaked.erase(kept);
  ASSERT_EQ(leaked.size(), 1u);
  const std::string lost_id = *leaked.begin();
  EXPECT_GE(MountsUnder(SharedDir() + "/" + lost_id), 1);
  EXPECT_GT(VmDisks(), disks_before);

  StartDaemon("");
  // Recovery reconciles each pod once its agent is back, in the background: the guest container
  // goes first, then the disks and the binds.
  for (int i = 0; i < 120 && !(SharedEntries().empty() && VmDisks() == disks_before); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  nlohmann::json guest = GuestContainers();
  ASSERT_TRUE(guest.is_array()) << guest;
  ASSERT_EQ(guest.size(), 1u) << guest.dump();
  EXPECT_EQ(guest[0]["id"], kept);
  EXPECT_EQ(guest[0]["state"], "running");
  EXPECT_EQ(guest[0]["recorded"], true);
  EXPECT_EQ(SharedEntries(), std::set<std::string>({}));  // kept has no volume
  EXPECT_EQ(MountsUnder(SharedDir() + "/" + lost_id), 0);
  EXPECT_EQ(VmDisks(), disks_before) << daemon_->ReadLog();
  EXPECT_EQ(ReadAll(dir_.Join("vol/data")), "host data\n");  // never deleted through the bind
  EXPECT_THAT(daemon_->ReadLog(), ::testing::HasSubstr("no record owns it"));
  // The recorded container lived through both restarts.
  EXPECT_EQ(Status(kept).state(), v1::CONTAINER_RUNNING);
  v1::ListContainersResponse list;
  ASSERT_TRUE(cri_->runtime().ListContainers(CriClient::Context().get(), {}, &list).ok());
  EXPECT_EQ(list.containers_size(), 1);
}

}  // namespace
}  // namespace podvisor::testing
