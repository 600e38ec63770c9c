/* flame.F: norms: layer_norm, group_norm, rms_norm. */
#include "lflame.h"

static const lfl_reg functions[] = {
    {NULL, NULL, 0},
};

/* Fills the flame.nn.functional table at -1. */
void lfl_open_nn_norm(lua_State *L) { lfl_setfuncs(L, functions); }
