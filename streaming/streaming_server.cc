#include "streaming/streaming_server.h"

#include <atomic>
#include <thread>

#include <utility>  // before Asio: Boost 1.74 needs std::exchange under C++20

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/log.h"
#include "streaming/connection_admission.h"
#include "streaming/http_request.h"
#include "streaming/request_cache.h"
#include "streaming/server_context.h"
#include "streaming/spdy_connection.h"
#include "streaming/spdy_handlers.h"
#include "streaming/transport.h"
#include "streaming/websocket_connection.h"

namespace podvisor::streaming {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;
using Request = HttpRequest;

constexpr absl::Duration kStopTimeout = absl::Seconds(30);

SpdyLimits SpdyLimitsOf(const ServerContext& context) {
  SpdyLimits limits;
  limits.max_buffered_input = context.max_buffered_input;
  limits.max_queued_control_frames = context.max_queued_control_frames;
  limits.idle_timeout = context.idle_timeout;
  return limits;
}

// The subprotocol of SPDY tunnelled in a WebSocket (client-go's port-forward over WebSocket,
// crictl >= 1.30 `--transport websocket`): binary messages carry the SPDY byte stream.
constexpr const char* kSpdyTunnelPortForward = "SPDY/3.1+portforward.k8s.io";

// A ByteStream over a WebSocket: reads return message payloads as one byte stream; each write is
// one binary message.
template <class Stream>
class WebSocketByteStream : public ByteStream {
 public:
  explicit WebSocketByteStream(Stream stream) : ws_(std::move(stream)) {}
  beast::websocket::stream<Stream>& ws() { return ws_; }
  asio::any_io_executor executor() override { return ws_.get_executor(); }
  void AsyncReadSome(asio::mutable_buffer buffer, Handler handler) override {
    if (buffer_.size() > 0) {
      size_t n = asio::buffer_copy(buffer, buffer_.data());
      buffer_.consume(n);
      asio::post(ws_.get_executor(), [handler = std::move(handler), n] { handler({}, n); });
      return;
    }
    ws_.async_read(buffer_, [this, buffer, handler = std::move(handler)](
                                beast::error_code ec, size_t) mutable {
      if (ec) {
        handler(ec, 0);
        return;
      }
      AsyncReadSome(buffer, std::move(handler));  // empty messages just read on
    });
  }
  void AsyncWrite(asio::const_buffer buffer, Handler handler) override {
    ws_.binary(true);
    ws_.async_write(buffer, std::move(handler));
  }
  void Close() override {
    beast::error_code ignored;
    auto& socket = beast::get_lowest_layer(ws_).socket();
    socket.shutdown(tcp::socket::shutdown_both, ignored);
    socket.close(ignored);
  }

 private:
  beast::websocket::stream<Stream> ws_;
  beast::flat_buffer buffer_;
};

// One accepted connection until it is upgraded (or answered with an error).
template <class Stream>
class HttpSession : public std::enable_shared_from_this<HttpSession<Stream>> {
 public:
  HttpSession(Stream stream, ServerContext* context, RequestCache* cache,
              std::shared_ptr<ConnectionAdmission::Ticket> ticket,
              absl::Duration header_timeout)
      : stream_(std::move(stream)),
        context_(context),
        cache_(cache),
        ticket_(ticket),
        slot_(std::move(ticket)),
        header_timeout_(header_timeout) {}

  // Closes the socket of a connection pushed out of the unauthenticated pool. On the executor.
  void Evict() {
    beast::error_code ignored;
    beast::get_lowest_layer(stream_).socket().close(ignored);
  }

  void Run() {
    beast::get_lowest_layer(stream_).expires_after(absl::ToChronoMilliseconds(header_timeout_));
    if constexpr (kTls) {
      auto self = this->shared_from_this();
      stream_.async_handshake(asio::ssl::stream_base::server, [self](beast::error_code ec) {
        if (ec) {
          PV_LOG(kInfo) << "streaming: TLS handshake failed: " << ec.message();
          return;
        }
        self->ReadRequest();
      });
    } else {
      ReadRequest();
    }
  }

