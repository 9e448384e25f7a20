"""One module per DVC stage: read params, call the library, write the stage's outputs atomically.

The CLI (`sslflow <stage>`, what dvc.yaml runs) and the Prefect flows call the
same ``run`` functions, so there is one implementation of each stage.
"""
