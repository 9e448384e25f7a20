"""One augmentation spec, two backends (DALI, torchvision v2), and the view makers of each method.

    spec.py               the `augment` section: ordered ops with probabilities and strengths, per view
    loader.py             make_loader / in_channels: the API every method and evaluation uses
    plan.py               what one epoch of one rank reads (selection, rank slice, seeds, batch count)
    catalogue.py          keys, counts and byte ranges of every sample, from the shards' DALI indexes
    views.py              the batch layout of each kind, the relpos label table, seeds, label parsing
    dali_ops.py           each op as DALI graph fragments (CPU, or GPU after a 'mixed' decode)
    dali_pipeline.py      DALI backend: fn.readers.webdataset / fn.external_source -> views -> torch
    torchvision_ops.py    each op as torchvision.transforms.v2
    torchvision_loader.py torchvision backend: webdataset + DataLoader workers -> views -> torch
    exemplar.py           the surrogate-class patches, drawn once and stored in models/exemplar/
    preview.py            `sslflow augment preview`: PNG grids of what each method's network sees

Subsets (1%, 10%) are served by both backends by key: DALI reads them through
``fn.external_source`` by seeking to the byte ranges the index lists (its
webdataset reader cannot filter), torchvision by the same seeks; whole splits
stream through ``fn.readers.webdataset`` and ``wds.WebDataset``.
"""
