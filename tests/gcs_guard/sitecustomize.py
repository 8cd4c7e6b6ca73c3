"""Installs the gs: guard of tests/gcs_emulator.py in every process the gs:// tests start."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from tests import gcs_emulator

gcs_emulator.install_guard()
