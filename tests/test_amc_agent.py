"""AMC's DDPG agent (nas.channels.amc_agent) on toy problems whose optimum is known exactly."""

import numpy as np
import pytest

pytest.importorskip("stable_baselines3", reason="the AMC agent needs the rl extra: pip install -e '.[rl]'")

from nas.channels.amc_agent import AMCAgent, AMCConfig, PruningEnv, TruncatedNormalNoise  # noqa: E402

GRID = tuple(k / 10 for k in range(1, 11))
# log-utility toy: reward = sum w_t log k_t (concave), cost = sum c_t k_t; the budget (half the full cost) puts
# the optimum inside the grid: keeps (0.6, 0.3, 0.9, 0.2, 1.0, 0.5)
W = np.array([1.0, 0.6, 1.4, 0.8, 1.2, 0.9])
C = np.array([1.0, 1.5, 1.0, 2.0, 0.8, 1.2])
BUDGET = 0.5 * C.sum()


def toy_env(budget: float = BUDGET) -> PruningEnv:
    return PruningEnv(layer_features=np.stack([np.arange(len(W)), W, C], axis=1), ratios=GRID,
                      reward_fn=lambda keeps: float(np.dot(W, np.log(keeps))),
                      cost_fn=lambda keeps: float(np.dot(C, keeps)), budget=budget)


def grid_optimum() -> float:
    """Best reward over all 10^6 grid networks that meet the budget (brute force)."""
    g = np.array(GRID)
    keeps = np.stack(np.meshgrid(*[g] * len(W), indexing="ij"), axis=-1).reshape(-1, len(W))
    ok = keeps @ C <= BUDGET + 1e-12
    return float((np.log(keeps[ok]) @ W).max())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agent_learns_toy_problem(seed: int) -> None:
    config = AMCConfig(episodes=120, warmup=20, noise_decay=0.98)
    env = toy_env()
    agent = AMCAgent(env, config=config, seed=seed)
    episodes = agent.run()
    assert episodes is env.episodes and len(episodes) == config.episodes
    assert [e["episode"] for e in episodes] == list(range(config.episodes))
    rewards = np.array([e["reward"] for e in episodes])
    # (a) the trained policy beats the random warm-up clearly (seen: ~ -5.7 -> -3.7)
    assert rewards[-20:].mean() > rewards[:config.warmup].mean() + 1.0
    # (b) the best network is close to the grid optimum -3.292 (seen: gaps 0.06-0.15 over seeds 0-4;
    # 150 random networks get 0.18-0.41)
    opt = grid_optimum()
    best = agent.best()
    assert best["reward"] == rewards.max() and best["reward"] <= opt + 1e-9
    assert best["reward"] >= opt - 0.2
    # (c) every network meets the budget and lies on the grid
    for e in episodes:
        assert e["cost"] <= BUDGET + 1e-9
        assert set(e["keeps"]) <= set(GRID) and len(e["keeps"]) == len(W)


def test_budget_clipping_holds_for_every_episode() -> None:
    # a non-separable cost (pairs of neighbouring layers, like a conv's c_in * c_out) and a budget 5% above
    # the cheapest network: most actions must be clipped down
    T = 8
    c = np.linspace(1.0, 2.0, T)

    def cost(keeps: tuple[float, ...]) -> float:
        k = np.array(keeps)
        return float(np.dot(c, k) + np.dot(k[:-1], k[1:]))

    cheapest, full = cost((GRID[0],) * T), cost((1.0,) * T)
    budget = cheapest + 0.05 * (full - cheapest)
    env = PruningEnv(layer_features=np.stack([np.arange(T), c], axis=1), ratios=GRID,
                     reward_fn=lambda keeps: float(np.sum(keeps)), cost_fn=cost, budget=budget)
    # the greediest action, keep everything, is clipped to the largest feasible keep layer by layer
    obs, _ = env.reset()
    assert env.observation_space.contains(obs)
    done = False
    while not done:
        obs, reward, done, truncated, info = env.step(np.array([1.0], dtype=np.float32))
        assert env.observation_space.contains(obs) and not truncated
        assert reward == (env.last_episode["reward"] if done else 0.0)
    assert env.last_episode["cost"] <= budget + 1e-9 and max(env.last_episode["keeps"]) > GRID[0]
    # random warm-up episodes and trained ones alike
    env = PruningEnv(layer_features=np.stack([np.arange(T), c], axis=1), ratios=GRID,
                     reward_fn=lambda keeps: float(np.sum(keeps)), cost_fn=cost, budget=budget)
    episodes = AMCAgent(env, config=AMCConfig(episodes=12, warmup=8, hidden=32), seed=3, progress=True).run()
    assert len(episodes) == 12
    assert all(e["cost"] <= budget + 1e-9 for e in episodes)
    assert any(e["keeps"] != (GRID[0],) * T for e in episodes)


