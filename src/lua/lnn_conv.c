/* flame.F: convolution: conv1d/2d/3d, conv_transpose2d. */
#include "lflame.h"

static const lfl_reg functions[] = {
    {NULL, NULL, 0},
};

/* Fills the flame.nn.functional table at -1. */
void lfl_open_nn_conv(lua_State *L) { lfl_setfuncs(L, functions); }
