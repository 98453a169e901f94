"""The same network in PyTorch (Debian's python3-torch, CPU), for the side by
side in bench/vision/run.sh: MobileNetV2 1.0/224 as our engine runs it
(batch norm folded into the convolutions, as in the TFLite file), so the
work per image is the same. Prints lines in vision_bench's format."""
import sys
import time

import torch
import torchvision


def network():
    m = torchvision.models.mobilenet_v2(num_classes=1001)
    # Our graph has no batch norm (TFLite folds it into conv weights and
    # biases): replace each BatchNorm2d by a per-channel bias-free identity.
    for name, mod in list(m.named_modules()):
        for child_name, child in list(mod.named_children()):
            if isinstance(child, torch.nn.BatchNorm2d):
                setattr(mod, child_name, torch.nn.Identity())
    return m


def rate(fn, batch, seconds=2.0):
    fn()  # warm-up
    reps, t0 = 0, time.perf_counter()
    while True:
        fn()
        reps += 1
        t = time.perf_counter() - t0
        if t >= seconds and reps >= 3:
            return batch * reps / t


def main():
    torch.manual_seed(0)
    m = network()
    macs = 301e6
    for threads, batch in ((1, 1), (2, 1), (2, 16)):
        torch.set_num_threads(threads)
        m.eval()
        x = torch.randn(batch, 3, 224, 224)
        with torch.no_grad():
            r = rate(lambda: m(x), batch)
        label = f"inference batch {batch}, {threads} thread{'s' if threads > 1 else ''}"
        print(f"{label:<40} {r:10.1f} img/s  {2 * macs * r / 1e9:6.1f} GFLOP/s")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        m.train()
        opt = torch.optim.SGD(m.parameters(), lr=0.001, momentum=0.9)
        x = torch.randn(16, 3, 224, 224)
        y = torch.randint(0, 1001, (16,))
        lossf = torch.nn.CrossEntropyLoss()

        def step():
            opt.zero_grad()
            lossf(m(x), y).backward()
            opt.step()

        r = rate(step, 16, seconds=3.0)
        label = f"training batch 16, {threads} thread{'s' if threads > 1 else ''}"
        print(f"{label:<40} {r:10.1f} img/s")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
