"""The reference network's arithmetic in NumPy, from the paper and PyTorch's
definitions, independent of Keras' and TensorFlow's padding rules.

Every k x k convolution pads (k - 1) // 2 zeros on each side, as the
reference's `nn.Conv2d(..., padding=1)` (3x3) and `padding=0` (1x1) do, at
every stride. Batch norm in inference mode uses the stored statistics.
"""

import numpy as np

EPS = 1e-5
CIFAR10_MEAN = np.array([0.4914, 0.4822, 0.4465])
CIFAR10_STD = np.array([0.2023, 0.1994, 0.2010])


def conv2d(x, kernel, stride=1, groups=1):
    """NHWC input, HWIO kernel (I = input channels / groups), symmetric padding."""
    kh, kw, cin, cout = kernel.shape
    ph, pw = (kh - 1) // 2, (kw - 1) // 2
    x = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    n, h, w, _ = x.shape
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = np.zeros((n, ho, wo, cout), dtype=np.float64)
    per_group = cout // groups
    for g in range(groups):
        xs = x[..., g * cin : (g + 1) * cin]
        ks = kernel[..., g * per_group : (g + 1) * per_group]
        for i in range(kh):
            for j in range(kw):
                patch = xs[
                    :,
                    i : i + stride * (ho - 1) + 1 : stride,
                    j : j + stride * (wo - 1) + 1 : stride,
                    :,
                ]
                out[..., g * per_group : (g + 1) * per_group] += patch @ ks[i, j]
    return out


def batch_norm(x, gamma, beta, mean, var):
    return (x - mean) / np.sqrt(var + EPS) * gamma + beta


def relu(x):
    return np.maximum(x, 0.0)


def reference_logits(state, x, variant, bottleneck=False):
    """The reference's forward pass (eval mode) from its state dict.

    Args:
        state: {PyTorch name: array} as the reference's `state_dict()`.
        x: NHWC pixels in [0, 1] (3 channels, CIFAR-10 normalisation).
        variant: "resnet", "in" or "lambda_in".
        bottleneck: the 164-layer family's blocks.
    """

    def conv(name, h, stride=1):
        return conv2d(h, np.transpose(state[name], (2, 3, 1, 0)), stride)

    def bn(prefix, h):
        return batch_norm(
            h,
            *(
                state[f"{prefix}.{p}"]
                for p in ("weight", "bias", "running_mean", "running_var")
            ),
        )

    h = (np.asarray(x, np.float64) - CIFAR10_MEAN) / CIFAR10_STD
    h = conv("conv1.weight", h)
    count = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    n = count // 3
    units = 3 if bottleneck else 2
    for i in range(count):
        stride = 2 if i in (n, 2 * n) else 1
        f = h
        for j in range(1, units + 1):
            unit_stride = stride if j == (2 if bottleneck else 1) else 1
            f = conv(
                f"blocks.{i}.conv{j}.weight",
                relu(bn(f"blocks.{i}.bn{j}", f)),
                unit_stride,
            )
        projection = {0: "downsample1", n: "downsample21", 2 * n: "downsample31"}
        if i in projection and (i > 0 or bottleneck):
            name = projection[i]
            shortcut = conv(
                f"{name}.downsample.2.weight",
                relu(bn(f"{name}.downsample.0", h)),
                stride,
            )
        else:
            shortcut = h
        k = float(np.ravel(state[f"ks.{i}"])[0]) if f"ks.{i}" in state else None
        if i % n == 0 or variant == "resnet":
            h = f + shortcut
        elif variant == "in":
            h = f + (1 - max(1 - k, 0.0)) * shortcut
        else:
            lam = max(k, 0.0)
            h = (1 + lam) * f + (1 - lam) * shortcut
    h = relu(bn("bn", h)).mean(axis=(1, 2))
    return h @ state["fc.weight"].T + state["fc.bias"]
