#include "libcore/transport/tls_stream.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libcore/transport/socket_stream.h"

namespace core::transport {
namespace {

// One queued OpenSSL error as words: a system error (OpenSSL 3 packs errno into the code, and
// has no reason string for it) as strerror says it.
std::string ErrorText(unsigned long e) {
  if (ERR_SYSTEM_ERROR(e)) return ErrnoText(ERR_GET_REASON(e));
  const char* reason = ERR_reason_error_string(e);
  return reason != nullptr ? reason : "error " + std::to_string(e);
}

// Errors as one line, each said once.
std::string JoinErrors(const std::vector<unsigned long>& errors) {
  std::vector<std::string> seen;
  for (const unsigned long e : errors) {
    std::string text = ErrorText(e);
    if (std::find(seen.begin(), seen.end(), text) == seen.end()) seen.push_back(std::move(text));
  }
  std::string out;
  for (const auto& t : seen) out += (out.empty() ? "" : "; ") + t;
  return out.empty() ? "unknown TLS error" : out;
}

// OpenSSL's queued errors as one line ("certificate verify failed; ..."), each said once,
// clearing the queue.
std::string OpenSslErrors() {
  std::vector<unsigned long> errors;
  while (const unsigned long e = ERR_get_error()) errors.push_back(e);
  return JoinErrors(errors);
}

// Why a PEM file could not be used, in an operator's words: what open(2) says about the file
// ("No such file or directory", "Permission denied"), "not a PEM <what>" when it holds no PEM
// block at all, "no PEM <what> in it" when OpenSSL found none of that kind (a certificate given
// as the key), else OpenSSL's reasons.
std::string PemFileProblem(const std::string& path, const char* what) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int saved = errno;
    ERR_clear_error();
    return ErrnoText(saved);
  }
  std::string head(64 * 1024, '\0');
  const ssize_t n = ::read(fd, head.data(), head.size());
  ::close(fd);
  head.resize(n > 0 ? static_cast<size_t>(n) : 0);
  std::vector<unsigned long> errors;
  while (const unsigned long e = ERR_get_error()) errors.push_back(e);
  if (head.find("-----BEGIN ") == std::string::npos) return std::string("not a PEM ") + what;
  for (const unsigned long e : errors) {
    const bool no_block = ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
    const bool undecodable =
        ERR_GET_LIB(e) == ERR_LIB_OSSL_DECODER && ERR_GET_REASON(e) == ERR_R_UNSUPPORTED;
    if (no_block || undecodable) return std::string("no PEM ") + what + " in it";
  }
  return JoinErrors(errors);
}

using Clock = std::chrono::steady_clock;

int MsLeft(Clock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::max<int64_t>(left, 0));
}

// A private key others can read is no secret. (Authorised clients run code as the daemon's
// user and can read it anyway: man rpyc-classicd(8), SECURITY.)
std::vector<std::string> KeyFileWarnings(const std::string& keyfile) {
  std::vector<std::string> out;
  struct stat st {};
  if (::stat(keyfile.c_str(), &st) != 0) return out;  // it was just read: a race, nothing to say
  if ((st.st_mode & (S_IRGRP | S_IROTH)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    out.push_back("private key file " + keyfile + " is readable by " +
                  ((st.st_mode & S_IROTH) != 0 ? "others" : "its group") + " (mode " + mode +
                  "); make it readable by the daemon's user only (chmod 0600)");
  }
  if (st.st_uid != ::geteuid()) {
    out.push_back("private key file " + keyfile + " is owned by uid " + std::to_string(st.st_uid) +
                  ", not by the daemon's user (uid " + std::to_string(::geteuid()) + ")");
  }
  return out;
}

// "" when the certificate is valid for more than kExpiryWarningDays.
std::string ExpiryWarning(X509* cert, const std::string& certfile) {
  if (cert == nullptr) return "";
  const ASN1_TIME* not_after = X509_get0_notAfter(cert);
  int days = 0;
  int seconds = 0;
  if (ASN1_TIME_diff(&days, &seconds, nullptr, not_after) != 1) return "";
  std::string when;
  if (BIO* bio = BIO_new(BIO_s_mem())) {
    if (ASN1_TIME_print(bio, not_after) == 1) {
      char* data = nullptr;
      const long n = BIO_get_mem_data(bio, &data);
      when.assign(data, static_cast<size_t>(n));
    }
    BIO_free(bio);
  }
  if (days < 0 || (days == 0 && seconds <= 0)) {
    return "server certificate " + certfile + " expired on " + when +
           ": clients that verify it will refuse the connection";
  }
  if (days < TlsContext::kExpiryWarningDays) {
    return "server certificate " + certfile + " expires on " + when + " (in " +
           (days == 1 ? std::string("1 day") : std::to_string(days) + " days") + ")";
  }
  return "";
}

}  // namespace

