"""Entity-tracking mechanism benchmark: does fine-tuning build a new mechanism or improve the old one?"""

__version__ = "0.1.0"
