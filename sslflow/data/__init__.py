"""Sources (mnist-idx, imagefolder, imagenet) -> WebDataset shards, DALI indexes, manifest, label subsets."""
