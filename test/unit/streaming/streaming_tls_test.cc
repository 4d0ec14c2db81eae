// The streaming server over TLS: a certificate made for the test, a SPDY exec over it.
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstdio>
#include <utility>  // before Asio: Boost 1.74 needs std::exchange under C++20

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "streaming/spdy_framer.h"
#include "streaming/streaming_server.h"
#include "test/fakes/fake_streaming_runtime.h"
#include "test/support/temp_dir.h"
#include "test/unit/streaming/streaming_test_client.h"

namespace podvisor::streaming {
namespace {

namespace beast = boost::beast;
namespace spdy = streaming::spdy;

// Writes a self-signed certificate and its key as PEM files.
bool MakeCertificate(const std::string& cert_path, const std::string& key_path) {
  EVP_PKEY* key = EVP_RSA_gen(2048);
  X509* cert = X509_new();
  if (key == nullptr || cert == nullptr) return false;
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("127.0.0.1"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  bool ok = X509_sign(cert, key, EVP_sha256()) > 0;
  FILE* c = std::fopen(cert_path.c_str(), "w");
  FILE* k = std::fopen(key_path.c_str(), "w");
  ok = ok && c && k && PEM_write_X509(c, cert) && PEM_write_PrivateKey(k, key, nullptr, nullptr, 0,
                                                                       nullptr, nullptr);
  if (c) std::fclose(c);
  if (k) std::fclose(k);
  X509_free(cert);
  EVP_PKEY_free(key);
  return ok;
}

TEST(StreamingTlsTest, ExecOverHttps) {
  testing::TempDir dir;
  ASSERT_TRUE(MakeCertificate(dir.Join("cert.pem"), dir.Join("key.pem")));
  testing::FakeStreamingRuntime runtime;
  StreamingServerOptions options;
  options.tls_cert_file = dir.Join("cert.pem");
  options.tls_key_file = dir.Join("key.pem");
  absl::StatusOr<std::unique_ptr<StreamingServer>> server =
      StreamingServer::Start(options, &runtime);
  ASSERT_TRUE(server.ok()) << server.status();
  ExecRequest request{"c1", {"echo", "secret"}, false, false, true, false};
  std::string url = *(*server)->GetExecUrl(request);
  ASSERT_TRUE(absl::StartsWith(url, "https://127.0.0.1:")) << url;
  testing::ParsedUrl parsed = testing::ParseUrl(url);

  boost::asio::io_context io;
  boost::asio::ssl::context ssl(boost::asio::ssl::context::tls_client);
  ssl.set_verify_mode(boost::asio::ssl::verify_none);
  beast::ssl_stream<beast::tcp_stream> stream(io, ssl);
  beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(30));
  beast::get_lowest_layer(stream).connect(boost::asio::ip::tcp::endpoint(
      boost::asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(parsed.port)));
  stream.handshake(boost::asio::ssl::stream_base::client);
  beast::http::request<beast::http::empty_body> upgrade(beast::http::verb::post, parsed.path, 11);
  upgrade.set(beast::http::field::host, "127.0.0.1");
  upgrade.set(beast::http::field::connection, "Upgrade");
  upgrade.set(beast::http::field::upgrade, "SPDY/3.1");
  upgrade.set("X-Stream-Protocol-Version", "v4.channel.k8s.io");
  beast::http::write(stream, upgrade);
  beast::flat_buffer buffer;
  beast::http::response_parser<beast::http::empty_body> parser;
  parser.skip(true);  // a 101 has no body
  beast::http::read_header(stream, buffer, parser);
  ASSERT_EQ(parser.get().result_int(), 101u);

  spdy::HeaderCompressor compressor;
  std::string frames = spdy::EncodeSynStream(compressor, 1, 0, 0, {{"streamtype", "error"}});
  frames += spdy::EncodeSynStream(compressor, 3, 0, 0, {{"streamtype", "stdout"}});
  boost::asio::write(stream, boost::asio::buffer(frames));

  spdy::FrameDecoder decoder;
  decoder.Append(beast::buffers_to_string(buffer.data()));
  std::string out, error;
  bool error_done = false;
  while (!error_done) {
    absl::StatusOr<std::optional<spdy::Frame>> frame = decoder.Next();
    ASSERT_TRUE(frame.ok()) << frame.status();
    if (!frame->has_value()) {
      char chunk[4096];
      boost::system::error_code ec;
      size_t n = stream.read_some(boost::asio::buffer(chunk), ec);
      ASSERT_FALSE(ec) << ec.message();
      decoder.Append(std::string(chunk, n));
      continue;
    }
    if ((*frame)->type != spdy::FrameType::kData) continue;
    ((*frame)->stream_id == 1 ? error : out) += (*frame)->data;
    if ((*frame)->stream_id == 1 && ((*frame)->flags & spdy::kFlagFin)) error_done = true;
  }
  EXPECT_EQ(out, "secret\n");
  EXPECT_EQ(error, R"({"metadata":{},"status":"Success"})");
  beast::get_lowest_layer(stream).close();
  (*server)->Stop();
}

TEST(StreamingTlsTest, MismatchedTlsSettingsAreRefused) {
  testing::FakeStreamingRuntime runtime;
  StreamingServerOptions options;
  options.tls_cert_file = "/nonexistent/cert.pem";
  EXPECT_EQ(StreamingServer::Start(options, &runtime).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.tls_key_file = "/nonexistent/key.pem";
  EXPECT_EQ(StreamingServer::Start(options, &runtime).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(StreamingServerStartTest, RefusesBadAddresses) {
  testing::FakeStreamingRuntime runtime;
  StreamingServerOptions options;
  options.address = "not-an-ip";
  EXPECT_EQ(StreamingServer::Start(options, &runtime).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(StreamingServerStartTest, OptionsComeFromTheConfig) {
  StreamingConfig config;
  config.address = "0.0.0.0";
  config.port = 10010;
  config.tls_cert_file = "/c.pem";
  config.tls_key_file = "/k.pem";
  StreamingServerOptions options = StreamingServerOptions::FromConfig(config);
  EXPECT_EQ(options.address, "0.0.0.0");
  EXPECT_EQ(options.port, 10010);
  EXPECT_EQ(options.tls_cert_file, "/c.pem");
  EXPECT_EQ(options.tls_key_file, "/k.pem");
  EXPECT_EQ(options.token_ttl, absl::Minutes(1));
}

TEST(StreamingServerStartTest, ServesIpv6Loopback) {
  testing::FakeStreamingRuntime runtime;
  StreamingServerOptions options;
  options.address = "::1";
  absl::StatusOr<std::unique_ptr<StreamingServer>> server =
      StreamingServer::Start(options, &runtime);
  if (!server.ok()) GTEST_SKIP() << "no IPv6 loopback here: " << server.status();
  ExecRequest request{"c1", {"echo", "v6"}, false, false, true, false};
  std::string url = *(*server)->GetExecUrl(request);
  EXPECT_TRUE(absl::StartsWith(url, "http://[::1]:")) << url;
  testing::ExecOptions exec;
  exec.err = false;
  EXPECT_EQ(testing::SpdyExec(url, exec).out, "v6\n");
}

TEST(StreamingServerStartTest, WildcardAddressAdvertisesLoopback) {
  testing::FakeStreamingRuntime runtime;
  StreamingServerOptions options;
  options.address = "0.0.0.0";
  absl::StatusOr<std::unique_ptr<StreamingServer>> server =
      StreamingServer::Start(options, &runtime);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE(absl::StartsWith((*server)->BaseUrl(), "http://127.0.0.1:"));
}

}  // namespace
}  // namespace podvisor::streaming
