// rpyc-classicd: parse the command line, then run the daemon (classicd.cc).

#include "daemons/classicd/classicd.h"

int main(int argc, char** argv) {
  const classicd::CommandLine cl = classicd::ParseCommandLine(argc, argv);
  if (!cl.options) return cl.exit_status;
  return classicd::Run(*cl.options);
}
