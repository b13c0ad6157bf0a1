"""SGD with the momentum formulation of the reference code (PyTorch)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_damped")
class ReferenceSGD(keras.optimizers.SGD):
    """SGD with momentum as PyTorch (and so the paper's code) computes it.

    Formula:
    ```python
    velocity = momentum * velocity + gradient
    w = w - learning_rate * velocity        # nesterov: lr * (g + momentum * v)
    ```
    Keras' `SGD` keeps the learning rate inside the velocity
    (`v = momentum * v - lr * g; w = w + v`). The two agree while the rate is
    constant, but at a step decay Keras' velocity still carries the old rate
    for about `1 / (1 - momentum)` steps. With the paper's schedule (the rate
    divided by 10, or by 100 when the two drops fall on one epoch of a short
    run) that coasting step measurably hurts; here the new rate applies at
    once, as in the reference. Arguments are Keras' `SGD`'s.
    """

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if self.momentum == 0:
            self.assign_sub(variable, ops.multiply(gradient, learning_rate))
            return
        velocity = self.momentums[self._get_variable_index(variable)]
        momentum = ops.cast(self.momentum, variable.dtype)
        self.assign(velocity, ops.add(ops.multiply(velocity, momentum), gradient))
        step = velocity
        if self.nesterov:
            step = ops.add(gradient, ops.multiply(velocity, momentum))
        self.assign_sub(variable, ops.multiply(step, learning_rate))
