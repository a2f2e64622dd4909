// rpyc-classicd: parse options, then hand over to the libcore daemon runtime.

#include <cstdio>

#include "daemons/classicd/classicd.h"

int main(int argc, char** argv) {
  classicd::Options options;
  const auto outcome = classicd::ParseOptionsForStart(argc, argv, &options);
  if (outcome.exit) {
    std::fputs(outcome.message.c_str(), outcome.to_stderr ? stderr : stdout);
    if (outcome.to_stderr) std::fputc('\n', stderr);
    return outcome.exit_code;
  }
  classicd::StdioFds stdio;
  if (options.mode == classicd::Mode::kStdio) {  // first: nothing may write to fd 1 from here on
    auto moved = classicd::MoveStdio(options.logfile);
    if (!moved) {
      std::fprintf(stderr, "rpyc-classicd: %s\n", moved.error().message().c_str());
      return 1;
    }
    stdio = *moved;
  }
  auto reload = [argc, argv]() -> core::Result<classicd::Options> {
    classicd::Options fresh;
    const auto again = classicd::ParseOptions(argc, argv, &fresh);
    if (again.exit) return core::Fail(core::Error::Config(core::config::LogLine(again)));
    return fresh;
  };
  return core::daemon::Run(classicd::MakeRunOptions(options), [&](core::daemon::Context& ctx) {
    return classicd::MakeService(ctx, options, stdio, reload);
  });
}
