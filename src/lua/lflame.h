/* The Lua binding's shared helpers: tensors as userdata, options, dims, errors. */
#ifndef LFLAME_H
#define LFLAME_H
#include "flame.h"
#include "flame_lua.h"
#include <lauxlib.h>
#include <lua.h>

#define LFL_TENSOR "flame.Tensor"


/* Raise the library's last error as a Lua error (never returns). */
int lfl_error(lua_State *L);
#define LFL_CHECK(L, expr)                  \
  do {                                      \
    if ((expr) != FL_OK) lfl_error(L);      \
  } while (0)

/* Push t, taking over the caller's reference. */
void lfl_push(lua_State *L, fl_tensor *t);
fl_tensor *lfl_check(lua_State *L, int idx);
fl_tensor *lfl_test(lua_State *L, int idx);
/* A tensor argument, or a number turned into a 0-dim tensor like `like`, which
 * replaces the number at idx (borrowed either way: Lua owns it, so a later
 * raise leaks nothing). */
fl_tensor *lfl_operand(lua_State *L, int idx, const fl_tensor *like);
/* Raises lfl_operand's type error without creating anything. */
void lfl_check_operand(lua_State *L, int idx);

/* Options table {dtype, device, requires_grad} at idx (0, none or nil: base). */
fl_opts lfl_opts(lua_State *L, int idx, fl_opts base);
/* A shape from numbers at [first, last] or one array table at first; returns ndim. */
int lfl_shape(lua_State *L, int first, int last, int64_t *shape);
/* A 1-based Lua dim at idx (negative counts from the end), checked against
 * t's dims plus `extra` (1 where a dim may be inserted), as the C API's
 * 0-based one; a bad dim is an argument error naming the op and t's shape. */
int lfl_dim(lua_State *L, int idx, const fl_tensor *t, int extra);
/* dims as a number, a table, or nil (all) -> bitmask over t's dims. */
uint32_t lfl_dims_mask(lua_State *L, int idx, const fl_tensor *t);

/* Registration of the pieces. */
void lfl_open_tensor(lua_State *L);   /* metatable + methods; leaves nothing */
void lfl_push_methods(lua_State *L);  /* the methods table */
int lfl_tostring(lua_State *L);
void lfl_open_functions(lua_State *L); /* fills the module table at -1 */
void lfl_open_memory(lua_State *L);    /* GC pacing and OOM handling */
/* Records the C functions of the table at idx as ones that may hold tensors while Lua code runs. */
void lfl_mark_cfunctions(lua_State *L, int idx);
#endif
