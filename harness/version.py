"""The harness's version, recorded in every record's environment (platform/environment.py) and read as
`harness.__version__`: here, in the bottom layer, so that recording it imports nothing above."""

__version__ = "0.1.0"
