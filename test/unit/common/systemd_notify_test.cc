#include "common/systemd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "gtest/gtest.h"
#include "test/support/temp_dir.h"

namespace podvisor {
namespace {

TEST(SystemdNotifyTest, WithoutNotifySocketNothingIsSent) {
  ::unsetenv("NOTIFY_SOCKET");
  EXPECT_TRUE(NotifySystemd("READY=1").ok());
}

TEST(SystemdNotifyTest, SendsOneDatagramToThePathOrAbstractSocket) {
  testing::TempDir dir;
  for (const std::string& name :
       {dir.Join("notify"), "@podvisor-test-" + std::to_string(getpid())}) {
    int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, name.data(), name.size());
    if (name[0] == '@') addr.sun_path[0] = '\0';
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr),
                     static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size())),
              0);
    ::setenv("NOTIFY_SOCKET", name.c_str(), 1);
    ASSERT_TRUE(NotifySystemd("READY=1\nSTATUS=serving").ok());
    char buf[64] = {};
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    EXPECT_EQ(std::string(buf, n > 0 ? static_cast<size_t>(n) : 0), "READY=1\nSTATUS=serving");
    ::close(fd);
  }
  ::setenv("NOTIFY_SOCKET", "relative/path", 1);
  EXPECT_FALSE(NotifySystemd("READY=1").ok());
  ::setenv("NOTIFY_SOCKET", dir.Join("nobody-listens").c_str(), 1);
  EXPECT_FALSE(NotifySystemd("READY=1").ok());
  ::unsetenv("NOTIFY_SOCKET");
}

}  // namespace
}  // namespace podvisor
