/* flame.F: index and losses: embedding, the losses, cross_entropy. */
#include "lflame.h"

static const lfl_reg functions[] = {
    {NULL, NULL, 0},
};

/* Fills the flame.nn.functional table at -1. */
void lfl_open_nn_index(lua_State *L) { lfl_setfuncs(L, functions); }
