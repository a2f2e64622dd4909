# Writes build_commit.h with the source tree's commit, at every build (the header only changes
# when the commit does, so nothing is recompiled otherwise):
#   cmake -DSOURCE_DIR=... -DOUT=.../build_commit.h -P libcore/daemon/build_commit.cmake
# A tree without git (a release tarball) may carry the commit in a file named .build-commit;
# otherwise the version says the commit is unknown.
execute_process(COMMAND git -C "${SOURCE_DIR}" describe --always --dirty --abbrev=12
                OUTPUT_VARIABLE commit RESULT_VARIABLE failed
                OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(failed OR commit STREQUAL "")
  if(EXISTS "${SOURCE_DIR}/.build-commit")
    file(STRINGS "${SOURCE_DIR}/.build-commit" commit LIMIT_COUNT 1)
  else()
    set(commit "unknown (built without git)")
  endif()
endif()
string(REGEX REPLACE "[\"\\\\]" "" commit "${commit}")
file(CONFIGURE OUTPUT "${OUT}" CONTENT "#pragma once\n#define RPYC_BUILD_COMMIT \"@commit@\"\n"
     @ONLY)
