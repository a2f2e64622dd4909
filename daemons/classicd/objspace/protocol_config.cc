// rpyc's protocol_config defaults (protocol_config.h). No Python here: the options (and the
// config fuzzer, which links no interpreter) use them too.

#include "daemons/classicd/objspace/protocol_config.h"

#include <string>
#include <vector>

namespace classicd::objspace {

std::vector<std::string> ProtocolConfig::DefaultSafeAttrs() {
  return {"__abs__",      "__add__",       "__and__",         "__bool__",     "__cmp__",
          "__contains__", "__delitem__",   "__delslice__",    "__div__",      "__divmod__",
          "__doc__",      "__enter__",     "__eq__",          "__exit__",     "__float__",
          "__floordiv__", "__format__",    "__ge__",          "__getitem__",  "__getslice__",
          "__gt__",       "__hash__",      "__hex__",         "__iadd__",     "__iand__",
          "__idiv__",     "__ifloordiv__", "__ilshift__",     "__imod__",     "__imul__",
          "__index__",    "__int__",       "__invert__",      "__ior__",      "__ipow__",
          "__irshift__",  "__isub__",      "__iter__",        "__itruediv__", "__ixor__",
          "__le__",       "__len__",       "__length_hint__", "__long__",     "__lshift__",
          "__lt__",       "__mod__",       "__mul__",         "__ne__",       "__neg__",
          "__new__",      "__next__",      "__nonzero__",     "__oct__",      "__or__",
          "__pos__",      "__pow__",       "__radd__",        "__rand__",     "__rdiv__",
          "__rdivmod__",  "__repr__",      "__rfloordiv__",   "__rlshift__",  "__rmod__",
          "__rmul__",     "__ror__",       "__rpow__",        "__rrshift__",  "__rshift__",
          "__rsub__",     "__rtruediv__",  "__rxor__",        "__setitem__",  "__setslice__",
          "__str__",      "__sub__",       "__truediv__",     "__xor__",      "next"};
}

ProtocolConfig ProtocolConfig::Classic() {
  // rpyc/utils/classic.py's server: SlaveService with these keys set.
  ProtocolConfig c;
  c.allow_all_attrs = true;
  c.allow_pickle = true;
  c.allow_getattr = true;
  c.allow_setattr = true;
  c.allow_delattr = true;
  c.allow_exposed_attrs = false;
  c.import_custom_exceptions = true;
  c.instantiate_custom_exceptions = true;
  c.instantiate_oldstyle_exceptions = true;
  return c;
}

}  // namespace classicd::objspace
