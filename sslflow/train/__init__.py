"""The one training loop: DDP, bf16 autocast, torch.compile, LARS + warmup/cosine, checkpoint/resume, dvclive."""
