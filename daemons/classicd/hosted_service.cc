// A hosted rpyc.Service (--service): loading it, as a start does and as --check-config does
// (CheckService), and its wiring into ClassicService (service.h): the logger its code writes to
// and the object space of each connection. The Python side is objspace/hosting.cc.

#include <cerrno>

#include <sys/stat.h>

#include "daemons/classicd/service.h"

namespace classicd {

using core::ErrnoText;
using core::Error;
using core::Fail;
using core::log::Level;

namespace {

// "FILE:LINE: key 'service': " when the file set `key` (not a switch), else "".
std::string FromFile(const Options& o, const std::string& key) {
  const std::string where = o.origins.FileLine(key);
  return where.empty() ? where : where + ": key '" + o.origins.Written(key) + "': ";
}

// The hosted service as a start loads it: service-path first on sys.path (each a directory),
// then the import. Errors name the file's line when the file set the key.
core::Result<objspace::HostedServicePtr> LoadHosted(objspace::Interpreter& interpreter,
                                                    const Options& o) {
  for (const auto& dir : o.service_path) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) {
      return Fail(Error::Config(FromFile(o, "service_path") + "service-path " + dir + ": " +
                                ErrnoText(errno)));
    }
    if (!S_ISDIR(st.st_mode)) {
      return Fail(
          Error::Config(FromFile(o, "service_path") + "service-path " + dir + ": not a directory"));
    }
  }
  if (auto st = objspace::PrependSysPath(interpreter, o.service_path); !st) return Fail(st.error());
  auto hosted = objspace::LoadService(interpreter, o.service, o.protocol_config);
  if (!hosted) return Fail(Error::Config(FromFile(o, "service") + hosted.error().message()));
  return hosted;
}

}  // namespace

core::Status CheckService(const Options& o) {
  if (!o.hosted() && o.authenticator.empty()) return {};
  auto interp = objspace::Interpreter::Start(objspace::InterpreterOptions{});
  if (!interp) {
    return Fail(Error::Python("cannot start the Python interpreter: " + interp.error().message()));
  }
  if (o.hosted()) {
    auto hosted = LoadHosted(**interp, o);
    if (!hosted) return Fail(hosted.error());
  }
  if (!o.authenticator.empty()) {
    auto a = objspace::LoadAuthenticator(**interp, o.authenticator);
    if (!a) return Fail(a.error());
  }
  return {};
}

core::Status ClassicService::LoadService() {
  auto hosted = LoadHosted(*interpreter_, o_);
  if (!hosted) return Fail(hosted.error());
  hosted_ = std::move(*hosted);
  return {};
}

core::Status ClassicService::HostService() {
  std::string aliases;
  for (const auto& a : objspace::ServiceAliases(*hosted_)) {
    aliases += (aliases.empty() ? "" : ", ") + a;
  }
  log_.Info("hosting service {} ({})", o_.service, aliases);
  // What the service logs through conn._config["logger"] goes to the daemon's log, under the
  // same name, from the daemon's threshold up.
  auto to_level = [](int levelno) {
    return levelno >= 40   ? Level::err
           : levelno >= 30 ? Level::warn
           : levelno >= 20 ? Level::info
                           : Level::debug;
  };
  if (auto st = objspace::SetServiceLogger(
          *hosted_, log_name_,
          [log = log_, to_level](int n, std::string_view message) {
            log.Write(to_level(n), {}, message);
          },
          ServiceLevelno());
      !st) {
    return st;
  }
  make_space_ = [this](core::protocol::Connection& conn, const SpaceContext& c) {
    objspace::ConnectionInfo info{c.id, c.fd, c.peer->credentials, std::nullopt};
    if (const auto* tls = dynamic_cast<const core::transport::TlsStream*>(c.stream)) {
      // conn._channel.stream.sock says what an ssl.SSLSocket would.
      auto& t = info.tls.emplace();
      t.version = tls->version();
      if (const auto cipher = tls->cipher()) {
        t.cipher = cipher->name;
        t.cipher_protocol = cipher->protocol;
        t.secret_bits = cipher->secret_bits;
      }
      t.certificate_der = tls->peer_certificate_der();
      t.verified = tls->verifies_peer();
    }
    return objspace::MakeServiceObjectSpace(*interpreter_, conn, *hosted_, info);
  };
  return {};
}

int ClassicService::ServiceLevelno() const {
  const auto threshold = ctx_.logging.threshold();
  return threshold >= Level::err    ? 40
         : threshold >= Level::warn ? 30
         : threshold >= Level::info ? 20
                                    : 10;
}

void ClassicService::FollowLogLevel() {
  if (!hosted_) return;
  if (auto st = objspace::SetServiceLogLevel(*hosted_, ServiceLevelno()); !st) {
    log_.Error("reload: {}", st.error().message());
  }
}

}  // namespace classicd
