"""Model configs (``--slm-models-config FILE.yaml`` or a directory of them): one entry per model.

Pytest-free. A config file is YAML::

    token_env: HF_TOKEN              # optional: the variable holding a Hugging Face token (gated models)
    models:
      - name: qwen2.5-0.5b           # required: the model's name in test ids, reports and baselines
        model: Qwen/Qwen2.5-0.5B-Instruct   # required: hub id, local path (relative to this file), or alias
        revision: main               # hub ids only
        display_name: Qwen2.5 0.5B Instruct
        parameters: 494M             # checked against the checkpoint (see PARAMETER_TOLERANCE)
        precisions: [bf16, int4]     # this model's precisions (default: --precision)
        engine_args: {max_model_len: 4096, tensor_parallel_size: 1}  # passed to vllm.LLM
        calibration: {dataset: ..., split: ..., num_samples: 256, max_sequence_length: 1024}
        accuracy: {tasks: {gsm8k: {limit: 200}, mmlu: {}}, limit: 100, num_fewshot: 5}

The modules, in the order a config travels through them:

- :mod:`.schema`: the validated entry (``ModelEntry``) and the config (``ModelsConfig``), plain data;
- :mod:`.validate`: the checks of each field, from a YAML mapping to a ``ModelEntry``; every error
  names the file, the entry and the field, and unknown keys are errors;
- :mod:`.load`: reading a file or a directory of them, names unique across all;
- :mod:`.matrix`: what an entry changes in the session (its models, precisions, KV-cache dtypes,
  accuracy tasks, engine arguments and settings);
- :mod:`.checkpoint`: what an entry says about its checkpoint (the hub token, the parameter count);
- :mod:`.chat_template`: an entry's chat template handed to the engine's tokenizer.
"""
