#include "hypervisor/vm_template.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test/fakes/fake_hypervisor.h"

namespace podvisor {
namespace {

using ::testing::HasSubstr;

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

void Write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

class VmTemplateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/dev/shm/podvisor-template-test.XXXXXX";  // templates must be on tmpfs
    ASSERT_NE(mkdtemp(dir), nullptr);
    root_ = dir;
    Write(root_ + "/vmlinux", "kernel 1");
    Write(root_ + "/initrd.img", "initrd 1");
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  VmTemplateOptions Options(std::vector<VmShape> shapes) {
    VmTemplateOptions o;
    o.dir = root_ + "/templates";
    o.kernel = root_ + "/vmlinux";
    o.initrd = root_ + "/initrd.img";
    o.shapes = std::move(shapes);
    o.make_nic = [this](const std::string& dir) -> absl::StatusOr<VmNic> {
      ++nics_made_;
      return VmNic{"pvtmpl0", "", dir + "/netns"};
    };
    o.remove_nic = [this](const std::string&) { ++nics_removed_; };
    o.wait_ready = [this](const std::string& socket, absl::Duration) {
      sockets_.push_back(socket);
      return ready_error_;
    };
    return o;
  }

  std::vector<std::string> TemplateDirs() {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(root_ + "/templates")) {
      names.push_back(e.path().filename());
    }
    return names;
  }

  std::string root_;
  testing::FakeHypervisor hypervisor_;
  int nics_made_ = 0;
  int nics_removed_ = 0;
  std::vector<std::string> sockets_;
  absl::Status ready_error_;
};

TEST_F(VmTemplateStoreTest, BuildsEachShapeAsA9pVmWithItsRamInAFile) {
  VmTemplateStore store(&hypervisor_, Options({{1, 256}, {1, 512}}));
  EXPECT_FALSE(store.Find(1, 256).has_value());  // nothing built yet: boot cold
  {
    absl::Status built = store.BuildAll();
    ASSERT_TRUE(built.ok()) << built;
  }
  EXPECT_EQ(hypervisor_.save_calls(), 2);
  EXPECT_TRUE(hypervisor_.RunningIds().empty());  // template VMs are gone once saved
  VmSpec spec = hypervisor_.LastSpec();
  EXPECT_EQ(spec.id.rfind(kTemplateVmIdPrefix, 0), 0u);
  EXPECT_EQ(spec.shared_fs_transport, SharedFsTransport::k9p);
  EXPECT_FALSE(spec.shared_dir.empty());
  EXPECT_FALSE(spec.memory_file.empty());
  EXPECT_TRUE(spec.restore_state.empty());
  ASSERT_EQ(spec.nics.size(), 1u);
  EXPECT_EQ(spec.nics[0].mac, kTemplateMac);
  EXPECT_EQ(nics_made_, 2);
  EXPECT_EQ(nics_removed_, 2 + 2);  // before each build (leftovers) and after it

  auto t = store.Find(1, 256);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->shape.memory_mib, 256u);
  EXPECT_EQ(t->mac, kTemplateMac);
  EXPECT_TRUE(Exists(t->state_file));
  struct stat st;
  ASSERT_EQ(stat(t->state_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0400u);  // clones map it: never written again
}

TEST_F(VmTemplateStoreTest, PodsGetTheSmallestTemplateAtLeastTheirSize) {
  VmTemplateStore store(&hypervisor_, Options({{1, 1024}, {1, 256}, {1, 512}, {2, 512}}));
  {
    absl::Status built = store.BuildAll();
    ASSERT_TRUE(built.ok()) << built;
  }
  EXPECT_EQ(store.Find(1, 200)->shape.memory_mib, 256u);
  EXPECT_EQ(store.Find(1, 256)->shape.memory_mib, 256u);
  EXPECT_EQ(store.Find(1, 384)->shape.memory_mib, 512u);
  EXPECT_EQ(store.Find(2, 300)->shape.vcpus, 2u);
  EXPECT_FALSE(store.Find(1, 2048).has_value());  // bigger than any: cold
  EXPECT_FALSE(store.Find(4, 256).has_value());   // no template with 4 vCPUs
}

