"""Multi-turn Search-R1 rollouts on a live KV cache (docs/architecture.md "Rollout output")."""
from searchr1_jax.rollout.batch import RolloutBatch, RolloutInfo, Segment, TurnRecord
from searchr1_jax.rollout.collect import collect_rollouts
from searchr1_jax.rollout.engine import EpisodeSettings, run_episodes
from searchr1_jax.rollout.generator import TurnGenerator, TurnOutput
from searchr1_jax.rollout.parsing import Action, parse_action
from searchr1_jax.rollout.search_step import RolloutRetrievalError

__all__ = ["RolloutBatch", "RolloutInfo", "Segment", "TurnRecord", "collect_rollouts",
           "EpisodeSettings", "run_episodes", "TurnGenerator", "TurnOutput", "Action",
           "parse_action", "RolloutRetrievalError"]
