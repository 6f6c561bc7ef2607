# Finds the Debian packages voidrecon stands on; a missing one stops the build with its name.
find_package(PkgConfig)
if(NOT PKG_CONFIG_FOUND)
  message(FATAL_ERROR "pkg-config not found: apt-get install pkg-config")
endif()

function(vr_require prefix module debian_package)
  pkg_check_modules(${prefix} IMPORTED_TARGET GLOBAL ${module})
  if(NOT ${prefix}_FOUND)
    message(FATAL_ERROR "${module} not found: apt-get install ${debian_package}")
  endif()
endfunction()

vr_require(LIBUV libuv libuv1-dev)
vr_require(LIBPQ libpq libpq-dev)
vr_require(CJSON libcjson libcjson-dev)
vr_require(LIBCURL libcurl libcurl4-openssl-dev)
vr_require(LIBCRYPTO libcrypto libssl-dev)
# sd_notify: serve tells systemd when it is ready and when it stops (Type=notify).
vr_require(LIBSYSTEMD libsystemd libsystemd-dev)

# llhttp ships as C sources in Debian's node-llhttp; compile them into the build.
set(LLHTTP_SOURCE_DIR /usr/share/llhttp CACHE PATH "llhttp C sources (node-llhttp)")
set(LLHTTP_INCLUDE_DIR /usr/share/include/llhttp CACHE PATH "llhttp header (node-llhttp)")
if(NOT EXISTS ${LLHTTP_SOURCE_DIR}/llhttp.c OR NOT EXISTS ${LLHTTP_INCLUDE_DIR}/llhttp.h)
  message(FATAL_ERROR "llhttp sources not found in ${LLHTTP_SOURCE_DIR}: apt-get install node-llhttp")
endif()
add_library(vr_llhttp STATIC ${LLHTTP_SOURCE_DIR}/llhttp.c ${LLHTTP_SOURCE_DIR}/api.c
                             ${LLHTTP_SOURCE_DIR}/http.c)
target_include_directories(vr_llhttp SYSTEM PUBLIC ${LLHTTP_INCLUDE_DIR})
set_target_properties(vr_llhttp PROPERTIES POSITION_INDEPENDENT_CODE ON)
add_library(vr::llhttp ALIAS vr_llhttp)
