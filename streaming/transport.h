#pragma once

// A byte stream over Boost.Asio, plain TCP or TLS, behind one interface (internal to streaming/)
// so that the SPDY connection code is written once.

#include <functional>
#include <utility>

#include <utility>  // before Asio: Boost 1.74 needs std::exchange under C++20

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>

namespace podvisor::streaming {

class ByteStream {
 public:
  using Handler = std::function<void(const boost::system::error_code&, size_t)>;
  virtual ~ByteStream() = default;
  virtual boost::asio::any_io_executor executor() = 0;
  // At most one read and one write may be outstanding; both run their handler on executor().
  virtual void AsyncReadSome(boost::asio::mutable_buffer buffer, Handler handler) = 0;
  virtual void AsyncWrite(boost::asio::const_buffer buffer, Handler handler) = 0;
  // Closes the underlying socket; pending operations complete with an error. Call on executor().
  virtual void Close() = 0;
};

// Wraps any Asio stream whose lowest layer is a TCP socket.
template <class Stream>
class AsioByteStream : public ByteStream {
 public:
  explicit AsioByteStream(Stream stream) : stream_(std::move(stream)) {}
  boost::asio::any_io_executor executor() override { return stream_.get_executor(); }
  void AsyncReadSome(boost::asio::mutable_buffer buffer, Handler handler) override {
    stream_.async_read_some(buffer, std::move(handler));
  }
  void AsyncWrite(boost::asio::const_buffer buffer, Handler handler) override {
    boost::asio::async_write(stream_, buffer, std::move(handler));
  }
  void Close() override {
    boost::system::error_code ignored;
    auto& socket = boost::beast::get_lowest_layer(stream_).socket();
    socket.shutdown(boost::asio::ip::tcp::socket::shutdown_both, ignored);
    socket.close(ignored);
  }

 private:
  Stream stream_;
};

}  // namespace podvisor::streaming
