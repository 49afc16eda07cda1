"""What every recipe-stage CLI does first: logging and the torch thread count."""

import argparse
import logging

import torch


def add_num_threads(parser: argparse.ArgumentParser) -> None:
    """Adds ``--num_threads`` (torch threads; default: torch's own choice)."""
    parser.add_argument("--num_threads", type=int, default=None, help="torch threads")


def setup(args: argparse.Namespace) -> None:
    """Timestamped INFO logging, and ``args.num_threads`` if the CLI has it."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if getattr(args, "num_threads", None):
        torch.set_num_threads(args.num_threads)
