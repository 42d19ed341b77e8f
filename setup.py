"""cgnl-video: spatio-temporal Compact Generalized Non-local networks for video."""

from setuptools import find_packages, setup

# tools/export.py --format onnx writes with torch; onnx and onnxruntime read and run the file.
EXPORT_REQUIRES = ["onnx", "onnxruntime"]

setup(
    name="cgnl_video",
    version="0.1.0",
    description="I3D ResNets with Compact Generalized Non-local blocks for video classification",
    python_requires=">=3.10",
    packages=find_packages(include=["cgnl_video", "cgnl_video.*"]),
    install_requires=[
        "torch",
        "torchvision",
        "pytorchvideo",
        "fvcore",
        "decord",
        "av",
        "pyyaml",
        "tqdm",
        "matplotlib",
    ],
    extras_require={"export": EXPORT_REQUIRES, "test": ["pytest", "pytest-xdist", "ruff", *EXPORT_REQUIRES]},
)
