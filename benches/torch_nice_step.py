"""PyTorch side of Table 3's time column: one training step of NICE on MNIST-sized input per method.

The same flow as `models::Nice` (pixels split into even and odd positions, additive couplings
alternately updating the odd and the even half by a softplus network, a final diagonal scale
exp(s)) and the same losses on the reference's scale as `experiments::table3::loss`, each timed
as a full step: loss, backward, Adam update. Median of `--reps` steps after five warm-up steps,
in ms, on random logit-space data of batch `--batch`. Put its output beside

    cargo xtask repro table3 --seeds 1 --iters 60 --hidden <H> --batch <B>

(the "Time (ours)" column) in one sitting; docs/performance.md records both.

    python benches/torch_nice_step.py --hidden 200 --batch 64 --threads 2
"""

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F


class Nice(torch.nn.Module):
    def __init__(self, dim, hidden, hidden_layers, couplings):
        super().__init__()
        half = dim // 2
        sizes = [half] + [hidden] * hidden_layers + [half]
        self.nets = torch.nn.ModuleList(
            torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
            for _ in range(couplings)
        )
        self.scale = torch.nn.Parameter(torch.zeros(dim))

    @staticmethod
    def net_forward(layers, h, keep=None):
        for i, layer in enumerate(layers):
            h = layer(h)
            if i < len(layers) - 1:
                if keep is not None:
                    keep.append(h)
                h = F.softplus(h)
        return h

    def forward(self, x, keep=None):
        even, odd = x[:, 0::2], x[:, 1::2]
        for k, layers in enumerate(self.nets):
            pre = [] if keep is not None else None
            if k % 2 == 0:
                odd = odd + self.net_forward(layers, even, pre)
            else:
                even = even + self.net_forward(layers, odd, pre)
            if keep is not None:
                keep.append(pre)
        y = torch.stack((even, odd), dim=2).reshape(x.shape)
        return y * self.scale.exp()

    def log_prob(self, x):
        y = self.forward(x)
        d = x.shape[1]
        return -0.5 * (y * y).sum(1) - 0.5 * d * math.log(2 * math.pi) + self.scale.sum()

    def propagate(self, x, cp):
        """Score and Hessian-diagonal estimate: Approx-BP (cp False) or curvature propagation."""
        pres = []
        y = self.forward(x, pres)
        s = self.scale.exp()
        grad = -y * s
        if cp:
            real, imag = torch.zeros_like(grad), (torch.randint(0, 2, grad.shape) * 2.0 - 1.0) * s
            carried = (real, imag)
        else:
            carried = (-(s * s)).expand_as(grad)
        split = lambda t: (t[:, 0::2], t[:, 1::2])
        g_even, g_odd = split(grad)
        if cp:
            c_even = (split(carried[0])[0], split(carried[1])[0])
            c_odd = (split(carried[0])[1], split(carried[1])[1])
        else:
            c_even, c_odd = split(carried)
        for k in reversed(range(len(self.nets))):
            layers, pre = self.nets[k], pres[k]
            if k % 2 == 0:
                g, c = self.net_backward(layers, pre, g_odd, c_odd, cp)
                g_even = g_even + g
                c_even = (c_even[0] + c[0], c_even[1] + c[1]) if cp else c_even + c
            else:
                g, c = self.net_backward(layers, pre, g_even, c_even, cp)
                g_odd = g_odd + g
                c_odd = (c_odd[0] + c[0], c_odd[1] + c[1]) if cp else c_odd + c
        merge = lambda a, b: torch.stack((a, b), dim=2).reshape(x.shape)
        score = merge(g_even, g_odd)
        if cp:
            diag = merge(c_even[0] ** 2 - c_even[1] ** 2, c_odd[0] ** 2 - c_odd[1] ** 2)
        else:
            diag = merge(c_even, c_odd)
        return score, diag

    @staticmethod
    def net_backward(layers, pre, g, c, cp):
        for i in reversed(range(len(layers))):
            w = layers[i].weight
            g = g @ w
            c = (c[0] @ w, c[1] @ w) if cp else c @ (w * w)
            if i == 0:
                break
            sig = torch.sigmoid(pre[i - 1])
            curv = g * sig * (1 - sig)
            if cp:
                v = torch.randint(0, 2, curv.shape) * 2.0 - 1.0
                root = curv.abs().clamp_min(1e-30).sqrt() * v
                c = (c[0] * sig + root * (curv > 0), c[1] * sig + root * (curv < 0))
            else:
                c = c * sig * sig + curv
            g = g * sig
        return g, c


def score_of(model, x):
    x = x.detach().requires_grad_(True)
    lp = model.log_prob(x)
    (s,) = torch.autograd.grad(lp.sum(), x, create_graph=True)
    return x, s


def loss(method, model, x, eps):
    d = x.shape[1]
    if method == "mle":
        return -model.log_prob(x).mean()
    if method in ("approx-bp", "cp"):
        s, h = model.propagate(x, method == "cp")
        return (0.5 * (s * s).sum(1) + h.sum(1)).mean()
    if method in ("dsm-0.1", "dsm-1.74"):
        sigma = float(method.split("-")[1])
        xt = x + sigma * torch.randn_like(x)
        _, s = score_of(model, xt)
        return 0.5 * ((s + (xt - x) / sigma**2) ** 2).sum(1).mean()
    if method in ("ssm", "ssmvr"):
        v = torch.randint(0, 2, x.shape) * 2.0 - 1.0
        xv, s = score_of(model, x)
        (hv,) = torch.autograd.grad((s * v).sum(), xv, create_graph=True)
        second = (hv * v).sum(1)
        first = 0.5 * (s * v).sum(1) ** 2 if method == "ssm" else 0.5 * (s * s).sum(1)
        return (first + second).mean()
    if method == "fd-ssm":
        v = torch.randn_like(x)
        v = v / v.norm(dim=1, keepdim=True) * eps
        lp = model.log_prob(torch.cat([x, x + v, x - v]))
        l0, lpl, lmi = lp.chunk(3)
        per = (2 * l0 - lpl - lmi) * -1.0 + ((lpl - lmi) ** 2) / 8
        # 1/2 (v.s)^2 + v^T H v over C_v = eps^2, times D: the reference scale.
        return (per / eps**2).mean() * d
    raise ValueError(method)


METHODS = ["approx-bp", "cp", "dsm-0.1", "dsm-1.74", "ssm", "ssmvr", "fd-ssm", "mle"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=200)
    parser.add_argument("--hidden-layers", type=int, default=4)
    parser.add_argument("--couplings", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    d = 784
    x = torch.logit(torch.rand(args.batch, d).clamp(1e-3, 1 - 1e-3))
    print(
        f"torch {torch.__version__}, {args.threads} threads, NICE {args.couplings} x "
        f"({args.hidden_layers} x {args.hidden}), batch {args.batch}"
    )
    print("| method | step, ms |")
    print("| --- | --- |")
    for method in args.methods.split(","):
        model = Nice(d, args.hidden, args.hidden_layers, args.couplings)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            loss(method, model, x, args.eps).backward()
            opt.step()

        for _ in range(5):
            step()
        times = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        print(f"| {method} | {statistics.median(times) * 1e3:.1f} |")


if __name__ == "__main__":
    main()
