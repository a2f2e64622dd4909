#include "libcore/server/thread_cache.h"

#include <atomic>
#include <chrono>
#include <future>
#include <set>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "libcore/testing/eventually.h"

namespace core::server {
namespace {

using namespace std::chrono_literals;

using core::testing::Eventually;

TEST(ThreadCacheTest, SequentialTasksReuseOneThread) {
  std::atomic<int> starts{0};
  ThreadCache::Options o;
  o.on_thread_start = [&starts] { ++starts; };
  ThreadCache cache(o);
  std::set<std::thread::id> ids;
  for (int i = 0; i < 20; ++i) {
    std::promise<std::thread::id> done;
    ASSERT_TRUE(cache.Run([&done] { done.set_value(std::this_thread::get_id()); }));
    ids.insert(done.get_future().get());
    ASSERT_TRUE(Eventually([&] { return cache.parked() == 1; }));
  }
  EXPECT_EQ(ids.size(), 1U);
  EXPECT_EQ(cache.threads_created(), 1U);
  EXPECT_EQ(starts.load(), 1);
}

TEST(ThreadCacheTest, ConcurrentTasksEachGetAThread) {
  ThreadCache cache;
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  std::atomic<int> running{0};
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(cache.Run([&running, gate] {
      ++running;
      gate.wait();
    }));
  }
  EXPECT_TRUE(Eventually([&] { return running.load() == 4; }));  // none waits for another
  EXPECT_EQ(cache.threads_created(), 4U);
  release.set_value();
  EXPECT_TRUE(Eventually([&] { return cache.parked() == 4; }));
}

TEST(ThreadCacheTest, ParkedThreadsAreBoundedAndExpire) {
  ThreadCache::Options o;
  o.max_parked = 2;
  o.park_timeout = 100ms;
  ThreadCache cache(o);
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(cache.Run([gate] { gate.wait(); }));
  release.set_value();
  // Two park, three exit at once; the parked ones exit after the timeout.
  EXPECT_TRUE(Eventually([&] { return cache.parked() == 2; }));
  EXPECT_TRUE(Eventually([&] { return cache.parked() == 0; }));
  // Exited threads are joined by the next Run(), which starts a new one.
  std::promise<void> ran;
  ASSERT_TRUE(cache.Run([&ran] { ran.set_value(); }));
  EXPECT_EQ(ran.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_EQ(cache.threads_created(), 6U);
}

TEST(ThreadCacheTest, DestructorJoinsParkedThreads) {
  std::atomic<int> done{0};
  {
    ThreadCache cache;
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(cache.Run([&done] { ++done; }));
  }
  EXPECT_EQ(done.load(), 3);
}

}  // namespace
}  // namespace core::server
