"""Tiny stand-in for the remote code of allenai/Molmo-7B-D-0924 (see config_molmo.py)."""
