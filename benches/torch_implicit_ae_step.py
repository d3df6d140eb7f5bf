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

`--data celeba` times the CelebA networks instead (the reference's `models/vae.py` and
`models/wae.py` at 64 x 64: four 5x5 stride-2 convolutions with nef channels, transposed
convolutions with ndf, the Gaussian decoder with log-std -0.602, images in [-1, 1]), to put
beside `cargo xtask repro table6 --data celeba` on the same batch size.
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


def conv_stack(c_in, nef, act):
    layers = []
    widths = [c_in, nef, 2 * nef, 4 * nef, 8 * nef]
    for a, b in zip(widths, widths[1:]):
        layers += [torch.nn.Conv2d(a, b, 5, stride=2, padding=2), act()]
    return layers


class ConvEncoder(torch.nn.Module):
    """The reference's ImplicitEncoder (VAE, no ReLU after the last convolution) or Encoder."""

    def __init__(self, implicit, k, nef, size):
        super().__init__()
        self.implicit, self.k, self.size = implicit, k, size
        if implicit:
            self.noise_fc = torch.nn.Sequential(torch.nn.Linear(k, size * size), torch.nn.ReLU())
        stack = conv_stack(3 + int(implicit), nef, torch.nn.ReLU)
        self.main = torch.nn.Sequential(*(stack[:-1] if implicit else stack))
        self.fc = torch.nn.Sequential(
            torch.nn.Linear((size // 16) ** 2 * 8 * nef, 512), torch.nn.ReLU()
        )
        self.out = torch.nn.Linear(512, k)

    def forward(self, x):
        if self.implicit:
            e = torch.randn(x.shape[0], self.k)
            x = torch.cat([x, self.noise_fc(e).view(x.shape[0], 1, self.size, self.size)], 1)
        return self.out(self.fc(self.main(x).flatten(1)))


class ConvDecoder(torch.nn.Module):
    def __init__(self, k, ndf, size):
        super().__init__()
        self.ndf, self.side = ndf, size // 16
        self.fc = torch.nn.Linear(k, 8 * ndf * self.side ** 2)
        layers = []
        widths = [8 * ndf, 4 * ndf, 2 * ndf, ndf, 3]
        for i, (a, b) in enumerate(zip(widths, widths[1:])):
            layers.append(torch.nn.ConvTranspose2d(a, b, 5, 2, 2, output_padding=1))
            layers.append(torch.nn.ReLU() if i < 3 else torch.nn.Tanh())
        self.main = torch.nn.Sequential(*layers)

    def forward(self, z):
        return self.main(self.fc(z).view(z.shape[0], 8 * self.ndf, self.side, self.side))


class ConvScore(torch.nn.Module):
    def __init__(self, conditioned, k, nef, size):
        super().__init__()
        self.size = size
        self.zfc = torch.nn.Sequential(torch.nn.Linear(k, size * size), torch.nn.Softplus())
        self.main = torch.nn.Sequential(*conv_stack(1 + 3 * int(conditioned), nef, torch.nn.Softplus))
        self.fc = torch.nn.Sequential(
            torch.nn.Linear((size // 16) ** 2 * 8 * nef, 512), torch.nn.Softplus()
        )
        self.out = torch.nn.Linear(512, k)

    def forward(self, x, z):
        h = self.zfc(z).view(z.shape[0], 1, self.size, self.size)
        if x is not None:
            h = torch.cat([x, h], 1)
        return self.out(self.fc(self.main(h).flatten(1)))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--z", type=int, default=32)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--lam", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=100)
    p.add_argument("--data", choices=["mnist", "celeba"], default="mnist")
    p.add_argument("--width", type=int, default=64, help="CelebA's nef = ndf")
    p.add_argument("--size", type=int, default=64, help="CelebA's image side")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    h, k = a.hidden, a.z
    celeba = a.data == "celeba"
    if celeba:
        x = torch.rand(a.batch, 3, a.size, a.size) * 2 - 1
        print(f"PyTorch {torch.__version__}, {a.threads} threads, CelebA networks, batch "
              f"{a.batch}, z {k}, width {a.width}, {a.size} px")
    else:
        x = (torch.rand(a.batch, 784) < 0.3).float()
        print(f"PyTorch {torch.__version__}, {a.threads} threads, batch {a.batch}, z {k}, hidden {h}")
    print("| model | estimator | score step (ms) | whole step (ms) |")
    print("| --- | --- | --- | --- |")
    for model in ["vae", "wae"]:
        for estimator in ["ssmvr", "fd-ssmvr"]:
            if celeba:
                encoder = ConvEncoder(model == "vae", k, a.width, a.size)
                decoder = ConvDecoder(k, a.width, a.size)
                net = ConvScore(model == "vae", k, a.width, a.size)

                def score(xx, z):
                    return net(xx, z)

                def encode(xx):
                    return encoder(xx)
            else:
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
                out = decoder(z)
                s = score(cond, z.detach()).detach()
                prior = 0.5 * (z * z).sum(1) + 0.5 * k * math.log(2 * math.pi)
                if celeba:
                    log_std = -0.602
                    mean = out
                    gauss = (x - out) ** 2 / (2 * math.exp(2 * log_std))
                    nll = (gauss + 0.5 * math.log(2 * math.pi) + log_std).flatten(1).sum(1)
                else:
                    mean = torch.sigmoid(out)
                    nll = F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(1)
                if model == "vae":
                    ae = (nll + prior + (s * z).sum(1)).mean()
                else:
                    recon = ((x - mean) ** 2).flatten(1).sum(1)
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
