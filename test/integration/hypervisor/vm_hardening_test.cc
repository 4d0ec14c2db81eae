// A real guest (the cloud kernel and test_init.c, as in libvirt_hypervisor_test.cc) under the
// hardening settings: QEMU's own seccomp sandbox (the VM boots, hot-plugs a disk and stops), the
// guest kernel's mitigations left on, and a console log that a chatty guest cannot grow past
// its cap.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hypervisor/domain_xml.h"
#include "hypervisor/hypervisor.h"
#include "test/integration/hypervisor/guest_channel.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

using testing::GuestChannel;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::Duration kBootTimeout = absl::Seconds(90);  // a loaded 2-core host under TCG

std::string GuestDir() { return PODVISOR_TEST_GUEST_DIR; }

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool Exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

int64_t SizeOf(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_size : 0;
}

template <typename Fn>
bool WaitFor(Fn done, absl::Duration limit) {
  for (absl::Time end = absl::Now() + limit; absl::Now() < end;) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return done();
}

// libvirt allows one embedded driver root per process, for the life of the process.
const std::string& EmbedRoot() {
  static auto* dir = new testing::TempDir();
  static const std::string path = dir->Join("libvirt");
  return path;
}

class VmHardeningTest : public ::testing::Test {
 protected:
  static constexpr int64_t kConsoleCap = 16 << 10;

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (libvirt's QEMU driver)";
    ASSERT_TRUE(Exists(GuestDir() + "/vmlinux")) << "ninja podvisor_test_guest_image";
    LibvirtHypervisorOptions options;
    options.embed_root = EmbedRoot();
    options.accelerator = "tcg";
    options.kernel = GuestDir() + "/vmlinux";
    options.initrd = GuestDir() + "/initrd.img";
    options.console_log_max_bytes = kConsoleCap;
    auto hv = NewLibvirtHypervisor(options);
    ASSERT_TRUE(hv.ok()) << hv.status();
    hypervisor_ = std::move(*hv);
    absl::Status init = hypervisor_->Init();
    ASSERT_TRUE(init.ok()) << init;
  }
  void TearDown() override {
    if (hypervisor_ == nullptr) return;
    if (auto vms = hypervisor_->List(); vms.ok()) {
      for (const VmInfo& vm : *vms) hypervisor_->Destroy(vm.id).IgnoreError();
    }
  }

  VmSpec MakeSpec(const std::string& id) {
    VmSpec spec;
    spec.id = id;
    spec.memory_mib = 256;
    spec.kernel = GuestDir() + "/vmlinux";
    spec.initrd = GuestDir() + "/initrd.img";
    spec.state_dir = root_.Join(id);
    EXPECT_EQ(mkdir(spec.state_dir.c_str(), 0700), 0);
    spec.agent_socket = spec.state_dir + "/agent.sock";
    spec.console_log = spec.state_dir + "/console.log";
    return spec;
  }

  std::string WaitReady(const VmSpec& spec, std::optional<GuestChannel>* channel) {
    auto connected = GuestChannel::Connect(spec.agent_socket, absl::Now() + kBootTimeout);
    EXPECT_TRUE(connected.ok()) << connected.status();
    if (!connected.ok()) return "";
    channel->emplace(std::move(*connected));
    auto line = (*channel)->ReadLine(absl::Now() + kBootTimeout);
    EXPECT_TRUE(line.ok()) << line.status();
    return line.ok() ? *line : "";
  }

  testing::TempDir root_;
  std::unique_ptr<Hypervisor> hypervisor_;
};

TEST_F(VmHardeningTest, QemuRunsInItsSeccompSandboxBootsHotPlugsAndStops) {
  VmSpec spec = MakeSpec("sandboxed");
  ASSERT_TRUE(hypervisor_->Create(spec).ok());
  std::optional<GuestChannel> channel;
  EXPECT_THAT(WaitReady(spec, &channel), HasSubstr("READY"));
  auto status = hypervisor_->Status(spec.id);
  ASSERT_TRUE(status.ok()) << status.status();
  std::string cmdline = ReadText(absl::StrCat("/proc/", status->qemu_pid, "/cmdline"));
  std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
  EXPECT_THAT(cmdline, HasSubstr("-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,"
                                 "resourcecontrol=deny"));
  // Seccomp: 2 (filter mode) for QEMU itself.
  EXPECT_THAT(ReadText(absl::StrCat("/proc/", status->qemu_pid, "/status")),
              HasSubstr("Seccomp:\t2"));
  // The kernel keeps its mitigations.
  EXPECT_THAT(cmdline, Not(HasSubstr("mitigations=off")));

  const std::string disk = root_.Join("hot.img");
  std::ofstream(disk).close();
  ASSERT_EQ(truncate(disk.c_str(), 16 << 20), 0);
  ASSERT_TRUE(hypervisor_->AttachDisk(spec.id, {"hot", disk, false, "raw", 1}).ok());
  std::string blk;
  WaitFor(
      [&] {
        auto answer = channel->Ask("blk", absl::Seconds(30));
        blk = answer.ok() ? *answer : "";
        return absl::StrContains(blk, "sda");
      },
      absl::Seconds(30));
  EXPECT_THAT(blk, HasSubstr("sda"));
  ASSERT_TRUE(hypervisor_->Stop(spec.id, absl::Seconds(20)).ok());
  EXPECT_TRUE(WaitFor(
      [&] {
        auto s = hypervisor_->Status(spec.id);
        return s.ok() && s->state == VmState::kAbsent;
      },
      absl::Seconds(30)));
}

TEST_F(VmHardeningTest, ChattyConsoleIsCappedKeepingTheTail) {
  VmSpec spec = MakeSpec("chatty");
  // Every initcall and every message printed: far more than the cap.
  spec.extra_kernel_args = "ignore_loglevel initcall_debug";
  ASSERT_TRUE(hypervisor_->Create(spec).ok());
  std::optional<GuestChannel> channel;
  EXPECT_THAT(WaitReady(spec, &channel), HasSubstr("READY"));
  ASSERT_TRUE(hypervisor_->Destroy(spec.id).ok());
  // The logger ends once QEMU has closed the console, and removes its FIFO.
  EXPECT_TRUE(
      WaitFor([&] { return !Exists(ConsolePipePath(spec.console_log)); }, absl::Seconds(30)));
  const std::string current = ReadText(spec.console_log);
  const std::string previous = ReadText(spec.console_log + ".1");
  EXPECT_FALSE(previous.empty()) << "the guest wrote less than half the cap: nothing rotated";
  EXPECT_LE(SizeOf(spec.console_log) + SizeOf(spec.console_log + ".1"), kConsoleCap);
  EXPECT_FALSE(Exists(spec.console_log + ".2"));
  // The tail is kept (the kernel handing over to /init is among the last lines), the head is
  // gone (the banner is the first line).
  EXPECT_THAT(previous + current, HasSubstr("Run /init as init process"));
  EXPECT_THAT(previous + current, Not(HasSubstr("Linux version")));
}

}  // namespace
}  // namespace podvisor
