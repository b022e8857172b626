"""The latent part of LatentMAS: realignment, the batched shared KV memory, the rollout."""

from .cache import BatchKV, Segment
from .realign import Realigner, build_realigner, realigner_for_model
from .rollout import latent_steps, prefill, run_latent_agent

__all__ = ["BatchKV", "Segment", "Realigner", "build_realigner",
           "realigner_for_model", "latent_steps", "prefill", "run_latent_agent"]