def test_state_features() -> None:
    env = toy_env()
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (3 + 4,)
    np.testing.assert_allclose(obs[:3], [0.0, W[0] / W.max(), C[0] / C.max()], rtol=1e-6)
    # t / (T-1), reduced so far, what the rest could still remove, previous keep
    np.testing.assert_allclose(obs[3:], [0.0, 0.0, 0.9, 1.0], rtol=1e-6)
    obs, *_ = env.step(np.array([0.0]))  # keep 0.1 of layer 0
    np.testing.assert_allclose(obs[3:], [0.2, 0.9 * C[0] / C.sum(), 0.9 * C[1:].sum() / C.sum(), 0.1], rtol=1e-6)


def test_bad_inputs_raise() -> None:
    feats = np.ones((len(W), 2))
    kwargs = dict(layer_features=feats, reward_fn=lambda k: 0.0, cost_fn=lambda k: float(np.dot(C, k)))
    with pytest.raises(ValueError, match=r"budget 0\.5 is below the cheapest network's cost"):
        PruningEnv(ratios=GRID, budget=0.5, **kwargs)
    with pytest.raises(ValueError, match="ratios must end at 1.0"):
        PruningEnv(ratios=GRID[:-1], budget=BUDGET, **kwargs)
    with pytest.raises(ValueError, match="strictly increasing"):
        PruningEnv(ratios=(0.5, 0.2, 1.0), budget=BUDGET, **kwargs)
    with pytest.raises(ValueError, match="layer_features"):
        PruningEnv(ratios=GRID, budget=BUDGET, **{**kwargs, "layer_features": np.ones(6)})
    with pytest.raises(ValueError, match="warmup"):
        AMCConfig(warmup=-1)
    with pytest.raises(ValueError, match="noise_decay"):
        AMCConfig(noise_decay=1.5)
    env = toy_env()
    env.reset()
    for _ in range(len(W)):
        env.step(np.array([0.5]))
    with pytest.raises(ValueError, match="fresh PruningEnv"):
        AMCAgent(env)


def test_truncated_normal_noise() -> None:
    noise = TruncatedNormalNoise(sigma=0.2, decay=0.5, seed=0)
    at_edge = np.array([noise.sample(np.array([0.0]))[0] for _ in range(4000)])
    assert at_edge.min() >= 0.0 and at_edge.max() <= 1.0
    assert abs(at_edge.mean() - 0.2 * np.sqrt(2 / np.pi)) < 0.01  # half-normal mean
    noise.reset()
    assert noise.sigma == pytest.approx(0.1)
    noise.reset()  # no draw since the last reset (a warm-up episode): no decay
    assert noise.sigma == pytest.approx(0.1)
    inside = np.array([noise.sample(np.array([0.5]))[0] for _ in range(4000)])
    assert abs(inside.mean() - 0.5) < 0.01 and abs(inside.std() - 0.1) < 0.01
    with pytest.raises(RuntimeError, match="sample"):
        noise()


def test_same_seed_same_episodes() -> None:
    def run(seed: int) -> list[tuple]:
        config = AMCConfig(episodes=10, warmup=4, hidden=32, batch_size=16)
        return [(e["keeps"], e["reward"], e["cost"]) for e in AMCAgent(toy_env(), config=config, seed=seed).run()]

    first = run(5)
    np.random.seed(123)  # global generators touched in between: must not matter
    assert run(5) == first
    assert run(6) != first
