"""A user's attack, registered from outside the library (`--import
sign_noise` with this folder on the path): every pixel moved by +-eps with
signs drawn by NumPy from the call's seed."""

import numpy as np

from keras_damped.robustness import Attack
from keras_damped.robustness import register_attack


class SignNoise(Attack):
    gradient = False

    def cost(self):
        return 1

    def perturb(self, x, y, eps, seed):
        signs = np.random.default_rng(list(seed)).choice([-1.0, 1.0], x.shape)
        return np.clip(np.asarray(x) + eps * signs, 0.0, 1.0).astype("float32")


register_attack("sign_noise", SignNoise, overwrite=True)
