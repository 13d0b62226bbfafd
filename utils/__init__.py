"""Library code shared by make_patch.py, main.py and test.py."""
