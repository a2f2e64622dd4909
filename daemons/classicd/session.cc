#include "daemons/classicd/session.h"

#include <algorithm>
#include <exception>
#include <string>

namespace classicd {

using core::Error;
using core::Fail;
using core::log::Level;

ClassicSession::ClassicSession(core::transport::Stream& stream, Peer peer, uint64_t id,
                               const SessionSettings& settings, const SpaceFactory& make_space,
                               ConnLog log)
    : stream_(stream), peer_(std::move(peer)), id_(id), log_(std::move(log)) {
  // The idle and whole-frame limits, when on, see every byte the connection reads.
  core::transport::Stream* limited = &stream_;
  if (settings.limits.idle_ms > 0 || settings.limits.frame_ms > 0) {
    limited = &limited_.emplace(stream_, settings.limits);
  }
  core::protocol::ConnectionOptions copts;
  copts.frame_limits.max_frame_size = settings.max_frame_size;
  // The limit holds after inflating too, or a zlib bomb still costs 64 MiB per connection.
  copts.frame_limits.max_decompressed_size = copts.frame_limits.max_frame_size;
  copts.requests_served = settings.requests_served;
  conn_.emplace(*limited, copts);
  space_ = make_space(*conn_, SpaceContext{id_, stream_.fd(), &peer_, &stream_});
  conn_->set_object_space(space_.get());
  // A hosted service's on_connect, which may call the client already (the classic root's does
  // nothing).
  if (auto st = space_->OnConnect(); !st) {
    conn_->Shutdown();
    end_ = Fail(Error::Protocol("on_connect failed: " + st.error().message()));
    refused_ = true;
  }
}

ClassicSession::~ClassicSession() {
  // The object space before the connection, the connection before its streams.
  space_.reset();
  conn_.reset();
  limited_.reset();
}

void ClassicSession::EndedBy(const std::exception& e) {
  conn_->Shutdown();
  end_ = Fail(Error::Protocol(std::string("internal error: ") + e.what()));
}

void ClassicSession::Serve() {
  if (refused_) return;
  // A C++ exception out of Serve() still releases the connection's objects (Finish()).
  try {
    end_ = conn_->Serve();
  } catch (const std::exception& e) {
    EndedBy(e);
  }
}

bool ClassicSession::ServeAvailable() {
  if (refused_) return false;
  try {
    auto r = conn_->ServeAvailable();
    if (r && !*r) return true;
    if (r) {
      end_ = **r;
    } else {
      end_ = Fail(r.error());
    }
  } catch (const std::exception& e) {
    EndedBy(e);
  }
  return false;
}

void ClassicSession::Finish() {
  if (end_) {
    log_(Level::debug, peer_, id_, "connection {} ended: {}", peer_.repr,
         core::protocol::EndReasonName(*end_));
  } else {
    log_(Level::err, peer_, id_, "connection {} closed: {}", peer_.repr, end_.error().ToString());
  }
  const size_t lent = space_->LocalObjectCount();
  space_->OnDisconnect();
  log_(Level::debug, peer_, id_, "connection {}: {} objects lent at disconnect, {} after release",
       peer_.repr, lent, space_->LocalObjectCount());
}

void ClassicSession::Welcome(const ConnLog& log, const Peer& peer, uint64_t id) {
  const std::string* text =
      peer.credentials ? &objspace::CredentialsText(*peer.credentials) : nullptr;
  if (text == nullptr || text->empty()) {
    log(Level::info, peer, id, "welcome {}", peer.repr);
    return;
  }
  // A repr is one line already; a user's __repr__ might not be.
  const bool plain = std::none_of(text->begin(), text->end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
  log(Level::info, peer, id, "welcome {} ({})", peer.repr,
      plain ? *text : core::log::Escape(*text));
}

void ClassicSession::Run(core::transport::Stream& stream, const Peer& peer, uint64_t id,
                         const SessionSettings& settings, const SpaceFactory& make_space,
                         const ConnLog& log) {
  Welcome(log, peer, id);
  try {  // the connection's top level: nothing below may take the daemon down
    ClassicSession session(stream, peer, id, settings, make_space, log);
    session.Serve();
    session.Finish();
  } catch (const std::exception& e) {
    log(Level::err, peer, id, "connection {} closed: internal error: {}", peer.repr, e.what());
  }
  log(Level::info, peer, id, "goodbye {}", peer.repr);
}

}  // namespace classicd
