#pragma once

// A daemon's options are a plain struct with every default in it. A schema (a list of Field)
// names each member once, and both the TOML loader and the command-line adapter are driven by
// it, so a switch and its TOML key always set the same member (STYLE.md §6, chrony CNF_ParseLine).

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "libcore/base/result.h"

namespace core::config {

// sysexits.h codes the daemons exit with.
inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 64;   // EX_USAGE: bad command-line switch
inline constexpr int kExitConfig = 78;  // EX_CONFIG: bad configuration file

enum class Kind { kBool, kInt, kString, kChoice, kEntries, kList };

// One KEY=VALUE of an open-ended table (Kind::kEntries): a `[table]` of the TOML file, or a
// repeatable `--switch KEY=VALUE`. The loader does not know the keys; the daemon checks them.
struct Entry {
  std::string key;
  // A TOML scalar, or a TOML array of strings; from the command line always the text after '='.
  using Value = std::variant<bool, int64_t, double, std::string, std::vector<std::string>>;
  Value value;
  bool from_text = false;  // given on the command line: `value` holds the text
  std::string where;       // "FILE:LINE", or "--switch"
};

struct Field {
  std::string key;       // TOML key, and the long switch without "--"
  std::string switches;  // CLI11 names, e.g. "-p,--port"; empty means TOML only
  std::string help;
  Kind kind = Kind::kString;
  int64_t min = 0;                   // kInt: inclusive range
  int64_t max = 0;                   //
  std::vector<std::string> choices;  // kChoice: compared case-insensitively, stored as listed
  // kInt: what a value outside min..max (a sentinel such as -1, which no switch or key can set)
  // means, for --help and --dump-config: "18812, or 18821 with TLS". Empty: no sentinel.
  std::string unset_text;
  // kEntries, for --dump-config: an entry given as `--switch KEY=VALUE` as the file would hold it
  // (`allow_pickle=yes` -> true), so that the dump reads back the same. Unset: a string.
  std::function<Entry::Value(const Entry&)> typed_entry;
  // kEntries: checks an entry of the file as it is loaded, so that a bad one is reported in file
  // order with the file's other errors (its message names FILE:LINE). Unset: the daemon checks.
  std::function<Status(const Entry&)> check_entry;
  // Borrowed: points into the Options struct, which must outlive every use of the schema.
  std::variant<bool*, int64_t*, std::string*, std::vector<Entry>*, std::vector<std::string>*>
      target;
};

using Schema = std::vector<Field>;

Field Flag(std::string key, std::string switches, std::string help, bool* target);
Field Int(std::string key, std::string switches, std::string help, int64_t* target, int64_t min,
          int64_t max);
Field String(std::string key, std::string switches, std::string help, std::string* target);
Field Choice(std::string key, std::string switches, std::string help, std::string* target,
             std::vector<std::string> choices);
// A TOML table `[key]` and a repeatable `--key KEY=VALUE`; entries from the file come first, then
// the switches in order (a later entry for the same key wins when the daemon applies them).
Field Entries(std::string key, std::string switches, std::string help, std::vector<Entry>* target);

// A TOML array of strings `key = ["a", "b"]` and a repeatable `--key VALUE` (a value may also be
// "a,b"); the switches, when given, replace the file's list.
Field List(std::string key, std::string switches, std::string help,
           std::vector<std::string>* target);

// `field` with a sentinel default described by `text` (see Field::unset_text).
Field Unset(Field field, std::string text);

// What a value must be, for --help and errors: "a number 0-65535", "one of UDP, TCP, both".
std::string Expected(const Field& field);

// Converts command-line text for `field` and stores it (kEntries: appends one KEY=VALUE; kList:
// appends the comma-separated items). Booleans
// accept true/false/yes/no/on/off/1/0 (any case). Errors are Usage errors that name the switch.
Status SetFromText(const Field& field, std::string_view text);

// Error messages echo what the user gave (an argument, a key, a value), which may hold line
// breaks or other control characters: this escapes them (\n, \xNN), so an error stays one line.
std::string OneLine(std::string_view text);

// Human-readable default/current value of a field (for --help and messages).
std::string ValueText(const Field& field);

// The value as TOML: "18812", "true", "\"threaded\"" (a basic string, escaped).
std::string TomlValue(const Field& field);

// Every key of `schema` with its current value, one `key = value` line each (the key spelled like
// its long switch, with '-'), then each kEntries field as a `[key]` table, as a TOML file that
// LoadTomlText() reads back to the same values. A sentinel value is written as a comment saying
// what it means; a key that sets the same member as an earlier key (an alias) is left out.
std::string DumpToml(const Schema& schema);

}  // namespace core::config
