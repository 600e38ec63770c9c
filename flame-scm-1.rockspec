-- `luarocks make` (from the repository root) builds the Lua module through CMake and installs flame.so into
-- the rocks tree, where a stock lua5.4 finds it with require "flame". Needs what scripts/setup installs
-- (Debian: cmake liblua5.4-dev libopenblas-dev zlib1g-dev libpng-dev; libjpeg62-turbo-dev, libdlpack-dev and
-- CUDA optional). CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) luarocks make builds in parallel; FLAME_CUDA=OFF in the
-- environment builds without CUDA where nvcc exists.
-- Hosts that link the C API or the binding use cmake --install instead (docs/embedding.md).
rockspec_format = "3.0"
package = "flame"
version = "scm-1"
source = {
   url = ".", -- no public repository yet: `luarocks make` builds the checkout it runs in
}
description = {
   summary = "A Lua-scriptable tensor engine: C11 tensors, autograd and kernels (CPU, CUDA)",
   detailed = [[
FLAME-Lua: tensors, autograd, neural-network ops, optimizers and checkpoints in C11 and CUDA, exposed to
Lua 5.4 as userdata. require "flame" gives the whole library (its Lua parts are built into flame.so).]],
   license = "not declared yet", -- the repository has no license file
   labels = { "tensor", "autograd", "deep-learning", "cuda" },
}
dependencies = {
   "lua >= 5.4, < 5.5",
}
build = {
   type = "cmake",
   variables = {
      CMAKE_BUILD_TYPE = "Release",
      CMAKE_INSTALL_PREFIX = "$(PREFIX)",
      FLAME_INSTALL_LUA_CMOD = "$(LIBDIR)",
      FLAME_INSTALL_MODULE_ONLY = "ON",
      FLAME_BUILD_TESTS = "OFF",
      LUA_INCLUDE_DIR = "$(LUA_INCDIR)",
   },
}