 private:
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

  void ReadRequest() {
    parser_.emplace();
    parser_->body_limit(kMaxRequestBody);
    parser_->header_limit(kMaxRequestHeader);
    auto self = this->shared_from_this();
    http::async_read(stream_, buffer_, *parser_, [self](beast::error_code ec, size_t) {
      if (ec) return;  // the client left or sent garbage: nothing to answer
      self->Route(self->parser_->release());
    });
  }

  void Reply(http::status status, const std::string& body,
             std::vector<std::pair<std::string, std::string>> headers = {}) {
    auto response = std::make_shared<http::response<http::string_body>>(status, 11);
    response->set(http::field::content_type, "text/plain; charset=utf-8");
    for (auto& [name, value] : headers) response->insert(name, value);
    response->body() = body + "\n";
    response->keep_alive(false);
    response->prepare_payload();
    auto self = this->shared_from_this();
    http::async_write(stream_, *response, [self, response](beast::error_code, size_t) {
      beast::error_code ignored;
      beast::get_lowest_layer(self->stream_).socket().shutdown(tcp::socket::shutdown_both,
                                                               ignored);
    });
  }

  void Route(Request request) {
    if (request.method() != http::verb::get && request.method() != http::verb::post) {
      Reply(http::status::method_not_allowed, "method not allowed");
      return;
    }
    std::optional<RequestTarget> target =
        ParseTarget(absl::string_view(request.target().data(), request.target().size()));
    if (!target.has_value()) {
      Reply(http::status::not_found, "404 page not found");
      return;
    }
    std::optional<StreamingRequest> pending = cache_->Consume(target->token);
    const std::string& verb = target->verb;
    bool kind_matches =
        pending.has_value() &&
        ((verb == "exec" && std::holds_alternative<ExecRequest>(*pending)) ||
         (verb == "attach" && std::holds_alternative<AttachRequest>(*pending)) ||
         (verb == "portforward" && std::holds_alternative<PortForwardRequest>(*pending)));
    if (!kind_matches) {
      Reply(http::status::not_found, "not found: unknown, used or expired token");
      return;
    }
    // From here on the connection holds an upgraded slot, not an unauthenticated one.
    if (!ticket_->Upgrade()) {
      PV_LOG(kWarning) << "streaming: refusing a request: too many connections open";
      Reply(http::status::service_unavailable, "too many streaming connections");
      return;
    }
    if (beast::websocket::is_upgrade(request)) {
      ServeWebSocket(std::move(request), std::move(*pending), target->query);
    } else if (IsSpdyUpgrade(request)) {
      ServeSpdy(request, std::move(*pending));
    } else {
      Reply(http::status::bad_request, "Upgrade request required");
    }
  }

  void ServeSpdy(const Request& request, StreamingRequest pending) {
    const bool port_forward = std::holds_alternative<PortForwardRequest>(pending);
    const std::vector<std::string> supported =
        port_forward ? std::vector<std::string>{kPortForwardProtocolV1}
                     : std::vector<std::string>{kStreamProtocolV4, kStreamProtocolV3,
                                                kStreamProtocolV2, kStreamProtocolV1};
    std::vector<std::string> client = HeaderList(request, "X-Stream-Protocol-Version");
    if (client.empty()) {
      Reply(http::status::bad_request,
            "unable to upgrade: X-Stream-Protocol-Version is required");
      return;
    }
    std::string protocol = Negotiate(client, supported);
    if (protocol.empty()) {
      std::vector<std::pair<std::string, std::string>> headers;
      for (const std::string& p : supported) {
        headers.emplace_back("X-Accepted-Stream-Protocol-Versions", p);
      }
      Reply(http::status::forbidden,
            absl::StrCat("unable to upgrade: unable to negotiate protocol: client supports [",
                         absl::StrJoin(client, " "), "], server accepts [",
                         absl::StrJoin(supported, " "), "]"),
            std::move(headers));
      return;
    }
    auto response = std::make_shared<http::response<http::empty_body>>(
        http::status::switching_protocols, 11);
    response->set(http::field::connection, "Upgrade");
    response->set(http::field::upgrade, "SPDY/3.1");
    response->set("X-Stream-Protocol-Version", protocol);
    auto self = this->shared_from_this();
    http::async_write(
        stream_, *response,
        [self, response, protocol, pending = std::move(pending)](beast::error_code ec,
                                                                 size_t) mutable {
          if (ec) return;
          self->StartSpdy(std::move(pending), protocol);
        });
  }

