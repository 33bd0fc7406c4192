"""Training loops, one per model family, and the distributed plumbing they share.

- :mod:`moodsong.training.rbm`          the RBM (torch CD-k, or the fused sparse kernel; ``moodsong train``)
- :mod:`moodsong.training.sequence`     the temporal models, with per-piece conditions (``moodsong train-seq``)
- :mod:`moodsong.training.song`         the song model's melody network (``moodsong train-song``)
- :mod:`moodsong.training.distributed`  torchrun / DDP helpers
- :mod:`moodsong.training.allocator`    glibc allocator settings for long runs
"""