Result<std::shared_ptr<TlsContext>> TlsContext::Create(const std::string& certfile,
                                                       const std::string& keyfile,
                                                       const std::string& cafile,
                                                       const std::string& crlfile) {
  ERR_clear_error();
  SSL_CTX* raw = SSL_CTX_new(TLS_server_method());
  if (raw == nullptr) return Fail(Error::Tls("SSL_CTX_new: " + OpenSslErrors()));
  std::shared_ptr<TlsContext> ctx(new TlsContext(raw, !cafile.empty()));
  SSL_CTX_set_min_proto_version(raw, TLS1_2_VERSION);
  // SSL_OP_IGNORE_UNEXPECTED_EOF: a peer that closes its socket without close_notify (most rpyc
  // scripts exit so) ends the connection as a close does, as over plain TCP; our frames carry
  // their own lengths, so no truncation goes unseen.
  SSL_CTX_set_options(raw, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                               SSL_OP_IGNORE_UNEXPECTED_EOF);
  if (SSL_CTX_set_cipher_list(raw, kCiphers) != 1) {
    return Fail(Error::Tls(std::string("cipher list ") + kCiphers + ": " + OpenSslErrors()));
  }
  // Without it, a client resuming a session is refused when client certificates are verified
  // ("session id context uninitialized").
  static constexpr unsigned char kSessionContext[] = "rpyc-classicd";
  SSL_CTX_set_session_id_context(raw, kSessionContext, sizeof kSessionContext - 1);
  if (SSL_CTX_use_certificate_chain_file(raw, certfile.c_str()) != 1) {
    return Fail(Error::Tls("certificate file " + certfile + ": " +
                           PemFileProblem(certfile, "certificate")));
  }
  if (SSL_CTX_use_PrivateKey_file(raw, keyfile.c_str(), SSL_FILETYPE_PEM) != 1) {
    return Fail(Error::Tls("key file " + keyfile + ": " + PemFileProblem(keyfile, "private key")));
  }
  if (SSL_CTX_check_private_key(raw) != 1) {
    return Fail(Error::Tls("key file " + keyfile + " does not match certificate " + certfile +
                           ": " + OpenSslErrors()));
  }
  if (!cafile.empty()) {
    if (SSL_CTX_load_verify_locations(raw, cafile.c_str(), nullptr) != 1) {
      return Fail(Error::Tls("CA file " + cafile + ": " + PemFileProblem(cafile, "certificate")));
    }
    SSL_CTX_set_verify(raw, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  } else {
    SSL_CTX_set_verify(raw, SSL_VERIFY_NONE, nullptr);
  }
  if (!crlfile.empty()) {
    if (cafile.empty()) return Fail(Error::Tls("CRL file " + crlfile + " needs a CA file"));
    X509_STORE* store = SSL_CTX_get_cert_store(raw);
    X509_LOOKUP* lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file());
    if (lookup == nullptr || X509_load_crl_file(lookup, crlfile.c_str(), X509_FILETYPE_PEM) <= 0) {
      return Fail(Error::Tls("CRL file " + crlfile + ": " + PemFileProblem(crlfile, "CRL")));
    }
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    ctx->crl_ = true;
  }
  ctx->warnings_ = KeyFileWarnings(keyfile);
  if (auto w = ExpiryWarning(SSL_CTX_get0_certificate(raw), certfile); !w.empty()) {
    ctx->warnings_.push_back(std::move(w));
  }
  return ctx;
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

std::string TlsContext::Posture(const TlsContext* ctx) {
  if (ctx == nullptr) return "plain TCP, no TLS, no client certificates";
  if (!ctx->verify_) return "TLS, no client certificates";
  return std::string("TLS, client certificates required") +
         (ctx->crl_ ? ", revocations checked (CRL)" : "");
}

TlsStream::TlsStream(UniqueFd fd, std::shared_ptr<TlsContext> context, SSL* ssl,
                     std::string peer_name)
    : fd_(std::move(fd)),
      context_(std::move(context)),
      ssl_(ssl),
      peer_name_(std::move(peer_name)) {}

TlsStream::~TlsStream() { SSL_free(ssl_); }

Result<std::unique_ptr<TlsStream>> TlsStream::Begin(UniqueFd fd,
                                                    std::shared_ptr<TlsContext> context,
                                                    std::string peer_name) {
  const int flags = fcntl(fd.get(), F_GETFL);
  fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK);
  SSL* ssl = SSL_new(context->get());
  if (ssl == nullptr) return Fail(Error::Tls("SSL_new: " + OpenSslErrors()));
  SSL_set_fd(ssl, fd.get());
  return std::unique_ptr<TlsStream>(
      new TlsStream(std::move(fd), std::move(context), ssl, std::move(peer_name)));
}