  void StartSpdy(StreamingRequest pending, const std::string& protocol) {
    beast::get_lowest_layer(stream_).expires_never();
    std::string early = beast::buffers_to_string(buffer_.data());
    auto connection = std::make_shared<SpdyConnection>(
        std::make_unique<AsioByteStream<Stream>>(std::move(stream_)), std::move(early),
        SpdyLimitsOf(*context_));
    connection->Attach(std::move(slot_));  // counted as long as the connection lives
    if (auto* pf = std::get_if<PortForwardRequest>(&pending)) {
      ServePortForwardOverSpdy(connection, std::move(*pf), context_);
    } else if (auto* exec = std::get_if<ExecRequest>(&pending)) {
      ServeRemoteCommandOverSpdy(connection, std::move(*exec), protocol, context_);
    } else {
      ServeRemoteCommandOverSpdy(connection, std::get<AttachRequest>(std::move(pending)),
                                 protocol, context_);
    }
  }

  void ServeWebSocket(Request request, StreamingRequest pending, absl::string_view query);

  void ServeSpdyTunnel(const Request& request, PortForwardRequest pf) {
    auto transport = std::make_unique<WebSocketByteStream<Stream>>(std::move(stream_));
    auto& ws = transport->ws();
    ws.set_option(beast::websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws.set_option(beast::websocket::stream_base::decorator([](beast::websocket::response_type& r) {
      r.set(http::field::sec_websocket_protocol, kSpdyTunnelPortForward);
    }));
    ws.read_message_max(kMaxWebSocketMessage);
    auto holder = std::make_shared<std::unique_ptr<WebSocketByteStream<Stream>>>(std::move(transport));
    ServerContext* context = context_;
    std::shared_ptr<void> slot = std::move(slot_);
    (*holder)->ws().async_accept(
        request, [holder, pf = std::move(pf), context, slot](beast::error_code ec) mutable {
          if (ec) return;
          auto connection =
              std::make_shared<SpdyConnection>(std::move(*holder), "", SpdyLimitsOf(*context));
          connection->Attach(std::move(slot));
          ServePortForwardOverSpdy(connection, std::move(pf), context);
        });
  }

  Stream stream_;
  ServerContext* const context_;
  RequestCache* const cache_;
  std::shared_ptr<ConnectionAdmission::Ticket> ticket_;
  std::shared_ptr<void> slot_;  // the ticket, handed on to the upgraded connection
  const absl::Duration header_timeout_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
};

template <class Stream>
void HttpSession<Stream>::ServeWebSocket(Request request, StreamingRequest pending,
                                         absl::string_view query) {
  const bool port_forward = std::holds_alternative<PortForwardRequest>(pending);
  std::vector<std::string> client = HeaderList(request, "Sec-WebSocket-Protocol");
  std::vector<std::string> supported = {kWsProtocolV4, kWsProtocolV4Base64, kWsProtocolV1,
                                        kWsProtocolV1Base64};
  supported.insert(supported.begin(), port_forward ? kSpdyTunnelPortForward : kWsProtocolV5);
  std::string protocol;
  if (!client.empty()) {
    protocol = Negotiate(client, supported);
    if (protocol.empty()) {
      Reply(http::status::bad_request,
            absl::StrCat("requested protocol(s) are not supported: [", absl::StrJoin(client, " "),
                         "]; supports [", absl::StrJoin(supported, " "), "]"));
      return;
    }
  }
  const bool base64 = absl::StrContains(protocol, "base64.");
  const bool v5 = protocol == kWsProtocolV5;
  beast::get_lowest_layer(stream_).expires_never();
  if (protocol == kSpdyTunnelPortForward) {
    ServeSpdyTunnel(request, std::get<PortForwardRequest>(std::move(pending)));
    return;
  }
  if (port_forward) {
    PortForwardRequest pf = std::get<PortForwardRequest>(std::move(pending));
    if (pf.ports.empty()) {
      absl::StatusOr<std::vector<int32_t>> ports =
          QueryPorts(query, std::min(context_->max_ports_per_request, kMaxWebSocketPorts));
      if (!ports.ok()) {
        Reply(http::status::bad_request, std::string(ports.status().message()));
        return;
      }
      pf.ports = *std::move(ports);
    }
    if (pf.ports.empty()) {
      Reply(http::status::bad_request, "query parameter \"port\" is required");
      return;
    }
    // Two channels per port, numbered in one byte (in base64, an ASCII digit from '0'): more
    // would wrap onto the first ports' channels.
    const size_t max_ports = base64 ? (256 - '0') / 2 : kMaxWebSocketPorts;
    if (pf.ports.size() > max_ports) {
      Reply(http::status::bad_request,
            absl::StrCat(pf.ports.size(), " ports cannot be numbered in this protocol (at most ",
                         max_ports, ")"));
      return;
    }
    std::vector<bool> readable;
    for (size_t i = 0; i < pf.ports.size(); ++i) {
      readable.push_back(true);   // data
      readable.push_back(false);  // error
    }
    auto ws = std::make_shared<WebSocketConnection<Stream>>(std::move(stream_), base64, false,
                                                            readable, context_->idle_timeout);
    ws->set_max_buffered_input(context_->max_buffered_input);
    ServerContext* context = context_;
    std::shared_ptr<void> slot = std::move(slot_);
    uint64_t id = context->tracker.AddConnection([weak = std::weak_ptr(ws)] {
      if (auto c = weak.lock()) c->Abort();
    });
    ws->SetCloseCallback([context, id, slot] { context->tracker.RemoveConnection(id); });
    ws->Accept(request, protocol, [ws, pf, context] {
      // Each channel starts with its port, little endian.
      for (size_t i = 0; i < pf.ports.size(); ++i) {
        char port[2] = {static_cast<char>(pf.ports[i] & 0xff),
                        static_cast<char>((pf.ports[i] >> 8) & 0xff)};
        ws->channel(2 * i)->Write(absl::string_view(port, 2));
        ws->channel(2 * i + 1)->Write(absl::string_view(port, 2));
      }
      bool spawned = context->tracker.Spawn([ws, pf, context] {
        std::vector<std::thread> forwards;
        for (size_t i = 0; i < pf.ports.size(); ++i) {
          forwards.emplace_back([&, i] {
            RunPortForward(*context->runtime, pf.sandbox_id, pf.ports[i], *ws->channel(2 * i),
                           ws->channel(2 * i + 1), ws->done());
          });
        }
        for (std::thread& t : forwards) t.join();
        ws->Finish();
      });
      if (!spawned) ws->Abort();
    });
    if (id == 0) ws->Abort();
    return;
  }
  bool tty = false, in = false, out = false, err = false;
  std::visit(
      [&](const auto& r) {
        if constexpr (!std::is_same_v<std::decay_t<decltype(r)>, PortForwardRequest>) {
          tty = r.tty, in = r.in, out = r.out, err = r.err;
        }
      },
      pending);
  // 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize.
  auto ws = std::make_shared<WebSocketConnection<Stream>>(
      std::move(stream_), base64, v5, std::vector<bool>{in, false, false, false, tty},
      context_->idle_timeout);
  ws->set_max_buffered_input(context_->max_buffered_input);
  ServerContext* context = context_;
  std::shared_ptr<void> slot = std::move(slot_);
  uint64_t id = context->tracker.AddConnection([weak = std::weak_ptr(ws)] {
    if (auto c = weak.lock()) c->Abort();
  });
  ws->SetCloseCallback([context, id, slot] { context->tracker.RemoveConnection(id); });
  StatusFormat format =
      (protocol == kWsProtocolV5 || protocol == kWsProtocolV4 || protocol == kWsProtocolV4Base64)
          ? StatusFormat::kJson
          : StatusFormat::kText;
  ws->Accept(request, protocol, [ws, pending, context, format, tty, in, out, err] {
    // An empty message on the lowest writable channel tells the client the session is set up.
    ws->channel(out ? 1 : err ? 2 : 3)->Write("");
    bool spawned = context->tracker.Spawn([ws, pending, context, format, tty, in, out, err] {
      RemoteCommandChannels channels;
      channels.in = in ? ws->channel(0) : nullptr;
      channels.out = out ? ws->channel(1) : nullptr;
      channels.err = err ? ws->channel(2) : nullptr;
      channels.error = ws->channel(3);
      channels.resize = tty ? ws->channel(4) : nullptr;
      if (const auto* exec = std::get_if<ExecRequest>(&pending)) {
        RunExec(*context->runtime, *exec, channels, format, ws->done());
      } else {
        RunAttach(*context->runtime, std::get<AttachRequest>(pending), channels, format,
                  ws->done());
      }
      ws->Finish();
    });
    if (!spawned) ws->Abort();
  });
  if (id == 0) ws->Abort();
}

class StreamingServerImpl : public StreamingServer {
 public:
  StreamingServerImpl(const StreamingServerOptions& options, StreamingRuntime* runtime)
      : options_(options),
        context_(options.max_sessions),
        cache_(options.token_ttl, options.max_pending_requests),
        admission_(ConnectionAdmission::Create(options.max_connections,
                                               options.max_unauthenticated_connections,
                                               options.max_unauthenticated_per_source)),
        acceptor_(io_),
        ssl_(asio::ssl::context::tls_server) {
    context_.runtime = runtime;
    context_.stream_creation_timeout = options.stream_creation_timeout;
    context_.idle_timeout = options.idle_timeout;
    context_.max_forwards_per_connection = options.max_forwards_per_connection;
    context_.max_ports_per_request = options.max_ports_per_request;
    context_.max_buffered_input = options.max_buffered_input;
    context_.max_queued_control_frames = options.max_queued_control_frames;
  }

