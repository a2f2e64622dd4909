// The floor of a process per connection on this machine: what fork(), the child's page faults,
// its exit and the parent's waitpid() cost with nothing else going on. bench/classic/fork_floor.py
// runs it with the figures of a real rpyc-classicd --mode forking (its anonymous memory, its
// children's page faults) beside the daemon itself and rpyc_classic, in the same run.
//
// The process maps and writes `--anon-kib` KiB of anonymous memory (the parent's heap), then
// loops: [accept a loopback TCP connection,] fork; the child writes one byte to each of
// `--child-writes` distinct pages of that memory (copy-on-write faults, spread evenly), reads
// `--child-reads` pages of a file mapping the parent has read (file faults, one per 64 KiB
// fault-around window), [closes the connection,] and _exit(0)s; the parent waitpid()s. CPU per
// iteration is getrusage() of the process plus its reaped children. With --tcp a client process
// (on another CPU when there is one) connects in a loop and waits for each close; it is reaped
// after the measurement, so its CPU is not counted.
//
// Prints one line of key=value pairs:
//   iterations cpu_us self_us children_us child_minflt parent_minflt wall_us anon_kib maps
// (anon_kib and maps: this process's anonymous memory and mappings after the loop).
//
// --dlopen LIB (repeatable) loads the daemon's shared libraries first, so the process has the
// daemon's mappings too, and --total-anon-kib T then maps a heap that brings its anonymous memory
// up to T KiB. --huge aligns the heap to 2 MiB and asks for transparent huge pages
// (MADV_HUGEPAGE).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <dlfcn.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

constexpr size_t kPage = 4096;
constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kFaultAround = 16;  // pages per file fault (fault_around_bytes = 64 KiB)

struct Options {
  size_t anon_kib = 0;
  size_t child_writes = 0;
  size_t child_reads = 0;
  std::string file = "/proc/self/exe";
  long iterations = 1000;
  size_t total_anon_kib = 0;
  std::vector<std::string> dlopen;
  bool tcp = false;
  bool huge = false;
};

[[noreturn]] void PrintUsage(const char* argv0) {
  std::fprintf(
      stderr,
      "usage: %s --anon-kib N [--child-writes W] [--child-reads R [--file PATH]]\n"
      "          [--iterations I] [--tcp] [--huge] [--dlopen LIB]... [--total-anon-kib T]\n",
      argv0);
  std::exit(64);
}

Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) PrintUsage(argv[0]);
      return argv[++i];
    };
    if (a == "--anon-kib") {
      o.anon_kib = std::strtoul(value(), nullptr, 10);
    } else if (a == "--child-writes") {
      o.child_writes = std::strtoul(value(), nullptr, 10);
    } else if (a == "--child-reads") {
      o.child_reads = std::strtoul(value(), nullptr, 10);
    } else if (a == "--file") {
      o.file = value();
    } else if (a == "--iterations") {
      o.iterations = std::strtol(value(), nullptr, 10);
    } else if (a == "--total-anon-kib") {
      o.total_anon_kib = std::strtoul(value(), nullptr, 10);
    } else if (a == "--dlopen") {
      o.dlopen.emplace_back(value());
    } else if (a == "--tcp") {
      o.tcp = true;
    } else if (a == "--huge") {
      o.huge = true;
    } else {
      PrintUsage(argv[0]);
    }
  }
  if (o.iterations <= 0) PrintUsage(argv[0]);
  return o;
}

double Seconds(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) * 1e-6;
}

struct Usage {
  double self = 0;
  double children = 0;
  long self_minflt = 0;
  long children_minflt = 0;
};

Usage Now() {
  rusage self{};
  rusage children{};
  getrusage(RUSAGE_SELF, &self);
  getrusage(RUSAGE_CHILDREN, &children);
  return Usage{Seconds(self.ru_utime) + Seconds(self.ru_stime),
               Seconds(children.ru_utime) + Seconds(children.ru_stime), self.ru_minflt,
               children.ru_minflt};
}

[[noreturn]] void Die(const char* what) {
  std::perror(what);
  std::exit(1);
}

// This process's anonymous memory (smaps_rollup), in KiB.
size_t OwnAnonKib() {
  FILE* f = std::fopen("/proc/self/smaps_rollup", "r");
  if (f == nullptr) Die("smaps_rollup");
  char line[256];
  size_t kib = 0;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::sscanf(line, "Anonymous: %zu kB", &kib) == 1) break;
  }
  std::fclose(f);
  return kib;
}

// The anonymous "heap": mapped, written page by page (private, present), huge pages only when
// asked for (2 MiB aligned so the kernel can use them).
volatile unsigned char* MapHeap(size_t bytes, bool huge) {
  if (bytes == 0) return nullptr;
  const size_t len = bytes + (huge ? kHugePage : 0);
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) Die("mmap");
  auto* base = static_cast<unsigned char*>(p);
  if (huge) {
    const auto addr = reinterpret_cast<uintptr_t>(base);
    base += ((addr + kHugePage - 1) & ~(kHugePage - 1)) - addr;
    if (madvise(base, bytes, MADV_HUGEPAGE) != 0) Die("madvise(MADV_HUGEPAGE)");
  }
  for (size_t off = 0; off < bytes; off += kPage) base[off] = 1;
  return base;
}

