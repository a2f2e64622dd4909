#pragma once

// The connections served on threads of their own (threaded mode; the one connection of oneshot,
// stdio or an inherited socket), so that the daemon's Shutdown() can end them through what each
// owns: its stream once it exists, and while a TLS handshake makes the stream, a duplicate of
// its socket (so no descriptor number is shared across threads: a number can be reused as soon as
// its owner closes it).

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <list>
#include <mutex>

#include "libcore/base/unique_fd.h"
#include "libcore/transport/stream.h"

namespace classicd {

class LiveConnections {
 public:
  struct Slot {
    core::transport::Stream* stream = nullptr;
    core::UniqueFd handshake;  // a duplicate of the socket during a TLS handshake
  };

  // One connection's place in the set, from accept until before its stream is destroyed.
  class Entry {
   public:
    explicit Entry(LiveConnections& set);
    Entry(const Entry&) = delete;
    Entry& operator=(const Entry&) = delete;
    ~Entry();

    // A TLS handshake on socket `fd` begins: until Opened(), Shutdown() shuts the socket down.
    void Handshaking(int fd);
    // The connection's stream (borrowed: it must outlive the entry): Shutdown() ends it through
    // the stream from now on, and at once when the set was already shut down.
    void Opened(core::transport::Stream& stream);

   private:
    LiveConnections& set_;
    std::list<Slot>::iterator it_;
  };

  LiveConnections() = default;
  LiveConnections(const LiveConnections&) = delete;
  LiveConnections& operator=(const LiveConnections&) = delete;

  // Ends every connection in the set, and those that open later. Any thread.
  void Shutdown();
  // Waits until the set is empty or `deadline` passed; returns how many connections are left.
  size_t Wait(std::chrono::steady_clock::time_point deadline);
  size_t size() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::list<Slot> slots_;  // guarded by mu_
  bool shut_ = false;      // guarded by mu_
};

}  // namespace classicd
