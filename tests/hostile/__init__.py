"""The hostile-input corpus of issue 12 and the test that runs it through the command line."""
