"""Hands a stage process to the test session's stage server (``stageserver.py`` here)."""

import os
import sys

if os.environ.get("FACEBALANCE_STAGE_SERVER") and not os.environ.get("TORCHELASTIC_RUN_ID"):
    import stageserver

    if stageserver.is_stage(sys.argv):
        stageserver.hand_over(os.environ["FACEBALANCE_STAGE_SERVER"])
