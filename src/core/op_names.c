/* The names of the elementwise ops, for every layer's messages (the backends'
 * included, so they live in the core). */
#include "internal.h"

static const char *unary_names[FL_NUNARY] = {"neg", "exp", "log", "sqrt", "rsqrt", "abs", "sin", "cos", "tanh",
                                             "sigmoid", "relu", "gelu", "gelu_tanh", "silu", "sign", "logical_not",
                                             "clamp", "floor", "ceil", "round", "trunc"};
static const char *binary_names[FL_NBINARY] = {
    "add", "sub", "mul", "div", "pow", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge", "logical_and",
    "logical_or", "relu_backward", "gelu_backward", "gelu_tanh_backward", "silu_backward", "sigmoid_backward",
    "tanh_backward"};
const char *fl_unary_name(fl_unary_op op) { return (unsigned)op < FL_NUNARY ? unary_names[op] : "?"; }
const char *fl_binary_name(fl_binary_op op) { return (unsigned)op < FL_NBINARY ? binary_names[op] : "?"; }
