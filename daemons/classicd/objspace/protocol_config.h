#pragma once

// rpyc's protocol_config (rpyc.core.protocol.DEFAULT_CONFIG, the same in 5.3 and 6.x) as the
// daemon keeps it: the keys a hosted service's connections run with. No Python here: the options
// fill it, the object space turns it into an AccessPolicy (access_policy.h) and conn._config.

#include <optional>
#include <string>
#include <vector>

namespace classicd::objspace {

struct ProtocolConfig {
  // Attribute access (rpyc's Connection._check_attr; access_policy.h).
  bool allow_safe_attrs = true;
  std::vector<std::string> safe_attrs = DefaultSafeAttrs();
  bool allow_exposed_attrs = true;
  std::string exposed_prefix = "exposed_";
  bool allow_public_attrs = false;
  bool allow_all_attrs = false;
  bool allow_getattr = true;
  bool allow_setattr = false;
  bool allow_delattr = false;
  bool allow_pickle = false;
  // Exceptions.
  bool include_local_traceback = true;
  bool include_local_version = true;
  bool import_custom_exceptions = false;
  bool instantiate_custom_exceptions = false;
  bool instantiate_oldstyle_exceptions = false;
  bool propagate_SystemExit_locally = false;        // NOLINT(readability-identifier-naming)
  bool propagate_KeyboardInterrupt_locally = true;  // NOLINT(readability-identifier-naming)
  // Seconds; nullopt is rpyc's None (wait forever).
  std::optional<double> sync_request_timeout = 30.0;

  // rpyc's DEFAULT_CONFIG["safe_attrs"].
  static std::vector<std::string> DefaultSafeAttrs();
  // rpyc_classic's SlaveService: every attribute, every operation, pickle.
  static ProtocolConfig Classic();
};

}  // namespace classicd::objspace