Result<TlsStream::Progress> TlsStream::Handshake() {
  ERR_clear_error();
  const int rc = SSL_accept(ssl_);
  if (rc == 1) return Progress::kDone;
  const int err = SSL_get_error(ssl_, rc);
  if (err == SSL_ERROR_WANT_READ) return Progress::kWantRead;
  if (err == SSL_ERROR_WANT_WRITE) return Progress::kWantWrite;
  std::string why;
  if (err == SSL_ERROR_SYSCALL || err == SSL_ERROR_ZERO_RETURN) {
    if (ERR_peek_error() == 0) {  // EOF or ECONNRESET: the peer went away, nothing failed
      return Fail(
          Error::Closed("TLS handshake with " + peer_name_ + ": the peer closed the connection"));
    }
    why = OpenSslErrors();
  } else {
    why = OpenSslErrors();
  }
  const long verify = SSL_get_verify_result(ssl_);
  if (verify != X509_V_OK) {
    why += " (" + std::string(X509_verify_cert_error_string(verify)) + ")";
  }
  return Fail(Error::Tls("TLS handshake with " + peer_name_ + " failed: " + why));
}

Error TlsStream::HandshakeTimedOut(const std::string& peer_name, int timeout_ms) {
  return Error::Tls("TLS handshake with " + peer_name + " failed: timed out after " +
                    std::to_string(timeout_ms) + " ms");
}

Result<std::unique_ptr<TlsStream>> TlsStream::Accept(UniqueFd fd,
                                                     std::shared_ptr<TlsContext> context,
                                                     std::string peer_name, int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  auto s = Begin(std::move(fd), std::move(context), std::move(peer_name));
  if (!s) return s;
  for (;;) {
    auto progress = (*s)->Handshake();
    if (!progress) return Fail(progress.error());
    if (*progress == Progress::kDone) return s;
    pollfd p{(*s)->fd(), *progress == Progress::kWantRead ? short{POLLIN} : short{POLLOUT}, 0};
    const int left = MsLeft(deadline);
    if (left == 0 || ::poll(&p, 1, left) == 0) {
      return Fail(HandshakeTimedOut((*s)->peer_name_, timeout_ms));
    }
  }
}

Result<size_t> TlsStream::Read(std::span<char> buf) {
  for (;;) {
    short want = POLLIN;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (failed_) return Fail(*failed_);
      if (eof_) return size_t{0};
      ERR_clear_error();
      const int n =
          SSL_read(ssl_, buf.data(), static_cast<int>(std::min<size_t>(buf.size(), 1 << 30)));
      if (n > 0) {
        AckNow(fd_.get());
        return static_cast<size_t>(n);
      }
      const int err = SSL_get_error(ssl_, n);
      if (err == SSL_ERROR_WANT_WRITE) {
        want = POLLOUT;
      } else if (err != SSL_ERROR_WANT_READ) {
        eof_ = true;
        if (err == SSL_ERROR_ZERO_RETURN) return size_t{0};
        if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) return size_t{0};  // reset/EOF
        return Fail(Error::Tls("TLS read from " + peer_name_ + ": " + OpenSslErrors()));
      }
    }
    pollfd p{fd_.get(), want, 0};
    if (::poll(&p, 1, -1) < 0 && errno != EINTR) {
      return Fail(Error::Io("poll on " + peer_name_ + ": " + ErrnoText(errno)));
    }
  }
}

