"""The analytic test bundle's generator, by part (the command: tools/make_test_bundle.py)."""
