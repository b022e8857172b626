"""What a latent agent fed the model, as input embeddings: the other way to carry a working
memory. Per sample, an agent's input is its prompt's token embeddings followed by its m
realigned latent vectors, in cache order; concatenated over the agents, prefilled at positions
0..N-1, it rebuilds the memory (up to kernel rounding). The hybrid judger's vLLM input
(methods/hybrid.py) and the disaggregated `embeds` hop (actors/role_actor.py) are built here.
"""

from __future__ import annotations

import torch


class LatentRecorder:
    """A Realigner stand-in that remembers every vector it returns (an agent's latent inputs).
    Pass it to `latent_mas.latent_agent_step` in place of the realigner.
    keep_hidden: also remember the hidden state each vector was made from (--save_latents)."""

    def __init__(self, realign, keep_hidden: bool = False):
        self.realign = realign
        self.outputs: list[torch.Tensor] = []   # one [B, D] per latent step, model dtype
        self.hidden: list[torch.Tensor] | None = [] if keep_hidden else None   # [B, D] each

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        e = self.realign(h)                      # [B, D], model dtype
        self.outputs.append(e)
        if self.hidden is not None:
            self.hidden.append(h)
        return e

    def take(self) -> list[dict[str, torch.Tensor]]:
        """Per sample, the agent just recorded: {"hidden": [m, D], "fed": [m, D]} (fp32, CPU;
        an empty list when it ran no latent step). Clears the recorder."""
        assert self.hidden is not None, "LatentRecorder(keep_hidden=True) records hidden states"
        if not self.outputs:
            self.hidden.clear()
            return []
        fed = torch.stack(self.outputs, dim=1).float().cpu()          # [B, m, D]
        hid = torch.stack(self.hidden, dim=1).float().cpu()           # [B, m, D]
        self.outputs.clear()
        self.hidden.clear()
        return [{"hidden": hid[i].clone(), "fed": fed[i].clone()} for i in range(fed.shape[0])]


def agent_input_embeds(engine, steps, recorder: LatentRecorder) -> list[torch.Tensor]:
    """Per sample of the batch, the agent's input: [L_i + m, D] on the engine's device.
    steps: the agent's AgentTraces (their unpadded `input_ids`); recorder: the LatentRecorder
    that ran its m latent steps (m = 0: prompt embeddings only). Clears the recorder."""
    embed_tokens = engine.model.get_input_embeddings()
    lat = torch.stack(recorder.outputs, dim=1) if recorder.outputs else None   # [B, m, D]
    recorder.outputs.clear()
    out = []
    with torch.no_grad():
        for i, step in enumerate(steps):
            ids = torch.tensor(step.input_ids, device=engine.device)            # [L_i]
            parts = [embed_tokens(ids)]                                          # [L_i, D]
            if lat is not None:
                parts.append(lat[i])                                             # [m, D]
            out.append(torch.cat(parts, dim=0))                                  # [L_i + m, D]
    return out


def prompt_embeds(engine, ids: list[int]) -> torch.Tensor:
    """A prompt's token embeddings [L, D] on the engine's device."""
    with torch.no_grad():
        return engine.model.get_input_embeddings()(torch.tensor(ids, device=engine.device))
