/* The autograd graph's records (core layer): nodes, their edges to the inputs'
 * nodes, their outputs, saved tensors and typed contexts. Op front-ends build
 * nodes with these; the engine that runs them backward is src/autograd/, a
 * layer above the ops, because backward functions call ops. */
#ifndef FL_AUTOGRAD_H
#define FL_AUTOGRAD_H

#include "internal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* gout[k]: the gradient of output k, or NULL where no gradient reached that
 * output (treat it as zeros; fl_output_zeros materialises them when a backward
 * needs a tensor). A node runs only when at least one gout[k] is non-NULL.
 * gin[i]: set to a new reference, in output k's broadcast shape, or left NULL
 * for "no gradient"; the engine fits it to input i's shape and dtype. */
typedef fl_status (*fl_backward_fn)(fl_node *n, fl_tensor *const *gout, fl_tensor **gin);

typedef struct fl_edge {
  fl_node *node; /* the input's node (strong), NULL if this input does not need a gradient */
  int output_nr; /* which output of node the input is */
  int ndim;      /* the input's shape and dtype, for fitting its gradient */
  int64_t shape[FL_MAX_DIMS];
  fl_dtype dtype;
} fl_edge;

typedef struct fl_hook {
  fl_hook_fn fn;
  void *ud;
  void (*free_ud)(void *);
  struct fl_hook *next;
} fl_hook;

/* One output of a node. A non-differentiable output (max's indices) has no
 * tensor attached and never receives a gradient. */
typedef struct fl_node_out {
  fl_tensor *tensor; /* weak: the output while it lives (retain_grad) */
  fl_hook *hooks;    /* run on this output's gradient, in registration order */
  fl_tensor *gbuf;   /* engine scratch: the gradient summed so far */
  int ndim;          /* the output's shape, dtype and device, for zeros */
  int64_t shape[FL_MAX_DIMS];
  fl_dtype dtype;
  fl_device device;
  bool differentiable; /* a tensor was attached: the metadata above is set */
} fl_node_out;

typedef struct fl_saved {
  fl_tensor *t;     /* a detached alias */
  uint64_t version; /* the storage version at save time: the in-place check */
} fl_saved;

/* Releases what a context holds (references); the node frees the memory. */
typedef void (*fl_ctx_release_fn)(void *ctx);

#define FL_NODE_INLINE_SAVED 4
#define FL_NODE_INLINE_CTX 64

struct fl_node {
  FL_ATOMIC_INT refcount;
  const char *name;
  uint64_t seq;            /* creation order (fl_node_mark) */
  fl_backward_fn backward; /* NULL for a leaf's accumulator */
  int n_in;
  fl_edge *in;
  int n_out;
  fl_node_out *out; /* &out1, or an array for several outputs */
  fl_node_out out1;
  fl_saved *saved; /* saved_small, or a heap array once it outgrows it */
  int n_saved, cap_saved;
  fl_saved saved_small[FL_NODE_INLINE_SAVED];
  void *ctx; /* the op's typed context: ctx_small, or the heap when larger */
  fl_ctx_release_fn ctx_release;
  union {
    max_align_t align;
    unsigned char bytes[FL_NODE_INLINE_CTX];
  } ctx_small;
  fl_tensor *leaf; /* accumulator nodes: the leaf (weak) */
  fl_hook *post_hooks; /* accumulator nodes: run after the leaf's .grad was stored, in registration order */
  bool released;   /* saved tensors and context freed by a backward without retain_graph */
  /* engine scratch */
  int deps;
  int mark;
};

/* Nested backward passes: allowed (on a graph disjoint from the running pass's) while a backward
 * function that recomputes and differentiates its forward sets the flag; returns the previous value. */
bool fl_allow_nested_backward(bool on);
bool fl_nested_backward_allowed(void);
/* The dtype an argument of dtype dt takes in an op of the list (dt itself when autocast is off). */
fl_dtype fl_autocast_dtype(fl_autocast_list list, fl_dtype dt);
/* An op's entry under autocast: when any of the n arguments args (a compound literal) would be cast, calls
 * `call` once with the cast arguments in ac[0..n-1] and returns its status; the call re-enters the op,
 * whose arguments then no longer qualify. */
