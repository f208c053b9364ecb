"""Train state and the partitioned, jitted init and train step.

A model (see mgpt_jax.models) provides:
  init_variables(rng, batch) -> flax variables: `params`, `params_axes` and any
      other collections (model state such as the VQ codebook);
  loss_fn(params, model_state, batch, rng) -> (loss, (metrics, new_model_state));
optionally, for gradient accumulation (microbatches > 1):
  loss_normalizer(batch) -> what the loss divides its summed terms by (without it, micro-batch
      losses are taken to be means over equal micro-batches), and
  summed_metrics: names of metrics that add up over micro-batches (e.g. token counts).
"""
from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from mgpt_jax.training.partitioning import Partitioner

AXES = "params_axes"


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any  # non-trainable collections, e.g. {"vq_stats": ...}

  @property
  def variables(self) -> dict:
    return {"params": self.params, **self.model_state}


def _split_variables(variables):
  variables = dict(variables)
  params = variables.pop("params")
  variables.pop(AXES, None)
  return params, variables


class Trainer:
  """Holds the compiled init and train step of one model on one mesh."""

  def __init__(self, model, optimizer: optax.GradientTransformation, partitioner: Partitioner,
               batch_spec: dict[str, jax.ShapeDtypeStruct], seed: int = 0,
               microbatches: int = 1, compiler_options: dict[str, str] | None = None):
    self.model = model
    self.optimizer = optimizer
    self.partitioner = partitioner
    self.batch_spec = batch_spec
    self.microbatches = microbatches
    self.init_rng, self.step_rng = jax.random.split(jax.random.key(seed))
    self.batch_shardings = {k: partitioner.data_sharding(len(v.shape))
                            for k, v in batch_spec.items()}
    self.abstract_state = jax.eval_shape(self._init)
    self._check_microbatches()
    self.state_shardings = self._state_shardings()
    self._init_jit = jax.jit(self._init, out_shardings=self.state_shardings)
    self._step_jit = jax.jit(self._train_step, donate_argnums=(0,),
                             in_shardings=(self.state_shardings, self.batch_shardings),
                             out_shardings=(self.state_shardings, partitioner.replicated),
                             compiler_options=compiler_options)

  # ------------------------------------------------------------------ state

  def _init(self) -> TrainState:
    batch = {k: jnp.zeros(v.shape, v.dtype) for k, v in self.batch_spec.items()}
    params, model_state = _split_variables(
        self.model.init_variables(self.init_rng, batch))
    return TrainState(jnp.zeros((), jnp.int32), params, self.optimizer.init(params), model_state)

  def _state_shardings(self) -> TrainState:
    p = self.partitioner
    variables = jax.eval_shape(self.model.init_variables, self.init_rng,
                               {k: jnp.zeros(v.shape, v.dtype) for k, v in self.batch_spec.items()})
    if AXES not in variables:
      raise ValueError("the model's variables have no 'params_axes' collection: create "
                       "parameters with flax.linen.partitioning.param_with_axes")
    logical = flax.core.unfreeze(nn.partitioning.get_axis_names(variables[AXES]))
    params = p.shardings(logical, self.abstract_state.params)
    opt_state = optax.tree_map_params(
        self.optimizer, lambda _, sharding: sharding, self.abstract_state.opt_state, params,
        transform_non_params=lambda _: p.replicated)
    model_state = jax.tree.map(lambda _: p.replicated, self.abstract_state.model_state)
    return TrainState(p.replicated, params, opt_state, model_state)

  def _check_microbatches(self) -> None:
    k = self.microbatches
    if not isinstance(k, int) or k < 1:
      raise ValueError(f"microbatches={k!r}: expected a positive integer")
    if k == 1:
      return
    data = self.partitioner.mesh.shape[self.partitioner.axis_names[0]]
    for name, spec in self.batch_spec.items():
      if spec.shape[0] % (k * data):
        raise ValueError(f"microbatches={k}: the global batch ({name}: {spec.shape[0]} rows) must "
                         f"divide into {k} micro-batches on each of the {data} data shards")
    if jax.tree.leaves(self.abstract_state.model_state):
      raise ValueError(f"microbatches={k}: this model updates state in its loss "
                       f"({sorted(self.abstract_state.model_state)}), which micro-batches would "
                       "see one after another; train it with microbatches=1")

  def abstract_with_shardings(self) -> TrainState:
    """ShapeDtypeStructs carrying the target shardings, for checkpoint restore."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        self.abstract_state, self.state_shardings)

  def init_state(self, params=None) -> TrainState:
    """A fresh state; with `params` (host arrays, e.g. an earlier stage's), those weights."""
    with self.partitioner.context():
      state = self._init_jit()
    if params is None:
      return state
    _check_same_tree(params, self.abstract_state.params)
    params = jax.device_put(params, self.state_shardings.params)
    with self.partitioner.context():
      opt_state = jax.jit(self.optimizer.init, out_shardings=self.state_shardings.opt_state)(params)
    return TrainState(state.step, params, opt_state, state.model_state)

  # ------------------------------------------------------------------ step

  def _train_step(self, state: TrainState, batch):
    rng = jax.random.fold_in(self.step_rng, state.step)
    if self.microbatches == 1:
      grads, metrics, model_state = self._grads(state.params, state.model_state, batch, rng)
    else:
      grads, metrics = self._accumulated_grads(state.params, batch, rng)
      model_state = {}
    updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, grad_norm=optax.tree.norm(grads))
    return TrainState(state.step + 1, params, opt_state, {**state.model_state, **model_state}), \
        metrics

  def _grads(self, params, model_state, batch, rng):
    def loss_fn(p):
      return self.model.loss_fn(p, model_state, batch, rng)

    (_, (metrics, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return grads, metrics, model_state

  def _accumulated_grads(self, params, batch, rng):
    """Gradient accumulation: a scan over `microbatches` slices of the batch.

    Micro-batch i holds rows i, i+k, i+2k, ... so each data shard splits its own rows and no
    row crosses devices. Gradients and metrics are weighted so that the sum is the whole
    batch's (see the module docstring), hence the same update as one step on the whole batch.
    """
    k = self.microbatches
    normalizer = getattr(self.model, "loss_normalizer", None)
    summed = set(getattr(self.model, "summed_metrics", ()))
    total = normalizer(batch) if normalizer else None
    micro = jax.tree.map(lambda x: jnp.swapaxes(x.reshape((-1, k) + x.shape[1:]), 0, 1), batch)
    micro_shardings = {n: self.partitioner.data_sharding(len(v.shape) - 1)
                       for n, v in self.batch_spec.items()}
    grad_shardings = self.state_shardings.params

    def step(carry, xs):
      grads_sum, metrics_sum = carry
      i, mb = xs
      mb = jax.lax.with_sharding_constraint(mb, micro_shardings)
      grads, metrics, _ = self._grads(params, {}, mb, jax.random.fold_in(rng, i))
      weight = normalizer(mb) / total if normalizer else 1.0 / k
      grads_sum = jax.lax.with_sharding_constraint(
          jax.tree.map(lambda a, g: a + weight * g, grads_sum, grads), grad_shardings)
      metrics_sum = {n: metrics_sum[n] + (1.0 if n in summed else weight) * v
                     for n, v in metrics.items()}
      return (grads_sum, metrics_sum), None

    zeros = lambda tree: jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), tree)
    first = jax.tree.map(lambda x: x[0], micro)
    metric_shapes = jax.eval_shape(lambda: self._grads(params, {}, first, rng)[1])
    init = (jax.lax.with_sharding_constraint(zeros(params), grad_shardings), zeros(metric_shapes))
    (grads, metrics), _ = jax.lax.scan(step, init, (jnp.arange(k), micro))
    return grads, metrics

  def lower_step(self):
    """The train step lowered for abstract state and batch (no arrays): for the planner."""
    batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=self.batch_shardings[k])
             for k, v in self.batch_spec.items()}
    with self.partitioner.context():
      return self._step_jit.lower(self.abstract_with_shardings(), batch)

  def train_step(self, state: TrainState, batch) -> tuple[TrainState, dict]:
    with self.partitioner.context():
      return self._step_jit(state, batch)


def _check_same_tree(params, abstract) -> None:
  """Initial weights must fit the model exactly; say which parameter does not."""
  given = dict(jax.tree_util.tree_flatten_with_path(params)[0])
  wanted = dict(jax.tree_util.tree_flatten_with_path(abstract)[0])
  name = jax.tree_util.keystr
  missing = sorted(name(k) for k in wanted.keys() - given.keys())
  extra = sorted(name(k) for k in given.keys() - wanted.keys())
  if missing or extra:
    raise ValueError(f"initial parameters do not match the model: missing {missing[:5]}, "
                     f"unexpected {extra[:5]}")
  for key, spec in wanted.items():
    if tuple(given[key].shape) != tuple(spec.shape):
      raise ValueError(f"initial parameter {name(key)} has shape {tuple(given[key].shape)}; the "
                       f"model needs {tuple(spec.shape)} (another model size or vocabulary?)")
