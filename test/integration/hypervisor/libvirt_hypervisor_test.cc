// Boots real guests (the Debian cloud kernel and an initrd with test_init.c as /init, built by
// deploy/guest/build.sh) through the libvirt backend: under TCG on hosts without a usable KVM.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hypervisor/hypervisor.h"
#include "test/integration/hypervisor/guest_channel.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::GuestChannel;

#define ASSERT_OK(expr)                       \
  do {                                        \
    absl::Status status_ = (expr);            \
    ASSERT_TRUE(status_.ok()) << status_;     \
  } while (0)

constexpr absl::Duration kBootTimeout = absl::Seconds(60);  // a loaded 2-core host under TCG

std::string GuestDir() { return PODVISOR_TEST_GUEST_DIR; }

bool ProcessExists(pid_t pid) { return pid > 0 && (kill(pid, 0) == 0 || errno != ESRCH); }

bool PathExists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

// Waits until `pid` is gone (destroy returns once QEMU is killed; a slow init may take a moment
// to reap it).
bool WaitProcessGone(pid_t pid, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (ProcessExists(pid)) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

// The parent of `pid` from /proc/<pid>/stat, or 0 when it is gone.
pid_t ParentOf(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t close = stat.rfind(')');
  int ppid = 0;
  if (close == std::string::npos || std::sscanf(stat.c_str() + close + 3, "%d", &ppid) != 1) {
    return 0;
  }
  return ppid;
}

// Processes whose command line mentions `needle`.
std::vector<pid_t> ProcessesMentioning(const std::string& needle) {
  std::vector<pid_t> pids;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    pid_t pid = std::atoi(entry.path().filename().c_str());
    if (pid <= 0) continue;
    std::ifstream in(entry.path() / "cmdline");
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmdline.find(needle) != std::string::npos) pids.push_back(pid);
  }
  return pids;
}

// libvirt allows one embedded driver root per process, for the life of the process: every test
// of this binary shares one, removed when the program ends.
class EmbedRoot : public ::testing::Environment {
 public:
  static const std::string& Path() {
    static auto* dir = new podvisor::testing::TempDir();
    static const std::string path = dir->Join("libvirt");
    return path;
  }
  void TearDown() override { std::filesystem::remove_all(std::filesystem::path(Path()).parent_path()); }
};
const auto* const kEmbedRootEnvironment = ::testing::AddGlobalTestEnvironment(new EmbedRoot);

class LibvirtHypervisorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (libvirt's QEMU driver, taps, netns)";
    ASSERT_TRUE(PathExists(GuestDir() + "/vmlinux"))
        << "no test guest image in " << GuestDir() << " (ninja podvisor_test_guest_image)";
    hypervisor_ = NewHypervisor();
    absl::Status init = hypervisor_->Init();
    ASSERT_TRUE(init.ok()) << init;
  }

  void TearDown() override {
    if (hypervisor_ == nullptr) return;
    auto vms = hypervisor_->List();
    if (vms.ok()) {
      for (const VmInfo& vm : *vms) hypervisor_->Destroy(vm.id).IgnoreError();
    }
  }

  std::unique_ptr<Hypervisor> NewHypervisor(const std::string& accelerator = "tcg") {
    LibvirtHypervisorOptions options;
    options.embed_root = EmbedRoot::Path();
    options.accelerator = accelerator;
    options.kernel = GuestDir() + "/vmlinux";
    options.initrd = GuestDir() + "/initrd.img";
    auto hv = NewLibvirtHypervisor(options);
    EXPECT_TRUE(hv.ok()) << hv.status();
    return std::move(*hv);
  }

  VmSpec MakeSpec(const std::string& id) {
    VmSpec spec;
    spec.id = id;
    spec.memory_mib = 256;
    spec.kernel = GuestDir() + "/vmlinux";
    spec.initrd = GuestDir() + "/initrd.img";
    spec.state_dir = dir_.Join(id);
    EXPECT_EQ(mkdir(spec.state_dir.c_str(), 0700), 0);
    spec.agent_socket = spec.state_dir + "/agent.sock";
    spec.console_log = spec.state_dir + "/console.log";
    return spec;
  }

  // Connects to the guest and returns its READY line.
  static std::string WaitReady(const VmSpec& spec, std::optional<GuestChannel>* channel) {
    auto connected = GuestChannel::Connect(spec.agent_socket, absl::Now() + kBootTimeout);
    EXPECT_TRUE(connected.ok()) << connected.status();
    if (!connected.ok()) return "";
    channel->emplace(std::move(*connected));
    auto line = (*channel)->ReadLine(absl::Now() + kBootTimeout);
    EXPECT_TRUE(line.ok()) << line.status();
    return line.ok() ? *line : "";
  }

  bool WaitAbsent(const std::string& id) {
    absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (absl::Now() < deadline) {
      auto status = hypervisor_->Status(id);
      if (status.ok() && status->state == VmState::kAbsent) return true;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return false;
  }

  podvisor::testing::TempDir dir_;
  std::unique_ptr<Hypervisor> hypervisor_;
};

