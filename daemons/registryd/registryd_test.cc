#include "daemons/registryd/registryd.h"

#include <cstdio>
#include <fstream>
#include <iterator>
#include <vector>

#include <gtest/gtest.h>

#include "libcore/testing/temp_path.h"

namespace registryd {
namespace {

core::config::CliOutcome Parse(std::vector<std::string> args, Options* o) {
  args.insert(args.begin(), "rpyc-registryd");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return ParseOptions(static_cast<int>(argv.size()), argv.data(), o);
}

TEST(RegistrydOptions, ReferenceDefaults) {
  Options o;
  ASSERT_FALSE(Parse({}, &o).exit);
  EXPECT_EQ(o.mode, "UDP");
  EXPECT_EQ(o.port, 18811);
  EXPECT_EQ(o.timeout, 240);
  EXPECT_FALSE(o.listing);
  EXPECT_FALSE(o.quiet);
  EXPECT_EQ(o.host, "0.0.0.0");
  EXPECT_EQ(o.max_entries, 65536);
}

TEST(RegistrydOptions, ReferenceSwitches) {
  Options o;
  auto out =
      Parse({"-m", "tcp", "-p", "1234", "-t", "2", "-l", "-q", "-f", "/tmp/x.log", "-6"}, &o);
  ASSERT_FALSE(out.exit) << out.message;
  EXPECT_EQ(o.mode, "TCP");
  EXPECT_EQ(o.port, 1234);
  EXPECT_EQ(o.timeout, 2);
  EXPECT_TRUE(o.listing);
  EXPECT_TRUE(o.quiet);
  EXPECT_EQ(o.logfile, "/tmp/x.log");
  EXPECT_TRUE(o.ipv6);
  ASSERT_FALSE(Parse({"--mode=Both", "--listing=no", "--logfile", "y"}, &o).exit);
  EXPECT_EQ(o.mode, "both");
  EXPECT_FALSE(o.listing);
  EXPECT_EQ(o.logfile, "y");
}

// The reference's syntax: -l and -q take a value there; here the value is optional.
TEST(RegistrydOptions, FlagsTakeAnOptionalValue) {
  Options o;
  ASSERT_FALSE(Parse({"-l", "true", "-q", "1"}, &o).exit);
  EXPECT_TRUE(o.listing);
  EXPECT_TRUE(o.quiet);
  Options off;
  ASSERT_FALSE(Parse({"-l", "false", "-q", "0", "-p", "5"}, &off).exit);
  EXPECT_FALSE(off.listing);  // unlike the reference, false means off
  EXPECT_FALSE(off.quiet);
  EXPECT_EQ(off.port, 5);
  Options bare;
  ASSERT_FALSE(Parse({"-l", "-q", "--listing", "no", "-6", "yes"}, &bare).exit);
  EXPECT_FALSE(bare.listing);
  EXPECT_TRUE(bare.quiet);
  EXPECT_TRUE(bare.ipv6);
}

TEST(RegistrydOptions, FileIsAKeyLikeItsSwitch) {
  const std::string path = core::testing::TempPath("registryd_file.toml");
  std::ofstream(path) << "file = '/tmp/f.log'\n";
  Options o;
  auto out = Parse({"-c", path}, &o);
  ASSERT_FALSE(out.exit) << out.message;
  EXPECT_EQ(o.logfile, "/tmp/f.log");
  std::ofstream(path) << "logfile = '/tmp/a.log'\nfile = '/tmp/b.log'\n";
  out = Parse({"-c", path}, &o);
  EXPECT_EQ(out.exit_code, 78);
  EXPECT_EQ(out.message, "rpyc-registryd: " + path +
                             ":2: key 'file': the same setting as 'logfile' on line 1; keep one");
  std::remove(path.c_str());
}

TEST(RegistrydOptions, HelpShowsTypesAndChoicesWithoutEmptyDefaults) {
  Options o;
  const std::string help = Parse({"--help"}, &o).message;
  EXPECT_NE(help.find("-m,--mode {UDP,TCP,both}"), std::string::npos) << help;
  EXPECT_NE(help.find("-p,--port INT"), std::string::npos) << help;
  EXPECT_EQ(help.find("[default: ]"), std::string::npos) << help;
  EXPECT_NE(help.find("-l,--listing [BOOL]"), std::string::npos) << help;
}

TEST(RegistrydOptions, EveryTomlKeyLoads) {
  const std::string path = core::testing::TempPath("registryd_test.toml");
  std::ofstream(path) << "mode = 'both'\nport = 1\nhost = '::'\nipv6 = true\ntimeout = 3\n"
                         "listing = true\nlogfile = '/tmp/r.log'\nquiet = true\nlog = 'stderr'\n"
                         "max-entries = 10\nmax-connections = 2\nconnection-timeout-ms = 100\n";
  Options o;
  auto out = Parse({"-c", path}, &o);
  ASSERT_FALSE(out.exit) << out.message;
  EXPECT_EQ(o.mode, "both");
  EXPECT_EQ(o.max_entries, 10);
  EXPECT_EQ(o.max_connections, 2);
  EXPECT_EQ(o.connection_timeout_ms, 100);
  EXPECT_EQ(o.log, "stderr");
  std::remove(path.c_str());
}

// The shipped sample names every key with its default (STYLE.md §5: load every etc/*.toml).
TEST(RegistrydOptions, ShippedSampleLoadsAndMatchesDefaults) {
  Options o;
  auto out = Parse({"-c", RPYC_SOURCE_DIR "/etc/rpyc-registryd.toml"}, &o);
  ASSERT_FALSE(out.exit) << out.message;
  const Options defaults;
  Options copy = defaults;
  const auto schema = MakeSchema(&o);
  const auto reference = MakeSchema(&copy);
  ASSERT_EQ(schema.size(), reference.size());
  std::ifstream in(RPYC_SOURCE_DIR "/etc/rpyc-registryd.toml");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (size_t i = 0; i < schema.size(); ++i) {
    if (schema[i].key == "file") {  // the alias of logfile: said in a comment only
      EXPECT_NE(text.find("\n# file = "), std::string::npos);
      continue;
    }
    EXPECT_NE(text.find("\n" + schema[i].key + " = "), std::string::npos) << schema[i].key;
    if (schema[i].key == "host") {  // the package listens on the loopback only
      EXPECT_EQ(o.host, "127.0.0.1");
      continue;
    }
    EXPECT_EQ(core::config::ValueText(schema[i]), core::config::ValueText(reference[i]))
        << schema[i].key;
  }
}

// DNS-SD publishing (issue 15): off by default; the switch and the key turn it on.
TEST(RegistrydOptions, Dnssd) {
  Options o;
  ASSERT_FALSE(Parse({}, &o).exit);
  EXPECT_FALSE(o.dnssd);
  ASSERT_FALSE(Parse({"--dnssd"}, &o).exit);
  EXPECT_TRUE(o.dnssd);
  const std::string path = core::testing::TempPath("registryd_dnssd.toml");
  std::ofstream(path) << "dnssd = true\n";
  Options f;
  ASSERT_FALSE(Parse({"-c", path}, &f).exit);
  EXPECT_TRUE(f.dnssd);
  Options off;
  ASSERT_FALSE(Parse({"-c", path, "--dnssd=false"}, &off).exit);
  EXPECT_FALSE(off.dnssd);
  std::ofstream(path) << "dnssd = \"yes\"\n";
  EXPECT_EQ(Parse({"-c", path}, &f).exit_code, 78);
  std::remove(path.c_str());
}

TEST(RegistrydOptions, ErrorsExitWithSysexits) {
  Options o;
  EXPECT_EQ(Parse({"-l", "maybe"}, &o).exit_code, 64);
  EXPECT_EQ(Parse({"-l", "maybe"}, &o).message,
            "rpyc-registryd: -l: expected a boolean (true/false/yes/no/on/off/1/0), got 'maybe'");
  EXPECT_EQ(Parse({"-t", "0"}, &o).exit_code, 64);
  EXPECT_EQ(Parse({"-m", "sctp"}, &o).exit_code, 64);
  const std::string path = core::testing::TempPath("registryd_bad.toml");
  std::ofstream(path) << "timeout = 0\n";
  auto out = Parse({"-c", path}, &o);
  EXPECT_EQ(out.exit_code, 78);
  EXPECT_EQ(out.message, "rpyc-registryd: " + path + ":1: key 'timeout': expected a number 1-" +
                             std::to_string(86400 * 365) + ", got 0");
  std::remove(path.c_str());
}

TEST(RegistrydOptions, EtcdIsOffByDefaultAndItsKeysLoad) {
  Options o;
  ASSERT_FALSE(Parse({}, &o).exit);
  EXPECT_EQ(o.etcd_endpoints, "");
  EXPECT_EQ(o.etcd_prefix, "/rpyc");
  EXPECT_TRUE(EtcdEndpoints(o).empty());
  const std::string path = core::testing::TempPath("registryd_etcd.toml");
  std::ofstream(path) << "etcd-endpoints = 'http://127.0.0.1:2379, http://[::1]:2379'\n"
                         "etcd-prefix = '/lab/rpyc'\nsite = 'lab'\nregistry-id = 'reg-a'\n";
  auto out = Parse({"-c", path}, &o);
  ASSERT_FALSE(out.exit) << out.message;
  EXPECT_EQ(EtcdEndpoints(o),
            (std::vector<std::string>{"http://127.0.0.1:2379", "http://[::1]:2379"}));
  EXPECT_EQ(o.etcd_prefix, "/lab/rpyc");
  EXPECT_EQ(o.site, "lab");
  EXPECT_EQ(o.registry_id, "reg-a");
  // Switches of the same names win over the file.
  out = Parse({"-c", path, "--site", "far", "--etcd-endpoints", "https://etcd:2379"}, &o);
  ASSERT_FALSE(out.exit) << out.message;
  EXPECT_EQ(o.site, "far");
  EXPECT_EQ(EtcdEndpoints(o), (std::vector<std::string>{"https://etcd:2379"}));
  std::remove(path.c_str());
}

TEST(RegistrydOptions, EtcdKeysAreCheckedTogether) {
  const auto error = [](std::vector<std::string> args) {
    Options o;
    auto out = Parse(std::move(args), &o);
    return std::to_string(out.exit_code) + " " + out.message;
  };
  EXPECT_EQ(error({"--etcd-endpoints", "127.0.0.1:2379"}),
            "64 rpyc-registryd: --etcd-endpoints: '127.0.0.1:2379' is not a client URL "
            "http://HOST:PORT or https://HOST:PORT (several: comma-separated)");
  EXPECT_EQ(error({"--etcd-endpoints", "http://a:1,,http://b:2"}).substr(0, 52),
            "64 rpyc-registryd: --etcd-endpoints: '' is not a cli");
  EXPECT_EQ(error({"--etcd-endpoints", "http://a:1/v3/kv"}).substr(0, 60),
            "64 rpyc-registryd: --etcd-endpoints: 'http://a:1/v3/kv' is n");
  EXPECT_EQ(error({"--etcd-endpoints", "http://a:1", "--etcd-prefix", "rpyc"}),
            "64 rpyc-registryd: --etcd-prefix: 'rpyc' must start with '/', not end with '/', and "
            "be at most 255 printable bytes");
  EXPECT_EQ(error({"--etcd-endpoints", "http://a:1", "--etcd-prefix", "/rpyc/"}).substr(0, 3),
            "64 ");
  EXPECT_EQ(error({"--registry-id", "a/b"}),
            "64 rpyc-registryd: --registry-id: must be at most 255 printable bytes without '/'");
  EXPECT_EQ(error({"--etcd-cafile", "/etc/hostname"}),
            "64 rpyc-registryd: --etcd-cafile: is set but etcd-endpoints is not");
  EXPECT_EQ(error({"--etcd-endpoints", "http://a:1", "--etcd-cafile", "/etc/hostname"}),
            "64 rpyc-registryd: --etcd-cafile: is set but no etcd endpoint is https://");
  EXPECT_EQ(error({"--etcd-endpoints", "https://a:1", "--etcd-cafile", "/nonexistent/ca.pem"}),
            "64 rpyc-registryd: --etcd-cafile: /nonexistent/ca.pem: No such file or directory");
  EXPECT_EQ(error({"--etcd-endpoints", "https://a:1", "--etcd-certfile", "/etc/hostname"}),
            "64 rpyc-registryd: --etcd-certfile: etcd-certfile and etcd-keyfile go together");
  EXPECT_EQ(error({"--etcd-endpoints", "https://a:1", "--etcd-cafile", "/etc/hostname",
                   "--etcd-certfile", "/etc/hostname", "--etcd-keyfile", "/etc/hostname"}),
            "0 ");
  // From the file: FILE:LINE and exit 78.
  const std::string path = core::testing::TempPath("registryd_etcd_bad.toml");
  std::ofstream(path) << "site = 'x'\netcd-endpoints = 'etcd:2379'\n";
  EXPECT_EQ(error({"-c", path}),
            "78 rpyc-registryd: " + path +
                ":2: key 'etcd-endpoints': 'etcd:2379' is not a client URL http://HOST:PORT or "
                "https://HOST:PORT (several: comma-separated)");
  std::remove(path.c_str());
}

}  // namespace
}  // namespace registryd
