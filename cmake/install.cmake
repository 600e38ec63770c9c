# cmake --install: what a host, a Lua user and luarocks get (docs/embedding.md, "Linking").
#   include/flame/{flame.h,flame_lua.h,flame_dlpack.h}  the C API and the binding's host API
#   lib/libflame.so, lib/libflame_lua.so                  flame::flame, flame::lua (pkg-config flame, flame-lua)
#   lib/lua/5.4/flame.so                                  require "flame" from lua5.4 (FLAME_INSTALL_LUA_CMOD)
#   bin/flame-lua                                         the interpreter and REPL
#   lib/pkgconfig/flame.pc, flame-lua.pc; lib/cmake/flame/ (find_package(flame) with a version file)
# FLAME_INSTALL_MODULE_ONLY (luarocks) installs flame.so alone.
install(TARGETS flame_lua_module LIBRARY DESTINATION ${FLAME_INSTALL_LUA_CMOD})
if(FLAME_INSTALL_MODULE_ONLY) # the rest is not built either (tests may still ask for libflame)
  set_target_properties(flame flame_lua flame-lua PROPERTIES EXCLUDE_FROM_ALL ON)
  return()
endif()

install(FILES include/flame.h include/flame_lua.h include/flame_dlpack.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/flame)
install(TARGETS flame flame_lua EXPORT flameTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/flame)
install(TARGETS flame-lua RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# The CMake package: flameTargets.cmake (flame::flame, flame::lua), a config that adds Lua 5.4 and DLPack's
# include dir to them, and a version file (same major version).
include(CMakePackageConfigHelpers)
set(FLAME_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/flame)
install(EXPORT flameTargets NAMESPACE flame:: DESTINATION ${FLAME_CMAKE_DIR})
set(FLAME_CONFIG_HAVE_DLPACK 0)
if(DLPACK_INCLUDE_DIR)
  set(FLAME_CONFIG_HAVE_DLPACK 1)
endif()
configure_package_config_file(cmake/flameConfig.cmake.in ${CMAKE_BINARY_DIR}/flameConfig.cmake
                              INSTALL_DESTINATION ${FLAME_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/flameConfigVersion.cmake COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_BINARY_DIR}/flameConfig.cmake ${CMAKE_BINARY_DIR}/flameConfigVersion.cmake
        DESTINATION ${FLAME_CMAKE_DIR})

# pkg-config: prefix is found from the file's own place (pcfiledir), so `cmake --install --prefix` anywhere, or a
# moved prefix, still gives the right paths.
file(RELATIVE_PATH FLAME_PC_TO_PREFIX "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
string(REGEX REPLACE "/$" "" FLAME_PC_TO_PREFIX "${FLAME_PC_TO_PREFIX}")
set(FLAME_PC_DLPACK_CFLAGS "")
if(DLPACK_INCLUDE_DIR AND NOT DLPACK_INCLUDE_DIR STREQUAL "/usr/include")
  set(FLAME_PC_DLPACK_CFLAGS "-I${DLPACK_INCLUDE_DIR}")
endif()
foreach(pc flame flame-lua)
  configure_file(cmake/${pc}.pc.in ${CMAKE_BINARY_DIR}/${pc}.pc @ONLY)
  install(FILES ${CMAKE_BINARY_DIR}/${pc}.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endforeach()
