/* flame.F: pooling, resizing, padding: avg/max/adaptive pools, interpolate, pad. */
#include "lflame.h"

static const lfl_reg functions[] = {
    {NULL, NULL, 0},
};

/* Fills the flame.nn.functional table at -1. */
void lfl_open_nn_pool(lua_State *L) { lfl_setfuncs(L, functions); }
