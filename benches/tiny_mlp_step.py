"""Cost per op of a training step on a tiny network, in PyTorch (eager) or JAX (jit).

The step benchmark's MLP objectives (the definitions of the peer benchmark: mle-cost, dsm, ssm,
fd-dsm, fd-ssm; sigma = eps = 0.1; L(x) = -E(x)) on a softplus MLP of any sizes, each step
drawing its noise, evaluating the loss, back-propagating and taking an Adam step. With a tiny
network (16-16-1) the arithmetic is negligible and the time is the framework's own cost per op
and per step; run it beside

    cargo xtask bench steps --net mlp --mlp-sizes 16,16,1 --batch 1 --steps 200

in one sitting (docs/performance.md records both).

    python benches/tiny_mlp_step.py --framework torch --sizes 16,16,1 --batch 1
    python benches/tiny_mlp_step.py --framework jax --sizes 16,16,1 --batch 8
"""

import argparse
import math
import statistics
import time

OBJECTIVES = ["mle-cost", "dsm", "ssm", "fd-dsm", "fd-ssm"]
SIGMA = 0.1
EPS = 0.1


def sphere(v, radius, norm):
    return v / norm(v) * radius


def run_torch(a, sizes):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    layers = [torch.nn.Linear(i, o) for i, o in zip(sizes, sizes[1:])]
    params = [p for layer in layers for p in layer.parameters()]
    opt = torch.optim.Adam(params, lr=1e-4)
    d = sizes[0]
    x = torch.rand(a.batch, d)

    def log_p(inp):
        h = inp
        for i, layer in enumerate(layers):
            h = layer(h)
            if i < len(layers) - 1:
                h = F.softplus(h)
        return -h.squeeze(1)

    def loss(obj):
        if obj == "mle-cost":
            return (-log_p(x)).mean()
        if obj == "dsm":
            xt = (x + SIGMA * torch.randn_like(x)).requires_grad_(True)
            (g,) = torch.autograd.grad(log_p(xt).sum(), xt, create_graph=True)
            return ((g + (xt - x) / SIGMA**2) ** 2).sum(1).mean() / d
        if obj == "ssm":
            xr = x.clone().requires_grad_(True)
            v = torch.randn_like(x)
            (g,) = torch.autograd.grad(log_p(xr).sum(), xr, create_graph=True)
            gv = (g * v).sum()
            (hv,) = torch.autograd.grad(gv, xr, create_graph=True)
            return ((hv * v).sum(1) + 0.5 * (g * v).sum(1) ** 2).mean()
        v = sphere(torch.randn_like(x), EPS, lambda t: t.norm(dim=1, keepdim=True))
        if obj == "fd-dsm":
            xt = x + SIGMA * torch.randn_like(x)
            lp = log_p(torch.cat([xt + v, xt - v]))
            plus, minus = lp.chunk(2)
            return (((plus - minus) / 2 + (v * (xt - x)).sum(1) / SIGMA**2) ** 2).mean() / EPS**2
        lp = log_p(torch.cat([x, x + v, x - v]))
        c, plus, minus = lp.chunk(3)
        return ((plus + minus - 2 * c + (plus - minus) ** 2 / 8) / EPS**2).mean()

    out = {}
    for obj in a.objectives:
        times = []
        for rep in range(a.steps + a.warmup):
            t0 = time.perf_counter()
            value = loss(obj)
            opt.zero_grad()
            value.backward()
            opt.step()
            if rep >= a.warmup:
                times.append((time.perf_counter() - t0) * 1e3)
        out[obj] = statistics.median(times)
    return f"PyTorch {torch.__version__} eager, {a.threads} threads", out


