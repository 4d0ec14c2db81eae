#include "agent/containers.h"

#include <unistd.h>

#include "agent/server.h"

namespace podvisor::agent {
namespace {
Error NotYet() {
  return Error(Code::kUnimplemented, "containers are not implemented by this agent yet");
}
}  // namespace

struct ContainerManager::Impl {
  AgentOptions options;
  AgentServer* server;
};

ContainerManager::ContainerManager(const AgentOptions& options, AgentServer* server)
    : impl_(new Impl{options, server}) {}
ContainerManager::~ContainerManager() = default;

bool ContainerManager::Available() const { return false; }
Error ContainerManager::Create(const v1::CreateContainerRequest&) { return NotYet(); }
v1::Response ContainerManager::Start(const v1::StartContainerRequest&) {
  return ErrorResponse(NotYet());
}
Error ContainerManager::Signal(const v1::SignalProcessRequest&) { return NotYet(); }
v1::Response ContainerManager::Wait(const v1::WaitProcessRequest&) {
  return ErrorResponse(NotYet());
}
Error ContainerManager::Remove(const v1::RemoveContainerRequest&) { return NotYet(); }
v1::Response ContainerManager::Exec(const v1::ExecProcessRequest&) {
  return ErrorResponse(NotYet());
}
Error ContainerManager::Resize(const v1::ResizeTtyRequest&) { return NotYet(); }
v1::Response ContainerManager::Stats(const v1::StatsRequest&) { return ErrorResponse(NotYet()); }
void ContainerManager::StopAll(uint32_t) {}

}  // namespace podvisor::agent
