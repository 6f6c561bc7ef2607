# Run by cmake --install (and cpack): the systemd unit and the settings file, whose places
# depend on the prefix given at install time. Prefix /usr, as a distribution package: /etc
# and /lib/systemd/system, beside the system's own; any other prefix keeps both under it.
# The unit's paths are rewritten to where the binary and the settings went.
# Set before: VR_SOURCE_DIR, VR_BINARY_DIR, VR_BINDIR (relative to the prefix, or absolute).
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(vr_etc /etc/voidrecon)
  set(vr_units /lib/systemd/system)
else()
  set(vr_etc ${CMAKE_INSTALL_PREFIX}/etc/voidrecon)
  set(vr_units ${CMAKE_INSTALL_PREFIX}/lib/systemd/system)
endif()
if(IS_ABSOLUTE "${VR_BINDIR}")
  set(vr_bin ${VR_BINDIR})
else()
  set(vr_bin ${CMAKE_INSTALL_PREFIX}/${VR_BINDIR})
endif()

file(READ ${VR_SOURCE_DIR}/deploy/systemd/voidrecon.service unit)
string(REPLACE "/usr/bin/voidrecon" "${vr_bin}/voidrecon" unit "${unit}")
string(REPLACE "/etc/voidrecon/" "${vr_etc}/" unit "${unit}")
file(WRITE ${VR_BINARY_DIR}/deploy/voidrecon.service "${unit}")
file(INSTALL DESTINATION ${vr_units} TYPE FILE
     PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
     FILES ${VR_BINARY_DIR}/deploy/voidrecon.service)

# The settings may hold secrets: never readable by all, and an edited file is never replaced
# (the package's own copy is a conffile: dpkg asks before replacing it).
if(EXISTS "$ENV{DESTDIR}${vr_etc}/voidrecon.env")
  message(STATUS "Keeping: $ENV{DESTDIR}${vr_etc}/voidrecon.env")
else()
  file(INSTALL DESTINATION ${vr_etc} TYPE FILE PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ
       FILES ${VR_SOURCE_DIR}/deploy/voidrecon.env)
endif()
