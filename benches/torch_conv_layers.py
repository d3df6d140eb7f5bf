"""PyTorch side of `cargo bench --bench conv_layers`: the same 3x3 layers, timed the same way.

The step benchmark's ResNet EBM (width 32, 28 x 28 inputs) has five distinct 3x3 layers; this
script times PyTorch's CPU convolution on each, the forward pass alone and forward plus
backward (input and kernel gradients), so the per-layer numbers of docs/performance.md can be
put side by side. Median of `--reps` calls after three warm-up calls, in ms.

    python benches/torch_conv_layers.py --batch 192 --threads 2
    FDSM_BENCH_BATCH=192 cargo bench --bench conv_layers -- layers
"""

import argparse
import statistics
import time

import torch

# (channels in, channels out, map side) of the network's distinct 3x3 layers, as in
# benches/benchmarks/conv_layers.rs.
LAYERS = [(32, 64, 28), (64, 64, 14), (128, 128, 7), (128, 256, 7), (256, 256, 3)]


def median_ms(f, reps):
    for _ in range(3):
        f()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="images per call")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--reps", type=int, default=10, help="timed calls per measurement")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}")
    print("| layer | forward, ms | forward + backward, ms |")
    print("| --- | --- | --- |")
    for cin, cout, side in LAYERS:
        x = torch.randn(args.batch, cin, side, side, requires_grad=True)
        conv = torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False)

        def forward():
            with torch.no_grad():
                conv(x)

        def backward():
            conv(x).sum().backward()

        fwd = median_ms(forward, args.reps)
        both = median_ms(backward, args.reps)
        print(f"| {cin}to{cout}@{side} | {fwd:.1f} | {both:.1f} |")


if __name__ == "__main__":
    main()