TEST_F(LibvirtHypervisorTest, BootsToInitAndDestroyLeavesNothing) {
  VmSpec spec = MakeSpec("boot");
  ASSERT_OK(hypervisor_->Create(spec));
  std::optional<GuestChannel> channel;
  EXPECT_THAT(WaitReady(spec, &channel), HasSubstr("READY net=lo"));
  auto answer = channel->Ask("ping", absl::Seconds(30));
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(*answer, "pong");

  auto status = hypervisor_->Status("boot");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->state, VmState::kRunning);
  ASSERT_GT(status->qemu_pid, 0);
  EXPECT_TRUE(ProcessExists(status->qemu_pid));
  auto vms = hypervisor_->List();
  ASSERT_TRUE(vms.ok());
  ASSERT_EQ(vms->size(), 1u);
  EXPECT_EQ((*vms)[0].id, "boot");
  EXPECT_TRUE(PathExists(spec.console_log));

  ASSERT_TRUE(hypervisor_->Destroy("boot").ok());
  EXPECT_TRUE(WaitProcessGone(status->qemu_pid, absl::Seconds(30)));
  EXPECT_EQ(hypervisor_->Status("boot")->state, VmState::kAbsent);
  EXPECT_THAT(*hypervisor_->List(), IsEmpty());
  EXPECT_FALSE(PathExists(spec.agent_socket));
  EXPECT_TRUE(hypervisor_->Destroy("boot").ok()) << "destroying a missing VM is not an error";
}

TEST_F(LibvirtHypervisorTest, VmProcessesAreOursAndDestroyLeavesNoneNotEvenAZombie) {
  VmSpec spec = MakeSpec("owned");
  spec.shared_dir = dir_.Join("owned-share");
  ASSERT_EQ(mkdir(spec.shared_dir.c_str(), 0700), 0);
  ASSERT_OK(hypervisor_->Create(spec));
  std::optional<GuestChannel> channel;
  EXPECT_THAT(WaitReady(spec, &channel), HasSubstr("READY"));
  pid_t qemu = hypervisor_->Status("owned")->qemu_pid;
  ASSERT_GT(qemu, 0);
  // libvirt daemonises QEMU and virtiofsd; as a child subreaper this process adopts them instead
  // of PID 1, so that it can reap them the moment they exit.
  EXPECT_EQ(ParentOf(qemu), getpid());
  std::vector<pid_t> helpers = ProcessesMentioning(spec.shared_dir);
  std::erase(helpers, qemu);
  ASSERT_EQ(helpers.size(), 1u) << "one virtiofsd for the shared directory";
  EXPECT_EQ(ParentOf(helpers[0]), getpid());

  ASSERT_OK(hypervisor_->Destroy("owned"));
  // Gone when Destroy returns: no process and no zombie (kill(pid, 0) succeeds on a zombie).
  EXPECT_FALSE(ProcessExists(qemu));
  EXPECT_FALSE(ProcessExists(helpers[0]));
  EXPECT_EQ(hypervisor_->Status("owned")->state, VmState::kAbsent);
}

