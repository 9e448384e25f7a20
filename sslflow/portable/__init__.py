"""Encoders in the form other codebases read: torchvision-named safetensors, config.json, ONNX.

A package of its own, outside models/ and eval/, so that editing how encoders are
exported reruns only the `export` stage, never pretraining or evaluation.

    files.py       config.json, the weight files, and the network they fit
    preprocess.py  the eval view as a module (pictures in)
    onnx_file.py   encoder.onnx, checked with ONNX Runtime
    bundle.py      an exported folder from an encoder file and the params `extract` reads
"""
