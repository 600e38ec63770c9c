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
extern const char lfl_tensor_mt; /* its address: the registry key of the tensor metatable */
fl_tensor **lfl_box(lua_State *L, int idx); /* the userdata of a tensor at idx, or NULL */
void lfl_forget_metatables(void); /* a state closes: lfl_box's per-thread memory of its metatable is void */
fl_tensor *lfl_check(lua_State *L, int idx);
fl_tensor *lfl_test(lua_State *L, int idx);
/* A tensor argument, or a number turned into a 0-dim tensor like `like`, which
 * replaces the number at idx (borrowed either way: Lua owns it, so a later
 * raise leaks nothing). */
fl_tensor *lfl_operand(lua_State *L, int idx, const fl_tensor *like);
/* Raises lfl_operand's type error without creating anything. */
void lfl_check_operand(lua_State *L, int idx);

/* ---- arguments and options (largs.c): one way for every function ---- */
/* Registration with the most positional arguments a function reads (self
 * included); a non-nil argument beyond them is an error naming the function
 * and its position. LFL_NOARGS: none; LFL_VARARGS: not checked here, for
 * functions that take a variable count and check it themselves. */
#define LFL_NOARGS (-1)
#define LFL_VARARGS 0
typedef struct {
  const char *name;
  lua_CFunction fn;
  int nargs;
} lfl_reg;
void lfl_setfuncs(lua_State *L, const lfl_reg *r); /* into the table at -1; fn must have no upvalues */
/* Raises the extra-argument error if a non-nil argument follows position max. */
void lfl_nargs(lua_State *L, int max);
void lfl_argextra(lua_State *L, int pos); /* that error for the argument at pos */
/* The running function's name for messages (sets *is_method when called as t:f()). */
const char *lfl_fname(lua_State *L, int *is_method);
/* Checks that the table at idx has only the given keys (a NULL-ended list):
 * an unknown one is an error with the closest key as a suggestion. Raw: no
 * metamethod of the table runs. */
void lfl_check_keys(lua_State *L, int idx, const char *const *keys);
/* Options table at idx (none or nil: returns 0) checked against keys;
 * returns its absolute index. Read its fields with lfl_rawfield. */
int lfl_options(lua_State *L, int idx, const char *const *keys);
/* Pushes t[key] of the table at idx without metamethods; returns its type. */
int lfl_rawfield(lua_State *L, int idx, const char *key);

/* Options table {dtype, device, requires_grad} at idx (0, none or nil: base). */
fl_opts lfl_opts(lua_State *L, int idx, fl_opts base);
/* The same with only some of those keys allowed (a NULL-ended list). */
fl_opts lfl_opts_keys(lua_State *L, int idx, fl_opts base, const char *const *keys);
/* A shape from numbers at [first, last] or one array table at first; returns ndim. */
int lfl_shape(lua_State *L, int first, int last, int64_t *shape);

/* ---- shapes (lshape.c) ---- */
void lfl_push_shape(lua_State *L, int n, const int64_t *dims); /* t.shape's object */
bool lfl_is_shape(lua_State *L, int idx);
/* Sizes from a shape object or an array table at idx (raw reads); returns n. */
int lfl_sizes_at(lua_State *L, int idx, int64_t *out, const char *what);
/* Sizes as one table (or shape) at first, or as integers first..top. */
int lfl_sizes(lua_State *L, int first, int64_t *out, const char *what);
/* A 1-based Lua dim at idx (negative counts from the end), checked against
 * t's dims plus `extra` (1 where a dim may be inserted), as the C API's
 * 0-based one; a bad dim is an argument error naming the op and t's shape. */
int lfl_dim(lua_State *L, int idx, const fl_tensor *t, int extra);
/* dims as a number, a table, or nil (all) -> bitmask over t's dims. */
uint32_t lfl_dims_mask(lua_State *L, int idx, const fl_tensor *t);

/* A device ordinal argument: an integer in 0..INT_MAX (not wrapped into an int). */
int lfl_device_ordinal(lua_State *L, int idx);

/* Registration of the pieces. */
void lfl_open_tensor(lua_State *L);   /* metatable + methods; leaves nothing */
void lfl_push_methods(lua_State *L);  /* the methods table */
int lfl_tostring(lua_State *L);
int lfl_set_printoptions(lua_State *L); /* lprint.c: flame.set_printoptions */
void lfl_open_functions(lua_State *L); /* fills the module table at -1 */
void lfl_open_memory(lua_State *L);    /* GC pacing and OOM handling */
/* C objects that the graph may keep past lua_close (lmemory.c): they start with this header, registered by
 * lfl_own; closing the state sets L to NULL, after which they must not touch Lua. */
typedef struct {
  lua_State *L; /* the main thread; NULL once the state closed */
} lfl_owned;
void lfl_own(lua_State *L, lfl_owned *o);
void lfl_disown(lfl_owned *o); /* before freeing o */
void lfl_detach_owned(lua_State *L);
void lfl_open_shape(lua_State *L);     /* the shape metatable */
void lfl_open_io(lua_State *L); /* lio.c: safetensors checkpoints (flame.save, flame.load) and flame.load_npy */
void lfl_open_data(lua_State *L); /* ldata.c: flame.data readers (IDX, npy, image folders), flame.image (PNG) */
void lfl_open_autograd_fn(lua_State *L); /* lautograd_fn.c: flame.autograd._function (Lua-defined nodes) */
void lfl_open_dist(lua_State *L); /* ldist.c: flame.distributed's rendezvous, communicators and collectives */
void lfl_open_optim(lua_State *L); /* loptim.c: the fused optimizer kernels behind flame.optim (Adam/AdamW multi-tensor, the global grad norm) */
void lfl_open_nn(lua_State *L);        /* flame.nn.functional (= flame.F) into the module table at -1 */
void lfl_open_nn_norm(lua_State *L); /* lnn_norm.c: norms: layer_norm, group_norm, rms_norm */
void lfl_open_nn_conv(lua_State *L); /* lnn_conv.c: convolution: conv1d/2d/3d, conv_transpose2d */
void lfl_open_nn_index(lua_State *L); /* lnn_index.c: index and losses: embedding, the losses, cross_entropy */
void lfl_open_nn_pool(lua_State *L); /* lnn_pool.c: pooling, resizing, padding: avg/max/adaptive pools, interpolate, pad */
void lfl_open_nn_attention(lua_State *L); /* lnn_attention.c: dropout and attention: dropout, linear, scaled_dot_product_attention, flash_attention_varlen */
/* Records the C functions of the table at idx as ones that may hold tensors while Lua code runs. */
void lfl_mark_cfunctions(lua_State *L, int idx);
#endif