TEST_F(LibvirtHypervisorTest, AGuestThatPowersOffIsReapedAtOnce) {
  VmSpec spec = MakeSpec("poweroff");
  ASSERT_OK(hypervisor_->Create(spec));
  std::optional<GuestChannel> channel;
  EXPECT_THAT(WaitReady(spec, &channel), HasSubstr("READY"));
  pid_t qemu = hypervisor_->Status("poweroff")->qemu_pid;
  ASSERT_TRUE(channel->Send("poweroff").ok());
  ASSERT_OK(hypervisor_->Stop("poweroff", absl::Seconds(60)));
  EXPECT_FALSE(ProcessExists(qemu)) << "no zombie left for a slow PID 1 to reap";
}

TEST_F(LibvirtHypervisorTest, AutoAcceleratorBootsAGuest) {
  // On this project's hosts /dev/kvm hangs standard kernels: the probe must fall back to TCG.
  hypervisor_.reset();  // one embedded driver per root at a time
  auto hv = NewHypervisor("auto");
  ASSERT_OK(hv->Init());
  EXPECT_THAT(hv->Accelerator(), ::testing::AnyOf("kvm", "tcg"));
  VmSpec spec = MakeSpec("auto");
  ASSERT_OK(hv->Create(spec));
  std::optional<GuestChannel> channel;
  EXPECT_THAT(WaitReady(spec, &channel), HasSubstr("READY"));
  EXPECT_TRUE(hv->Destroy("auto").ok());
}

TEST_F(LibvirtHypervisorTest, StopEndsAGuestThatPowersOffAndOneThatIgnoresTheRequest) {
  VmSpec a = MakeSpec("cooperative");
  VmSpec b = MakeSpec("stubborn");
  ASSERT_OK(hypervisor_->Create(a));
  ASSERT_OK(hypervisor_->Create(b));
  std::optional<GuestChannel> ca, cb;
  EXPECT_THAT(WaitReady(a, &ca), HasSubstr("READY"));
  EXPECT_THAT(WaitReady(b, &cb), HasSubstr("READY"));

  // The sandbox asks the agent to power off, then calls Stop with a bound.
  ASSERT_TRUE(ca->Send("poweroff").ok());
  EXPECT_TRUE(hypervisor_->Stop("cooperative", absl::Seconds(60)).ok());
  EXPECT_EQ(hypervisor_->Status("cooperative")->state, VmState::kAbsent);

  // test_init ignores the ACPI power button: Stop destroys it after the timeout.
  pid_t pid = hypervisor_->Status("stubborn")->qemu_pid;
  EXPECT_TRUE(hypervisor_->Stop("stubborn", absl::Seconds(1)).ok());
  EXPECT_EQ(hypervisor_->Status("stubborn")->state, VmState::kAbsent);
  EXPECT_TRUE(WaitProcessGone(pid, absl::Seconds(30)));
  EXPECT_FALSE(PathExists(b.agent_socket));
  EXPECT_TRUE(hypervisor_->Stop("never-existed", absl::Seconds(1)).ok());
}

