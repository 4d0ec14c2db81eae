#include "test/unit/streaming/streaming_test_client.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <utility>  // before Asio: Boost 1.74 needs std::exchange under C++20

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

namespace podvisor::testing {

namespace spdy = streaming::spdy;

ParsedUrl ParseUrl(const std::string& url) {
  ParsedUrl parsed;
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, "http://")) absl::ConsumePrefix(&rest, "https://");
  size_t slash = rest.find('/');
  absl::string_view hostport = rest.substr(0, slash);
  parsed.path = slash == absl::string_view::npos ? "/" : std::string(rest.substr(slash));
  size_t colon = hostport.rfind(':');
  parsed.host = std::string(hostport.substr(0, colon));
  if (!parsed.host.empty() && parsed.host.front() == '[') {
    parsed.host = parsed.host.substr(1, parsed.host.size() - 2);
  }
  (void)absl::SimpleAtoi(hostport.substr(colon + 1), &parsed.port);
  return parsed;
}

int Dial(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &result) != 0) return -1;
  int fd = -1;
  for (addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
    ::close(fd);
    fd = -1;
  }
  freeaddrinfo(result);
  if (fd >= 0) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return fd;
}

namespace {

bool WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

SpdyTestClient::~SpdyTestClient() { Close(); }

int SpdyTestClient::Connect(const std::string& url, const std::vector<std::string>& protocols,
                            std::string* response) {
  ParsedUrl parsed = ParseUrl(url);
  fd_ = Dial(parsed.host, parsed.port);
  if (fd_ < 0) return -1;
  std::string request = absl::StrCat("POST ", parsed.path, " HTTP/1.1\r\nHost: ", parsed.host,
                                     ":", parsed.port,
                                     "\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n");
  for (const std::string& p : protocols) {
    absl::StrAppend(&request, "X-Stream-Protocol-Version: ", p, "\r\n");
  }
  absl::StrAppend(&request, "Content-Length: 0\r\n\r\n");
  if (!WriteAll(fd_, request)) return -1;
  std::string head;
  char buf[4096];
  size_t end;
  while ((end = head.find("\r\n\r\n")) == std::string::npos) {
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) return -1;
    head.append(buf, static_cast<size_t>(n));
  }
  early_ = head.substr(end + 4);
  head.resize(end + 4);
  int status = 0;
  if (head.size() < 12 || !absl::SimpleAtoi(head.substr(9, 3), &status)) return -1;
  if (status != 101) {
    std::string body = early_;
    ssize_t n;
    while ((n = ::recv(fd_, buf, sizeof buf, 0)) > 0) body.append(buf, static_cast<size_t>(n));
    if (response != nullptr) *response = head + body;
    return status;
  }
  if (response != nullptr) *response = head;
  reader_ = std::thread([this] { ReaderLoop(); });
  return status;
}

void SpdyTestClient::ReaderLoop() {
  spdy::FrameDecoder decoder;
  decoder.Append(early_);
  char buf[65536];
  for (;;) {
    for (;;) {
      absl::StatusOr<std::optional<spdy::Frame>> frame = decoder.Next();
      if (!frame.ok() || !frame->has_value()) break;
      spdy::Frame& f = **frame;
      absl::MutexLock lock(&mu_);
      switch (f.type) {
        case spdy::FrameType::kData:
          // As spdystream does, data on a stream not yet replied to is dropped; the server
          // must never send it.
          if (!replied_.count(f.stream_id)) {
            ++violations_;
            break;
          }
          received_[f.stream_id] += f.data.size();
          if (!discard_) data_[f.stream_id].append(f.data);
          if (f.flags & spdy::kFlagFin) fin_.insert(f.stream_id);
          break;
        case spdy::FrameType::kSynReply:
          replied_.insert(f.stream_id);
          break;
        case spdy::FrameType::kRstStream:
          reset_.insert(f.stream_id);
          break;
        case spdy::FrameType::kGoAway:
          goaway_ = true;
          break;
        case spdy::FrameType::kSettings:
          settings_ = true;
          break;
        case spdy::FrameType::kWindowUpdate:
          window_updates_[f.stream_id] += f.delta_window;
          break;
        default:
          break;
      }
    }
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) break;
    decoder.Append(absl::string_view(buf, static_cast<size_t>(n)));
  }
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

