"""graphgpo: graph-based credit assignment for agentic RL (GraphGPO, GiGPO, GRPO, RLOO advantages).

    import graphgpo
    batch = graphgpo.StepBatch.from_records(records)
    out = graphgpo.compute_advantages(batch, method="graphgpo", backend="torch", preset="alfworld")
    out.advantages      # float32, one value per step, in record order
    print(out.summary())

Importing the package loads only torch and numpy; GPU backends and training code load when used.
"""

from graphgpo.api import compute_advantages
from graphgpo.backends import available_backends
from graphgpo.batch import StepBatch
from graphgpo.config import PRESETS, GiGPOConfig, GraphGPOConfig, GRPOConfig, RLOOConfig, make_config
from graphgpo.hashing import hash_token_rows, stable_key
from graphgpo.output import AdvantageOutput

__version__ = "0.1.0"

__all__ = [
    "AdvantageOutput",
    "GiGPOConfig",
    "GraphGPOConfig",
    "GRPOConfig",
    "PRESETS",
    "RLOOConfig",
    "StepBatch",
    "available_backends",
    "compute_advantages",
    "hash_token_rows",
    "make_config",
    "stable_key",
]
