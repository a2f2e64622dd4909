#pragma once

// TLS over an accepted socket (OpenSSL 3), for rpyc-classicd's --ssl-* switches (docs/protocol.md
// §2: after the handshake the stream carries the same frames).
//   TlsContext: certificate chain + key, TLS 1.2 minimum with forward-secret AEAD suites only
//   (ECDHE+AESGCM, ECDHE+CHACHA20, in the server's order), sessions resumable (a session id
//   context is set), and with a CA file client certificates required and verified, against a
//   CRL too when one is given. Immutable once made: a reload makes a new one (re-reading every
//   file), and connections keep the one they started with (shared_ptr).
//   TlsStream: the socket is non-blocking underneath, and every SSL_* call is made under one
//   lock, so the serving thread's reads and another thread's writes never use the SSL object at
//   the same time (OpenSSL forbids that); waits happen outside the lock with poll().

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "libcore/base/result.h"
#include "libcore/base/unique_fd.h"
#include "libcore/transport/stream.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace core::transport {

class TlsContext {
 public:
  // TLS 1.2's suites; TLS 1.3 keeps OpenSSL's (all AEAD, all forward-secret).
  static constexpr const char* kCiphers = "ECDHE+AESGCM:ECDHE+CHACHA20";
  // How near its end a server certificate draws a warning.
  static constexpr int kExpiryWarningDays = 30;

  // Errors are Error::Tls naming the file and OpenSSL's reason. `crlfile` (PEM, may hold several
  // CRLs) needs `cafile`: the client certificate is checked against it (the leaf only).
  static Result<std::shared_ptr<TlsContext>> Create(const std::string& certfile,
                                                    const std::string& keyfile,
                                                    const std::string& cafile,
                                                    const std::string& crlfile = "");
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;
  ~TlsContext();

  SSL_CTX* get() const { return ctx_; }
  bool verifies_clients() const { return verify_; }
  // What the operator should know, for the caller to log: a private key file readable by group
  // or others or owned by another user than this process's, a server certificate expired or
  // expiring within kExpiryWarningDays.
  const std::vector<std::string>& warnings() const { return warnings_; }
  // The security posture in words, for the start line: "TLS, client certificates required,
  // revocations checked (CRL)", "TLS, no client certificates", or (`ctx` null) "plain TCP,
  // no TLS, no client certificates".
  static std::string Posture(const TlsContext* ctx);

 private:
  TlsContext(SSL_CTX* ctx, bool verify) : ctx_(ctx), verify_(verify) {}
  SSL_CTX* ctx_;
  bool verify_;
  bool crl_ = false;
  std::vector<std::string> warnings_;
};

class TlsStream : public Stream {
 public:
  // Runs the server side of the handshake on `fd` (a connected socket), within `timeout_ms`.
  // A failure (timeout, protocol version, certificate) is an Error::Tls with the reason.
  static Result<std::unique_ptr<TlsStream>> Accept(UniqueFd fd, std::shared_ptr<TlsContext> context,
                                                   std::string peer_name, int timeout_ms);

  // The same handshake driven by the caller's event loop: Begin() sets it up on `fd` (made
  // non-blocking), then each Handshake() goes as far as it can without waiting and says what it
  // waits for; the stream is usable once it says kDone. A failure is an Error::Tls with the
  // reason; the caller ends a handshake that takes too long (HandshakeTimedOut()).
  enum class Progress { kDone, kWantRead, kWantWrite };
  static Result<std::unique_ptr<TlsStream>> Begin(UniqueFd fd, std::shared_ptr<TlsContext> context,
                                                  std::string peer_name);
  Result<Progress> Handshake();
  static Error HandshakeTimedOut(const std::string& peer_name, int timeout_ms);
  int fd() const override { return fd_.get(); }

  // Destroying a stream sends nothing to the peer (no close_notify) and leaves the socket as it
  // is but for closing this process's descriptor: a forked child that inherited the stream
  // carries the session on after its parent destroyed its copy.
  ~TlsStream() override;

  Result<size_t> Read(std::span<char> buf) override;
  Result<bool> WaitReadable(int timeout_ms) override;
  Status WriteAll(std::span<const std::string_view> parts) override;
  using Stream::WriteAll;
  void Shutdown() override;
  std::string PeerName() const override { return peer_name_; }

  // "TLSv1.3", and the client certificate's subject (empty when none): "/C=FR/CN=name", each
  // value in UTF-8 as the peer sent it, control characters included: escape it before logging.
  std::string version() const;
  std::string peer_subject() const;
  // The client certificate, DER-encoded (empty when none): what a caller decodes for the
  // application (rpyc-classicd: getpeercert()'s dict).
  std::string peer_certificate_der() const;
  // Whether the client certificate was verified (the context requests and checks one).
  bool verifies_peer() const;
  // The session's cipher as Python's ssl.SSLSocket.cipher() gives it: OpenSSL's name for it, the
  // protocol version that defined it, its secret bits; nullopt before the handshake.
  struct Cipher {
    std::string name;
    std::string protocol;
    int secret_bits = 0;
  };
  std::optional<Cipher> cipher() const;

 private:
  TlsStream(UniqueFd fd, std::shared_ptr<TlsContext> context, SSL* ssl, std::string peer_name);

  UniqueFd fd_;
  std::shared_ptr<TlsContext> context_;
  SSL* ssl_;
  std::string peer_name_;
  mutable std::mutex mu_;        // every SSL_* call on ssl_
  bool eof_ = false;             // guarded by mu_
  std::optional<Error> failed_;  // guarded by mu_: a failure WaitReadable() found
};

}  // namespace core::transport
