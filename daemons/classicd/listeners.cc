#include "daemons/classicd/listeners.h"

#include <sys/socket.h>
#include <unistd.h>

#include "libcore/server/unix_listener.h"
#include "libcore/transport/listener.h"
#include "libcore/transport/socket_stream.h"

namespace classicd {

using core::Fail;
using core::UniqueFd;

core::Status Listeners::ListenTcp(const std::string& host, uint16_t port, int backlog) {
  auto fd = core::transport::ListenTcp(host, port, backlog);
  if (!fd) return Fail(fd.error());
  Add(std::move(*fd), "");
  const auto local = LocalAddress(list_.size() - 1);
  list_.back().what = "[" + local.host() + "]:" + std::to_string(local.port());
  return {};
}

core::Status Listeners::ListenUnix(const std::string& path, mode_t mode, int backlog) {
  auto fd = core::server::ListenUnix(path, mode, backlog);
  if (!fd) return Fail(fd.error());
  unix_path_ = path;
  Add(std::move(*fd), "unix:" + path);
  return {};
}

void Listeners::Adopt(UniqueFd fd, std::string what) { Add(std::move(fd), std::move(what)); }

void Listeners::Add(UniqueFd fd, std::string what) {
  Listener l;
  l.fd = std::move(fd);
  l.what = std::move(what);
  l.nodelay = core::transport::SetNoDelay(l.fd.get());
  list_.push_back(std::move(l));
}

std::vector<int> Listeners::fds() const {
  std::vector<int> out;
  for (const auto& l : list_) out.push_back(l.fd.get());
  return out;
}

core::transport::SocketAddress Listeners::LocalAddress(size_t i) const {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  getsockname(list_[i].fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
  return {reinterpret_cast<sockaddr*>(&ss), len};
}

uint16_t Listeners::TcpPort() const {
  uint16_t port = 0;
  for (size_t i = 0; i < list_.size(); ++i) {
    if (list_[i].what.rfind("unix:", 0) != 0) port = LocalAddress(i).port();
  }
  return port;
}

std::vector<core::transport::BoundSocket> Listeners::Bound() const {
  std::vector<core::transport::BoundSocket> out;
  for (const auto& l : list_) out.push_back({l.fd.get(), l.what});
  return out;
}

void Listeners::Close() {
  for (auto& l : list_) l.fd.Reset();
  if (!unix_path_.empty()) ::unlink(unix_path_.c_str());
  unix_path_.clear();
}

void Listeners::CloseInChild() {
  for (auto& l : list_) l.fd.Reset();
}

}  // namespace classicd
