# Fills the unit templates. Used by systemd/CMakeLists.txt at configure time and, in script
# mode, by the system tests:
#   cmake -DOUT=DIR -DSBINDIR=/usr/sbin -DSYSCONFDIR=/etc -P systemd/render-units.cmake
# Every classicd unit gets the same sandbox from classicd-hardening.conf.
if(NOT DEFINED OUT OR NOT DEFINED SBINDIR OR NOT DEFINED SYSCONFDIR)
  message(FATAL_ERROR "render-units.cmake needs OUT, SBINDIR and SYSCONFDIR")
endif()
set(RPYC_UNIT_TEMPLATES
  rpyc-registryd.service rpyc-registryd.socket
  rpyc-classicd.service rpyc-classicd.socket
  rpyc-classicd-inetd.socket rpyc-classicd-inetd@.service
  rpyc-classicd@.service rpyc-classicd@.socket)
get_filename_component(_units_src "${CMAKE_CURRENT_LIST_FILE}" DIRECTORY)
file(READ "${_units_src}/classicd-hardening.conf" CLASSICD_HARDENING)
foreach(_unit IN LISTS RPYC_UNIT_TEMPLATES)
  configure_file("${_units_src}/${_unit}.in" "${OUT}/${_unit}" @ONLY)
endforeach()
