"""Data-parallel training with tf.distribute: one machine or several workers.

One machine, all its GPUs (or logical CPU devices), synchronous:

    keras-damped train --model in_resnet56 --dataset cifar10 --epochs 160 \\
        --distribute mirrored --batch-size 256 --out runs/mirrored

Several machines (or processes): every worker runs the same command with a
TF_CONFIG that lists the cluster and its own index; worker 0 is the chief
and writes the run folder. The same commands again resume a killed run
(every worker restores worker 0's checkpoint, so the run folder must be on
a file system all workers see). This script starts two workers on this
machine (loopback ports) to show it; on real machines use their addresses.

    python examples/distributed_training.py
"""

import json
import os
import socket
import subprocess
import sys


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    cluster = {"worker": [f"127.0.0.1:{free_port()}" for _ in range(2)]}
    command = [
        sys.executable,
        "-m",
        "keras_damped.cli",
        "train",
        "--model",
        "in_resnet20",
        "--dataset",
        "fashion_mnist",
        "--epochs",
        "2",
        "--train-limit",
        "2048",
        "--test-limit",
        "512",
        "--batch-size",
        "128",  # global: 64 per worker
        "--distribute",
        "multi_worker",
        "--out",
        "runs/multi_worker",
        "--overwrite",
        "--verbose",
        "2",
    ]
    workers = []
    for index in range(2):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = dict(os.environ, TF_CONFIG=json.dumps(tf_config))
        workers.append(subprocess.Popen(command, env=env))
    codes = [worker.wait() for worker in workers]
    print(f"workers exited with {codes}; the chief wrote runs/multi_worker")
    sys.exit(max(codes))


if __name__ == "__main__":
    main()