  ~StreamingServerImpl() override { Stop(); }

  absl::Status Init() {
    tls_ = !options_.tls_cert_file.empty() || !options_.tls_key_file.empty();
    if (tls_) {
      if (options_.tls_cert_file.empty() || options_.tls_key_file.empty()) {
        return absl::InvalidArgumentError(
            "streaming: tls_cert_file and tls_key_file must be set together");
      }
      boost::system::error_code ec;
      ssl_.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                       asio::ssl::context::no_tlsv1_1);
      ssl_.use_certificate_chain_file(options_.tls_cert_file, ec);
      if (ec) {
        return absl::InvalidArgumentError(absl::StrCat(
            "streaming: load TLS certificate ", options_.tls_cert_file, ": ", ec.message()));
      }
      ssl_.use_private_key_file(options_.tls_key_file, asio::ssl::context::pem, ec);
      if (ec) {
        return absl::InvalidArgumentError(absl::StrCat("streaming: load TLS key ",
                                                       options_.tls_key_file, ": ", ec.message()));
      }
    }
    boost::system::error_code ec;
    asio::ip::address address = asio::ip::make_address(options_.address, ec);
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("streaming: address \"", options_.address, "\" is not an IP address"));
    }
    if (options_.port < 0 || options_.port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("streaming: bad port ", options_.port));
    }
    tcp::endpoint endpoint(address, static_cast<uint16_t>(options_.port));
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError(absl::StrCat("streaming: listen on ", options_.address, ":",
                                                 options_.port, ": ", ec.message()));
    }
    uint16_t port = acceptor_.local_endpoint().port();
    std::string host = options_.address;
    if (address.is_unspecified()) host = address.is_v6() ? "::1" : "127.0.0.1";
    if (absl::StrContains(host, ':')) host = absl::StrCat("[", host, "]");
    base_url_ = absl::StrCat(tls_ ? "https://" : "http://", host, ":", port);
    Accept();
    thread_ = std::thread([this] { io_.run(); });
    PV_LOG(kInfo) << "streaming server listening on " << options_.address << " port " << port
                  << (tls_ ? " (TLS)" : "") << "; URLs start with " << base_url_;
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> GetExecUrl(const ExecRequest& request) override {
    if (request.container_id.empty()) return absl::InvalidArgumentError("container id is empty");
    if (request.cmd.empty()) return absl::InvalidArgumentError("cmd is empty");
    if (absl::Status s = CheckStreams(request.tty, request.in, request.out, request.err); !s.ok()) {
      return s;
    }
    return Register("exec", request);
  }

  absl::StatusOr<std::string> GetAttachUrl(const AttachRequest& request) override {
    if (request.container_id.empty()) return absl::InvalidArgumentError("container id is empty");
    if (absl::Status s = CheckStreams(request.tty, request.in, request.out, request.err); !s.ok()) {
      return s;
    }
    return Register("attach", request);
  }

  absl::StatusOr<std::string> GetPortForwardUrl(const PortForwardRequest& request) override {
    if (request.sandbox_id.empty()) return absl::InvalidArgumentError("pod sandbox id is empty");
    if (absl::Status s = CheckPortForward(request); !s.ok()) return s;
    return Register("portforward", request);
  }

  absl::Status CheckPortForward(const PortForwardRequest& request) const override {
    const size_t max_ports = std::min(options_.max_ports_per_request, kMaxWebSocketPorts);
    if (request.ports.size() > max_ports) {
      return absl::InvalidArgumentError(absl::StrCat(request.ports.size(),
                                                     " ports in one port-forward request; at most ",
                                                     max_ports, " (streaming.max_ports_per_request)"));
    }
    for (int32_t port : request.ports) {
      if (port <= 0 || port > 65535) {
        return absl::InvalidArgumentError(absl::StrCat("invalid port ", port));
      }
    }
    return absl::OkStatus();
  }

  std::string BaseUrl() const override { return base_url_; }

  void Stop() override {
    if (stopped_.exchange(true)) return;
    asio::post(io_, [this] {
      boost::system::error_code ignored;
      acceptor_.close(ignored);
    });
    if (!context_.tracker.StopAll(kStopTimeout)) {
      PV_LOG(kError) << "streaming: sessions still running " << absl::FormatDuration(kStopTimeout)
                     << " after stop; a runtime ignores its done signal";
    }
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  static absl::Status CheckStreams(bool tty, bool in, bool out, bool err) {
    if (tty && err) return absl::InvalidArgumentError("tty and stderr cannot both be true");
    if (!in && !out && !err) {
      return absl::InvalidArgumentError("one of stdin, stdout, or stderr must be set");
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> Register(absl::string_view kind, StreamingRequest request) {
    absl::StatusOr<std::string> token = cache_.Insert(std::move(request));
    if (!token.ok()) return token.status();
    return absl::StrCat(base_url_, "/", kind, "/", *token);
  }

  void Accept() {
    acceptor_.async_accept(asio::make_strand(io_), [this](boost::system::error_code ec,
                                                          tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
      if (!ec) OnAccepted(std::move(socket));
      Accept();
    });
  }

  void OnAccepted(tcp::socket socket) {
    boost::system::error_code ec;
    tcp::endpoint peer = socket.remote_endpoint(ec);
    if (ec) return;  // already gone
    // A ticket counts the connection for as long as anything holds it.
    std::shared_ptr<ConnectionAdmission::Ticket> ticket =
        admission_->Admit(peer.address().to_string());
    if (ticket == nullptr) {
      PV_LOG(kWarning) << "streaming: refusing a connection from " << peer.address().to_string()
                       << ": " << options_.max_unauthenticated_per_source
                       << " of its connections have not sent a valid request yet";
      socket.close(ec);
      return;
    }
    socket.set_option(tcp::no_delay(true), ec);
    if (tls_) {
      using TlsStream = beast::ssl_stream<beast::tcp_stream>;
      Serve(std::make_shared<HttpSession<TlsStream>>(
                TlsStream(beast::tcp_stream(std::move(socket)), ssl_), &context_, &cache_, ticket,
                options_.request_header_timeout),
            *ticket);
    } else {
      Serve(std::make_shared<HttpSession<beast::tcp_stream>>(
                beast::tcp_stream(std::move(socket)), &context_, &cache_, ticket,
                options_.request_header_timeout),
            *ticket);
    }
  }

  template <class Session>
  void Serve(const std::shared_ptr<Session>& session, ConnectionAdmission::Ticket& ticket) {
    // Eviction runs in Admit, on this I/O thread, as every session's socket work does.
    ticket.SetEvictor([weak = std::weak_ptr<Session>(session)] {
      if (auto s = weak.lock()) s->Evict();
    });
    session->Run();
  }

  const StreamingServerOptions options_;
  ServerContext context_;
  RequestCache cache_;
  const std::shared_ptr<ConnectionAdmission> admission_;
  asio::io_context io_{1};
  tcp::acceptor acceptor_;
  asio::ssl::context ssl_;
  bool tls_ = false;
  std::string base_url_;
  std::thread thread_;
  std::atomic<bool> stopped_{false};
};

}  // namespace

StreamingServerOptions StreamingServerOptions::FromConfig(const StreamingConfig& config) {
  StreamingServerOptions options;
  options.address = config.address.empty() ? "127.0.0.1" : config.address;
  options.port = static_cast<int>(config.port);
  options.tls_cert_file = config.tls_cert_file;
  options.tls_key_file = config.tls_key_file;
  options.request_header_timeout = absl::Seconds(config.request_header_timeout_seconds);
  options.stream_creation_timeout = absl::Seconds(config.stream_creation_timeout_seconds);
  options.idle_timeout = absl::Seconds(config.idle_timeout_seconds);
  options.max_connections = static_cast<size_t>(config.max_connections);
  options.max_unauthenticated_connections =
      static_cast<size_t>(config.max_unauthenticated_connections);
  options.max_unauthenticated_per_source =
      static_cast<size_t>(config.max_unauthenticated_per_source);
  options.max_sessions = static_cast<size_t>(config.max_sessions);
  options.max_ports_per_request = static_cast<size_t>(config.max_ports_per_request);
  options.max_forwards_per_connection = static_cast<size_t>(config.max_forwards_per_connection);
  options.max_buffered_input = static_cast<size_t>(config.max_buffered_input_kib) * 1024;
  options.max_queued_control_frames = static_cast<size_t>(config.max_queued_control_frames);
  return options;
}

absl::StatusOr<std::unique_ptr<StreamingServer>> StreamingServer::Start(
    const StreamingServerOptions& options, StreamingRuntime* runtime) {
  if (runtime == nullptr) return absl::InvalidArgumentError("streaming: no runtime");
  auto server = std::make_unique<StreamingServerImpl>(options, runtime);
  if (absl::Status s = server->Init(); !s.ok()) return s;
  return server;
}

}  // namespace podvisor::streaming
