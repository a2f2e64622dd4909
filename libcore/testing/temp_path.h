#pragma once

// Test-only helpers (never linked into the daemons).

#include <string>
#include <string_view>

#include <gtest/gtest.h>
#include <unistd.h>

namespace core::testing {

// A path in gtest's temp dir unique to this process and test: ctest runs each discovered test
// as its own process, in parallel, so a fixed file name would be shared between tests.
inline std::string TempPath(std::string_view name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string path = ::testing::TempDir();
  if (info != nullptr) {
    path += info->test_suite_name();
    path += '.';
    path += info->name();
    path += '.';
  }
  path += std::to_string(::getpid());
  path += '.';
  path += name;
  return path;
}

}  // namespace core::testing
