"""Train state and the partitioned, jitted init and train step.

A model (see mgpt_jax.models) provides:
  init_variables(rng, batch) -> flax variables: `params`, `params_axes` and any
      other collections (model state such as the VQ codebook);
  loss_fn(params, model_state, batch, rng) -> (loss, (metrics, new_model_state)).
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
               batch_spec: dict[str, jax.ShapeDtypeStruct], seed: int = 0):
    self.model = model
    self.optimizer = optimizer
    self.partitioner = partitioner
    self.batch_spec = batch_spec
    self.init_rng, self.step_rng = jax.random.split(jax.random.key(seed))
    self.batch_shardings = {k: partitioner.data_sharding(len(v.shape))
                            for k, v in batch_spec.items()}
    self.abstract_state = jax.eval_shape(self._init)
    self.state_shardings = self._state_shardings()
    self._init_jit = jax.jit(self._init, out_shardings=self.state_shardings)
    self._step_jit = jax.jit(self._train_step, donate_argnums=(0,),
                             in_shardings=(self.state_shardings, self.batch_shardings),
                             out_shardings=(self.state_shardings, partitioner.replicated))

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

    def loss_fn(params):
      return self.model.loss_fn(params, state.model_state, batch, rng)

    (_, (metrics, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, grad_norm=optax.tree.norm(grads))
    return TrainState(state.step + 1, params, opt_state, {**state.model_state, **model_state}), \
        metrics

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
