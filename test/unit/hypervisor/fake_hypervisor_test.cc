#include "test/fakes/fake_hypervisor.h"

#include "gtest/gtest.h"

namespace podvisor::testing {
namespace {

TEST(FakeHypervisorTest, BehavesLikeTheContract) {
  FakeHypervisor hv;
  ASSERT_TRUE(hv.Init().ok());
  VmSpec spec;
  spec.id = "a";
  ASSERT_TRUE(hv.Create(spec).ok());
  EXPECT_EQ(hv.Create(spec).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(hv.Status("a")->state, VmState::kRunning);
  std::string died;
  hv.SetExitCallback([&](const VmExitEvent& e) { died = e.id; });
  hv.SimulateExit("a");
  EXPECT_EQ(died, "a");
  EXPECT_EQ(hv.Status("a")->state, VmState::kAbsent);
  EXPECT_TRUE(hv.Destroy("a").ok());
  hv.FailNextCreate(absl::UnavailableError("boom"));
  EXPECT_EQ(hv.Create(spec).code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(hv.Create(spec).ok());
}

}  // namespace
}  // namespace podvisor::testing