uint32_t SpdyTestClient::OpenStream(const spdy::Headers& headers, bool fin) {
  absl::MutexLock lock(&write_mu_);
  uint32_t id = next_id_;
  next_id_ += 2;
  WriteAll(fd_, spdy::EncodeSynStream(compressor_, id, 0, fin ? spdy::kFlagFin : 0, headers));
  return id;
}

bool SpdyTestClient::WaitReply(uint32_t id, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return replied_.count(id) || reset_.count(id) || closed_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  return replied_.count(id) > 0 && reset_.count(id) == 0;
}

bool SpdyTestClient::WaitReset(uint32_t id, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return reset_.count(id) || closed_; };
  mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  return reset_.count(id) > 0;
}

void SpdyTestClient::Send(uint32_t id, const std::string& data, bool fin) {
  absl::MutexLock lock(&write_mu_);
  WriteAll(fd_, spdy::EncodeData(id, fin ? spdy::kFlagFin : 0, data));
}

void SpdyTestClient::SendRaw(const std::string& bytes) {
  absl::MutexLock lock(&write_mu_);
  WriteAll(fd_, bytes);
}

std::string SpdyTestClient::ReadAll(uint32_t id, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return fin_.count(id) || reset_.count(id) || closed_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  return data_[id];
}

std::string SpdyTestClient::ReadAtLeast(uint32_t id, size_t n, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return data_[id].size() >= n || fin_.count(id) || reset_.count(id) || closed_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  return data_[id];
}

bool SpdyTestClient::WaitClosed(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closed_; };
  return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
}

int64_t SpdyTestClient::window_granted(uint32_t id) {
  absl::MutexLock lock(&mu_);
  return window_updates_[id];
}

size_t SpdyTestClient::Received(uint32_t id) {
  absl::MutexLock lock(&mu_);
  return received_[id];
}

bool SpdyTestClient::WaitReceived(uint32_t id, size_t n, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return received_[id] >= n || reset_.count(id) || closed_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  return received_[id] >= n;
}

void SpdyTestClient::DiscardData(bool discard) {
  absl::MutexLock lock(&mu_);
  discard_ = discard;
}

int SpdyTestClient::violations() {
  absl::MutexLock lock(&mu_);
  return violations_;
}

bool SpdyTestClient::got_goaway() {
  absl::MutexLock lock(&mu_);
  return goaway_;
}

bool SpdyTestClient::got_settings() {
  absl::MutexLock lock(&mu_);
  return settings_;
}

