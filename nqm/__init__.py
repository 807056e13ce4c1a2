"""nqm: the noisy quadratic model of Zhang et al. (2019), computed exactly.

The public API is re-exported here; implementation lives in small private modules.
nqm never imports torch.
"""

__all__: list[str] = []
