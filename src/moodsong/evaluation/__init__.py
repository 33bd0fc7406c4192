"""Evaluation: measuring models and what they write.

- :mod:`moodsong.evaluation.ais`         annealed importance sampling of an RBM's log-partition
- :mod:`moodsong.evaluation.likelihood`  NLL per step and frame accuracy of the temporal models (``moodsong evaluate``)
- :mod:`moodsong.evaluation.songs`       song metrics: feature overlap with real music, the two-sample test,
  plan agreement, melody checks (``bench/songs.py``)
"""
