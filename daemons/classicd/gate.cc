// The connection gate of ClassicService (service.h): what a connection passes before it is
// served. In order: the allow-lists on the accepted socket (Allowed), admission's limits
// (Admit, Release), the end of a TLS handshake (HandshakeEnded), then the authenticator or the
// credentials of a client certificate or of SO_PEERCRED (Authenticate). A TLS handshake and an
// authenticator both count against max_handshakes, in one slot from Admit until the last of them
// ends (or the authenticator's deadline passes). Every line logged before
// authentication is rate-limited (PreAuthLine).

#include <chrono>

#include "daemons/classicd/service.h"
#include "libcore/transport/socket_stream.h"

namespace classicd {

using core::Error;
using core::Fail;
using core::log::Level;

core::Status ClassicService::LoadAuthentication() {
  if (!o_.authenticator.empty()) {
    auto a = objspace::LoadAuthenticator(*interpreter_, o_.authenticator);
    if (!a) return Fail(a.error());
    authenticator_ = std::move(*a);
    log_.Info("authenticator {}: each connection is authenticated before it is served",
              o_.authenticator);
  }
  if (tls_ && tls_->verifies_clients()) {
    // rpyc's SSLAuthenticator: the client certificate becomes the credentials.
    if (auto st = objspace::PrepareCertificates(*interpreter_); st) {
      certificate_credentials_ = true;
    } else {
      log_.Warn("client certificates will not be credentials: {}", st.error().message());
    }
  }
  return {};
}

bool ClassicService::Allowed(int fd, const sockaddr_storage& ss, Peer& peer, uint64_t id) {
  if (ss.ss_family == AF_UNIX) {
    if (!allow_.restricts_unix()) return true;
    const PeerCred cred = ReadPeerCred(fd);
    if (cred.valid) peer.unix_cred = Peer::UnixCred{cred.uid, cred.gid, cred.pid};
    if (allow_.AllowsUnix(cred)) return true;
    if (PreAuthLine(PreAuth::kRefused)) {
      if (cred.valid) {
        conn_log_(Level::warn, peer, id,
                  "refused {} (uid {}, gid {}, pid {}): not in unix_allow_users or "
                  "unix_allow_groups",
                  peer.repr, cred.uid, cred.gid, cred.pid);
      } else {
        conn_log_(Level::warn, peer, id, "refused {}: no peer credentials (SO_PEERCRED)",
                  peer.repr);
      }
    }
    return false;
  }
  if (allow_.AllowsAddress(ss)) return true;
  if (PreAuthLine(PreAuth::kRefused)) {
    conn_log_(Level::warn, peer, id, "refused {}: not in allow_from", peer.repr);
  }
  return false;
}

bool ClassicService::Admit(Peer& peer) {
  const auto d = admission_.Admit(peer.host, tls() != nullptr || authenticator_ != nullptr);
  peer.handshake = d.handshake;
  switch (d.verdict) {
    case Admission::Verdict::kAdmitted:
      if (trim_) trim_->Opened(d.open + 1);
      return true;
    case Admission::Verdict::kTooMany:
      if (PreAuthLine(PreAuth::kRefused)) {
        log_.Warn("refused {}: {} connections open (max_connections)", peer.repr, d.open);
      }
      return false;
    case Admission::Verdict::kTooManyFromPeer:
      if (PreAuthLine(PreAuth::kRefused)) {
        log_.Warn("refused {}: {} connections open from {} (max_connections_per_peer)", peer.repr,
                  d.open, Admission::PeerKey(peer.host));
      }
      return false;
    case Admission::Verdict::kTooManyHandshakes:
      if (PreAuthLine(PreAuth::kRefused)) {
        log_.Warn("refused {}: {} connections in their handshake (max_handshakes)", peer.repr,
                  d.open);
      }
      return false;
  }
  return false;
}

bool ClassicService::PreAuthLine(PreAuth kind) {
  static constexpr const char* kWhat[] = {"accepted", "handshake failed", "refused"};
  const auto k = static_cast<size_t>(kind);
  const double now =
      std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  uint64_t suppressed = 0;
  if (!pre_auth_lines_[k].Allow(now, &suppressed)) return false;
  if (suppressed > 0) {
    log_.Warn(
        "{} more '{}' line(s) about connections not yet authenticated were suppressed (more "
        "than {} in {} s)",
        suppressed, kWhat[k], kPreAuthBurst, kPreAuthInterval);
  }
  return true;
}

void ClassicService::Release(const std::string& host) {
  const int64_t open = admission_.Release(host);
  if (trim_) trim_->Closed(open);
}

void ClassicService::HandshakeEnded(const Peer& peer, uint64_t id,
                                    const core::Result<core::transport::TlsStream*>& result) {
  // With an authenticator the slot is held until it has run (Authenticate).
  if (peer.handshake != 0 && (!result || !authenticator_))
    admission_.HandshakeEnded(peer.handshake);
  if (!result) {
    // A peer that leaves during the handshake ended its connection; nothing failed here.
    if (result.error().code() == Error::Code::kClosed) {
      conn_log_(Level::debug, peer, id, "{}", result.error().message());
    } else if (PreAuthLine(PreAuth::kHandshakeFailed)) {
      conn_log_(Level::err, peer, id, "{}", result.error().message());
    }
    return;
  }
  // The subject is the peer's text (a CN may hold a line break): escaped like every string a
  // peer supplies.
  const std::string subject = (*result)->peer_subject();
  conn_log_(Level::debug, peer, id, "TLS {} with {}{}", (*result)->version(), peer.repr,
            subject.empty() ? "" : " (client certificate " + core::log::Escape(subject) + ")");
}

bool ClassicService::Authenticate(core::transport::Stream& stream, Peer& peer, uint64_t id) {
  // Credentials made here, or why they could not be (the connection is refused).
  auto credit = [&](core::Result<objspace::CredentialsPtr> made) {
    if (!made) {
      conn_log_(Level::err, peer, id, "{}: {}; rejecting connection", peer.repr,
                made.error().message());
      return false;
    }
    peer.credentials = std::move(*made);
    return true;
  };
  if (authenticator_) {
    const int timeout_ms = static_cast<int>(limits_.tls_handshake_timeout.load() * 1000);
    if (peer.handshake != 0) {
      admission_.HandshakeDeadline(
          peer.handshake, std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms));
    }
    const bool ok = RunAuthenticator(stream, peer, id, timeout_ms);
    if (peer.handshake != 0) admission_.HandshakeEnded(peer.handshake);
    peer.handshake = 0;
    return ok;
  }
  if (certificate_credentials_) {
    auto* tls = dynamic_cast<core::transport::TlsStream*>(&stream);
    const std::string der = tls != nullptr ? tls->peer_certificate_der() : std::string();
    return der.empty() || credit(objspace::CertificateCredentials(*interpreter_, der));
  }
  if (peer.unix_cred) {
    return credit(objspace::PeerCredentials(*interpreter_, peer.unix_cred->uid, peer.unix_cred->gid,
                                            peer.unix_cred->pid));
  }
  return true;
}