#define FL_AUTOCAST(list, n, args, call)                                  \
  do {                                                                    \
    const fl_tensor *const *ac_in_ = (args);                              \
    if (fl_autocast_wants(list, n, ac_in_)) {                             \
      fl_tensor *ac[n];                                                   \
      fl_status ac_st_ = fl_autocast_cast(list, n, ac_in_, ac);           \
      if (ac_st_ == FL_OK) ac_st_ = (call);                               \
      for (int ac_i_ = 0; ac_i_ < n; ac_i_++) fl_release(ac[ac_i_]);      \
      return ac_st_;                                                      \
    }                                                                     \
  } while (0)
/* True if grad mode is on and any of the n tensors requires grad. */
bool fl_needs_grad(int n, const fl_tensor *const *ts);
/* Records a node over inputs ins (NULL entries allowed) producing n_out
 * outputs, when any input needs a gradient; *node is NULL otherwise. outs[k]
 * NULL marks a non-differentiable output. Each attached output owns a reference
 * to the node. */
fl_status fl_record_outputs(const char *name, fl_backward_fn bw, int n_in, const fl_tensor *const *ins, int n_out,
                            fl_tensor *const *outs, fl_node **node);
/* The one-output case: the common front-end step. */
fl_status fl_record(const char *name, fl_backward_fn bw, int n_in, const fl_tensor *const *ins, fl_tensor *out,
                    fl_node **node);
/* Saves a detached alias of t with its version, for the in-place check. An
 * allocation failure is an error naming the op, at record time. */
fl_status fl_node_save(fl_node *n, const fl_tensor *t);
/* Saved tensor i (borrowed); fails if it was modified in place since. */
fl_status fl_node_saved(fl_node *n, int i, fl_tensor **out);
/* The op's typed context: size bytes, zeroed, owned by the node; release (may
 * be NULL) is called on it when the node frees its saved state. One per node. */
fl_status fl_node_ctx(fl_node *n, size_t size, fl_ctx_release_fn release, void **ctx);
void fl_node_release(fl_node *n);
/* Composite ops (std, lerp, stack...: built from other ops) show their own name
 * as grad_fn, not their last step's: take a mark before the first step, and at
 * the end fl_name_composite renames the result's node when this call made it
 * (made after the mark), never an input's node that the composite returns. */
uint64_t fl_node_mark(void);
/* Returns st; when it is FL_OK, renames (*out)->grad_fn as above. */
fl_status fl_name_composite(fl_status st, uint64_t mark, const char *name, fl_tensor *const *out);
/* The node a gradient for t flows into and t's output number there (a leaf's
 * accumulator is made on first use; NULL when out of memory). */
fl_node *fl_grad_target(const fl_tensor *t, int *output_nr);
/* Frees a node's saved tensors and context (after a backward without retain_graph). */
void fl_node_free_saved(fl_node *n);
/* Refuse an in-place write to a tensor autograd needs intact, or of a source
 * (may be NULL) whose gradient the unrecorded write would lose. */
fl_status fl_check_inplace(const char *op, const fl_tensor *t, const fl_tensor *src);
void fl_autograd_tensor_freed(fl_tensor *t);

/* ---- for backward functions (ops layer: src/ops/grad_util.c) ---- */
/* Zeros shaped like output k of n, for a backward that needs a tensor where gout[k] is NULL. */
fl_status fl_output_zeros(const fl_node *n, int k, fl_tensor **out);
/* The input gradient of an op that picked elements through indices (gather,
 * sort, topk): g scattered back along dim to the positions named by the node's
 * saved tensor 0 (indices stored with base), into zeros of input 0's shape. */
fl_status fl_scatter_grad(fl_node *n, const fl_tensor *g, int dim, int64_t base, fl_tensor **out);

#ifdef __cplusplus
}
#endif
#endif
