"""AMC's reinforcement-learning core (He et al., "AMC: AutoML for Model Compression and Acceleration on Mobile
Devices", ECCV 2018), resource-constrained mode, on Stable-Baselines3's DDPG and a Gymnasium environment.

Generic: the caller gives per-layer static features and two callables of the keep ratios of all T layers,
``reward_fn`` (e.g. validation accuracy) and ``cost_fn`` (e.g. predicted latency, non-decreasing in every ratio).

* State (one per layer t): the layer's static features, each column scaled by its max abs, then t / (T-1),
  *reduced* (the share of the full cost removed by the layers before t) and *rest* (the share the layers from t
  on could still remove, down to the smallest ratio), both fractions of the full network's cost, and the previous
  layer's executed keep ratio (1.0 at t = 0).
* Action: one number in [0, 1], mapped linearly to a keep ratio in [ratios[0], 1], rounded to the nearest grid
  ratio, then lowered to the largest grid ratio for which "chosen so far, this layer at that ratio, all later
  layers at ratios[0]" still meets the budget. By induction every episode's network meets the budget.
* Reward: 0 until the last layer, then ``reward_fn(keeps)``. As in AMC, every transition of an episode is given
  the episode's final reward minus an exponential moving average of the episodes' rewards (the baseline), with
  gamma = 1. Unlike AMC (whose rewards are accuracies in [0, 1]) that advantage is divided by the standard
  deviation of all episodes' rewards so far, so DDPG's step sizes do not depend on the reward's units (fraction
  or percent, log-scores). Measured on a 6-layer log-reward toy (5 seeds, 150 episodes): unscaled, the rewards
  and the same rewards / 5.8 gave different runs (mean gap to the optimum 0.32 vs 0.27 units); scaled, the two
  runs are identical, with a mean gap of 0.26.
* Exploration: ``config.warmup`` episodes of uniformly random actions, then a ~ TN(actor(s), sigma^2) truncated
  to [0, 1], sigma multiplied by ``noise_decay`` after every (non-warm-up) episode.
* Buffer: SB3's replay buffer; its stored rewards are rewritten to the final reward when an episode ends, and
  the baseline is subtracted when a batch is sampled (so old transitions use the current baseline, as in AMC).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from statistics import NormalDist
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from stable_baselines3 import DDPG
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.utils import update_learning_rate

Keeps = tuple[float, ...]


class PruningEnv(gymnasium.Env):
    """One episode walks the prunable layers in order; each step picks the kept fraction of one layer."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, *, layer_features: np.ndarray, ratios: Sequence[float],
                 reward_fn: Callable[[Keeps], float], cost_fn: Callable[[Keeps], float], budget: float) -> None:
        super().__init__()
        feats = np.asarray(layer_features, dtype=np.float64)
        if feats.ndim != 2 or feats.shape[0] < 1:
            raise ValueError(f"layer_features must be a (T, F) array with T >= 1 layers, got shape {feats.shape}; "
                             "pass one row of static features per prunable layer")
        if not np.all(np.isfinite(feats)):
            raise ValueError("layer_features holds NaN or inf; pass finite features")
        scale = np.abs(feats).max(axis=0)
        self.features = np.divide(feats, scale, out=np.zeros_like(feats), where=scale > 0)
        grid = tuple(float(r) for r in ratios)
        if not grid or not all(0 < r <= 1 for r in grid) or any(a >= b for a, b in zip(grid, grid[1:])):
            raise ValueError(f"ratios must be strictly increasing values in (0, 1], got {grid}; "
                             "e.g. 0.1, 0.2, ..., 1.0")
        if grid[-1] != 1.0:
            raise ValueError(f"ratios must end at 1.0 (the unpruned layer), got last ratio {grid[-1]}; append 1.0")
        if not callable(reward_fn) or not callable(cost_fn):
            raise ValueError("reward_fn and cost_fn must be callables of the keep ratios (a tuple of T floats)")
        self.num_layers = feats.shape[0]
        self.ratios, self.reward_fn, self.cost_fn = grid, reward_fn, cost_fn
        self.full_cost = self._cost((1.0,) * self.num_layers)
        if not self.full_cost > 0:
            raise ValueError(f"cost_fn of the unpruned network must be > 0 (it normalises the state), "
                             f"got {self.full_cost}")
        self.min_cost = self._cost((grid[0],) * self.num_layers)
        budget = float(budget)
        if not budget >= self.min_cost:
            raise ValueError(f"budget {budget} is below the cheapest network's cost {self.min_cost}: every layer at "
                             f"ratio {grid[0]} already costs that; raise the budget or add smaller ratios")
        self.budget = budget
        n_obs = feats.shape[1] + 4
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(n_obs,), dtype=np.float32)
        self.action_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.episodes: list[dict[str, Any]] = []
        self.last_episode: dict[str, Any] | None = None
        self._keeps: list[float] = []

    def _cost(self, keeps: Keeps) -> float:
        value = float(self.cost_fn(keeps))
        if not math.isfinite(value):
            raise ValueError(f"cost_fn returned {value} for keeps {keeps}; it must return a finite cost")
        return value

    def _observation(self) -> np.ndarray:
        t, T, lo = len(self._keeps), self.num_layers, self.ratios[0]
        done = tuple(self._keeps)
        prefix = self._cost(done + (1.0,) * (T - t))
        cheapest = self._cost(done + (lo,) * (T - t))
        feats = self.features[t] if t < T else np.zeros(self.features.shape[1])
        state = [min(t / (T - 1), 1.0) if T > 1 else 0.0, (self.full_cost - prefix) / self.full_cost,
                 (prefix - cheapest) / self.full_cost, self._keeps[-1] if self._keeps else 1.0]
        return np.concatenate([feats, state]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._keeps = []
        return self._observation(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        t, T, grid = len(self._keeps), self.num_layers, self.ratios
        if t >= T:
            raise RuntimeError("episode is over: call reset() before step()")
        a = float(np.asarray(action, dtype=np.float64).reshape(-1)[0])
        if math.isnan(a):
            raise ValueError("action is NaN; pass a value in [0, 1]")
        wanted = grid[0] + min(max(a, 0.0), 1.0) * (1.0 - grid[0])
        i = int(np.argmin([abs(r - wanted) for r in grid]))
        later = (grid[0],) * (T - t - 1)
        # budget clipping: the largest grid ratio that still leaves a feasible completion (grid[0] always does)
        while i > 0 and self._cost(tuple(self._keeps) + (grid[i],) + later) > self.budget:
            i -= 1
        self._keeps.append(grid[i])
        info = {"wanted": wanted, "keep": grid[i]}
        if len(self._keeps) < T:
            return self._observation(), 0.0, False, False, info
        keeps = tuple(self._keeps)
        reward = float(self.reward_fn(keeps))
        if not math.isfinite(reward):
            raise ValueError(f"reward_fn returned {reward} for keeps {keeps}; it must return a finite reward")
        self.last_episode = {"episode": len(self.episodes), "keeps": keeps, "reward": reward, "cost": self._cost(keeps)}
        self.episodes.append(self.last_episode)
        return self._observation(), reward, True, False, info


class TruncatedNormalNoise(ActionNoise):
    """AMC's exploration: a ~ TN(mu, sigma^2) truncated to [0, 1], sigma decaying by `decay` after every episode.

    Truncation needs the mean (the actor's action), which SB3's additive ``action_noise()`` interface does not
    pass, so ``_AMCDDPG._sample_action`` calls ``sample(mu)`` instead. SB3's ``collect_rollouts`` still calls
    ``reset()`` at every episode end; sigma decays only after episodes that drew from it (not warm-up ones)."""

    def __init__(self, *, sigma: float, decay: float, seed: int = 0) -> None:
        super().__init__()
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        if not 0 < decay <= 1:
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        self.sigma, self.decay = float(sigma), float(decay)
        self._rng = np.random.default_rng(seed)
        self._drawn = False

    def sample(self, mean: np.ndarray) -> np.ndarray:
        """One truncated-normal draw per entry of ``mean`` (clipped to [0, 1] first), by inverting the CDF."""
        self._drawn = True
        mu = np.clip(np.asarray(mean, dtype=np.float64), 0.0, 1.0)
        if self.sigma < 1e-12:
            return mu.astype(np.float32)
        out = np.empty_like(mu)
        for k, m in np.ndenumerate(mu):
            dist = NormalDist(float(m), self.sigma)
            lo, hi = dist.cdf(0.0), dist.cdf(1.0)
            u = min(max(lo + (hi - lo) * self._rng.random(), 1e-300), 1.0 - 1e-16)
            out[k] = dist.inv_cdf(u)
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    def __call__(self) -> np.ndarray:
        raise RuntimeError("TruncatedNormalNoise needs the actor's action: call sample(mean), e.g. through AMCAgent")

    def reset(self) -> None:
        if self._drawn:
            self.sigma *= self.decay
        self._drawn = False


@dataclass(frozen=True, kw_only=True)
class AMCConfig:
    episodes: int = 200       # total episodes
    warmup: int = 50          # first episodes with uniformly random actions (AMC: 100 of 400)
    noise_sigma: float = 0.5  # AMC's initial exploration sigma
    noise_decay: float = 0.95  # per episode, after warm-up
    buffer_size: int = 10_000
    batch_size: int = 64
    hidden: int = 300          # actor and critic: two hidden layers of this width (AMC: 300, 300)
    lr_actor: float = 1e-4
    lr_critic: float = 1e-3
    tau: float = 0.01
    gamma: float = 1.0         # episodic, reward at the end
    baseline_decay: float = 0.95  # AMC subtracts a moving average of rewards (variance reduction)

    def __post_init__(self) -> None:
        ints = {"episodes": 1, "warmup": 0, "buffer_size": 1, "batch_size": 1, "hidden": 1}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ints:
                if isinstance(value, bool) or not isinstance(value, int) or value < ints[f.name]:
                    raise ValueError(f"AMCConfig.{f.name} must be an int >= {ints[f.name]}, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"AMCConfig.{f.name} must be a finite number, got {value!r}")
        for name in ("noise_sigma", "lr_actor", "lr_critic"):
            if not getattr(self, name) > 0:
                raise ValueError(f"AMCConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("noise_decay", "tau"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"AMCConfig.{name} must be in (0, 1], got {getattr(self, name)}")
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"AMCConfig.gamma must be in [0, 1], got {self.gamma}")
        if not 0 <= self.baseline_decay < 1:
            raise ValueError(f"AMCConfig.baseline_decay must be in [0, 1), got {self.baseline_decay}")


class _BaselineReplayBuffer(ReplayBuffer):
    """Stores each transition's raw final reward; sampling subtracts the current moving-average baseline."""

    baseline: float = 0.0
    scale: float = 1.0

    def _normalize_reward(self, reward: np.ndarray, env: Any = None) -> np.ndarray:
        return ((super()._normalize_reward(reward, env) - self.baseline) / self.scale).astype(np.float32)


class _AMCDDPG(DDPG):
    """DDPG with AMC's exploration (own warm-up and truncated-normal draws) and separate actor/critic rates.

    Overriding ``_sample_action`` (rather than passing an additive ActionNoise) is the clean way to get a
    truncated normal around the actor's action; SB3 gives one learning rate to both optimisers and resets
    it every ``train()``, hence the ``_update_learning_rate`` override."""

    def __init__(self, *args: Any, warmup_steps: int, lr_actor: float, lr_critic: float, rng: np.random.Generator,
                 **kwargs: Any) -> None:
        self.warmup_steps, self.lr_actor, self.lr_critic, self.rng = warmup_steps, lr_actor, lr_critic, rng
        super().__init__(*args, **kwargs)

    def _sample_action(self, learning_starts: int, action_noise: ActionNoise | None = None,
                       n_envs: int = 1) -> tuple[np.ndarray, np.ndarray]:
        if self.num_timesteps < self.warmup_steps:
            action = self.rng.random((n_envs, 1)).astype(np.float32)
        else:
            mu, _ = self.predict(self._last_obs, deterministic=True)
            action = action_noise.sample(mu) if isinstance(action_noise, TruncatedNormalNoise) else mu
        return action, self.policy.scale_action(action)

    def _update_learning_rate(self, optimizers: Any) -> None:
        update_learning_rate(self.actor.optimizer, self.lr_actor)
        update_learning_rate(self.critic.optimizer, self.lr_critic)


class _EpisodeEnd(BaseCallback):
    def __init__(self, agent: AMCAgent) -> None:
        super().__init__()
        self.agent = agent

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:  # one rollout == one episode (train_freq=(1, "episode"))
        self.agent._episode_end()


class AMCAgent:
    """Trains DDPG on a fresh ``PruningEnv`` for ``config.episodes`` episodes (see the module docstring)."""

    def __init__(self, env: PruningEnv, *, config: AMCConfig = AMCConfig(), seed: int = 0,
                 progress: bool = False) -> None:
        if not isinstance(env, PruningEnv):
            raise ValueError(f"env must be a PruningEnv, got {type(env).__name__}")
        if env.episodes:
            raise ValueError(f"env has already run {len(env.episodes)} episodes; pass a fresh PruningEnv")
        if not isinstance(config, AMCConfig):
            raise ValueError(f"config must be an AMCConfig, got {type(config).__name__}")
        if config.buffer_size < env.num_layers:
            raise ValueError(f"config.buffer_size {config.buffer_size} must hold one episode ({env.num_layers} "
                             "transitions); raise it")
        self.env, self.config, self.seed, self.progress = env, config, int(seed), progress
        T = env.num_layers
        self.noise = TruncatedNormalNoise(sigma=config.noise_sigma, decay=config.noise_decay, seed=self.seed)
        # fused Adam: one 300-300 MLP update takes 1.8 ms instead of 3 ms on this project's CPU
        policy_kwargs = {"net_arch": [config.hidden, config.hidden], "optimizer_kwargs": {"fused": True}}
        self.model = _AMCDDPG(
            "MlpPolicy", env, warmup_steps=config.warmup * T, lr_actor=config.lr_actor, lr_critic=config.lr_critic,
            rng=np.random.default_rng(self.seed), learning_rate=config.lr_critic, buffer_size=config.buffer_size,
            # train (T gradient steps, one per transition as in AMC) after every episode from the warm-up's last on
            learning_starts=max(config.warmup * T - 1, 0), train_freq=(1, "episode"), gradient_steps=-1,
            batch_size=config.batch_size, tau=config.tau, gamma=config.gamma, action_noise=self.noise,
            replay_buffer_class=_BaselineReplayBuffer, policy_kwargs=policy_kwargs, seed=self.seed, device="cpu",
            verbose=0)
        self.baseline: float | None = None
        self._bar: Any = None
        self._ran = False

    def _episode_end(self) -> None:
        episode, buffer = self.env.last_episode, self.model.replay_buffer
        assert episode is not None and isinstance(buffer, _BaselineReplayBuffer)
        reward = episode["reward"]
        # AMC: every transition of the episode gets its final reward (the baseline is subtracted at sampling)
        last = (buffer.pos - 1 - np.arange(self.env.num_layers)) % buffer.buffer_size
        buffer.rewards[last, 0] = reward
        decay = self.config.baseline_decay
        self.baseline = reward if self.baseline is None else decay * self.baseline + (1 - decay) * reward
        buffer.baseline = self.baseline
        # unit-free advantages: divide by the spread of all rewards so far (1 until two episodes differ)
        rewards = np.array([e["reward"] for e in self.env.episodes])
        std = float(rewards.std())
        if std > 1e-12 * max(1.0, float(np.abs(rewards).max())):
            buffer.scale = std
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(best=f"{self.best()['reward']:.4g}")

    def run(self) -> list[dict]:
        """Trains for ``config.episodes`` episodes; returns ``env.episodes`` (keeps, reward, cost, episode)."""
        if self._ran:
            raise RuntimeError("AMCAgent.run() was already called; build a new PruningEnv and AMCAgent to rerun")
        self._ran = True
        self.model.set_random_seed(self.seed)  # anything drawn from the global generators since __init__ is moot
        if self.progress:
            from tqdm.auto import tqdm
            self._bar = tqdm(total=self.config.episodes, desc="amc", unit="episode")
        # Threads follow the run's policy (nas/threads.py): the reward's evaluations use them, and idle OpenMP
        # workers sleep (OMP_WAIT_POLICY=PASSIVE) instead of spinning against the tiny actor/critic updates.
        try:
            self.model.learn(total_timesteps=self.config.episodes * self.env.num_layers, callback=_EpisodeEnd(self),
                             log_interval=None)
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
        return self.env.episodes

    def best(self) -> dict:
        """The highest-reward episode so far (the earliest of ties)."""
        if not self.env.episodes:
            raise RuntimeError("no episode has run yet: call run() first")
        return max(self.env.episodes, key=lambda e: e["reward"])
