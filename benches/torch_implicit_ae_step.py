"""PyTorch side of Table 6's time column: the score-estimation step of the implicit-encoder VAE
and WAE (SSMVR and FD-SSMVR), and the whole training step, in eager PyTorch.

The same networks as `models::ImplicitAutoencoder` / `models::LatentScore` (784(+eps) -> 256 ->
256 -> z encoder, z -> 256 -> 256 -> 784 decoder, [x; z] -> 256 -> 256 -> z score network for
the VAE and z -> 256 -> 256 -> z for the WAE, all tanh) and the same step as
`experiments::table6`: one RMSProp step of the score network on detached codes (SSMVR with
Gaussian directions and one reverse pass for v^T (grad s) v, or FD-SSMVR with directions on the
sphere of radius eps and one forward pass over [z + v; z - v]), then the autoencoder's loss with
the detached score and its RMSProp step. Median ms of `--reps` steps after five warm-up steps on
random binary images. Put it beside

    cargo xtask repro table6 --seeds 1 --iters 300 --nll-images 8 --ais-temperatures 10 --fid-samples 0

(the "Score time (ours)" and "Step time (ours)" columns) in one sitting; docs/performance.md
records both.

    python benches/torch_implicit_ae_step.py --threads 2
"""

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F


def mlp(sizes):
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers)


def score_loss(score, x, z, estimator, eps):
    """SSMVR-scale loss (sum over the latent dimensions), mean over the batch."""
    z = z.detach()
    if estimator == "ssmvr":
        z = z.requires_grad_(True)
        v = torch.randn_like(z)
        s = score(x, z)
        sv = (s * v).sum()
        (g,) = torch.autograd.grad(sv, z, create_graph=True)
        per = 0.5 * (s * s).sum(1) + (v * g).sum(1)
    else:
        k = z.shape[1]
        v = torch.randn_like(z)
        v = v / v.norm(dim=1, keepdim=True) * eps
        both = score(torch.cat([x, x]) if x is not None else None, torch.cat([z + v, z - v]))
        sp, sm = both.chunk(2)
        mean = 0.5 * (sp + sm)
        # FD-SSMVR on sm_objectives' per-dimension scale (C_v = eps^2) times K:
        # |(s+ + s-) / 2|^2 / 2 + K v . (s+ - s-) / (2 eps^2).
        per = 0.5 * (mean * mean).sum(1) + k * (v * (sp - sm)).sum(1) / (2 * eps * eps)
    return per.mean()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--z", type=int, default=32)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--lam", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=100)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    h, k = a.hidden, a.z
    x = (torch.rand(a.batch, 784) < 0.3).float()
    print(f"PyTorch {torch.__version__}, {a.threads} threads, batch {a.batch}, z {k}, hidden {h}")
    print("| model | estimator | score step (ms) | whole step (ms) |")
    print("| --- | --- | --- | --- |")
    for model in ["vae", "wae"]:
        for estimator in ["ssmvr", "fd-ssmvr"]:
            enc_in = 784 + k if model == "vae" else 784
            encoder = mlp([enc_in, h, h, k])
            decoder = mlp([k, h, h, 784])
            net = mlp([784 + k if model == "vae" else k, h, h, k])

            def score(xx, z):
                return net(torch.cat([xx, z], 1)) if model == "vae" else net(z)

            def encode(xx):
                if model == "vae":
                    return encoder(torch.cat([xx, torch.randn(xx.shape[0], k)], 1))
                return encoder(xx)

            opt_s = torch.optim.RMSprop(net.parameters(), lr=1e-3)
            opt_ae = torch.optim.RMSprop(
                list(encoder.parameters()) + list(decoder.parameters()), lr=1e-3
            )
            score_ms, step_ms = [], []
            for rep in range(a.reps + 5):
                t0 = time.perf_counter()
                with torch.no_grad():
                    z = encode(x)
                cond = x if model == "vae" else None
                loss = score_loss(score, cond, z, estimator, a.eps)
                opt_s.zero_grad()
                loss.backward()
                opt_s.step()
                t1 = time.perf_counter()
                z = encode(x)
                logits = decoder(z)
                s = score(cond, z.detach()).detach() if model == "vae" else net(z.detach()).detach()
                prior = 0.5 * (z * z).sum(1) + 0.5 * k * math.log(2 * math.pi)
                if model == "vae":
                    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
                    ae = (recon + prior + (s * z).sum(1)).mean()
                else:
                    recon = ((x - torch.sigmoid(logits)) ** 2).sum(1)
                    ae = (recon + a.lam * (prior + (s * z).sum(1))).mean()
                opt_ae.zero_grad()
                ae.backward()
                opt_ae.step()
                t2 = time.perf_counter()
                if rep >= 5:
                    score_ms.append((t1 - t0) * 1e3)
                    step_ms.append((t2 - t0) * 1e3)
            print(
                f"| {model.upper()} | {estimator.upper()} | {statistics.median(score_ms):.2f} | "
                f"{statistics.median(step_ms):.2f} |"
            )


if __name__ == "__main__":
    main()
