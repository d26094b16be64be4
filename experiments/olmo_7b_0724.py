"""OLMo-7B-0724: the same settings as 0424 (the original's two configs are byte-identical)."""

from olmo_7b_0424 import config

from olmo_fn.launch import main

__all__ = ["config"]

if __name__ == "__main__":
    main(config(), __doc__)