// A read-only private file mapping the parent has read through, so the pages are in the page
// cache and in the parent's page tables (fork() does not copy those: the child faults them in).
const volatile unsigned char* MapFile(const std::string& path, size_t* pages) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) Die("open");
  struct stat st {};
  if (fstat(fd, &st) != 0) Die("fstat");
  const auto size = static_cast<size_t>(st.st_size);
  void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) Die("mmap file");
  close(fd);
  const auto* base = static_cast<const volatile unsigned char*>(p);
  unsigned sum = 0;
  for (size_t off = 0; off < size; off += kPage) sum += base[off];
  if (sum == 1) std::fputs("", stderr);  // keeps the reads
  *pages = size / kPage;
  return base;
}

// The client of --tcp: connects `n` times and waits for each close.
[[noreturn]] void Client(uint16_t port, long n) {
  if (sysconf(_SC_NPROCESSORS_ONLN) > 1) {
    cpu_set_t set;
    CPU_ZERO(&set);
    int parent_cpu = sched_getcpu();
    CPU_SET(parent_cpu == 0 ? 1 : 0, &set);
    sched_setaffinity(0, sizeof set, &set);
  }
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  char buf[16];
  for (long i = 0; i < n; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) _exit(2);
    while (recv(fd, buf, sizeof buf, 0) > 0) {
    }
    close(fd);
  }
  _exit(0);
}

}  // namespace

int main(int argc, char** argv) {
  Options o = Parse(argc, argv);
  // The daemon's libraries (their relocated data is anonymous memory and their mappings are
  // what fork() copies), then a heap that brings the anonymous memory up to the daemon's.
  for (const std::string& lib : o.dlopen) {
    if (dlopen(lib.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
      std::fprintf(stderr, "dlopen %s: %s\n", lib.c_str(), dlerror());
      return 1;
    }
  }
  if (o.total_anon_kib > 0) {
    const size_t own = OwnAnonKib();
    o.anon_kib = o.total_anon_kib > own ? o.total_anon_kib - own : 0;
  }
  const size_t heap_bytes = o.anon_kib * 1024;
  volatile unsigned char* heap = MapHeap(heap_bytes, o.huge);
  const size_t heap_pages = heap_bytes / kPage;
  if (o.child_writes > heap_pages) {
    std::fprintf(stderr, "--child-writes %zu > %zu pages of heap\n", o.child_writes, heap_pages);
    return 64;
  }
  size_t file_pages = 0;
  const volatile unsigned char* file = o.child_reads > 0 ? MapFile(o.file, &file_pages) : nullptr;
  if (o.child_reads * kFaultAround > file_pages) {
    std::fprintf(stderr, "--child-reads %zu: %s has only %zu windows of 64 KiB\n", o.child_reads,
                 o.file.c_str(), file_pages / kFaultAround);
    return 64;
  }
  const size_t write_stride = o.child_writes > 0 ? heap_pages / o.child_writes : 0;
  const size_t read_stride = o.child_reads > 0 ? file_pages / o.child_reads : 0;

  int listener = -1;
  pid_t client = -1;
  if (o.tcp) {
    listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (listener < 0 || bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        listen(listener, 128) != 0 ||
        getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      Die("listen");
    }
    client = fork();
    if (client < 0) Die("fork");
    if (client == 0) Client(ntohs(addr.sin_port), o.iterations);
  }

  const Usage u0 = Now();
  const auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < o.iterations; ++i) {
    int conn = -1;
    if (o.tcp) {
      conn = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn < 0) Die("accept");
    }
    const pid_t pid = fork();
    if (pid < 0) Die("fork");
    if (pid == 0) {
      for (size_t k = 0; k < o.child_writes; ++k)
        heap[k * write_stride * kPage] = static_cast<unsigned char>(k);
      unsigned sum = 0;
      for (size_t k = 0; k < o.child_reads; ++k) sum += file[k * read_stride * kPage];
      if (conn >= 0) close(conn);
      _exit(sum == 0xffffffffu ? 1 : 0);
    }
    if (conn >= 0) close(conn);
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::fprintf(stderr, "child %d failed (status %d)\n", pid, status);
      return 1;
    }
  }
  const auto t1 = std::chrono::steady_clock::now();
  const Usage u1 = Now();
  if (client > 0) {
    int status = 0;
    waitpid(client, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::fprintf(stderr, "client failed (status %d)\n", status);
      return 1;
    }
  }
  size_t maps = 0;
  if (FILE* f = std::fopen("/proc/self/maps", "r"); f != nullptr) {
    for (int c; (c = std::fgetc(f)) != EOF;) maps += c == '\n' ? 1 : 0;
    std::fclose(f);
  }
  const double n = static_cast<double>(o.iterations);
  const double self = (u1.self - u0.self) / n * 1e6;
  const double children = (u1.children - u0.children) / n * 1e6;
  std::printf(
      "iterations=%ld cpu_us=%.1f self_us=%.1f children_us=%.1f child_minflt=%.1f "
      "parent_minflt=%.1f wall_us=%.1f anon_kib=%zu maps=%zu\n",
      o.iterations, self + children, self, children,
      static_cast<double>(u1.children_minflt - u0.children_minflt) / n,
      static_cast<double>(u1.self_minflt - u0.self_minflt) / n,
      std::chrono::duration<double, std::micro>(t1 - t0).count() / n, OwnAnonKib(), maps);
  return 0;
}
