// What only a real start needs from the command line: --version with the loaded libraries'
// versions and --check-config opening the files a start opens. Kept out of classicd_options.cc,
// which the configuration fuzzer builds without the interpreter and OpenSSL.

#include <cerrno>
#include <system_error>

#include <sys/stat.h>

#include "daemons/classicd/classicd.h"
#include "daemons/classicd/objspace/objspace.h"
#include "libcore/daemon/version.h"
#include "libcore/log/log.h"
#include "libcore/transport/tls_stream.h"

namespace classicd {

using core::Error;
using core::Fail;

std::string FullVersionText() {
  return std::string("rpyc-classicd ") + RPYC_VERSION + " (commit " + core::daemon::BuildCommit() +
         ")\nRPyC classic server; wire protocol of rpyc 5.x and 6.x\nlibraries: CPython " +
         objspace::PythonVersion() + ", " + core::daemon::LibraryVersions() + "\n" + FeaturesText();
}

core::Status CheckStartFiles(const Options& o) {
  if (auto st = core::log::CheckLogFile(o.logfile); !st) return st;
  if (o.tls()) {
    // The same loading as a start: key, certificate chain, that they match, CA file, CRL.
    auto t = core::transport::TlsContext::Create(o.ssl_certfile, o.ssl_keyfile, o.ssl_cafile,
                                                 o.ssl_crlfile);
    if (!t) return Fail(t.error());
  }
  if (!o.unix_socket.empty()) {
    const size_t slash = o.unix_socket.rfind('/');
    const std::string dir = slash == std::string::npos ? "."
                            : slash == 0               ? "/"
                                                       : o.unix_socket.substr(0, slash);
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) {
      const std::error_code saved(errno, std::generic_category());
      return Fail(Error::Config("unix socket " + o.unix_socket + ": directory " + dir + ": " +
                                saved.message()));
    }
    if (!S_ISDIR(st.st_mode)) {
      return Fail(
          Error::Config("unix socket " + o.unix_socket + ": " + dir + " is not a directory"));
    }
  }
  return {};
}

core::config::CliOutcome ParseOptionsForStart(int argc, const char* const* argv, Options* o) {
  core::config::AppInfo info = MakeAppInfo(o);
  info.version = FullVersionText();
  // What a start would do before serving: open its files, then import a hosted service.
  info.check = [o](const core::config::Origins& origins) -> core::Status {
    o->origins = origins;
    if (auto st = CheckStartFiles(*o); !st) return st;
    return CheckService(*o);
  };
  return ParseOptionsWith(argc, argv, info, o);
}

}  // namespace classicd