TEST_F(LibvirtHypervisorTest, GuestKilledFromOutsideOrPanickingIsReported) {
  absl::Mutex mu;
  std::vector<VmExitEvent> events;
  hypervisor_->SetExitCallback([&](const VmExitEvent& e) {
    absl::MutexLock lock(&mu);
    events.push_back(e);
  });
  VmSpec killed = MakeSpec("killed");
  VmSpec panicked = MakeSpec("panicked");
  ASSERT_OK(hypervisor_->Create(killed));
  ASSERT_OK(hypervisor_->Create(panicked));
  std::optional<GuestChannel> ck, cp;
  EXPECT_THAT(WaitReady(killed, &ck), HasSubstr("READY"));
  EXPECT_THAT(WaitReady(panicked, &cp), HasSubstr("READY"));

  pid_t pid = hypervisor_->Status("killed")->qemu_pid;
  ASSERT_GT(pid, 0);
  absl::Time killed_at = absl::Now();
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  auto seen = [&](const std::string& id) {
    absl::MutexLock lock(&mu);
    for (const auto& e : events) {
      if (e.id == id) return true;
    }
    return false;
  };
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (!seen("killed") && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_TRUE(seen("killed"));
  ::testing::Test::RecordProperty("kill_to_event_ms",
                                  absl::ToInt64Milliseconds(absl::Now() - killed_at));
  // Once reported, the VM is no longer running (stopped, then absent when libvirt has cleaned up).
  EXPECT_THAT(hypervisor_->Status("killed")->state,
              ::testing::AnyOf(VmState::kStopped, VmState::kAbsent));
  EXPECT_TRUE(WaitAbsent("killed"));

  ASSERT_TRUE(cp->Send("panic").ok());  // PID 1 exits: kernel panic, reset, QEMU ends
  deadline = absl::Now() + absl::Seconds(60);
  while (!seen("panicked") && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_TRUE(seen("panicked"));
  EXPECT_NE(hypervisor_->Status("panicked")->state, VmState::kRunning);
  EXPECT_TRUE(WaitAbsent("panicked"));

  // Our own destroys are not reported.
  VmSpec quiet = MakeSpec("quiet");
  ASSERT_OK(hypervisor_->Create(quiet));
  ASSERT_TRUE(hypervisor_->Destroy("quiet").ok());
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_FALSE(seen("quiet"));
}

TEST_F(LibvirtHypervisorTest, FourVmsAtOnce) {
  std::vector<VmSpec> specs;
  for (int i = 0; i < 4; ++i) specs.push_back(MakeSpec(absl::StrCat("many", i)));
  std::vector<std::thread> threads;
  std::atomic<int> created{0};
  for (const VmSpec& spec : specs) {
    threads.emplace_back([&, spec] {
      auto s = hypervisor_->Create(spec);
      EXPECT_TRUE(s.ok()) << s;
      if (s.ok()) ++created;
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(created.load(), 4);
  for (const VmSpec& spec : specs) {
    std::optional<GuestChannel> channel;
    EXPECT_THAT(WaitReady(spec, &channel), HasSubstr("READY"));
  }
  EXPECT_EQ(hypervisor_->List()->size(), 4u);
  for (const VmSpec& spec : specs) EXPECT_TRUE(hypervisor_->Destroy(spec.id).ok());
  EXPECT_THAT(*hypervisor_->List(), IsEmpty());
}

TEST_F(LibvirtHypervisorTest, FailedCreateLeavesNothing) {
  VmSpec missing = MakeSpec("nokernel");
  missing.kernel = dir_.Join("no-such-vmlinux");
  absl::Status status = hypervisor_->Create(missing);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_THAT(status.message(), HasSubstr("no-such-vmlinux"));

  // Fails inside libvirt (no such tap): the error says why, nothing is left.
  VmSpec notap = MakeSpec("notap");
  notap.nics.push_back({"pvnotap0", "52:54:00:12:34:56", ""});
  status = hypervisor_->Create(notap);
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("create VM notap"));
  EXPECT_THAT(*hypervisor_->List(), IsEmpty());
  EXPECT_FALSE(PathExists(notap.agent_socket));

  VmSpec dup = MakeSpec("dup");
  ASSERT_OK(hypervisor_->Create(dup));
  EXPECT_EQ(hypervisor_->Create(dup).code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(LibvirtHypervisorTest, ReattachesToRunningVmAfterRestart) {
  VmSpec spec = MakeSpec("survivor");
  ASSERT_OK(hypervisor_->Create(spec));
  std::optional<GuestChannel> channel;
  EXPECT_THAT(WaitReady(spec, &channel), HasSubstr("READY"));
  pid_t pid = hypervisor_->Status("survivor")->qemu_pid;

  hypervisor_.reset();  // the daemon goes away; QEMU keeps running
  ASSERT_TRUE(ProcessExists(pid));
  hypervisor_ = NewHypervisor();
  ASSERT_TRUE(hypervisor_->Init().ok());
  auto vms = hypervisor_->List();
  ASSERT_TRUE(vms.ok()) << vms.status();
  ASSERT_EQ(vms->size(), 1u);
  EXPECT_EQ((*vms)[0].id, "survivor");
  EXPECT_EQ((*vms)[0].status.state, VmState::kRunning);
  EXPECT_EQ((*vms)[0].status.qemu_pid, pid);
  auto answer = channel->Ask("ping", absl::Seconds(30));
  EXPECT_TRUE(answer.ok() && *answer == "pong") << answer.status();

  // Events still arrive for the re-attached VM.
  absl::Notification died;
  hypervisor_->SetExitCallback([&](const VmExitEvent& e) {
    if (e.id == "survivor" && !died.HasBeenNotified()) died.Notify();
  });
  kill(pid, SIGKILL);
  EXPECT_TRUE(died.WaitForNotificationWithTimeout(absl::Seconds(30)));
}

TEST_F(LibvirtHypervisorTest, PauseAndResume) {
  VmSpec spec = MakeSpec("pausable");
  ASSERT_OK(hypervisor_->Create(spec));
  std::optional<GuestChannel> channel;
  EXPECT_THAT(WaitReady(spec, &channel), HasSubstr("READY"));
  ASSERT_TRUE(hypervisor_->Pause("pausable").ok());
  EXPECT_EQ(hypervisor_->Status("pausable")->state, VmState::kPaused);
  ASSERT_TRUE(hypervisor_->Resume("pausable").ok());
  EXPECT_EQ(hypervisor_->Status("pausable")->state, VmState::kRunning);
  auto answer = channel->Ask("ping", absl::Seconds(30));
  EXPECT_TRUE(answer.ok() && *answer == "pong") << answer.status();
}

// A network namespace with a tap device in it, as the networking code prepares for a pod.
class TapNetns {
 public:
  TapNetns() : name_(absl::StrCat("pvtest-", getpid())) {
    ok_ = Run(absl::StrCat("ip netns add ", name_)) &&
          Run(absl::StrCat("ip -n ", name_, " tuntap add dev pvtap0 mode tap")) &&
          Run(absl::StrCat("ip -n ", name_, " link set pvtap0 up"));
  }
  ~TapNetns() { Run(absl::StrCat("ip netns delete ", name_, " 2>/dev/null")); }
  bool ok() const { return ok_; }
  std::string path() const { return "/run/netns/" + name_; }

 private:
  static bool Run(const std::string& command) { return std::system(command.c_str()) == 0; }
  std::string name_;
  bool ok_ = false;
};

TEST_F(LibvirtHypervisorTest, NicOnATapInsideThePodNetns) {
  TapNetns netns;
  ASSERT_TRUE(netns.ok()) << "could not create a netns with a tap (ip netns / tuntap)";
  VmSpec spec = MakeSpec("nic");
  spec.nics.push_back({"pvtap0", "52:54:00:AB:CD:EF", netns.path()});
  ASSERT_OK(hypervisor_->Create(spec));
  std::optional<GuestChannel> channel;
  // The guest sees a NIC (eth0) besides lo.
  EXPECT_THAT(WaitReady(spec, &channel), HasSubstr("eth0"));
  // The tap is still the pod netns' own, and the host namespace never had one of that name.
  EXPECT_NE(access("/sys/class/net/pvtap0", F_OK), 0);
  ASSERT_OK(hypervisor_->Destroy("nic"));
}

TEST_F(LibvirtHypervisorTest, DisksAtBootAndHotPlugged) {
  auto make_disk = [&](const std::string& name) {
    std::string path = dir_.Join(name);
    std::ofstream(path).close();
    EXPECT_EQ(truncate(path.c_str(), 16 << 20), 0);
    return path;
  };
  VmSpec spec = MakeSpec("disks");
  spec.disks.push_back({"rootfs", make_disk("rootfs.img"), true, "raw", 0});
  ASSERT_OK(hypervisor_->Create(spec));
  std::optional<GuestChannel> channel;
  EXPECT_THAT(WaitReady(spec, &channel), HasSubstr("blk=sda"));

  ASSERT_OK(hypervisor_->AttachDisk("disks", {"layer1", make_disk("layer1.img"), false, "raw", 1}));
  std::string blk;
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    auto answer = channel->Ask("blk", absl::Seconds(30));
    ASSERT_TRUE(answer.ok()) << answer.status();
    blk = *answer;
    if (absl::StrContains(blk, "sdb")) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_THAT(blk, HasSubstr("sdb"));

  ASSERT_OK(hypervisor_->DetachDisk("disks", "layer1"));
  deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    blk = *channel->Ask("blk", absl::Seconds(30));
    if (!absl::StrContains(blk, "sdb")) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(blk, "blk=sda");
  EXPECT_FALSE(hypervisor_->DetachDisk("disks", "layer1").ok());
}

}  // namespace
}  // namespace podvisor