def run_jax(a, sizes):
    import os

    os.environ.setdefault(
        "XLA_FLAGS", f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={a.threads}"
    )
    import jax
    import jax.numpy as jnp

    key = jax.random.PRNGKey(0)
    params = []
    for i, o in zip(sizes, sizes[1:]):
        key, k1, k2 = jax.random.split(key, 3)
        bound = 1 / math.sqrt(i)
        params.append(
            (
                jax.random.uniform(k1, (i, o), minval=-bound, maxval=bound),
                jax.random.uniform(k2, (o,), minval=-bound, maxval=bound),
            )
        )
    d = sizes[0]
    key, kx = jax.random.split(key)
    x = jax.random.uniform(kx, (a.batch, d))

    def log_p(p, inp):
        h = inp
        for i, (w, b) in enumerate(p):
            h = h @ w + b
            if i < len(p) - 1:
                h = jax.nn.softplus(h)
        return -h[:, 0]

    def loss(p, k, obj):
        k1, k2 = jax.random.split(k)
        if obj == "mle-cost":
            return (-log_p(p, x)).mean()
        score = jax.grad(lambda inp: log_p(p, inp).sum())
        if obj == "dsm":
            xt = x + SIGMA * jax.random.normal(k1, x.shape)
            return ((score(xt) + (xt - x) / SIGMA**2) ** 2).sum(1).mean() / d
        if obj == "ssm":
            v = jax.random.normal(k1, x.shape)
            g, hv = jax.jvp(score, (x,), (v,))
            return ((hv * v).sum(1) + 0.5 * (g * v).sum(1) ** 2).mean()
        v = sphere(
            jax.random.normal(k1, x.shape),
            EPS,
            lambda t: jnp.linalg.norm(t, axis=1, keepdims=True),
        )
        if obj == "fd-dsm":
            xt = x + SIGMA * jax.random.normal(k2, x.shape)
            lp = log_p(p, jnp.concatenate([xt + v, xt - v]))
            plus, minus = jnp.split(lp, 2)
            return (((plus - minus) / 2 + (v * (xt - x)).sum(1) / SIGMA**2) ** 2).mean() / EPS**2
        lp = log_p(p, jnp.concatenate([x, x + v, x - v]))
        c, plus, minus = jnp.split(lp, 3)
        return ((plus + minus - 2 * c + (plus - minus) ** 2 / 8) / EPS**2).mean()

    out = {}
    for obj in a.objectives:

        def step(state, k, obj=obj):
            p, m, s, t = state
            g = jax.grad(loss)(p, k, obj)
            t = t + 1
            m = jax.tree_util.tree_map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
            s = jax.tree_util.tree_map(lambda s, g: 0.999 * s + 0.001 * g * g, s, g)
            p = jax.tree_util.tree_map(
                lambda p, m, s: p
                - 1e-4 * (m / (1 - 0.9**t)) / (jnp.sqrt(s / (1 - 0.999**t)) + 1e-8),
                p,
                m,
                s,
            )
            return (p, m, s, t)

        step = jax.jit(step)
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        state = (params, zeros, zeros, 0)
        times = []
        k = jax.random.PRNGKey(1)
        for rep in range(a.steps + a.warmup):
            k, sub = jax.random.split(k)
            t0 = time.perf_counter()
            state = step(state, sub)
            jax.block_until_ready(state)
            if rep >= a.warmup:
                times.append((time.perf_counter() - t0) * 1e3)
        out[obj] = statistics.median(times)
    return f"JAX {jax.__version__} jit", out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--framework", choices=["torch", "jax"], default="torch")
    p.add_argument("--sizes", default="16,16,1", help="layer widths, input first, ending in 1")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--objectives", default=",".join(OBJECTIVES))
    a = p.parse_args()
    a.objectives = a.objectives.split(",")
    sizes = [int(s) for s in a.sizes.split(",")]
    if len(sizes) < 2 or sizes[-1] != 1 or min(sizes) < 1:
        raise SystemExit(f"--sizes must be widths >= 1 ending in 1, got {a.sizes}")
    for obj in a.objectives:
        if obj not in OBJECTIVES:
            raise SystemExit(f"unknown objective {obj}; they are {', '.join(OBJECTIVES)}")
    name, out = (run_torch if a.framework == "torch" else run_jax)(a, sizes)
    print(f"{name}, MLP {a.sizes}, batch {a.batch}, median of {a.steps} steps")
    for obj, ms in out.items():
        print(f"{obj:10s} {ms:8.3f} ms")


if __name__ == "__main__":
    main()
