#!/bin/sh
# Codec benchmark, C++ against the Python reference in one run, with ratios.
#   bench/codec.sh [BUILD_DIR]      (default build/release; configure it with --preset release)
# Prints one row per operation: C++ and Python CPU time per operation (CPU time, as the machine
# may be shared), C++ throughput, and how many times faster C++ is. "Adaptive" rows compare the
# adaptive writer with Python's always-compress.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build/release}
tool=$build/bench/codec_bench
[ -x "$tool" ] || { echo "codec_bench not built in $build (cmake --build --preset release)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$tool" --benchmark_format=json --benchmark_min_time=0.5 > "$tmp/cpp.json"
/usr/bin/python3 "$here/codec_python.py" > "$tmp/py.json"
/usr/bin/python3 - "$tmp/cpp.json" "$tmp/py.json" <<'PY'
import json, sys
cpp = {b['name'].removeprefix('BM_'): b for b in json.load(open(sys.argv[1]))['benchmarks']}
py = json.load(open(sys.argv[2]))
unit = {'ns': 1e-9, 'us': 1e-6, 'ms': 1e-3, 's': 1.0}
print(f"{'operation':34} {'C++':>11} {'Python':>11} {'C++ MB/s':>10} {'speedup':>8}")
for name, b in cpp.items():
    t = b['cpu_time'] * unit[b['time_unit']]
    ref = py.get(name) or py.get(name.replace('Adaptive', ''))
    mbs = b.get('bytes_per_second', 0) / 1e6
    ratio = f"{ref / t:7.1f}x" if ref else '      -'
    pyt = f"{ref * 1e3:9.3f}ms" if ref else '          -'
    print(f"{name:34} {t * 1e3:9.3f}ms {pyt} {mbs:10.0f} {ratio}")
PY
