"""mlvae_tf: the Multi-Level VAE in Keras 3 / TensorFlow, with SavedModel and ONNX export."""

from setuptools import find_packages, setup

setup(
    name="mlvae_tf",
    version="0.1.0",
    description="Multi-Level Variational Autoencoder (Bouchacourt et al., 2017) for grouped data, in Keras 3.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["mlvae_tf", "mlvae_tf.*", "export", "export.*"]),
    python_requires=">=3.10",
    install_requires=[
        # Verified to install and run together: TF 2.21.0, Keras 3.15.1, TFP 0.25.0, TFDS 4.9.10,
        # tf2onnx 1.17.0, onnx 1.23, onnxruntime 1.32.
        "tensorflow>=2.21,<2.22",
        "keras>=3.15.1,<3.16",
        "tensorflow-probability[tf]>=0.25,<0.26",  # [tf] installs tf-keras, which TFP's import needs
        "tensorflow-datasets>=4.9.10,<4.10",
        "importlib_resources",  # TFDS needs it for builders defined outside TFDS, and does not declare it
        "tf2onnx>=1.17,<1.18",
        "onnx>=1.23,<1.24",
        "onnxruntime>=1.32,<1.33",
        "scikit-learn>=1.5",
        "matplotlib>=3.8",
        "numpy>=1.26",
        "pyyaml>=6",
        "tensorboard>=2.21,<2.22",  # TF 2.21 no longer installs it; the TensorBoard callback needs it
    ],
    entry_points={"console_scripts": ["mlvae = mlvae_tf.cli:main"]},
    extras_require={
        "test": ["pytest>=9,<10", "pytest-xdist>=3.8,<4", "hypothesis>=6,<7", "nbclient>=0.10", "nbformat>=5", "ipykernel>=6", "tensorflow-serving-api>=2.21,<2.22", "dill"],  # dill: tfds.testing
    },
)
