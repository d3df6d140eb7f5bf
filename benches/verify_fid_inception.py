"""Writes the fixture that checks our FID InceptionV3 against pytorch-fid's, without the real
weights: pytorch-fid's network (its FID blocks on torchvision's InceptionV3) with random weights
and random batch-norm statistics, saved as a PyTorch state dict, random input images, and the
2048-d features pytorch-fid's `InceptionV3([3])` computes for them (resize to 299 bilinear,
2x - 1, the blocks, the final average pool).

    python benches/verify_fid_inception.py OUT_DIR [--legacy]
    cargo run --release -p sample-quality --example compare_inception -- OUT_DIR

`--legacy` writes the state dict in PyTorch's pre-1.6 (non-zip) format. Needs torch, torchvision
and pytorch-fid (`pip install pytorch-fid`).
"""

import argparse
import os

import numpy as np
import torch
import pytorch_fid.inception as pfi


def random_fid_inception(seed):
    torch.manual_seed(seed)
    net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pfi.FIDInceptionE_1(1280)
    net.Mixed_7c = pfi.FIDInceptionE_2(2048)
    with torch.no_grad():
        for name, m in net.named_modules():
            if isinstance(m, torch.nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0.0, (2.0 / fan_in) ** 0.5)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--legacy", action="store_true")
    p.add_argument("--images", type=int, default=6)
    p.add_argument("--size", type=int, default=32)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    net = random_fid_inception(0)
    pfi.fid_inception_v3 = lambda: net
    model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    torch.manual_seed(1)
    x = torch.rand(a.images, 3, a.size, a.size)
    with torch.no_grad():
        feats = model(x)[0].squeeze(-1).squeeze(-1)
    torch.save(
        net.state_dict(),
        os.path.join(a.out, "weights.pth"),
        _use_new_zipfile_serialization=not a.legacy,
    )
    np.save(os.path.join(a.out, "images.npy"), x.numpy())
    np.save(os.path.join(a.out, "features.npy"), feats.numpy())
    print(f"{a.images} images of {a.size} x {a.size}; features {tuple(feats.shape)}, "
          f"mean {feats.mean():.4f}, std {feats.std():.4f}")


if __name__ == "__main__":
    main()
