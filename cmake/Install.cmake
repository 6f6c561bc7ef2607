# What cmake --install lays out (GNUInstallDirs): the binary, its man page written from its
# --help by help2man, the systemd unit and the settings file (cmake/InstallSystem.cmake); and
# the Debian package of the same (cpack -G DEB, scripts/package.sh).
include(GNUInstallDirs)

find_program(HELP2MAN help2man)
if(NOT HELP2MAN)
  message(FATAL_ERROR "help2man not found (it writes the man page): apt-get install help2man")
endif()
set(VR_MAN_DIR ${CMAKE_BINARY_DIR}/man)
# The sanitizer build runs the binary here too; a leak report at exit is not the page's concern.
add_custom_command(
  OUTPUT ${VR_MAN_DIR}/voidrecon.1.gz ${VR_MAN_DIR}/voidrecon.1
  COMMAND ${CMAKE_COMMAND} -E make_directory ${VR_MAN_DIR}
  COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=0
          ${CMAKE_COMMAND} -DVOIDRECON=$<TARGET_FILE:voidrecon> -DHELP2MAN=${HELP2MAN}
          -DINCLUDE=${PROJECT_SOURCE_DIR}/deploy/man/voidrecon.h2m
          -DOUTPUT=${VR_MAN_DIR}/voidrecon.1.gz -P ${PROJECT_SOURCE_DIR}/cmake/ManPage.cmake
  DEPENDS voidrecon ${PROJECT_SOURCE_DIR}/cmake/ManPage.cmake
          ${PROJECT_SOURCE_DIR}/deploy/man/voidrecon.h2m
  COMMENT "Writing the man page voidrecon(1) from --help")
add_custom_target(voidrecon_man ALL DEPENDS ${VR_MAN_DIR}/voidrecon.1.gz)

install(TARGETS voidrecon RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${VR_MAN_DIR}/voidrecon.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(CODE "set(VR_SOURCE_DIR \"${PROJECT_SOURCE_DIR}\")
set(VR_BINARY_DIR \"${CMAKE_BINARY_DIR}\")
set(VR_BINDIR \"${CMAKE_INSTALL_BINDIR}\")")
install(SCRIPT ${PROJECT_SOURCE_DIR}/cmake/InstallSystem.cmake)

# ---- the Debian package ---------------------------------------------------------------------
# Laid out for prefix /usr whatever this build's prefix (so the test build packages too), with
# DESTDIR so that /etc and /lib go into the package, not onto this machine.
set(VR_PACKAGE_MAINTAINER "voidrecon <voidrecon@example.com>"
    CACHE STRING "The Maintainer field of the Debian package")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME voidrecon)
set(CPACK_PACKAGE_VENDOR voidrecon)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "airline void webhook reconciliation service")
set(CPACK_PACKAGE_DESCRIPTION
    "voidrecon receives airline void webhooks (Atlas, Xsolla, XendBridge),\n"
    "keeps each void case's state machine in PostgreSQL, polls Atlas until\n"
    "every case is reconciled and raises alerts for what needs a person.\n"
    "It runs as the systemd service voidrecon, installed disabled: write\n"
    "/etc/voidrecon/voidrecon.env, then enable it.")
string(REPLACE ";" "" CPACK_PACKAGE_DESCRIPTION "${CPACK_PACKAGE_DESCRIPTION}")
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_COMPRESSION_TYPE xz)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${VR_PACKAGE_MAINTAINER}")
# The libraries' packages come from dpkg-shlibdeps; adduser is what postinst calls.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "postgresql")
set(vr_debian ${PROJECT_SOURCE_DIR}/deploy/debian)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${vr_debian}/conffiles ${vr_debian}/postinst
                                       ${vr_debian}/prerm ${vr_debian}/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