void SpdyTestClient::Close() {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
  if (reader_.joinable()) reader_.join();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

ExecResult SpdyExec(const std::string& url, const ExecOptions& options) {
  ExecResult result;
  SpdyTestClient client;
  result.http_status = client.Connect(url, {options.protocol});
  if (result.http_status != 101) return result;
  auto headers = [](const char* type) { return spdy::Headers{{"streamtype", type}}; };
  // client-go's order: error, then stdin, stdout, stderr, resize.
  uint32_t error = client.OpenStream(headers("error"));
  uint32_t in = options.in ? client.OpenStream(headers("stdin")) : 0;
  uint32_t out = options.out ? client.OpenStream(headers("stdout")) : 0;
  uint32_t err = options.err ? client.OpenStream(headers("stderr")) : 0;
  uint32_t resize = options.tty ? client.OpenStream(headers("resize")) : 0;
  for (uint32_t id : {error, in, out, err, resize}) {
    if (id != 0) client.WaitReply(id);
  }
  if (resize != 0) {
    for (const streaming::TerminalSize& size : options.resizes) {
      client.Send(resize, absl::StrCat("{\"Width\":", size.width, ",\"Height\":", size.height,
                                       "}"));
    }
  }
  if (in != 0) {
    if (!options.stdin_data.empty()) client.Send(in, options.stdin_data);
    if (options.close_stdin) client.Send(in, "", /*fin=*/true);
  }
  result.error = client.ReadAll(error);
  if (out != 0) result.out = client.ReadAll(out);
  if (err != 0) result.err = client.ReadAll(err);
  result.violations = client.violations();
  client.Close();
  return result;
}

struct WsTestClient::Impl {
  boost::asio::io_context io;
  boost::beast::websocket::stream<boost::beast::tcp_stream> ws{io};
  bool open = false;
};

WsTestClient::WsTestClient() : impl_(std::make_unique<Impl>()) {}
WsTestClient::~WsTestClient() { Close(); }

int WsTestClient::Connect(const std::string& url, const std::vector<std::string>& protocols,
                          std::string* chosen) {
  namespace beast = boost::beast;
  ParsedUrl parsed = ParseUrl(url);
  boost::system::error_code ec;
  boost::asio::ip::tcp::resolver resolver(impl_->io);
  auto endpoints = resolver.resolve(parsed.host, std::to_string(parsed.port), ec);
  if (ec) return -1;
  beast::get_lowest_layer(impl_->ws).expires_after(std::chrono::seconds(30));
  beast::get_lowest_layer(impl_->ws).connect(endpoints, ec);
  if (ec) return -1;
  std::string list = absl::StrJoin(protocols, ", ");
  impl_->ws.set_option(beast::websocket::stream_base::decorator(
      [list](beast::websocket::request_type& req) {
        if (!list.empty()) req.set(beast::http::field::sec_websocket_protocol, list);
      }));
  beast::websocket::response_type response;
  impl_->ws.handshake(response, parsed.host + ":" + std::to_string(parsed.port), parsed.path, ec);
  if (ec) return response.result_int() != 0 ? static_cast<int>(response.result_int()) : -1;
  beast::get_lowest_layer(impl_->ws).expires_never();
  impl_->ws.read_message_max(64 << 20);
  if (chosen != nullptr) {
    *chosen = std::string(response[beast::http::field::sec_websocket_protocol]);
  }
  impl_->open = true;
  return 101;
}

void WsTestClient::Send(unsigned char channel, const std::string& data, bool base64) {
  if (base64) {
    SendRaw(std::string(1, static_cast<char>('0' + channel)) + absl::Base64Escape(data), true);
  } else {
    SendRaw(std::string(1, static_cast<char>(channel)) + data, false);
  }
}

void WsTestClient::SendRaw(const std::string& message, bool text) {
  boost::system::error_code ec;
  impl_->ws.text(text);
  impl_->ws.write(boost::asio::buffer(message), ec);
}

std::string WsTestClient::ReadMessage() {
  boost::beast::flat_buffer buffer;
  boost::system::error_code ec;
  impl_->ws.read(buffer, ec);
  if (ec) return "";
  return boost::beast::buffers_to_string(buffer.data());
}

std::vector<std::string> WsTestClient::ReadUntilClose(absl::Duration timeout) {
  std::vector<std::string> messages;
  boost::beast::get_lowest_layer(impl_->ws).expires_after(absl::ToChronoMilliseconds(timeout));
  for (;;) {
    boost::beast::flat_buffer buffer;
    boost::system::error_code ec;
    impl_->ws.read(buffer, ec);
    if (ec) break;
    messages.push_back(boost::beast::buffers_to_string(buffer.data()));
  }
  impl_->open = false;
  return messages;
}

void WsTestClient::Close() {
  boost::system::error_code ec;
  boost::beast::get_lowest_layer(impl_->ws).socket().close(ec);
  impl_->open = false;
}

std::string ChannelData(const std::vector<std::string>& messages, unsigned char channel,
                        bool base64) {
  std::string data;
  for (const std::string& m : messages) {
    if (m.empty()) continue;
    unsigned char c = static_cast<unsigned char>(m[0]);
    if (base64) c = static_cast<unsigned char>(c - '0');
    if (c != channel) continue;
    if (base64) {
      std::string decoded;
      absl::Base64Unescape(m.substr(1), &decoded);
      data += decoded;
    } else {
      data += m.substr(1);
    }
  }
  return data;
}

}  // namespace podvisor::testing
