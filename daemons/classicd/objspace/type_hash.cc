// See type_hash.h.

#include "daemons/classicd/objspace/type_hash.h"
#include <Python.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace classicd::objspace {
namespace {

// (address here, address in the executable), sorted by the first. Written once before the
// interpreter starts, read only afterwards.
std::vector<std::pair<uintptr_t, uintptr_t>> g_types;

Py_hash_t TypeHash(PyObject* t) {
  if ((reinterpret_cast<PyTypeObject*>(t)->tp_flags & Py_TPFLAGS_HEAPTYPE) == 0) {
    const auto key = reinterpret_cast<uintptr_t>(t);
    auto it = std::lower_bound(g_types.begin(), g_types.end(), std::make_pair(key, uintptr_t{0}));
    if (it != g_types.end() && it->first == key) {
      return _Py_HashPointer(reinterpret_cast<const void*>(it->second));
    }
  }
  return _Py_HashPointer(t);
}

// A type the executable exports: `name` is the type object (*_Type) at `address`, or, when
// `pointer`, a variable that points to it (the built-in exceptions: PyExc_*, whose types are not
// exported), `address` being the pointer's value.
struct ExportedType {
  std::string name;
  uintptr_t address = 0;
  bool pointer = false;
};

// The executable's exported types with their (fixed) addresses; empty when it is not a 64-bit
// fixed-address ELF executable.
std::vector<ExportedType> ExportedTypes(const std::string& path) {
  std::vector<ExportedType> out;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  struct stat st {};
  void* map = MAP_FAILED;
  if (::fstat(fd, &st) == 0 && st.st_size > static_cast<off_t>(sizeof(Elf64_Ehdr))) {
    map = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
  }
  ::close(fd);
  if (map == MAP_FAILED) return out;
  const auto* base = static_cast<const unsigned char*>(map);
  const auto size = static_cast<size_t>(st.st_size);
  const auto* eh = reinterpret_cast<const Elf64_Ehdr*>(base);
  auto in_file = [size](uint64_t off, uint64_t len) { return off <= size && len <= size - off; };
  if (std::memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0 && eh->e_ident[EI_CLASS] == ELFCLASS64 &&
      eh->e_type == ET_EXEC && eh->e_shentsize == sizeof(Elf64_Shdr) &&
      in_file(eh->e_shoff, uint64_t{eh->e_shnum} * sizeof(Elf64_Shdr))) {
    const auto* sh = reinterpret_cast<const Elf64_Shdr*>(base + eh->e_shoff);
    for (unsigned i = 0; i < eh->e_shnum; ++i) {
      if (sh[i].sh_type != SHT_DYNSYM || sh[i].sh_link >= eh->e_shnum) continue;
      const Elf64_Shdr& strtab = sh[sh[i].sh_link];
      if (!in_file(sh[i].sh_offset, sh[i].sh_size) || !in_file(strtab.sh_offset, strtab.sh_size)) {
        continue;
      }
      const auto* syms = reinterpret_cast<const Elf64_Sym*>(base + sh[i].sh_offset);
      const size_t n = sh[i].sh_size / sizeof(Elf64_Sym);
      const auto* names = reinterpret_cast<const char*>(base + strtab.sh_offset);
      for (size_t k = 0; k < n; ++k) {
        if (ELF64_ST_TYPE(syms[k].st_info) != STT_OBJECT || syms[k].st_shndx == SHN_UNDEF ||
            syms[k].st_name >= strtab.sh_size) {
          continue;
        }
        const char* name = names + syms[k].st_name;
        std::string_view v(name, strnlen(name, strtab.sh_size - syms[k].st_name));
        if (v.size() > 5 && v.substr(v.size() - 5) == "_Type") {
          out.push_back({std::string(v), static_cast<uintptr_t>(syms[k].st_value), false});
        } else if (v.starts_with("PyExc_") && syms[k].st_size == sizeof(uint64_t)) {
          // The pointer's initial value, from the section that holds it (no relocation in a
          // fixed-address executable).
          const uint64_t addr = syms[k].st_value;
          for (unsigned j = 0; j < eh->e_shnum; ++j) {
            const Elf64_Shdr& s = sh[j];
            if (s.sh_type != SHT_PROGBITS || addr < s.sh_addr || addr - s.sh_addr >= s.sh_size ||
                !in_file(s.sh_offset + (addr - s.sh_addr), sizeof(uint64_t))) {
              continue;
            }
            uint64_t target = 0;
            std::memcpy(&target, base + s.sh_offset + (addr - s.sh_addr), sizeof(target));
            if (target != 0) out.push_back({std::string(v), static_cast<uintptr_t>(target), true});
            break;
          }
        }
      }
    }
  }
  ::munmap(map, size);
  return out;
}

}  // namespace

bool MatchTypeHashes(const std::string& executable) {
  std::vector<std::pair<uintptr_t, uintptr_t>> types;
  for (const auto& t : ExportedTypes(executable)) {
    void* ours = ::dlsym(RTLD_DEFAULT, t.name.c_str());
    if (ours != nullptr && t.pointer) ours = *static_cast<void**>(ours);
    if (ours != nullptr) types.emplace_back(reinterpret_cast<uintptr_t>(ours), t.address);
  }
  if (types.empty()) return false;
  std::sort(types.begin(), types.end());
  g_types = std::move(types);
  PyType_Type.tp_hash = &TypeHash;  // inherited by metaclasses made from here on
  return true;
}

}  // namespace classicd::objspace
