"""Train BLSP with ESPnet's trainer: ``python -m espnet_blsp.bin.blsp_train``."""

from espnet_blsp.tasks.blsp import BLSPTask


def get_parser():
    """The full ESPnet training parser of BLSPTask."""
    return BLSPTask.get_parser()


def main(cmd=None):
    """Run training, stats collection or config printing.

    Example:
        python -m espnet_blsp.bin.blsp_train --config conf/train.yaml \\
            --train_data_path_and_name_and_type dump/train/feats.scp,speech,kaldi_ark ...
    """
    BLSPTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
