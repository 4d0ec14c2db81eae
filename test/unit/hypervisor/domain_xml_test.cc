#include "hypervisor/domain_xml.h"

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace podvisor {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

VmSpec ValidSpec() {
  VmSpec spec;
  spec.id = "3f2a";
  spec.vcpus = 1;
  spec.memory_mib = 512;
  spec.kernel = "/guest/vmlinux";
  spec.initrd = "/guest/initrd.img";
  spec.state_dir = "/run/podvisor/vms/3f2a";
  spec.agent_socket = "/run/podvisor/vms/3f2a/agent.sock";
  spec.console_log = "/var/log/podvisor/3f2a/console.log";
  return spec;
}

DomainOptions Tcg() {
  DomainOptions options;
  options.tsc_khz = 2596094;
  return options;
}

TEST(DomainXmlTest, MicrovmWithDirectKernelBootAndAgentPort) {
  auto xml = BuildDomainXml(ValidSpec(), Tcg());
  ASSERT_TRUE(xml.ok()) << xml.status();
  EXPECT_THAT(*xml, HasSubstr("<domain type='qemu'"));
  EXPECT_THAT(*xml, HasSubstr("<name>podvisor-3f2a</name>"));
  EXPECT_THAT(*xml, HasSubstr("<memory unit='MiB'>512</memory>"));
  EXPECT_THAT(*xml, HasSubstr("machine='microvm'"));
  EXPECT_THAT(*xml,
              HasSubstr("<features><acpi/><tcg><tb-cache unit='MiB'>16</tb-cache></tcg></features>"));
  EXPECT_THAT(*xml, HasSubstr("<kernel>/guest/vmlinux</kernel>"));
  EXPECT_THAT(*xml, HasSubstr("<initrd>/guest/initrd.img</initrd>"));
  EXPECT_THAT(*xml, HasSubstr("path='/run/podvisor/vms/3f2a/agent.sock'"));
  EXPECT_THAT(*xml, HasSubstr("<target type='virtio' name='io.podvisor.agent.0'/>"));
  EXPECT_THAT(*xml, HasSubstr("<source path='/var/log/podvisor/3f2a/console.log'"));
  EXPECT_THAT(*xml, HasSubstr("<on_reboot>destroy</on_reboot>"));
  EXPECT_THAT(*xml, HasSubstr("<qemu:del capability='cpu-unavailable-features'/>"));
  EXPECT_THAT(*xml, HasSubstr("<memballoon model='none'/>"));
  EXPECT_THAT(*xml, Not(HasSubstr("<interface")));
  EXPECT_THAT(*xml, Not(HasSubstr("<disk")));
  EXPECT_THAT(*xml, Not(HasSubstr("<filesystem")));
  EXPECT_THAT(*xml, Not(HasSubstr("<memoryBacking")));
  EXPECT_THAT(*xml, Not(HasSubstr("force-legacy")));
}

TEST(DomainXmlTest, SharedDirectoryOverVirtiofsWithSharedMemory) {
  VmSpec spec = ValidSpec();
  spec.shared_dir = "/run/podvisor/vms/3f2a/shared";
  DomainOptions options = Tcg();
  options.virtiofsd = "/opt/virtiofsd";
  auto xml = BuildDomainXml(spec, options);
  ASSERT_TRUE(xml.ok()) << xml.status();
  EXPECT_THAT(*xml, HasSubstr("<memoryBacking><source type='memfd'/><access mode='shared'/>"));
  EXPECT_THAT(*xml, HasSubstr("<driver type='virtiofs' queue='1024'/>"));
  EXPECT_THAT(*xml, HasSubstr("<binary path='/opt/virtiofsd'><sandbox mode='chroot'/></binary>"));
  EXPECT_THAT(*xml, HasSubstr("<source dir='/run/podvisor/vms/3f2a/shared'/>"));
  EXPECT_THAT(*xml, HasSubstr("<target dir='podvisor-shared'/>"));
  EXPECT_THAT(*xml, HasSubstr("<qemu:arg value='virtio-mmio.force-legacy=false'/>"));

  spec.shared_dir = "relative/dir";
  EXPECT_EQ(BuildDomainXml(spec, options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DomainXmlTest, KernelArgumentsCarryTscAndPanicBehaviour) {
  VmSpec spec = ValidSpec();
  spec.extra_kernel_args = "podvisor.debug=1";
  auto xml = BuildDomainXml(spec, Tcg());
  ASSERT_TRUE(xml.ok());
  EXPECT_THAT(*xml, HasSubstr("<cmdline>console=ttyS0 quiet panic=-1 reboot=t cryptomgr.notests "
                              "tsc_early_khz=2596094 podvisor.debug=1</cmdline>"));
  EXPECT_THAT(KernelCommandLine(DomainOptions{}, ""), Not(HasSubstr("tsc_early_khz")));
}

TEST(DomainXmlTest, BoundedConsoleGoesThroughItsFifoAndQemuIsSandboxed) {
  VmSpec spec = ValidSpec();
  DomainOptions options = Tcg();
  EXPECT_THAT(*BuildDomainXml(spec, options),
              HasSubstr(absl::StrCat("<source path='", spec.console_log, "' append='on'/>")));
  options.console_log_max_bytes = 1 << 20;
  EXPECT_THAT(*BuildDomainXml(spec, options),
              HasSubstr(absl::StrCat("<source path='", spec.console_log, ".pipe' append='on'/>")));
  EXPECT_EQ(ConsolePipePath("/run/vm/console.log"), "/run/vm/console.log.pipe");
  EXPECT_EQ(QemuSandboxConf(true), "seccomp_sandbox = 1\n");
  EXPECT_EQ(QemuSandboxConf(false), "seccomp_sandbox = 0\n");
}

TEST(DomainXmlTest, GuestMitigationsStayOnUnlessTurnedOff) {
  EXPECT_THAT(KernelCommandLine(DomainOptions{}, ""), Not(HasSubstr("mitigations")));
  DomainOptions off = Tcg();
  off.guest_mitigations = false;
  EXPECT_THAT(*BuildDomainXml(ValidSpec(), off), HasSubstr("cryptomgr.notests mitigations=off"));
}

TEST(DomainXmlTest, KvmDomainType) {
  DomainOptions options = Tcg();
  options.accelerator = "kvm";
  EXPECT_THAT(*BuildDomainXml(ValidSpec(), options), HasSubstr("<domain type='kvm'"));
  EXPECT_THAT(*BuildDomainXml(ValidSpec(), options), HasSubstr("<features><acpi/></features>"));
  options.accelerator = "hvf";
  EXPECT_EQ(BuildDomainXml(ValidSpec(), options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(DomainXmlTest, DisksOnTheVirtioScsiBusByIndex) {
  VmSpec spec = ValidSpec();
  spec.disks.push_back({"rootfs", "/var/lib/podvisor/rootfs.erofs", true, "raw", 0});
  spec.disks.push_back({"vol", "/dev/vg0/vol", false, "raw", 27});
  auto xml = BuildDomainXml(spec, Tcg());
  ASSERT_TRUE(xml.ok()) << xml.status();
  EXPECT_THAT(*xml, HasSubstr("<controller type='scsi' index='0' model='virtio-scsi'>"));
  EXPECT_THAT(*xml, HasSubstr("<source file='/var/lib/podvisor/rootfs.erofs'/>"));
  EXPECT_THAT(*xml, HasSubstr("<target dev='sda' bus='scsi'/>\n      <readonly/>"));
  EXPECT_THAT(*xml, HasSubstr("<serial>rootfs</serial>"));
  EXPECT_THAT(*xml, HasSubstr("<alias name='ua-rootfs'/>"));
  EXPECT_THAT(*xml, HasSubstr("target='0' unit='0'"));
  EXPECT_THAT(*xml, HasSubstr("<disk type='block' device='disk'>"));
  EXPECT_THAT(*xml, HasSubstr("<source dev='/dev/vg0/vol'/>"));
  EXPECT_THAT(*xml, HasSubstr("<target dev='sdab' bus='scsi'/>"));
  EXPECT_THAT(*xml, HasSubstr("target='27' unit='0'"));
}

TEST(DomainXmlTest, NicOnAnExistingTap) {
  VmSpec spec = ValidSpec();
  spec.nics.push_back({"tap0", "52:54:00:AB:CD:EF", "/run/netns/pod"});
  auto xml = BuildDomainXml(spec, Tcg());
  ASSERT_TRUE(xml.ok()) << xml.status();
  EXPECT_THAT(*xml, HasSubstr("<interface type='ethernet'>\n      <mac address='52:54:00:ab:cd:ef'/>"
                              "\n      <target dev='tap0' managed='no'/>\n      <model type='virtio'/>"
                              "\n      <address type='virtio-mmio'/>"));
}

TEST(DomainXmlTest, RejectsBadSpecs) {
  auto rejected = [](auto mutate) {
    VmSpec spec = ValidSpec();
    mutate(spec);
    return BuildDomainXml(spec, Tcg()).status().code() == absl::StatusCode::kInvalidArgument;
  };
  EXPECT_TRUE(rejected([](VmSpec& s) { s.id = ""; }));
  EXPECT_TRUE(rejected([](VmSpec& s) { s.id = "a/b"; }));
  EXPECT_TRUE(rejected([](VmSpec& s) { s.id = "x'><evil"; }));
  EXPECT_TRUE(rejected([](VmSpec& s) { s.vcpus = 0; }));
  EXPECT_TRUE(rejected([](VmSpec& s) { s.memory_mib = 8; }));
  EXPECT_TRUE(rejected([](VmSpec& s) { s.kernel = "vmlinux"; }));
  EXPECT_TRUE(rejected([](VmSpec& s) { s.agent_socket = "/" + std::string(120, 'a'); }));
  EXPECT_TRUE(rejected([](VmSpec& s) { s.disks.push_back({"a b", "/x", false, "raw", 0}); }));
  EXPECT_TRUE(rejected([](VmSpec& s) { s.disks.push_back({"a", "/x", false, "vmdk", 0}); }));
  EXPECT_TRUE(rejected([](VmSpec& s) {
    s.disks.push_back({"a", "/x", false, "raw", 1});
    s.disks.push_back({"b", "/y", false, "raw", 1});
  }));
  EXPECT_TRUE(rejected([](VmSpec& s) { s.nics.push_back({"tap0", "52:54:00:zz:00:00", ""}); }));
  EXPECT_TRUE(rejected([](VmSpec& s) {
    s.nics.push_back({"tap0", "52:54:00:00:00:01", "/run/netns/a"});
    s.nics.push_back({"tap1", "52:54:00:00:00:02", "/run/netns/b"});
  }));
}

TEST(DomainXmlTest, PathsAreEscaped) {
  VmSpec spec = ValidSpec();
  spec.console_log = "/logs/a'b&c/console.log";
  auto xml = BuildDomainXml(spec, Tcg());
  ASSERT_TRUE(xml.ok());
  EXPECT_THAT(*xml, HasSubstr("/logs/a&apos;b&amp;c/console.log"));
}

// The live XML as libvirt prints it back: our hot-plugged disks are found again by serial, with
// path, read-only and SCSI target; a disk without a serial is none of ours.
TEST(DomainXmlTest, DisksAreParsedBackFromTheLiveXml) {
  const std::string xml = "<domain type='qemu'><devices>\n" +
                          *BuildDiskXml({"l1234", "/img/a'b.erofs", true, "raw", 3}) +
                          *BuildDiskXml({"v99", "/dev/sdz", false, "qcow2", 17}) +
                          "    <disk type='file' device='cdrom'><source file='/x.iso'/></disk>\n"
                          "</devices></domain>";
  std::vector<VmDisk> disks = ParseDomainDisks(xml);
  ASSERT_EQ(disks.size(), 2u);
  EXPECT_EQ(disks[0].id, "l1234");
  EXPECT_EQ(disks[0].path, "/img/a'b.erofs");
  EXPECT_TRUE(disks[0].read_only);
  EXPECT_EQ(disks[0].index, 3u);
  EXPECT_EQ(disks[1].id, "v99");
  EXPECT_EQ(disks[1].path, "/dev/sdz");
  EXPECT_FALSE(disks[1].read_only);
  EXPECT_EQ(disks[1].format, "qcow2");
  EXPECT_EQ(disks[1].index, 17u);
  EXPECT_TRUE(ParseDomainDisks("<domain/>").empty());
}

TEST(DomainXmlTest, HotPlugDiskElement) {
  auto xml = BuildDiskXml({"layer-3", "/images/layer3.erofs", true, "raw", 3});
  ASSERT_TRUE(xml.ok());
  EXPECT_THAT(*xml, HasSubstr("<target dev='sdd' bus='scsi'/>"));
  EXPECT_THAT(*xml, HasSubstr("target='3' unit='0'"));
  EXPECT_EQ(BuildDiskXml({"x", "relative.img", true, "raw", 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
TEST(DomainXmlTest, SharedDirectoryOver9pNeedsNoSharedMemory) {
  VmSpec spec = ValidSpec();
  spec.shared_dir = "/run/podvisor/vms/3f2a/shared,odd";
  spec.shared_fs_transport = SharedFsTransport::k9p;
  auto xml = BuildDomainXml(spec, Tcg());
  ASSERT_TRUE(xml.ok()) << xml.status();
  EXPECT_THAT(*xml, Not(HasSubstr("<memoryBacking")));
  EXPECT_THAT(*xml, Not(HasSubstr("<filesystem")));
  EXPECT_THAT(*xml, Not(HasSubstr("force-legacy")));
  // A comma in the path is doubled, as QEMU's option syntax wants.
  EXPECT_THAT(*xml, HasSubstr("<qemu:arg value='local,id=podvisor-fs0,security_model=none,"
                              "multidevs=remap,path=/run/podvisor/vms/3f2a/shared,,odd'/>"));
  EXPECT_THAT(*xml, HasSubstr("<qemu:arg value='virtio-9p-device,fsdev=podvisor-fs0,"
                              "mount_tag=podvisor-shared'/>"));
}

TEST(DomainXmlTest, TemplateRamIsASharedFile) {
  VmSpec spec = ValidSpec();
  spec.memory_file = "/dev/shm/t/ram";
  auto xml = BuildDomainXml(spec, Tcg());
  ASSERT_TRUE(xml.ok()) << xml.status();
  EXPECT_THAT(*xml, HasSubstr("<qemu:arg value='memory-backend-file,id=podvisor-ram,"
                              "mem-path=/dev/shm/t/ram,size=512M,share=on'/>"));
  EXPECT_THAT(*xml, HasSubstr("<qemu:arg value='memory-backend=podvisor-ram'/>"));
  EXPECT_THAT(*xml, Not(HasSubstr("-incoming")));
}

TEST(DomainXmlTest, CloneMapsTemplateRamPrivatelyAndWaitsForItsState) {
  VmSpec spec = ValidSpec();
  spec.memory_file = "/dev/shm/t/ram";
  spec.restore_state = "/dev/shm/t/state";
  auto xml = BuildDomainXml(spec, Tcg());
  ASSERT_TRUE(xml.ok()) << xml.status();
  EXPECT_THAT(*xml, HasSubstr("mem-path=/dev/shm/t/ram,size=512M,share=off'/>"));
  EXPECT_THAT(*xml, HasSubstr("<qemu:arg value='-incoming'/>\n    <qemu:arg value='defer'/>"));
}

TEST(DomainXmlTest, TemplateAndCloneRefuseWhatCannotWork) {
  VmSpec clone_without_ram = ValidSpec();
  clone_without_ram.restore_state = "/dev/shm/t/state";
  EXPECT_EQ(BuildDomainXml(clone_without_ram, Tcg()).status().code(),
            absl::StatusCode::kInvalidArgument);
  VmSpec virtiofs_template = ValidSpec();
  virtiofs_template.memory_file = "/dev/shm/t/ram";
  virtiofs_template.shared_dir = "/srv/shared";
  auto refused = BuildDomainXml(virtiofs_template, Tcg());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("9p"));
  VmSpec relative = ValidSpec();
  relative.memory_file = "ram";
  EXPECT_EQ(BuildDomainXml(relative, Tcg()).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace podvisor
