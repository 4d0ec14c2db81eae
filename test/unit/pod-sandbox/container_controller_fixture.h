#pragma once

// The container controller over fakes (hypervisor, network, images, agent) and a real store:
// the fixture every container_*_test.cc of this folder shares.

#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pod-sandbox/container_controller.h"
#include "pod-sandbox/container_spec.h"
#include "pod-sandbox/container_streaming.h"
#include "pod-sandbox/sandbox_controller.h"
#include "test/fakes/fake_agent_client.h"
#include "test/fakes/fake_hypervisor.h"
#include "test/fakes/fake_image_controller.h"
#include "test/fakes/fake_pod_network.h"
#include "test/support/temp_dir.h"

namespace podvisor {

inline constexpr char kLayer0[] =
    "/images/layers/sha256-1111111111111111111111111111111111111111111111111111111111111111.erofs";
inline constexpr char kLayer1[] =
    "/images/layers/sha256-2222222222222222222222222222222222222222222222222222222222222222.erofs";

inline std::string ReadAll(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class ContainerControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = RecordStore::Open(dir_.Join("s.db"));
    ASSERT_TRUE(r.ok());
    records_ = std::move(*r);
    sandbox_store_ = std::make_unique<SandboxStore>(records_.get(), "sandbox");
    container_store_ = std::make_unique<ContainerStore>(records_.get(), "container");
    SandboxControllerOptions o;
    o.state_dir = dir_.Join("state");
    o.kernel = "/k";
    o.initrd = "/i";
    sandboxes_ = std::make_unique<SandboxController>(
        o, sandbox_store_.get(), &hypervisor_, &network_,
        [this](const std::string&,
               AgentClient::Options options) -> absl::StatusOr<std::unique_ptr<AgentClient>> {
          auto agent = std::make_unique<testing::FakeAgentClient>(std::move(options));
          agent_ = agent.get();
          log_ = agent->log;
          return agent;
        });
    sandboxes_->SetReady(absl::OkStatus());
    ImageMetadata image;
    image.id = "sha256:abcd";
    image.config.entrypoint = {"/bin/sh", "-c"};
    image.config.cmd = {"echo image"};
    image.config.env = {"PATH=/usr/bin:/bin", "FOO=image"};
    image.config.working_dir = "/srv";
    image.config.user = "1000:50";
    image.uid = 1000;
    images_.AddImage("busybox:latest", image, {kLayer0, kLayer1});
    containers_ = std::make_unique<ContainerController>(
        ContainerControllerOptions{}, container_store_.get(), sandbox_store_.get(),
        sandboxes_.get(), &hypervisor_, &images_);
    containers_->Install();
    SandboxConfig sc;
    sc.pod_name = "web";
    sc.pod_namespace = "default";
    sc.pod_uid = "uid-1";
    sc.hostname = "web-host";
    sc.log_directory = dir_.Join("logs");
    auto id = sandboxes_->Run(sc);
    ASSERT_TRUE(id.ok()) << id.status();
    sandbox_id_ = *id;
  }

  ContainerConfig Config(const std::string& name = "app") {
    ContainerConfig c;
    c.name = name;
    c.image = "busybox:latest";
    c.log_path = name + "/0.log";
    c.labels = {{"tier", "front"}};
    return c;
  }

  std::string CreateAndStart(const ContainerConfig& c) {
    absl::StatusOr<std::string> id = containers_->Create(sandbox_id_, c);
    EXPECT_TRUE(id.ok()) << id.status();
    if (!id.ok()) return "";
    absl::Status s = containers_->Start(*id);
    EXPECT_TRUE(s.ok()) << s;
    return *id;
  }

  testing::TempDir dir_;
  std::unique_ptr<RecordStore> records_;
  std::unique_ptr<SandboxStore> sandbox_store_;
  std::unique_ptr<ContainerStore> container_store_;
  testing::FakeHypervisor hypervisor_;
  testing::FakePodNetworkManager network_;
  testing::FakeImageController images_;
  std::unique_ptr<SandboxController> sandboxes_;
  std::unique_ptr<ContainerController> containers_;
  testing::FakeAgentClient* agent_ = nullptr;
  std::shared_ptr<testing::FakeAgentClient::Log> log_;
  std::string sandbox_id_;
};

}  // namespace podvisor