Result<bool> TlsStream::WaitReadable(int timeout_ms) {
  // Readable means decrypted bytes (or the end, or an error) for Read(): a socket holding only
  // part of a record is not. Otherwise a peer sending a record a byte at a time would hold the
  // reader inside Read() until the record is complete: in threadpool mode a worker, with no
  // timeout able to end it. SSL_peek() takes in what has arrived without consuming data.
  const auto deadline = Clock::now() + std::chrono::milliseconds(std::max(timeout_ms, 0));
  for (;;) {
    short want = POLLIN;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (eof_ || SSL_pending(ssl_) > 0) return true;
      ERR_clear_error();
      char c = 0;
      const int n = SSL_peek(ssl_, &c, 1);
      if (n > 0) return true;
      const int err = SSL_get_error(ssl_, n);
      if (err == SSL_ERROR_WANT_WRITE) {
        want = POLLOUT;
      } else if (err != SSL_ERROR_WANT_READ) {
        // The end or a failure: Read() reports it, as it would have found it.
        eof_ = true;
        const bool clean =
            err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0);
        if (!clean) failed_ = Error::Tls("TLS read from " + peer_name_ + ": " + OpenSslErrors());
        return true;
      }
    }
    pollfd p{fd_.get(), want, 0};
    const int rc = ::poll(&p, 1, timeout_ms < 0 ? -1 : MsLeft(deadline));
    if (rc == 0) return false;
    if (rc < 0 && errno != EINTR) {
      return Fail(Error::Io("poll on " + peer_name_ + ": " + ErrnoText(errno)));
    }
  }
}

Status TlsStream::WriteAll(std::span<const std::string_view> parts) {
  std::string joined;
  std::string_view data;
  if (parts.size() == 1) {
    data = parts[0];
  } else {
    for (std::string_view p : parts) joined += p;
    data = joined;
  }
  while (!data.empty()) {
    short want = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ERR_clear_error();
      const int n =
          SSL_write(ssl_, data.data(), static_cast<int>(std::min<size_t>(data.size(), 1 << 30)));
      if (n > 0) {
        data.remove_prefix(static_cast<size_t>(n));
        continue;
      }
      const int err = SSL_get_error(ssl_, n);
      if (err == SSL_ERROR_WANT_WRITE) {
        want = POLLOUT;
      } else if (err == SSL_ERROR_WANT_READ) {
        want = POLLIN;
      } else {
        return Fail(Error::Io("TLS write to " + peer_name_ + ": " + OpenSslErrors()));
      }
    }
    pollfd p{fd_.get(), want, 0};
    (void)::poll(&p, 1, 1000);
  }
  return {};
}

void TlsStream::Shutdown() { (void)::shutdown(fd_.get(), SHUT_RDWR); }

std::string TlsStream::version() const {
  std::lock_guard<std::mutex> lock(mu_);
  return SSL_get_version(ssl_);
}

std::string TlsStream::peer_subject() const {
  std::lock_guard<std::mutex> lock(mu_);
  X509* cert = SSL_get1_peer_certificate(ssl_);
  if (cert == nullptr) return {};
  // X509_NAME_oneline()'s spelling ("/C=FR/CN=name"), but with each value as it is (UTF-8) rather
  // than with OpenSSL's \xNN escapes, which leave a backslash as it is: a value spelling "\x0A"
  // could not be told from a line break. The caller escapes the whole (core::log::Escape).
  std::string out;
  const X509_NAME* name = X509_get_subject_name(cert);
  for (int i = 0; i < X509_NAME_entry_count(name); ++i) {
    const X509_NAME_ENTRY* e = X509_NAME_get_entry(name, i);
    const int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(e));
    const char* key = nid == NID_undef ? nullptr : OBJ_nid2sn(nid);
    out += '/';
    out += key != nullptr ? key : "?";
    out += '=';
    unsigned char* utf8 = nullptr;
    const int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e));
    if (n >= 0) out.append(reinterpret_cast<const char*>(utf8), static_cast<size_t>(n));
    OPENSSL_free(utf8);
  }
  X509_free(cert);
  return out;
}

bool TlsStream::verifies_peer() const {
  std::lock_guard<std::mutex> lock(mu_);
  return (SSL_get_verify_mode(ssl_) & SSL_VERIFY_PEER) != 0;
}

std::optional<TlsStream::Cipher> TlsStream::cipher() const {
  std::lock_guard<std::mutex> lock(mu_);
  const SSL_CIPHER* c = SSL_get_current_cipher(ssl_);
  if (c == nullptr) return std::nullopt;
  return Cipher{SSL_CIPHER_get_name(c), SSL_CIPHER_get_version(c), SSL_CIPHER_get_bits(c, nullptr)};
}

std::string TlsStream::peer_certificate_der() const {
  std::lock_guard<std::mutex> lock(mu_);
  X509* cert = SSL_get1_peer_certificate(ssl_);
  if (cert == nullptr) return {};
  std::string out;
  const int n = i2d_X509(cert, nullptr);
  if (n > 0) {
    out.resize(static_cast<size_t>(n));
    auto* p = reinterpret_cast<unsigned char*>(out.data());
    if (i2d_X509(cert, &p) != n) out.clear();
  }
  X509_free(cert);
  return out;
}

}  // namespace core::transport
