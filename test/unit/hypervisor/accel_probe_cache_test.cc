#include "hypervisor/accel_probe_cache.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "gtest/gtest.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

class AccelProbeCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : {"qemu", "vmlinux", "initrd.img"}) {
      std::ofstream(dir_.Join(name)) << name;
    }
    inputs_ = {dir_.Join("qemu"), dir_.Join("vmlinux"), dir_.Join("initrd.img"), 9000000};
  }
  std::string Key() {
    auto key = AccelProbeKey(inputs_);
    EXPECT_TRUE(key.ok()) << key.status();
    return key.ok() ? *key : "";
  }
  testing::TempDir dir_;
  AccelProbeInputs inputs_;
};

TEST_F(AccelProbeCacheTest, StoredOutcomeIsFoundForTheSameKey) {
  const std::string cache = dir_.Join("kvm-probe");
  EXPECT_EQ(LoadAccelProbe(cache, Key()), std::nullopt) << "no cache file yet";
  ASSERT_TRUE(StoreAccelProbe(cache, Key(), false).ok());
  EXPECT_EQ(LoadAccelProbe(cache, Key()), false);
  ASSERT_TRUE(StoreAccelProbe(cache, Key(), true).ok());
  EXPECT_EQ(LoadAccelProbe(cache, Key()), true);
}

TEST_F(AccelProbeCacheTest, AChangedInputMisses) {
  const std::string cache = dir_.Join("kvm-probe");
  ASSERT_TRUE(StoreAccelProbe(cache, Key(), false).ok());
  inputs_.libvirt_version = 9001000;  // libvirt upgraded
  EXPECT_EQ(LoadAccelProbe(cache, Key()), std::nullopt);
  inputs_.libvirt_version = 9000000;
  EXPECT_EQ(LoadAccelProbe(cache, Key()), false);
  // The guest image is rebuilt (a new file renamed into place).
  std::ofstream(dir_.Join("initrd.new")) << "rebuilt";
  ASSERT_EQ(rename(dir_.Join("initrd.new").c_str(), dir_.Join("initrd.img").c_str()), 0);
  EXPECT_EQ(LoadAccelProbe(cache, Key()), std::nullopt);
  // QEMU replaced by another binary.
  ASSERT_TRUE(StoreAccelProbe(cache, Key(), false).ok());
  inputs_.emulator = dir_.Join("vmlinux");
  EXPECT_EQ(LoadAccelProbe(cache, Key()), std::nullopt);
}

TEST_F(AccelProbeCacheTest, KeyNamesEveryInput) {
  std::string key = Key();
  EXPECT_NE(key.find("host_kernel="), std::string::npos);
  EXPECT_NE(key.find("libvirt=9000000"), std::string::npos);
  EXPECT_NE(key.find("qemu=" + dir_.Join("qemu")), std::string::npos);
  EXPECT_NE(key.find("guest_kernel=" + dir_.Join("vmlinux")), std::string::npos);
  EXPECT_NE(key.find("guest_initrd=" + dir_.Join("initrd.img")), std::string::npos);
  inputs_.kernel = dir_.Join("missing");
  EXPECT_FALSE(AccelProbeKey(inputs_).ok()) << "a missing guest kernel cannot be keyed";
}

TEST_F(AccelProbeCacheTest, DamagedOrForeignFilesMiss) {
  const std::string cache = dir_.Join("kvm-probe");
  std::ofstream(cache) << Key() << "kvm_boots=maybe\n";
  EXPECT_EQ(LoadAccelProbe(cache, Key()), std::nullopt);
  std::ofstream(cache) << Key();  // cut short before the outcome
  EXPECT_EQ(LoadAccelProbe(cache, Key()), std::nullopt);
  std::ofstream(cache, std::ios::trunc) << std::string(1 << 20, 'x');
  EXPECT_EQ(LoadAccelProbe(cache, Key()), std::nullopt);
}

}  // namespace
}  // namespace podvisor
