-- The one table of help lines: a signature and a one-line description for every flame function, method,
-- property, class and module. flame.help reads it (help.lua), the REPL's `help(x)` / `?x` print it, and tab
-- completion uses its Tensor.* properties. spec/help_spec.lua walks the flame table, the tensor methods and
-- properties and the classes' instances, and fails when something has no line here or a line names something
-- that does not exist: adding a function means adding its line.
--
-- One entry a line: "name(signature) -- description" or "name -- description". The name is the text up to the
-- first '(' or space: "flame.zeros", "flame.F.conv2d", "Tensor:add" (a method), "Tensor.shape" (a property),
-- "flame.nn.Module:parameters" (a class method), "Optimizer:step" (a method of instances that a constructor
-- returns; help.lua's INSTANCES says which constructors). A function that is both flame.X and Tensor:X (the same
-- value) is documented once, as Tensor:X. An in-place method X_ without a line of its own is described as the
-- in-place form of X.
local flame = ...
flame._help_docs = [==[
flame -- the FLAME-Lua module: tensors, autograd, nn, optim, data, images, schedules (help(flame.nn) lists a module)
flame.help(x?) -- print the signature and description of x (a value or a name such as "flame.F.conv2d"); also ?x in the REPL
flame.set_printoptions({linewidth, threshold, edgeitems}) -- how tensors print (PyTorch's defaults 80, 1000, 3); returns the previous options
flame.tensor(value, {dtype, device, requires_grad}) -- a tensor from a number or a nested table (integers give i64, booleans bool)
flame.zeros(size..., {dtype, device, requires_grad}) -- a tensor filled with 0; size as numbers or one table
flame.ones(size..., opts?) -- a tensor filled with 1
flame.empty(size..., opts?) -- an uninitialised tensor
flame.full(size, value, opts?) -- a tensor filled with value
flame.arange(start, stop?, step?, opts?) -- values start, start+step, ... below stop (half-open)
flame.linspace(a, b, n, opts?) -- n evenly spaced values from a to b inclusive
flame.eye(n, opts?) -- the n x n identity matrix
flame.rand(size..., opts?) -- uniform samples in [0, 1) from the seeded Philox generator
flame.randn(size..., opts?) -- standard normal samples
flame.randint(low, high, size, opts?) -- integers in [low, high) (i64 by default)
flame.randperm(n, opts?) -- a random permutation of 1..n (1-based, for the index ops)
flame.zeros_like(t, opts?) -- zeros with t's shape, dtype and device
flame.ones_like(t, opts?) -- ones with t's shape, dtype and device
flame.empty_like(t, opts?) -- an uninitialised tensor like t
flame.full_like(t, value, opts?) -- value everywhere, like t
flame.rand_like(t, opts?) -- uniform samples shaped like t
flame.randn_like(t, opts?) -- normal samples shaped like t
flame.cat(list, dim?) -- concatenate tensors along an existing dim (default 1)
flame.stack(list, dim?) -- stack tensors along a new dim (default 1)
flame.where(cond, a, b) -- elementwise cond ? a : b with broadcasting
flame.einsum(equation, ...) -- Einstein summation over the operands ("ij,jk->ik")
flame.manual_seed(n) -- seed the generator: same numbers on CPU and CUDA
flame.no_grad(fn, ...) -- run fn(...) with autograd recording off; returns its results
flame.set_grad_enabled(flag) -- turn autograd recording on or off
flame.is_grad_enabled() -- whether autograd records
flame.autocast(dtype, fn?, ...) -- run fn with matmul/linear/conv/attention in "bf16" or "f16"; without fn a <close> scope
flame.get_autocast_dtype() -- the autocast dtype in force, or nil
flame.profile(fn, {device}?, ...) -- run fn with the op profiler on; a report of ops and backward node/ops by time (:print(n))
flame.distributed -- multi-GPU data parallelism over NCCL (docs/distributed.md); ranks are 0-based
flame.distributed.init({device, timeout, rank, world_size, master_addr, master_port}) -- join the job (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT from flame-lua --nproc)
flame.distributed.is_initialized() -- whether init ran
flame.distributed.get_rank() -- this process's rank (0-based)
flame.distributed.get_world_size() -- the number of ranks
flame.distributed.get_local_rank() -- the rank on this machine (its GPU)
flame.distributed.device() -- the device of this rank ("cuda:LOCAL_RANK")
flame.distributed.destroy() -- leave the job
flame.distributed.all_reduce(t, op = "sum", {async_op = false}) -- reduce t over the ranks in place ("sum", "avg", "max", "min"); async_op: returns t, work (work:wait() orders later ops after it)
flame.distributed.broadcast(t, src) -- rank src's t to every rank, in place
flame.distributed.all_gather(t) -- every rank's t stacked: [world, ...]
flame.distributed.reduce_scatter(t, op = "sum") -- t's dim 1 cut in world blocks, reduced; this rank's block
flame.distributed.barrier(timeout?) -- wait for every rank and every queued collective
flame.autograd.queue_callback(fn) -- run fn once after the outermost backward() returns
flame.memory_stats(device?) -- tensor memory counters (allocated, reserved, peak, ...) of a device
flame.is_tensor(v) -- whether v is a tensor
flame.is_floating_point(t) -- whether t has a floating dtype
flame.timer() -- seconds on the monotonic clock
flame.set_num_threads(n) -- CPU threads for large ops
flame.get_num_threads() -- CPU threads for large ops
flame.save(path, tensors, metadata?) -- write a table of tensors as safetensors (atomically)
flame.load(path, {device}) -- read a safetensors file: tensors, metadata
flame.save_npy(path, t) -- write t as a .npy file
flame.load_npy(path, {device}) -- read a .npy file as a tensor
flame.progress(total, {desc, width, interval, file}) -- a progress bar: p:update(n, fields), p:close()
flame.f32 -- dtype name "f32" (32-bit float, the default)
flame.float32 -- dtype name "f32"
flame.float -- dtype name "f32"
flame.f64 -- dtype name "f64" (64-bit float)
flame.float64 -- dtype name "f64"
flame.double -- dtype name "f64"
flame.f16 -- dtype name "f16" (IEEE half)
flame.float16 -- dtype name "f16"
flame.half -- dtype name "f16"
flame.bf16 -- dtype name "bf16" (bfloat16)
flame.bfloat16 -- dtype name "bf16"
flame.i32 -- dtype name "i32" (32-bit integer)
flame.int32 -- dtype name "i32"
flame.int -- dtype name "i32"
flame.i64 -- dtype name "i64" (64-bit integer, indices)
flame.int64 -- dtype name "i64"
flame.long -- dtype name "i64"
flame.bool -- dtype name "bool"
flame.cuda -- CUDA devices: availability, synchronisation, memory
flame.cuda.is_available() -- whether a CUDA device can be used
flame.cuda.device_count() -- the number of CUDA devices
flame.cuda.synchronize(device?) -- wait for the device's queued work
flame.cuda.memory_stats(device?) -- allocator counters: allocated, reserved, peak, ...
flame.cuda.empty_cache(device?) -- return cached blocks to the driver
flame.cuda.allow_tf32(flag) -- allow TF32 matmuls and convolutions
flame.autograd -- gradients without .grad
flame.autograd.grad(outputs, inputs, grad_outputs?, opts?) -- gradients of outputs w.r.t. inputs, leaving .grad alone
Tensor -- a flame tensor: properties shape, dtype, device, grad, requires_grad...; methods t:name(...)
Tensor.shape -- the sizes, a shape object that prints as {2, 3}
Tensor.dtype -- the dtype name ("f32", "bf16", "i64", ...)
Tensor.device -- the device name ("cpu", "cuda:0")
Tensor.requires_grad -- whether autograd tracks this tensor (settable on leaves)
Tensor.grad -- the accumulated gradient, or nil (settable)
Tensor.is_leaf -- whether the tensor was not produced by a recorded op
Tensor.grad_fn -- the name of the backward node that produced it, or nil
Tensor.ndim -- the number of dims
Tensor.is_cuda -- whether it lives on a CUDA device
Tensor.T -- the transpose (dims reversed)
Tensor:size(dim?) -- the shape, or the size of one dim
Tensor:stride(dim?) -- the strides in elements, or one dim's
Tensor:dim() -- the number of dims
Tensor:numel() -- the number of elements
Tensor:nelement() -- the number of elements (numel)
Tensor:element_size() -- the bytes of one element (4 for f32, 2 for bf16, 1 for bool)
Tensor:is_contiguous() -- whether the elements are row-major and dense
Tensor:item() -- the value of a one-element tensor as a Lua number or boolean
Tensor:totable() -- the values as nested Lua tables
Tensor:to(dtype_or_device_or_opts) -- a copy converted to a dtype and/or device (t itself when nothing changes)
Tensor:cuda(device?) -- the tensor on a CUDA device
Tensor:cpu() -- the tensor on the CPU
Tensor:float() -- converted to f32
Tensor:double() -- converted to f64
Tensor:half() -- converted to f16
Tensor:bfloat16() -- converted to bf16
Tensor:long() -- converted to i64
Tensor:int() -- converted to i32
Tensor:bool() -- converted to bool
Tensor:clone() -- a copy with its own storage (differentiable)
Tensor:detach() -- the same storage without autograd history
Tensor:contiguous() -- t, or a row-major copy when it is not
Tensor:view(size...) -- the same storage with a new shape (one -1 allowed)
Tensor:reshape(size...) -- a view when possible, else a copy, with a new shape
Tensor:permute(dims...) -- reorder the dims (a view)
Tensor:transpose(d1, d2) -- swap two dims (a view)
Tensor:t() -- transpose a 2-D tensor
Tensor:narrow(dim, start, length) -- a slice of length items from start along dim (a view)
Tensor:select(dim, index) -- the slice at index along dim, without that dim (t[i] is select(1, i))
Tensor:squeeze(dim?) -- drop dims of size 1
Tensor:unsqueeze(dim) -- insert a dim of size 1
Tensor:expand(size...) -- broadcast size-1 dims to a larger size (a view, -1 keeps a dim)
Tensor:expand_as(u) -- expand to u's shape
Tensor:flatten(start?, stop?) -- merge dims start..stop into one
Tensor:chunk(n, dim?) -- split into n nearly equal pieces
Tensor:split(size, dim?) -- split into pieces of size (or a table of sizes)
Tensor:flip(dims) -- reverse the order along dims
Tensor:tile(reps...) -- repeat the tensor along each dim (torch's repeat)
Tensor:roll(shifts, dims?) -- rotate elements along dims
Tensor:tril(k?) -- keep the lower triangle (below diagonal k)
Tensor:triu(k?) -- keep the upper triangle
Tensor:add(u, alpha?) -- t + alpha * u (u a tensor or number)
Tensor:sub(u, alpha?) -- t - alpha * u
Tensor:mul(u) -- elementwise product
Tensor:div(u) -- elementwise quotient
Tensor:pow(u) -- elementwise power
Tensor:neg() -- -t
Tensor:exp() -- elementwise e^x
Tensor:log() -- elementwise natural log
Tensor:sqrt() -- elementwise square root
Tensor:rsqrt() -- elementwise 1 / sqrt(x)
Tensor:abs() -- elementwise |x|
Tensor:sign() -- elementwise -1, 0 or 1
Tensor:sin() -- elementwise sine
Tensor:cos() -- elementwise cosine
Tensor:tanh() -- elementwise tanh
Tensor:sigmoid() -- elementwise 1 / (1 + e^-x)
Tensor:relu() -- elementwise max(x, 0)
Tensor:gelu(approximate?) -- GELU, "none" (erf) or "tanh"
Tensor:silu() -- x * sigmoid(x)
Tensor:clamp(min?, max?) -- limit values to [min, max]
Tensor:maximum(u) -- elementwise max of t and u
Tensor:minimum(u) -- elementwise min of t and u
Tensor:lerp(u, w) -- t + w * (u - t)
Tensor:floor() -- round down
Tensor:ceil() -- round up
Tensor:round() -- round half to even
Tensor:trunc() -- round toward zero
Tensor:nan_to_num(nan?, posinf?, neginf?) -- replace NaN and infinities by finite values
Tensor:isnan() -- bool tensor, true where NaN
Tensor:isinf() -- bool tensor, true where infinite
Tensor:isclose(u, {rtol, atol, equal_nan}) -- bool tensor, elementwise closeness
Tensor:allclose(u, {rtol, atol, equal_nan}) -- whether all elements are close (also flame.allclose(a, b))
Tensor:eq(u) -- bool tensor, t == u elementwise
Tensor:ne(u) -- bool tensor, t ~= u elementwise
Tensor:lt(u) -- bool tensor, t < u elementwise
Tensor:le(u) -- bool tensor, t <= u elementwise
Tensor:gt(u) -- bool tensor, t > u elementwise
Tensor:ge(u) -- bool tensor, t >= u elementwise
Tensor:logical_and(u) -- elementwise and (bool)
Tensor:logical_or(u) -- elementwise or (bool)
Tensor:logical_not() -- elementwise not (bool)
Tensor:sum(dims?, keepdim?) -- sum over dims (all when nil)
Tensor:mean(dims?, keepdim?) -- mean over dims
Tensor:prod(dims?, keepdim?) -- product over dims
Tensor:var(dims?, {correction = 1, keepdim}) -- variance over dims
Tensor:std(dims?, {correction = 1, keepdim}) -- standard deviation over dims
Tensor:max(dim?, keepdim?) -- the maximum; with a dim, values and 1-based indices
Tensor:min(dim?, keepdim?) -- the minimum; with a dim, values and 1-based indices
Tensor:amax(dims?, keepdim?) -- the maximum over dims (values only)
Tensor:amin(dims?, keepdim?) -- the minimum over dims (values only)
Tensor:argmax(dim?, keepdim?) -- 1-based index of the maximum
Tensor:argmin(dim?, keepdim?) -- 1-based index of the minimum
Tensor:norm(p?, dims?, keepdim?) -- the p-norm (default 2)
Tensor:logsumexp(dims?, keepdim?) -- log(sum(exp(t))) computed stably
Tensor:cumsum(dim) -- running sum along dim
Tensor:all(dims?, keepdim?) -- whether all elements are true (non-zero)
Tensor:any(dims?, keepdim?) -- whether any element is true
Tensor:sort(dim?, {descending}) -- sorted values and 1-based indices (stable)
Tensor:argsort(dim?, {descending}) -- 1-based indices that sort t
Tensor:topk(k, dim?, {largest, sorted}) -- the k largest values and their 1-based indices
Tensor:softmax(dim) -- softmax along dim
Tensor:log_softmax(dim) -- log-softmax along dim
Tensor:matmul(u) -- matrix product (1-D, 2-D, batched with broadcast batch dims)
Tensor:mm(u) -- 2-D matrix product
Tensor:bmm(u) -- batched matrix product of 3-D tensors
Tensor:index_select(dim, idx) -- the slices at 1-based indices idx along dim
Tensor:index_add(dim, idx, src, alpha?) -- a copy with alpha * src added at indices idx along dim
Tensor:index_add_(dim, idx, src, alpha?) -- add alpha * src at indices idx along dim, in place
Tensor:gather(dim, index) -- values at index along dim
Tensor:scatter_add(dim, index, src) -- a copy with src added at index along dim
Tensor:masked_fill(mask, value) -- value where mask is true
Tensor:fill_(value) -- set every element to value, in place
Tensor:zero_() -- set every element to 0, in place
Tensor:copy_(src) -- copy src's values in (broadcast, converted), in place
Tensor:uniform_(a?, b?) -- fill with uniform samples in [a, b), in place
Tensor:normal_(mean?, std?) -- fill with normal samples, in place
Tensor:backward(grad?, {retain_graph}) -- accumulate gradients of t into the leaves' .grad
Tensor:register_hook(fn) -- fn(grad) runs when t's gradient is computed; a returned tensor replaces it
Tensor:register_post_accumulate_grad_hook(fn) -- fn(t) runs on a leaf after a backward stored t.grad (returns nothing)
Tensor:is_set_to(other) -- true when both are the same memory seen the same way (storage, offset, shape, strides, dtype)
Tensor:retain_grad() -- keep the gradient of a non-leaf in .grad
Tensor:requires_grad_(flag?) -- set requires_grad, in place; returns t
flame.F -- flame.nn.functional: stateless layers, activations and losses
flame.F.linear(x, w, b?) -- x w^T + b
flame.F.conv1d(x, w, b?, {stride, padding, dilation, groups}) -- 1-d convolution
flame.F.conv2d(x, w, b?, {stride, padding, dilation, groups}) -- 2-d convolution
flame.F.conv3d(x, w, b?, {stride, padding, dilation, groups}) -- 3-d convolution
flame.F.conv_transpose1d(x, w, b?, {stride, padding, output_padding, groups, dilation}) -- 1-d transposed convolution
flame.F.conv_transpose2d(x, w, b?, {stride, padding, output_padding, groups, dilation}) -- 2-d transposed convolution
flame.F.conv_transpose3d(x, w, b?, {stride, padding, output_padding, groups, dilation}) -- 3-d transposed convolution
flame.F.conv_algo(algo?) -- the convolution path, "auto", "gemm" or "direct"; returns the previous one
flame.F.layer_norm(x, normalized_shape, w?, b?, eps?) -- layer normalisation over the trailing dims
flame.F.group_norm(x, groups, w?, b?, eps?) -- group normalisation of [N, C, *]
flame.F.group_norm_silu(x, groups, w?, b?, eps?) -- silu(group_norm(...)), one pass for inference
flame.F.rms_norm(x, normalized_shape, w?, eps?) -- RMS normalisation over the trailing dims
flame.F.softmax(x, dim) -- softmax along dim
flame.F.log_softmax(x, dim) -- log-softmax along dim
flame.F.dropout(x, p, training?) -- zero elements with probability p and scale by 1/(1-p)
flame.F.embedding(ids, weight, {padding_idx, max_norm, norm_type}) -- rows of weight at 1-based ids
flame.F.one_hot(ids, num_classes?) -- i64 one-hot vectors of 1-based ids
flame.F.relu(x) -- max(x, 0)
flame.F.gelu(x, {approximate}) -- GELU ("none" or "tanh")
flame.F.silu(x) -- x * sigmoid(x)
flame.F.sigmoid(x) -- 1 / (1 + e^-x)
flame.F.tanh(x) -- tanh
flame.F.leaky_relu(x, slope?) -- x, or slope * x below 0 (slope 0.01)
flame.F.elu(x, alpha?) -- x, or alpha (e^x - 1) below 0
flame.F.softplus(x, beta?, threshold?) -- log(1 + e^(beta x)) / beta
flame.F.mish(x) -- x * tanh(softplus(x))
flame.F.mse_loss(a, b, reduction?) -- mean squared error ("mean", "sum", "none")
flame.F.l1_loss(a, b, reduction?) -- mean absolute error
flame.F.smooth_l1_loss(a, b, {reduction, beta}) -- Huber-like loss
flame.F.binary_cross_entropy_with_logits(x, y, {reduction, weight, pos_weight}) -- BCE on logits, stable
flame.F.cross_entropy(logits, target, {reduction, ignore_index, label_smoothing, weight}) -- CE with 1-based class targets
flame.F.max_pool1d(x, kernel, {stride, padding, dilation, ceil_mode, return_indices}) -- 1-d max pooling
flame.F.max_pool2d(x, kernel, {stride, padding, dilation, ceil_mode, return_indices}) -- 2-d max pooling
flame.F.max_pool3d(x, kernel, {stride, padding, dilation, ceil_mode, return_indices}) -- 3-d max pooling
flame.F.avg_pool1d(x, kernel, {stride, padding, ceil_mode, count_include_pad}) -- 1-d average pooling
flame.F.avg_pool2d(x, kernel, {stride, padding, ceil_mode, count_include_pad}) -- 2-d average pooling
flame.F.avg_pool3d(x, kernel, {stride, padding, ceil_mode, count_include_pad}) -- 3-d average pooling
flame.F.adaptive_avg_pool1d(x, size) -- average pooling to an output size
flame.F.adaptive_avg_pool2d(x, size) -- average pooling to an output size
flame.F.adaptive_avg_pool3d(x, size) -- average pooling to an output size
flame.F.interpolate(x, {size, scale_factor, mode, align_corners}) -- resize (nearest, linear, bilinear, trilinear)
flame.F.pad(x, pads, {mode, value}) -- pad from the last dim backwards (constant, reflect, replicate, circular)
flame.F.scaled_dot_product_attention(q, k, v, {causal, dropout_p, scale, training, attn_mask}) -- attention on [B, H, S, D]
flame.F.flash_attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_q, max_k, opts?) -- attention on packed sequences
flame.F.sdpa_backend(q, k, v, opts?) -- which path scaled_dot_product_attention takes for these arguments: "flash" or "reference"
flame.nn -- neural-network modules (classes written in Lua), flame.nn.functional and flame.nn.init
flame.nn.Parameter(t, requires_grad?) -- a leaf copy of t that requires grad (registers as a parameter)
flame.nn.is_module(v) -- whether v is a module instance
flame.nn.Module -- the base class: Cls = flame.nn.Module:extend("Name"); Cls(...) calls Cls:__init(...)
flame.nn.Module:extend(name) -- a subclass named name
flame.nn.Module:new(...) -- an instance (Cls(...) calls this), runs __init
flame.nn.Module:forward(...) -- the computation; m(x) calls m:forward(x)
flame.nn.Module:extra_repr() -- the text inside the parentheses of tostring(m)
flame.nn.Module:parameters() -- the parameters, as a list (submodules' included)
flame.nn.Module:named_parameters() -- iterator over (dotted name, parameter)
flame.nn.Module:buffers() -- the buffers, as a list
flame.nn.Module:named_buffers() -- iterator over (dotted name, buffer)
flame.nn.Module:children() -- the direct submodules, as a list
flame.nn.Module:named_children() -- iterator over (name, direct submodule)
flame.nn.Module:modules() -- this module and every submodule, as a list
flame.nn.Module:named_modules() -- iterator over (dotted name, module)
flame.nn.Module:num_parameters({trainable_only}) -- the number of parameter elements
flame.nn.Module:add_module(name, m) -- register a submodule
flame.nn.Module:register_module(name, m) -- register a submodule
flame.nn.Module:register_parameter(name, t) -- register a parameter (nil: absent)
flame.nn.Module:register_buffer(name, t, persistent?) -- register a buffer
flame.nn.Module:state_dict() -- name -> detached tensor (parameters and persistent buffers)
flame.nn.Module:state_dict_keys() -- the state dict's names in PyTorch's order
flame.nn.Module:load_state_dict(sd, {strict}) -- copy tensors in by name
flame.nn.Module:train(mode?) -- set training mode (recursively)
flame.nn.Module:eval() -- set evaluation mode
flame.nn.Module:requires_grad_(flag?) -- set requires_grad of every parameter
flame.nn.Module:zero_grad() -- clear the parameters' gradients
flame.nn.Module:apply(fn) -- fn(m) on every submodule, children first
flame.nn.Module:to(device_or_dtype_or_opts) -- move/convert parameters and buffers, in place
flame.nn.Module:cuda(device?) -- move to a CUDA device
flame.nn.Module:cpu() -- move to the CPU
flame.nn.Module:float() -- convert floating parameters to f32
flame.nn.Module:double() -- convert floating parameters to f64
flame.nn.Module:half() -- convert floating parameters to f16
flame.nn.Module:bfloat16() -- convert floating parameters to bf16
flame.nn.Sequential(...) -- modules applied in order (a list or varargs)
flame.nn.Sequential:add(m) -- append a module
flame.nn.Sequential:append(m) -- append a module
flame.nn.ModuleList(list?) -- a list of submodules
flame.nn.ModuleList:append(m) -- append a module
flame.nn.ModuleList:extend_with(list) -- append several modules
flame.nn.ModuleDict(t?) -- a table of named submodules
flame.nn.ModuleDict:keys() -- the names
flame.nn.ModuleDict:items() -- iterator over (name, module)
flame.nn.Linear(in, out, {bias, device, dtype}) -- y = x W^T + b
flame.nn.Linear:reset_parameters() -- PyTorch's default init again
flame.nn.Conv1d(in, out, k, {stride, padding, dilation, groups, bias, padding_mode}) -- 1-d convolution layer
flame.nn.Conv1d:reset_parameters() -- PyTorch's default init again
flame.nn.Conv2d(in, out, k, {stride, padding, dilation, groups, bias, padding_mode}) -- 2-d convolution layer
flame.nn.Conv2d:reset_parameters() -- PyTorch's default init again
flame.nn.Conv3d(in, out, k, {stride, padding, dilation, groups, bias, padding_mode}) -- 3-d convolution layer
flame.nn.Conv3d:reset_parameters() -- PyTorch's default init again
flame.nn.ConvTranspose1d(in, out, k, {stride, padding, output_padding, groups, bias, dilation}) -- 1-d transposed convolution layer
flame.nn.ConvTranspose1d:reset_parameters() -- PyTorch's default init again
flame.nn.ConvTranspose2d(in, out, k, {stride, padding, output_padding, groups, bias, dilation}) -- 2-d transposed convolution layer
flame.nn.ConvTranspose2d:reset_parameters() -- PyTorch's default init again
flame.nn.ConvTranspose3d(in, out, k, {stride, padding, output_padding, groups, bias, dilation}) -- 3-d transposed convolution layer
flame.nn.ConvTranspose3d:reset_parameters() -- PyTorch's default init again
flame.nn.LayerNorm(shape, {eps, elementwise_affine, bias}) -- layer normalisation
flame.nn.GroupNorm(groups, channels, {eps, affine}) -- group normalisation
flame.nn.GroupNorm:forward_silu(x) -- self(x):silu() in one pass for inference (F.group_norm_silu)
flame.nn.RMSNorm(shape, {eps, elementwise_affine}) -- RMS normalisation
flame.nn.Embedding(n, d, {padding_idx, max_norm, norm_type}) -- a lookup table of n vectors (1-based ids)
flame.nn.Embedding:reset_parameters() -- normal init again (padding row zeroed)
flame.nn.Dropout(p?) -- dropout in training mode (p = 0.5)
flame.nn.ReLU() -- max(x, 0)
flame.nn.GELU({approximate}) -- GELU
flame.nn.SiLU() -- x * sigmoid(x)
flame.nn.Sigmoid() -- sigmoid
flame.nn.Tanh() -- tanh
flame.nn.Identity() -- returns its input
flame.nn.Flatten(start_dim?, end_dim?) -- flatten dims 2..-1 (1-based)
flame.nn.Upsample({size, scale_factor, mode, align_corners}) -- F.interpolate as a module
flame.nn.MultiheadAttention(E, heads, {bias, batch_first, dropout, kdim, vdim}) -- multi-head attention (PyTorch's parameters)
flame.nn.DistributedDataParallel(module, {bucket_cap_mb = 25, broadcast_buffers = true, overlap = true}) -- data-parallel training: gradients all-reduced in buckets during the backward
flame.nn.DistributedDataParallel:no_sync(fn, ...) -- run fn (forward and backward) without gradient communication; gradients accumulate locally
flame.nn.DistributedDataParallel:bucket_info() -- the bucket layout: {numel, dtype, device, params} per bucket
flame.nn.functional -- the same table as flame.F
flame.nn.init -- parameter initialisers, in place, from the seeded generator
flame.nn.init.uniform_(t, a?, b?) -- uniform in [a, b)
flame.nn.init.normal_(t, mean?, std?) -- normal samples
flame.nn.init.constant_(t, value) -- fill with value
flame.nn.init.zeros_(t) -- fill with 0
flame.nn.init.ones_(t) -- fill with 1
flame.nn.init.xavier_uniform_(t, gain?) -- Glorot uniform
flame.nn.init.xavier_normal_(t, gain?) -- Glorot normal
flame.nn.init.kaiming_uniform_(t, {a, mode, nonlinearity}) -- He uniform
flame.nn.init.kaiming_normal_(t, {a, mode, nonlinearity}) -- He normal
flame.nn.init.trunc_normal_(t, mean?, std?, a?, b?) -- normal truncated to [a, b]
flame.nn.init.calculate_gain(nonlinearity, param?) -- the recommended gain
flame.nn.init.calculate_fan_in_and_fan_out(t) -- fan_in, fan_out of a weight
flame.optim -- optimizers, gradient clipping, EMA, GradScaler and lr_scheduler
flame.optim.SGD(params, {lr, momentum, dampening, weight_decay, nesterov, maximize}) -- stochastic gradient descent
flame.optim.Adam(params, {lr, betas, eps, weight_decay, amsgrad, maximize}) -- Adam
flame.optim.AdamW(params, {lr, betas, eps, weight_decay, amsgrad, maximize}) -- Adam with decoupled weight decay
flame.optim.clip_grad_norm(params, max_norm, {norm_type}) -- scale gradients to a total norm; returns the norm
flame.optim.clip_grad_norm_(params, max_norm, {norm_type}) -- the same as clip_grad_norm
flame.optim.EMA(model_or_params, decay?, {warmup}) -- exponential moving average of parameters
flame.optim.GradScaler({init_scale, growth_factor, backoff_factor, growth_interval, enabled}) -- loss scaling for f16
Optimizer -- what flame.optim.SGD, Adam and AdamW return: opt:step(), opt:zero_grad(), opt.param_groups
Optimizer:step(closure?) -- update the parameters from their gradients
Optimizer:zero_grad(set_to_none?) -- clear the gradients
Optimizer:state_dict() -- the state and param groups (PyTorch's layout)
Optimizer:load_state_dict(sd) -- restore the state
EMA -- what flame.optim.EMA returns
EMA:update() -- move the averages toward the parameters
EMA:copy_to(model?) -- copy the averages into the parameters
EMA:store() -- keep the parameters aside
EMA:restore() -- put the kept parameters back
EMA:get_decay() -- the decay of the next update
EMA:state_dict() -- the averages and step count
EMA:load_state_dict(sd) -- restore them
GradScaler -- what flame.optim.GradScaler returns
GradScaler:scale(loss_or_table) -- multiply by the current scale
GradScaler:unscale_(opt) -- divide the gradients by the scale, once per step
GradScaler:step(opt, ...) -- opt:step() unless gradients have inf/NaN
GradScaler:update(new_scale?) -- grow or back off the scale
GradScaler:get_scale() -- the current scale
GradScaler:get_growth_factor() -- the growth factor
GradScaler:get_backoff_factor() -- the backoff factor
GradScaler:get_growth_interval() -- the growth interval
GradScaler:is_enabled() -- whether scaling is on
GradScaler:state_dict() -- the scale and counters
GradScaler:load_state_dict(sd) -- restore them
flame.optim.lr_scheduler -- learning-rate schedules that set param_groups[i].lr
flame.optim.lr_scheduler.StepLR(opt, {step_size, gamma}) -- decay by gamma every step_size steps
flame.optim.lr_scheduler.LinearLR(opt, {start_factor, end_factor, total_iters}) -- linear factor ramp
flame.optim.lr_scheduler.ConstantLR(opt, {factor, total_iters}) -- a constant factor for total_iters steps
flame.optim.lr_scheduler.LambdaLR(opt, lr_lambda) -- lr = base * lr_lambda(step)
flame.optim.lr_scheduler.constant(opt) -- diffusers' constant schedule
flame.optim.lr_scheduler.constant_with_warmup(opt, {warmup_steps}) -- linear warmup, then constant
flame.optim.lr_scheduler.linear_with_warmup(opt, {warmup_steps, total_steps}) -- warmup, then linear decay to 0
flame.optim.lr_scheduler.cosine_with_warmup(opt, {warmup_steps, total_steps, num_cycles, min_lr}) -- warmup, then cosine
LRScheduler -- what the flame.optim.lr_scheduler constructors return
LRScheduler:step() -- advance one step and set the learning rates
LRScheduler:get_last_lr() -- the learning rates last set
LRScheduler:lr_at(step) -- the learning rate factor at a step
LRScheduler:state_dict() -- the step count
LRScheduler:load_state_dict(sd) -- restore it
flame.schedules -- diffusion noise schedules and samplers (diffusers' semantics)
flame.schedules.betas(name, {num_train_timesteps, beta_start, beta_end, ...}) -- beta schedule "linear", "scaled_linear", "squaredcos_cap_v2", "cosine"
flame.schedules.DDPMScheduler(opts) -- DDPM sampler (diffusers' options)
flame.schedules.DDIMScheduler(opts) -- DDIM sampler
flame.schedules.EulerDiscreteScheduler(opts) -- Euler sampler on sigmas
flame.schedules.FlowMatchEulerDiscreteScheduler(opts) -- flow-matching Euler sampler
Scheduler -- what the flame.schedules samplers return: fields timesteps, sigmas, alphas_cumprod, init_noise_sigma
Scheduler:set_timesteps(n, {sigmas, mu}) -- choose n inference timesteps
Scheduler:step(model_output, t, sample, opts?) -- prev_sample, pred_original_sample
Scheduler:add_noise(x0, noise, t) -- the noisy sample at timestep t
Scheduler:get_velocity(x0, noise, t) -- the v-prediction target
Scheduler:scale_model_input(x, t) -- the model input at t (Euler divides by sqrt(sigma^2 + 1))
Scheduler:previous_timestep(t) -- the timestep before t (DDPM)
Scheduler:calculate_shift(image_seq_len) -- mu for dynamic shifting (flow matching)
flame.data -- datasets, DataLoader, collate, IDX files
flame.data.Dataset -- optional base class: flame.data.Dataset:extend("Name") with __len and get(i)
flame.data.Dataset:extend(name) -- a subclass named name
flame.data.Dataset:new(...) -- an instance (Cls(...) calls this), runs __init
flame.data.Dataset:get(i) -- sample i (1-based); subclasses define it
flame.data.TensorDataset(t1, t2, ...) -- sample i is {t1[i], t2[i], ...}
TensorDataset -- what flame.data.TensorDataset returns (#ds samples)
TensorDataset:get(i) -- sample i
TensorDataset:get_batch(indices) -- a batch by index_select
flame.data.DataLoader(ds, {batch_size, shuffle, drop_last, collate, device, sampler}) -- batches over a dataset
flame.data.DistributedSampler(ds, {num_replicas, rank, shuffle = true, seed = 0, drop_last = false}) -- each rank's share of every epoch (DataLoader's sampler); :set_epoch(e)
DataLoader -- what flame.data.DataLoader returns (#loader batches)
DataLoader:iter() -- iterator over one epoch's batches
DataLoader:enumerate() -- iterator over (i, batch)
flame.data.default_collate(samples) -- stack samples into a batch (PyTorch's rules)
flame.data.read_idx(path, {dtype}) -- read an IDX file (MNIST family, .gz too)
flame.data.FashionMNIST(root?, {train}) -- the Fashion-MNIST dataset
flame.data.ImageFolder(root, {size, channels}) -- images in class subfolders
flame.image -- PNG/JPEG loading and saving, image grids
flame.image.load(path, {size, channels}) -- an image as [C, H, W] f32 in [0, 1]
flame.image.save(path, t, {range}) -- write [C, H, W] or [H, W] as PNG
flame.image.grid(list_or_batch, {nrow, padding, pad_value}) -- images tiled into one (make_grid)
flame.image.formats() -- which formats this build reads ({png = true, jpeg = ...})
Progress -- what flame.progress returns
Progress:update(n?, fields?) -- advance by n and show fields
Progress:print(...) -- a line above the bar
Progress:line() -- the bar's text
Progress:close() -- finish the bar
flame.utils -- gradient checkpointing and training checkpoints
flame.utils.checkpoint(fn, ...) -- run fn without keeping activations; recompute it in the backward
flame.utils.save_training_state(path, state) -- save model/optimizer/scheduler/... in one safetensors file
flame.utils.load_training_state(path, state, {device}) -- load them back in place
]==]