bool ClassicService::RunAuthenticator(core::transport::Stream& stream, Peer& peer, uint64_t id,
                                      int timeout_ms) {
  auto* socket = dynamic_cast<core::transport::SocketStream*>(&stream);
  if (socket == nullptr) {
    conn_log_(Level::err, peer, id, "{} cannot be authenticated: not a socket", peer.repr);
    return false;
  }
  const auto outcome = objspace::Authenticate(*authenticator_, socket->fd(), timeout_ms);
  switch (outcome.kind) {
    case objspace::AuthOutcome::Kind::kAccepted:
      conn_log_(Level::info, peer, id, "{} authenticated successfully", peer.repr);
      peer.credentials = outcome.credentials;
      return true;
    case objspace::AuthOutcome::Kind::kRefused:
      if (PreAuthLine(PreAuth::kRefused)) {
        conn_log_(Level::warn, peer, id, "{} failed to authenticate... rejecting connection: {}",
                  peer.repr, core::log::Escape(outcome.reason));
      }
      return false;
    case objspace::AuthOutcome::Kind::kFailed:
      if (PreAuthLine(PreAuth::kRefused)) {
        conn_log_(Level::err, peer, id,
                  "{} failed to authenticate... rejecting connection: the authenticator "
                  "failed: {}",
                  peer.repr, outcome.reason);
      }
      return false;
  }
  return false;
}

}  // namespace classicd
