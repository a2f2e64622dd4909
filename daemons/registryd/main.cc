// rpyc-registryd: parse options, then hand over to the libcore daemon runtime.

#include <cstdio>

#include "daemons/registryd/registryd.h"

int main(int argc, char** argv) {
  registryd::Options options;
  const auto outcome = registryd::ParseOptions(argc, argv, &options);
  if (outcome.exit) {
    std::fputs(outcome.message.c_str(), outcome.to_stderr ? stderr : stdout);
    if (outcome.to_stderr) std::fputc('\n', stderr);
    return outcome.exit_code;
  }
  // SIGHUP re-reads the command line and the file with the same precedence.
  auto reload = [argc, argv]() -> core::Result<registryd::Options> {
    registryd::Options fresh;
    const auto again = registryd::ParseOptions(argc, argv, &fresh);
    if (again.exit) return core::Fail(core::Error::Config(core::config::LogLine(again)));
    return fresh;
  };
  return core::daemon::Run(registryd::MakeRunOptions(options), [&](core::daemon::Context& context) {
    return registryd::MakeService(context, options, reload);
  });
}
