/* flame.nn.functional (also flame.F): the C functions of each op family,
 * registered into one table before the Lua pieces (lua/flame/) extends it. */
#include "lflame.h"

void lfl_open_nn(lua_State *L) {
  luaL_getsubtable(L, -1, "nn");
  luaL_getsubtable(L, -1, "functional");
  lfl_open_nn_norm(L);
  lfl_open_nn_conv(L);
  lfl_open_nn_index(L);
  lfl_open_nn_pool(L);
  lfl_open_nn_attention(L);
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "F");
  lua_pop(L, 2);
}
