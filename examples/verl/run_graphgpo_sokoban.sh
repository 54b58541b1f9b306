#!/usr/bin/env bash
# Multi-GPU / multi-node verl run with graphgpo's GraphGPO estimator (Sokoban preset).
# Documented, not run here (this project's machines have no GPUs): see README.md beside this file.
#
# Single node, 8 GPUs:     MODEL_PATH=Qwen/Qwen2.5-1.5B-Instruct bash examples/verl/run_graphgpo_sokoban.sh
# Several nodes (Ray):     start Ray on every node first (`ray start --head` / `ray start --address=HEAD:6379`,
#                          with the two environment variables below exported on every node), then run this
#                          script on the head node with NNODES=<nodes>.
# Extra hydra overrides are passed through: ... run_graphgpo_sokoban.sh algorithm.graphgpo.backend=torch
#
# Requirements: pip install 'graphgpo[verl]' vllm on every node, and a rollout that emits one row per
# environment step with verl-agent's metadata (README.md, "What the batch must carry").
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

: "${MODEL_PATH:?set MODEL_PATH to the policy model (a local path or hub id)}"
: "${TRAIN_FILES:=$HOME/data/sokoban/train.parquet}"
: "${VAL_FILES:=$HOME/data/sokoban/test.parquet}"
: "${NNODES:=1}"
: "${GPUS_PER_NODE:=8}"
: "${ESTIMATOR:=graphgpo_sokoban}"

# verl imports these modules in every process it starts (driver, TaskRunner, workers): the estimators are
# registered there, and the trainer hook routes verl's compute_advantage to them with the whole DataProto.
export VERL_USE_EXTERNAL_MODULES=graphgpo.integrations.verl
export GRAPHGPO_VERL_TRAINER_HOOK=1

python3 -m verl.trainer.main_ppo \
    --config-path "${here}" --config-name graphgpo_sokoban \
    algorithm.adv_estimator="${ESTIMATOR}" \
    actor_rollout_ref.model.path="${MODEL_PATH}" \
    data.train_files="${TRAIN_FILES}" \
    data.val_files="${VAL_FILES}" \
    trainer.nnodes="${NNODES}" \
    trainer.n_gpus_per_node="${GPUS_PER_NODE}" \
    +ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES=graphgpo.integrations.verl \
    +ray_kwargs.ray_init.runtime_env.env_vars.GRAPHGPO_VERL_TRAINER_HOOK='"1"' \
    "$@"
