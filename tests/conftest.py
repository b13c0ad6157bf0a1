import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# The tests check results, not speed: XLA's lowest LLVM optimisation level
# compiles the deep presets' training steps about a quarter faster.
# Added to flags already set (an AVX2 emulation's --xla_cpu_max_isa).
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()
# Two xdist workers share the two cores: one thread per TensorFlow operation
# in each (and in every process a test starts, which inherits it, so a run
# killed in a subprocess and its straight twin here still compute alike).
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

# keras_damped before Keras loads TensorFlow: its oneDNN switch (on x86 CPUs
# where TensorFlow leaves oneDNN off) applies to the suite as to any user.
import keras_damped  # noqa: E402, I001
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_report_header(config):
    state = keras_damped._onednn.state()
    return f"oneDNN: {'on' if state['enabled'] else 'off'} ({state['reason']})"


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts with float32, a fixed seed and no leftover graph state."""
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(1234)
    yield
    keras.config.set_dtype_policy("float32")
    keras.backend.clear_session(free_memory=False)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def tensor_events(folder):
    """Every tensor event TensorBoard wrote into `folder`, loaded."""
    from tensorboard.backend.event_processing import event_accumulator

    events = event_accumulator.EventAccumulator(
        str(folder), size_guidance={"tensors": 0}
    )
    events.Reload()
    return events


def shared_file(tmp_path_factory, name, build):
    """The path of `name`, built once per test run by `build(path)` and
    shared by every xdist worker (a file lock lets one build it; the others
    wait and reuse it)."""
    import os

    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's folder, common to its workers
    path = base / "shared" / name
    path.parent.mkdir(exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            build(path)
    return path


# The shared trained model: an In-ResNet-14 trained by `train` (the library's
# training run, with its defaults: paper schedule and augmentation, weight
# decay) for two epochs on 3,000 real Fashion-MNIST images, graph mode (XLA's
# compile tripled this on an AVX2-only CPU). Its run folder is checked by
# test_training.py; its model is attacked and analysed by the other tests.
SMALL_RUN = dict(
    dataset="fashion_mnist",
    epochs=2,
    batch_size=64,
    lr=0.05,
    train_limit=3000,
    test_limit=1000,
    verbose=0,
    seed=1,
    jit_compile="off",
)


def _train_small_run(folder):
    from keras_damped import DampedResNet
    from keras_damped.training import TrainConfig
    from keras_damped.training import train

    folder.mkdir()
    untrained = folder / "in_resnet14_untrained.keras"
    keras.utils.set_random_seed(0)
    DampedResNet(
        14, input_shape=(28, 28, 1), normalization="fashion_mnist", name="in_resnet14"
    ).save(untrained)
    train(TrainConfig(model=str(untrained), run_dir=str(folder / "run"), **SMALL_RUN))


@pytest.fixture(scope="session")
def trained_small_run(tmp_path_factory):
    """The shared trained In-ResNet-14's run folder (`SMALL_RUN`; trained
    once per test run)."""
    return shared_file(tmp_path_factory, "small_run", _train_small_run) / "run"


@pytest.fixture(scope="session")
def trained_small_model_path(trained_small_run):
    """The shared trained In-ResNet-14, saved by its run."""
    return str(trained_small_run / "model.keras")


@pytest.fixture(scope="session")
def trained_small_model(trained_small_model_path):
    """The trained In-ResNet-14, loaded."""
    return keras.saving.load_model(trained_small_model_path, compile=False)


def _save_tiny_model(path):
    from keras_damped import DampedResNet

    keras.utils.set_random_seed(0)
    DampedResNet(8, input_shape=(28, 28, 1), normalization="fashion_mnist").save(path)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """An untrained In-ResNet-8 for Fashion-MNIST, saved: for refusals and
    command plumbing, where accuracy does not matter."""
    return str(shared_file(tmp_path_factory, "in_resnet8.keras", _save_tiny_model))


@pytest.fixture(scope="session")
def fm_images():
    """The first 64 Fashion-MNIST test images in [0, 1] and their labels."""
    from keras_damped.data import load_arrays

    x, y = load_arrays("fashion_mnist", "test", limit=64)
    return x.astype("float32") / 255.0, y.astype("int32")
