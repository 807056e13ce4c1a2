"""Data sources for nnbench: whole data sets resident on the device, batches sliced there.

See ``nnbench.data.source`` for the interface and ``nnbench.data.registry`` for the available sets.
"""

from nnbench.data.augment import flip_and_crop, random_crop, random_flip
from nnbench.data.cifar import cifar10, load_cifar_batch
from nnbench.data.digits import digits
from nnbench.data.idx import read_idx
from nnbench.data.language import MarkovChain, markov_lm, random_markov_chain, text_lm
from nnbench.data.linear_regression import LinearRegressionSource, linear_regression
from nnbench.data.mnist import fashion_mnist, mnist
from nnbench.data.registry import DATASETS, EMBEDDED_DATASETS, build_dataset, dataset_kwargs
from nnbench.data.source import TASKS, DataSource, OnlineDataSource, TensorDataSource
from nnbench.data.synthetic import synthetic_images, teacher, teacher_regression

__all__ = [
    "DATASETS",
    "EMBEDDED_DATASETS",
    "LinearRegressionSource",
    "TASKS",
    "DataSource",
    "MarkovChain",
    "OnlineDataSource",
    "TensorDataSource",
    "build_dataset",
    "cifar10",
    "dataset_kwargs",
    "digits",
    "fashion_mnist",
    "flip_and_crop",
    "linear_regression",
    "load_cifar_batch",
    "markov_lm",
    "mnist",
    "random_crop",
    "random_flip",
    "random_markov_chain",
    "read_idx",
    "synthetic_images",
    "teacher",
    "teacher_regression",
    "text_lm",
]
