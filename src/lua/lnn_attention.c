/* flame.F: dropout and attention: dropout, linear, scaled_dot_product_attention, flash_attention_varlen. */
#include "lflame.h"

static const lfl_reg functions[] = {
    {NULL, NULL, 0},
};

/* Fills the flame.nn.functional table at -1. */
void lfl_open_nn_attention(lua_State *L) { lfl_setfuncs(L, functions); }