TEST_F(VmTemplateStoreTest, TemplatesOnDiskAreReusedByTheNextDaemon) {
  std::string key;
  {
    VmTemplateStore store(&hypervisor_, Options({{1, 256}}));
    {
    absl::Status built = store.BuildAll();
    ASSERT_TRUE(built.ok()) << built;
  }
    key = store.Find(1, 256)->key;
  }
  VmTemplateStore again(&hypervisor_, Options({{1, 256}}));
  {
    absl::Status built = again.BuildAll();
    ASSERT_TRUE(built.ok()) << built;
  }
  EXPECT_EQ(hypervisor_.save_calls(), 1);  // not built twice
  EXPECT_EQ(again.Find(1, 256)->key, key);
}

TEST_F(VmTemplateStoreTest, ANewGuestImageOrQemuMeansNewTemplatesAndTheOldOnesGo) {
  VmTemplateStore store(&hypervisor_, Options({{1, 256}}));
  {
    absl::Status built = store.BuildAll();
    ASSERT_TRUE(built.ok()) << built;
  }
  const std::string old_key = store.Find(1, 256)->key;
  Write(root_ + "/initrd.img", "initrd 2, with a new agent");
  EXPECT_FALSE(store.Find(1, 256).has_value());  // stale: boot cold until rebuilt
  {
    absl::Status built = store.BuildAll();
    ASSERT_TRUE(built.ok()) << built;
  }
  auto rebuilt = store.Find(1, 256);
  ASSERT_TRUE(rebuilt.has_value());
  EXPECT_NE(rebuilt->key, old_key);
  EXPECT_EQ(TemplateDirs(), std::vector<std::string>{rebuilt->key});

  hypervisor_.set_versions("fake 2");
  {
    absl::Status built = store.BuildAll();
    ASSERT_TRUE(built.ok()) << built;
  }
  EXPECT_NE(store.Find(1, 256)->key, rebuilt->key);
  EXPECT_EQ(hypervisor_.save_calls(), 3);
}

TEST_F(VmTemplateStoreTest, TheBuilderThreadRebuildsWhenTheImageChanges) {
  VmTemplateStore store(&hypervisor_, Options({{1, 256}}));
  store.Start();
  auto wait_for = [&](auto pred) {
    for (int i = 0; i < 500 && !pred(); ++i) usleep(10000);
    return pred();
  };
  ASSERT_TRUE(wait_for([&] { return store.Find(1, 256).has_value(); }));
  const std::string first = store.Find(1, 256)->key;
  Write(root_ + "/vmlinux", "kernel 2");
  EXPECT_FALSE(store.Find(1, 256).has_value());
  ASSERT_TRUE(wait_for([&] { return store.Find(1, 256).has_value(); }));
  EXPECT_NE(store.Find(1, 256)->key, first);
}

TEST_F(VmTemplateStoreTest, AFailedBuildLeavesNothingAndOtherShapesStillBuild) {
  VmTemplateStore store(&hypervisor_, Options({{1, 256}, {1, 512}}));
  hypervisor_.FailNextSave(absl::InternalError("migration failed"));
  absl::Status s = store.BuildAll();
  EXPECT_THAT(s.message(), HasSubstr("migration failed"));
  EXPECT_THAT(s.message(), HasSubstr("256 MiB"));
  ASSERT_TRUE(store.Find(1, 256).has_value());
  EXPECT_EQ(store.Find(1, 256)->shape.memory_mib, 512u);  // the only one built
  EXPECT_EQ(TemplateDirs().size(), 1u);  // no half-built directory
  EXPECT_TRUE(hypervisor_.RunningIds().empty());

  ready_error_ = absl::DeadlineExceededError("agent never answered");
  VmTemplateStore other(&hypervisor_, Options({{1, 256}}));
  EXPECT_THAT(other.BuildAll().message(), HasSubstr("agent never answered"));
  EXPECT_TRUE(hypervisor_.RunningIds().empty());  // the booted template was destroyed
}

TEST_F(VmTemplateStoreTest, RefusesADirectoryNotOnTmpfs) {
  VmTemplateOptions o = Options({{1, 256}});
  char dir[] = "/var/tmp/podvisor-template-test.XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  o.dir = dir;
  VmTemplateStore store(&hypervisor_, o);
  absl::Status s = store.BuildAll();
  std::filesystem::remove_all(dir);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("tmpfs"));
  EXPECT_EQ(hypervisor_.create_calls(), 0);
}

}  // namespace
}  // namespace podvisor
