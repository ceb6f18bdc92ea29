"""Device mesh, named partition rules and multi-host initialisation."""
from searchr1_jax.parallel.mesh import (AXES, BATCH_AXES, batch_sharding, initialize_distributed,
                                        make_mesh, mesh_from_config, replicated, resolve_axis_sizes)
from searchr1_jax.parallel.rules import (DECODER_RULES, ENCODER_RULES, path_to_str, spec_for,
                                         tree_shardings, tree_specs)
