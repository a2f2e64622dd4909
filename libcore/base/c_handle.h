#pragma once

// Owning aliases for C handles: one owner each, freed by its library's own function
// (STYLE.md §4, pdns libssl.cc style).

#include <memory>

#include <event2/event.h>

namespace core {

struct EventBaseDeleter {
  void operator()(event_base* b) const { event_base_free(b); }
};
struct EventDeleter {
  void operator()(event* e) const { event_free(e); }
};

using EventBasePtr = std::unique_ptr<event_base, EventBaseDeleter>;
using EventPtr = std::unique_ptr<event, EventDeleter>;

}  // namespace core
